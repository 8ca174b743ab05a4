"""One llama.cpp context for both roles (`contexts: shared`) vs one per role (`per_role`) on the embedded model.

Each configuration runs in its own process (so its memory is its own), on the same benign prompts, one
after the other in one run, and the figures are printed side by side: prompt tokens each role's calls
asked for, how many llama.cpp actually read (the rest came from its KV cache), what the saved-state cache
(`state_cache_mb`) cost in copies, seconds per guarded turn, and RSS.

Usage: .venv/bin/python benchmarks/role_contexts.py [--prompts N] [--max-tokens N] [--configs a,b,...] [--parallel]
(--parallel: all configurations at once, so on a busy machine they share the same load.)
Configurations: shared (today's shipped setting), shared-nocache, per_role, per_role-nocache,
per_role-chunks (per_role with the policy's `streaming: chunks`), per_role-upstream-cache (per_role with
llama-cpp-python's own LlamaRAMCache instead of chaperone.models.state_cache: what the saved states cost
before it; here the option-scoring saves keep every logits row too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "How do I kill a Python process that is stuck on Linux?",
    "What is the difference between a list and a tuple in Python?",
    "Explain what a hash chain is in two sentences.",
]
CONFIGS = {
    "shared": {"contexts": "shared", "state_cache_mb": 512},
    "shared-nocache": {"contexts": "shared", "state_cache_mb": 0},
    "per_role": {"contexts": "per_role", "state_cache_mb": 512},
    "per_role-nocache": {"contexts": "per_role", "state_cache_mb": 0},
    "per_role-chunks": {"contexts": "per_role", "state_cache_mb": 512, "chunks": True},
    # per_role with llama-cpp-python's own LlamaRAMCache (every logits row of every saved state, uncounted)
    "per_role-upstream-cache": {"contexts": "per_role", "state_cache_mb": 512, "upstream_cache": True},
}
STAT_FIELDS = (
    "calls",
    "prompt_tokens",
    "prompt_evaluated",
    "state_saves",
    "state_save_s",
    "state_loads",
    "state_load_s",
)


def memory() -> dict[str, int]:
    """This process's resident memory in MiB: now (all, anonymous, file-backed) and its peak."""
    keys = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            out[keys[name]] = int(value.split()[0]) // 1024
    return out


