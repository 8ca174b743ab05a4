"""How fast the embedded model reads prompts and generates tokens, factor by factor (issue 15, "Speed of the
model itself").

The measuring is done by benchmarks/model_speed_worker.py, which needs only numpy and llama_cpp, so the same
measurements run under another venv holding another llama.cpp build. Variants are interleaved (A, B, C, A, B,
C ...) because this machine is shared: what counts is each variant's ratio to the base variant measured in
the same round, and medians over rounds, never one wall-clock figure.

Two modes:

  factors (default)  one worker under this Python: llama.cpp settings (threads, batch sizes, flash
                     attention, KV cache type, mmap/mlock, logits_all) and the generation paths (raw decode,
                     C sampler, create_chat_completion with the assistant's and the reviewer's arguments,
                     JSON-schema grammar).
  --pythons          builds side by side: name=[ENV=VAL ...] /path/to/python,... (environment variables
                     such as OMP_WAIT_POLICY=PASSIVE may be set per entry); each round runs every build's worker
                     once, one after the other (never two llama.cpp processes at once), on the build
                     variants (raw decode, assistant chat, reviewer JSON).

Usage:
  .venv/bin/python benchmarks/model_speed.py [--reps 3] [--gen-tokens 64] [--only a,b] [--json PATH]
  .venv/bin/python benchmarks/model_speed.py --pythons avx512=.venv/bin/python,avx2=/tmp/venv-avx2/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORKER = Path(__file__).resolve().parent / "model_speed_worker.py"

# The environment before chaperone.models is imported (it sets OMP_WAIT_POLICY): builds compared with
# --pythons get this plus their own variables, so each entry states its settings; the factor mode runs
# under chaperone's (os.environ after the import).
ORIGINAL_ENV = dict(os.environ)
THREADS = os.cpu_count() or 1
# What chaperone's model pool loads today (pool.py: n_threads = cpu_count; llama-cpp-python then takes
# n_threads_batch = cpu_count and flash_attn off).
BASE: dict[str, Any] = {"n_ctx": 4096, "n_batch": 512, "n_threads": THREADS, "n_threads_batch": THREADS, "seed": 42}
# The agents' generation arguments (agents/*.yaml through ModelPool.generation_args).
ASSISTANT_ARGS = {"temperature": 0.2, "top_p": 0.95, "repeat_penalty": 1.1}
REVIEWER_ARGS = {"temperature": 0.0, "top_p": 1.0, "repeat_penalty": 1.1}
Q8_0 = 8  # ggml_type GGML_TYPE_Q8_0


def variant(name: str, path: str = "raw", load: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "path": path, "load": {**BASE, **(load or {})}, **extra}


# Same-load variants sit together, so the worker reloads the model only when the settings change.
FACTORS = [
    variant("base"),
    variant("gen-threads-1", gen_threads=1),
    variant("sampler"),
    variant("chat", "chat"),
    variant("chat-assistant", "chat", args=ASSISTANT_ARGS),
    variant("chat-reviewer", "chat", args=REVIEWER_ARGS),
    variant("chat-json", "chat", schema=True),
    variant("chat-reviewer-json", "chat", args=REVIEWER_ARGS, schema=True),
    variant("pair", "pair"),
    variant("pair-threads-1", "pair", gen_threads=1),
    variant("batch-threads-1", load={"n_threads_batch": 1}),
    variant("batch-128", load={"n_batch": 128, "n_ubatch": 128}),
    variant("ubatch-256", load={"n_ubatch": 256}),
    variant("flash-attn", load={"flash_attn": True}),
    variant("flash-kv-q8_0", load={"flash_attn": True, "type_k": Q8_0, "type_v": Q8_0}),
    variant("mlock", load={"use_mlock": True}),
    variant("no-mmap", load={"use_mmap": False}),
    variant("logits-all", load={"logits_all": True}),
]
BUILD_VARIANTS = [
    variant("base"),
    variant("gen-threads-1", gen_threads=1),
    variant("flash-attn", load={"flash_attn": True}),
    variant("chat-assistant", "chat", args=ASSISTANT_ARGS),
    variant("chat-reviewer-json", "chat", args=REVIEWER_ARGS, schema=True),
]

# A prompt of ~250 tokens (a review prompt is ~450; shorter keeps rounds short on a busy machine) that asks for
# a long answer, so generation runs to max_tokens.
SYSTEM = (
    "You review a chatbot's draft reply before it is sent. Decide if the draft is OK to send. A draft is NOT OK "
    "only if it gives real instructions for hurting people or for crime, insults someone, demeans a group, "
    "states false facts, refuses a harmless request, or breaks this deployment's policy. "
) * 2
USER = (
    "Explain in detail, step by step, how a Linux process is created with fork and exec, how signals such as "
    "SIGTERM and SIGKILL reach it, what a zombie process is, and how a shell waits for its children. Give "
    "examples of commands for each step and explain every option you use. "
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]


def review_schema() -> dict[str, Any]:
    """The reviewer's critique schema (stage two of a verdict): a free-text string inside a grammar."""
    from chaperone.engine.verdict import critique_schema

    return critique_schema(["violence", "crime", "hate", "harassment", "misinformation", "over_refusal"])


def parse_build(spec: str) -> tuple[list[str], dict[str, str]]:
    """'KEY=VAL ... /path/to/python': the command and the environment variables to run it with."""
    *env, python = spec.split()
    return [python, str(WORKER)], dict(e.split("=", 1) for e in env)


