"""Load on `run.py serve`: N concurrent clients against the server, the models behind it latency-bound.

Three processes on 127.0.0.1, so each one's CPU is its own: `delay_server.py` (every model call answers
after exactly --delay seconds: a draft, then the reviewer's verdict, so a guarded turn needs at least
2 x delay), the server (`run.py serve`, a throwaway copy of this project pointed at the delay server), and
this script, whose N clients are asyncio tasks, each with its own openai.AsyncOpenAI client (its own
connection), sending its requests one after another. Half the clients stream.

For each N it reports throughput, latency p50/p95 (nearest rank), errors, the server's memory (RSS now and
its peak, from /proc), the CPU each process spent per answered request (server, this script's clients, the
delay server; from /proc, so where the two cores went is on the record) and whether every request left a
complete transcript: the transcript id each response names exists, and every transcript is `intact` (the
status `review verify` gives: its chain holds, it is closed, and its run-manifest entry agrees).

`--scripted` serves the scripted stand-ins of `config/models.yaml` instead: no model calls, so no ideal
throughput either, and the server's CPU per request is its own (HTTP and engine) without the model
clients'. `--profile FILE` runs the server under cProfile (its event-loop thread) and writes the profile
there at shutdown: `python -m pstats FILE`. The profiler slows the server; measure throughput without it.

Usage: python benchmarks/serve_load.py [--n 1 16 64] [--requests 24] [--delay 0.2] [--json FILE] [--scripted]
       [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import delay_server
import openai
import yaml
from endpoint_bench import environment, make_project
from rich.console import Console
from rich.table import Table

from chaperone.audit import integrity

KEY = "bench-key-" + "0" * 24
SCRIPTED = {"assistant_model": "scripted-assistant", "reviewer_model": "scripted-reviewer"}
QUESTION = "Client {c}, request {r}: explain how a hash-chained audit log detects an edited record."


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes `pid` started (the delay server is this script's child)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


class Server:
    """`run.py serve` in a subprocess; its banner names the port."""

    def __init__(self, root: Path, profile: Path | None = None):
        env = {**os.environ, "CHAPERONE_API_KEYS": f"bench={KEY}", "COLUMNS": "200"}
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *profiler, str(REPO / "run.py"), "--project", str(root), "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for line in self.proc.stdout:
            if "serving on http://" in line:
                self.base_url = line.split("serving on ", 1)[1].split()[0]
                break
        else:
            raise RuntimeError("the server did not start")
        # Keep draining its output (one line per request) so it never blocks on a full pipe.
        self._drain = asyncio.get_event_loop().run_in_executor(None, lambda: [None for _ in self.proc.stdout])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


async def one_client(c: int, requests: int, base_url: str, stream: bool, out: list[dict[str, Any]]) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=300)
    try:
        for r in range(requests):
            started = time.perf_counter()
            row: dict[str, Any] = {"client": c, "stream": stream}
            try:
                messages = [{"role": "user", "content": QUESTION.format(c=c, r=r)}]
                if stream:
                    text, info = "", {}
                    async for chunk in await client.chat.completions.create(
                        model="chaperone", messages=messages, stream=True
                    ):
                        if chunk.choices:
                            text += chunk.choices[0].delta.content or ""
                            info = (chunk.model_extra or {}).get("chaperone") or info
                else:
                    answer = await client.chat.completions.create(model="chaperone", messages=messages)
                    text, info = answer.choices[0].message.content, answer.model_extra["chaperone"]
                row.update(ok=bool(text), outcome=info.get("outcome"), transcript=info.get("transcript"))
            except openai.APIError as exc:
                row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
            row["seconds"] = time.perf_counter() - started
            out.append(row)
    finally:
        await client.close()


def cpu_now(server: Server, upstream_pid: int) -> dict[str, float]:
    return {"server": cpu_s(server.proc.pid), "clients": time.process_time(), "upstream": cpu_s(upstream_pid)}


async def level(
    n: int, requests: int, server: Server, upstream_pid: int, delay: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    cpu_before = cpu_now(server, upstream_pid)
    started = time.perf_counter()
    await asyncio.gather(*(one_client(c, requests, server.base_url, stream=c % 2 == 1, out=rows) for c in range(n)))
    wall = time.perf_counter() - started
    cpu_after = cpu_now(server, upstream_pid)
    ok = [r for r in rows if r.get("ok")]
    latencies = [r["seconds"] for r in ok]
    ideal = n / (2 * delay) if delay else None  # a turn is two model calls; scripted: no ideal
    return {
        "n": n,
        "requests": len(rows),
        "ok": len(ok),
        "errors": len(rows) - len(ok),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 2),
        "ideal_rps": round(ideal, 2) if ideal else None,
        "of_ideal": round(len(ok) / wall / ideal, 3) if ideal else None,
        "p50_s": round(nearest_rank(latencies, 50), 3),
        "p95_s": round(nearest_rank(latencies, 95), 3),
        "streamed": sum(1 for r in rows if r["stream"]),
        "server_kb": rss_kb(server.proc.pid),
        # CPU milliseconds per answered request, each process's own (the two cores are shared by all three).
        "cpu_ms_per_request": {
            k: round(1000 * (cpu_after[k] - cpu_before[k]) / max(len(ok), 1), 2) for k in cpu_before
        },
        "cpu_busy_cores": {k: round((cpu_after[k] - cpu_before[k]) / wall, 2) for k in cpu_before},
    }, rows


def _share(summary: dict[str, Any]) -> str:
    return "n/a" if summary["of_ideal"] is None else f"{summary['of_ideal']:.0%}"


def check_transcripts(folder: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every answered request's transcript is present, and every transcript of the folder is `intact` (the
    status `review verify` gives: chain holds, closed, its run-manifest entry agrees), with no folder problem
    (a transcript a manifest lists gone, a damaged manifest)."""
    named = {r["transcript"] for r in rows if r.get("transcript")}
    files = {p.name: p for p in folder.glob("*.jsonl")}
    found = integrity.check_files(sorted(files.values()))
    not_intact = {i.path.name: i.text() for i in found if i.status != integrity.INTACT}
    problems = [p.text() for p in integrity.folder_problems(folder)]
    missing = sorted(named - set(files))
    return {
        "requests_answered": len(named),
        "transcript_files": len(files),
        "missing": missing,
        "status": dict(Counter(i.status for i in found)),
        "not_intact": not_intact,
        "folder_problems": problems,
        "complete": not (missing or not_intact or problems) and len(files) == len(rows),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    console = Console(width=None if sys.stdout.isatty() else 140)
    env = environment(args.delay, args.draft_chars)
    console.print(
        f"[bold]Environment:[/] {env['usable_cores']} cores, Python {env['python']}, delay "
        f"{args.delay * 1000:.0f} ms per model call (2 calls per approved turn), load {env['load_avg_1m']:.2f}"
    )
    results: dict[str, Any] = {"environment": env, "levels": []}
    all_rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="chaperone-serve-load-") as tmp,
        delay_server.running(args.delay, args.draft_chars, lifetime=1800) as upstream,
    ):
        root = Path(tmp)
        make_project(root, upstream, concurrency=max(args.n) * 2)
        served: dict[str, Any] = {"policy": "public"}
        if args.scripted:  # no model calls at all: what is left is the server's own CPU per request
            models = yaml.safe_load((root / "config/models.yaml").read_text())
            shipped = yaml.safe_load((REPO / "config/models.yaml").read_text())["models"]
            models["models"].update({m: shipped[m] for m in SCRIPTED.values()})
            (root / "config/models.yaml").write_text(yaml.safe_dump(models))
            served.update(SCRIPTED)
        (root / "config/serve.yaml").write_text(
            yaml.safe_dump(
                {
                    "models": {"chaperone": served},
                    "limits": {
                        "requests_per_minute": 1_000_000,
                        "max_concurrent_per_key": 10_000,
                        "max_concurrent_requests": max(args.n) * 2,
                    },
                }
            )
        )
        delay = 0.0 if args.scripted else args.delay  # scripted: no model calls, no ideal throughput
        server = Server(root, args.profile)
        upstream_pid = next(p for p in children(os.getpid()) if p != server.proc.pid)
        console.print(
            f"server pid {server.proc.pid} at {server.base_url}, idle RSS "
            f"{rss_kb(server.proc.pid)['VmRSS'] / 1024:.0f} MB"
        )
        try:
            await level(1, 2, server, upstream_pid, delay)  # warm-up: imports, first connections
            for n in args.n:
                per_client = max(1, args.requests // n) if args.requests_total else args.requests
                summary, rows = await level(n, per_client, server, upstream_pid, delay)
                all_rows += rows
                results["levels"].append(summary)
                console.print(
                    f"N={n}: {summary['ok']}/{summary['requests']} ok, {summary['throughput_rps']} req/s "
                    f"({_share(summary)} of ideal {summary['ideal_rps'] or '(none: scripted)'}), "
                    f"p50 {summary['p50_s']} s, p95 {summary['p95_s']} s; CPU ms/request "
                    + ", ".join(f"{k} {v}" for k, v in summary["cpu_ms_per_request"].items())
                )
        finally:
            results["server_exit"] = server.stop()
        results["transcripts"] = check_transcripts(root / "transcripts", all_rows + [{"transcript": None}] * 2)
    table = Table(title=f"run.py serve under load · upstream {args.delay * 1000:.0f} ms per call")
    for col in (
        "clients N",
        "requests",
        "errors",
        "throughput",
        "of ideal",
        "p50",
        "p95",
        "server CPU/req",
        "server RSS",
        "server peak",
    ):
        table.add_column(col, justify="right")
    for s in results["levels"]:
        table.add_row(
            str(s["n"]),
            str(s["requests"]),
            str(s["errors"]),
            f"{s['throughput_rps']:.1f}/s",
            _share(s),
            f"{s['p50_s']:.2f} s",
            f"{s['p95_s']:.2f} s",
            f"{s['cpu_ms_per_request']['server']:.1f} ms",
            f"{s['server_kb']['VmRSS'] / 1024:.0f} MB",
            f"{s['server_kb']['VmHWM'] / 1024:.0f} MB",
        )
    console.print(table)
    t = results["transcripts"]
    verdict = "[green]complete[/]" if t["complete"] else "[red]INCOMPLETE[/]"
    console.print(
        f"transcripts: {t['transcript_files']} files for {len(all_rows) + 2} requests (2 warm-up) — "
        f"{verdict}: missing {len(t['missing'])}, not intact {len(t['not_intact'])}, folder problems "
        f"{len(t['folder_problems'])}; server exit {results['server_exit']} (SIGTERM)"
    )
    ideal = 2 * args.delay
    console.print(
        f"A turn needs at least {ideal:.2f} s of model time; at N clients the ideal throughput is N / {ideal:.2f} s."
    )
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1, 16, 64], help="concurrent clients (default 1 16 64)")
    ap.add_argument(
        "--requests",
        type=int,
        default=256,
        help="requests per level, split over its clients (default 256; at least one per client)",
    )
    ap.add_argument(
        "--per-client",
        dest="requests_total",
        action="store_false",
        help="read --requests as requests per client instead",
    )
    ap.add_argument("--delay", type=float, default=0.2, help="seconds per model call (default 0.2)")
    ap.add_argument("--draft-chars", type=int, default=800, help="characters per draft (default 800)")
    ap.add_argument("--json", type=Path, help="also write the results here as JSON")
    ap.add_argument(
        "--scripted",
        action="store_true",
        help="serve the scripted stand-ins of config/models.yaml instead (no model calls: the server's own CPU)",
    )
    ap.add_argument("--profile", type=Path, help="run the server under cProfile, writing its profile here")
    ns = ap.parse_args()
    out = asyncio.run(main(ns))
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    sys.exit(0 if out["transcripts"]["complete"] and all(s["errors"] == 0 for s in out["levels"]) else 1)