class Attributed:
    """A model client whose calls add the context's counts to one role's figures (the context may be shared:
    calls of a whole review never overlap, so the difference before and after a call is that call's)."""

    def __init__(self, client: Any, totals: dict[str, float]):
        self._client, self._totals = client, totals

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _snap(self) -> dict[str, float]:
        return {k: getattr(self._client.stats, k) for k in STAT_FIELDS}

    def _add(self, before: dict[str, float]) -> None:
        for k, v in self._snap().items():
            self._totals[k] = self._totals.get(k, 0) + v - before[k]

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        before = self._snap()
        try:
            return await self._client.create(*args, **kwargs)
        finally:
            self._add(before)

    async def create_stream(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        before = self._snap()
        try:
            async for item in self._client.create_stream(*args, **kwargs):
                yield item
        finally:
            self._add(before)

    async def option_logprobs(self, *args: Any, **kwargs: Any) -> Any:
        before = self._snap()
        try:
            return await self._client.option_logprobs(*args, **kwargs)
        finally:
            self._add(before)


def held_by_state_cache(client: Any) -> int:
    """Bytes the saved states hold: KV copies, logits rows and token ids (what LlamaRAMCache did not count)."""
    cache = getattr(client.llm, "cache", None)
    if cache is None:
        return 0
    return sum(s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes for s in cache.cache_state.values())


async def run_one(name: str, n: int, max_tokens: int) -> dict[str, Any]:
    import dataclasses

    from autogen_core.models import UserMessage

    from chaperone.audit import logging_setup
    from chaperone.config.project import load_project
    from chaperone.engine.choice import SessionChoice
    from chaperone.engine.conversation import Conversation
    from chaperone.engine.events import ChunkVerdict
    from chaperone.models.pool import ModelPool

    cfg = CONFIGS[name]
    logging_setup.configure(None)
    project = load_project(ROOT)
    project.settings.transcripts_dir = tempfile.mkdtemp(prefix="chaperone-bench-")
    project.settings.log_file = None
    spec = project.models.models["embedded"]
    project.models.models["embedded"] = spec.model_copy(
        update={"contexts": cfg["contexts"], "state_cache_mb": cfg["state_cache_mb"]}
    )
    policy = project.policy(project.settings.default_policy)
    if cfg.get("chunks"):
        policy = policy.model_copy(update={"streaming": "chunks"})
    project.policies[policy.name] = policy
    mem_start = memory()
    pool = ModelPool(project.models, project.root / "config/models.yaml")
    a_spec = project.agents[project.settings.agents.assistant]
    r_spec = project.agents[project.settings.agents.reviewer]
    assistant = pool.get(a_spec.model, max_tokens=a_spec.generation.max_tokens, role="assistant")
    reviewer = pool.get(r_spec.model, max_tokens=r_spec.generation.max_tokens, role="reviewer")
    if cfg.get("upstream_cache"):
        from llama_cpp import LlamaRAMCache

        for client in {assistant.client, reviewer.client}:
            client.llm.set_cache(LlamaRAMCache(capacity_bytes=cfg["state_cache_mb"] << 20))
    mem_loaded = memory()
    # Warm-up: page the weights in (shared by every context) before anything is timed.
    await assistant.client.create([UserMessage(content="hi", source="u")], extra_create_args={"max_tokens": 1})
    base = {id(c): {k: getattr(c.stats, k) for k in STAT_FIELDS} for c in {assistant.client, reviewer.client}}
    roles: dict[str, dict[str, float]] = {"assistant": {}, "reviewer": {}}
    turns = []
    for prompt in PROMPTS[:n]:
        events: list = []
        choice = SessionChoice(assistant_max_tokens=max_tokens)
        conv = Conversation(project, pool, choice, kind="benchmark", sinks=[events.append])
        chat = conv.chat
        chat.assistant.model = dataclasses.replace(
            chat.assistant.model, client=Attributed(assistant.client, roles["assistant"])
        )
        chat.reviewer.model = dataclasses.replace(
            chat.reviewer.model, client=Attributed(reviewer.client, roles["reviewer"])
        )
        started = time.perf_counter()
        result = await conv.send(prompt)
        seconds = time.perf_counter() - started
        conv.close()
        usage = {agent: u.model_dump() for agent, u in result.usage_by_agent.items()}
        turns.append(
            {
                "seconds": seconds,
                "outcome": result.outcome,
                "revisions": result.revisions,
                "chunk_verdicts": sum(isinstance(e, ChunkVerdict) for e in events),
                "usage": usage,
            }
        )
    contexts = {assistant.client, reviewer.client}
    whole = {k: sum(getattr(c.stats, k) - base[id(c)][k] for c in contexts) for k in STAT_FIELDS}
    out = {
        "config": name,
        **{k: v for k, v in cfg.items()},
        "contexts_built": len(contexts),
        "turns": turns,
        "roles": roles,
        "all_calls": whole,
        "state_cache_held_mb": sum(held_by_state_cache(c) for c in contexts) / 2**20,
        "state_cache_states": sum(len(c.llm.cache.cache_state) for c in contexts if c.llm.cache is not None),
        "mem_start": mem_start,
        "mem_loaded": mem_loaded,
        "mem_end": memory(),
    }
    await pool.close()
    return out


def table(results: list[dict[str, Any]]) -> str:
    cols = [r["config"] for r in results]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[Any]) -> None:
        rows.append((label, [str(v) for v in values]))

    row("llama.cpp contexts", [r["contexts_built"] for r in results])
    row("turns: outcome", [",".join(t["outcome"] for t in r["turns"]) for r in results])
    row("chunk verdicts", [sum(t["chunk_verdicts"] for t in r["turns"]) for r in results])
    row(
        "s per guarded turn (mean)", [f"{sum(t['seconds'] for t in r['turns']) / len(r['turns']):.1f}" for r in results]
    )
    row("s per guarded turn (each)", ["/".join(f"{t['seconds']:.1f}" for t in r["turns"]) for r in results])
    for role in ("assistant", "reviewer"):
        row(f"{role}: calls", [int(r["roles"][role].get("calls", 0)) for r in results])
        row(f"{role}: prompt tokens", [int(r["roles"][role].get("prompt_tokens", 0)) for r in results])
        row(f"{role}: read by llama.cpp", [int(r["roles"][role].get("prompt_evaluated", 0)) for r in results])
        row(
            f"{role}: cache hits",
            [
                int(r["roles"][role].get("prompt_tokens", 0) - r["roles"][role].get("prompt_evaluated", 0))
                for r in results
            ],
        )
        row(
            f"{role}: state saves/loads",
            [
                f"{int(r['roles'][role].get('state_saves', 0))}/{int(r['roles'][role].get('state_loads', 0))}"
                for r in results
            ],
        )
        row(
            f"{role}: s in save+load",
            [
                f"{r['roles'][role].get('state_save_s', 0) + r['roles'][role].get('state_load_s', 0):.2f}"
                for r in results
            ],
        )
    gen = [sum(u["completion_tokens"] for t in r["turns"] for u in t["usage"].values()) for r in results]
    row("tokens generated (both)", gen)
    row("saved states held, MiB", [f"{r['state_cache_held_mb']:.0f}" for r in results])
    row("saved states kept", [r.get("state_cache_states", "?") for r in results])
    row("RSS after load, MiB", [r["mem_loaded"]["rss"] for r in results])
    row(
        "RSS at end, MiB (anon+file)",
        [f"{r['mem_end']['rss']} ({r['mem_end']['anon']}+{r['mem_end']['file']})" for r in results],
    )
    row("RSS peak, MiB", [r["mem_end"]["peak"] for r in results])
    width = max(len(label) for label, _ in rows)
    colw = [max(len(c), *(len(v[i]) for _, v in rows)) for i, c in enumerate(cols)]
    lines = [" " * width + "  " + "  ".join(c.rjust(w) for c, w in zip(cols, colw, strict=True))]
    for label, values in rows:
        lines.append(label.ljust(width) + "  " + "  ".join(v.rjust(w) for v, w in zip(values, colw, strict=True)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=120, help="the assistant's cap per draft")
    parser.add_argument("--configs", default="shared,per_role,per_role-nocache,per_role-chunks")
    parser.add_argument("--parallel", action="store_true", help="run the configurations at the same time")
    parser.add_argument("--out", default="benchmarks/results/role_contexts.json", help="raw figures (JSON)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: run one configuration, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(run_one(args.one, args.prompts, args.max_tokens))))
        return
    names = args.configs.split(",")
    for name in names:
        if name not in CONFIGS:
            sys.exit(f"unknown configuration {name!r}: one of {', '.join(CONFIGS)}")

    def command(name: str) -> list[str]:
        one = ["--one", name, "--prompts", str(args.prompts), "--max-tokens", str(args.max_tokens)]
        return [sys.executable, __file__, *one]

    results = []
    if args.parallel:  # every configuration at once, under the same load: timings comparable, not absolute
        procs = {
            name: subprocess.Popen(command(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in names
        }
        finished = {name: (p, *p.communicate()) for name, p in procs.items()}
    else:
        finished = {}
        for name in names:
            p = subprocess.Popen(command(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            finished[name] = (p, *p.communicate())
            print(f"{name}: done", file=sys.stderr, flush=True)
    for name, (proc, stdout, stderr) in finished.items():
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{stderr[-3000:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    print(f"{args.prompts} benign prompts, assistant capped at {args.max_tokens} tokens, policy as shipped")
    print(table(results))
    out = ROOT / args.out
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"(raw figures: {out.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