def run_worker(spec: str, job: dict[str, Any], base_env: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """One worker process; its system-info line and its measurements (each echoed to stderr as it comes)."""
    cmd, env = parse_build(spec)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**base_env, **env}
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    lines = []
    for raw in proc.stdout:
        if raw.startswith("{"):
            line = json.loads(raw)
            lines.append(line)
            if "variant" in line:
                print(
                    f"  {line['variant']} round {line['rep']}: prompt {line['prompt_tps']:.1f} tok/s, "
                    f"generation {line['gen_tps']:.1f} tok/s",
                    file=sys.stderr,
                    flush=True,
                )
    if proc.wait() != 0:
        raise SystemExit(f"worker '{spec}' exited with {proc.returncode} (a crash of that build?)")
    info = next((line["system_info"] for line in lines if "system_info" in line), "")
    return info, [line for line in lines if "variant" in line]


def median_ratio(rows: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> float | None:
    """Median over rounds of this variant's figure divided by the base's figure in the same round."""
    by_rep = {r["rep"]: r[key] for r in base if r[key]}
    ratios = [r[key] / by_rep[r["rep"]] for r in rows if r["rep"] in by_rep and r[key]]
    return statistics.median(ratios) if ratios else None


def summarise(results: list[dict[str, Any]], base_of: Any) -> list[dict[str, Any]]:
    """One row per (build, variant): medians, ratios to its base, whether its greedy text matches the base's."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["build"], r["variant"]), []).append(r)
    rows = []
    for (build, name), runs in groups.items():
        base = groups.get(base_of(build, name), [])
        row = {
            "build": build,
            "variant": name,
            "rounds": len(runs),
            "prompt_tps": statistics.median(r["prompt_tps"] for r in runs),
            "gen_tps": statistics.median(r["gen_tps"] for r in runs),
            "prompt_ratio": median_ratio(runs, base, "prompt_tps"),
            "gen_ratio": median_ratio(runs, base, "gen_tps"),
            "gen_tokens": statistics.median(r["gen_tokens"] for r in runs),
            "rss_mib": max(r["rss_mib"] for r in runs),
            "same_text_as_base": runs[0]["text"] == base[0]["text"] if base else None,
            "json_valid": all(r["json_valid"] for r in runs) if "json_valid" in runs[0] else None,
            "sample_text": runs[0]["text"][:80],
        }
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], title: str, ratio_to: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("build", "variant", "rounds", "prompt tok/s", "gen tok/s", "prompt ×", "gen ×", "same text", "RSS MiB"):
        table.add_column(col, justify="left" if col in ("build", "variant") else "right")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for r in rows:
        same = {True: "yes", False: "no", None: "-"}[r["same_text_as_base"]]
        if r["json_valid"] is not None:
            same += "" if r["json_valid"] else " (bad JSON)"
        table.add_row(
            r["build"],
            r["variant"],
            str(r["rounds"]),
            f"{r['prompt_tps']:.1f}",
            f"{r['gen_tps']:.1f}",
            fmt(r["prompt_ratio"]),
            fmt(r["gen_ratio"]),
            same,
            str(r["rss_mib"]),
        )
    Console(width=None if sys.stdout.isatty() else 140).print(table)
    print(f"× = median over rounds of the ratio to {ratio_to} in the same round; same text: greedy output equal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="rounds (each runs every variant once)")
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--only", help="comma-separated variant names (the first is the base for ratios)")
    parser.add_argument("--pythons", help="name=[ENV=VAL ...] /path/to/python,... : compare builds (first: base)")
    parser.add_argument("--json", type=Path, help="write the rows and raw measurements here")
    args = parser.parse_args()

    from chaperone.models.gguf import ensure_model

    pool = BUILD_VARIANTS if args.pythons else FACTORS
    variants = [v for v in pool if not args.only or v["name"] in args.only.split(",")]
    if args.only:  # the order given: the first named is the base
        order = args.only.split(",")
        variants.sort(key=lambda v: order.index(v["name"]))
    job = {"model": str(ensure_model()), "messages": MESSAGES, "schema": review_schema(), "gen_tokens": args.gen_tokens}
    builds = dict(p.split("=", 1) for p in args.pythons.split(",")) if args.pythons else {"this": sys.executable}
    infos: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    started = time.time()
    if args.pythons:  # build comparison: one worker per build per round, one process at a time
        for rep in range(args.reps):
            for build, spec in builds.items():
                infos[build], runs = run_worker(spec, {**job, "reps": 1, "variants": variants}, ORIGINAL_ENV)
                results += [{**r, "rep": rep, "build": build} for r in runs]
        first = next(iter(builds))

        def base_of(build: str, name: str) -> tuple[str, str]:
            return first, name

        ratio_to = f"the same variant on build '{first}'"
    else:
        job = {**job, "reps": args.reps, "variants": variants}
        infos["this"], runs = run_worker(sys.executable, job, dict(os.environ))
        infos["this"] += f" OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
        results = [{**r, "build": "this"} for r in runs]
        base_name = variants[0]["name"]

        def base_of(build: str, name: str) -> tuple[str, str]:
            return build, base_name

        ratio_to = f"'{base_name}'"
    rows = summarise(results, base_of)
    for build, info in infos.items():
        print(f"{build}: {info}")
    print_table(rows, f"Embedded model speed, {args.gen_tokens} generated tokens, {args.reps} rounds", ratio_to)
    print(json.dumps({"rows": rows}, indent=1))
    if args.json:
        payload = {
            "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
            "seconds": round(time.time() - started),
            "gen_tokens": args.gen_tokens,
            "builds": builds,
            "system_info": infos,
            "variants": variants,
            "rows": rows,
            "runs": results,
        }
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
