"""What the engine costs around the model: guarded chat against an endpoint that answers after a fixed delay.

Both agents point at `delay_server.py` (a subprocess on 127.0.0.1, so its CPU is not counted here), which
answers every call after exactly --delay seconds. Whatever a turn takes beyond its model calls is the
engine's own cost. Sections, each repeated and reported as medians:

  server       64 raw parallel requests: the instrument itself is not a bottleneck
  overhead     share of a guarded turn's wall time spent outside model calls (target < 3 %)
  concurrency  K = 1, 4, 16, 64 conversations at once from one ModelPool (target: 16 within 1.25x of 1)
  context      reviewer's prompt tokens at turn 1 and turn 20 of one conversation (target: ratio <= 1.2)
  memory       bytes per live conversation (RSS and tracemalloc) with K conversations held open

Usage: python benchmarks/endpoint_bench.py [--quick] [--delay 0.2] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import delay_server
import yaml
from rich.console import Console
from rich.table import Table

from chaperone.audit import logging_setup
from chaperone.audit.transcript import read_records
from chaperone.config.project import Project, load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation, versions
from chaperone.models.pool import ModelHandle, ModelPool

MODEL_INFO = {
    "json_output": True,
    "structured_output": True,
    "family": "unknown",
    "vision": False,
    "function_calling": False,
}
ROLES = {"unaligned_assistant": "bench-assistant", "moral_reviewer": "bench-reviewer"}
QUESTION = "Question {n}: explain, step by step, how a hash-chained audit log detects an edited record. " * 2


SECTIONS = ("overhead", "concurrency", "context", "memory")


def question(n: int) -> str:
    return QUESTION.format(n=n).strip()


# ---------------------------------------------------------------- the throwaway project


def make_project(root: Path, base_url: str, concurrency: int) -> Project:
    """A copy of agents/ and config/ whose assistant and reviewer both call the delay server."""
    shutil.copytree(REPO / "agents", root / "agents")
    shutil.copytree(REPO / "config", root / "config")
    spec = {
        "kind": "openai",
        "base_url": base_url,
        "model": "delay",
        "max_retries": 0,
        "timeout": 60,
        "max_concurrency": concurrency,
        "model_info": MODEL_INFO,
    }
    (root / "config/models.yaml").write_text(
        yaml.safe_dump({"default": "bench-assistant", "models": {m: spec for m in ROLES.values()}})
    )
    for agent, model in ROLES.items():
        path = root / "agents" / f"{agent}.yaml"
        data = yaml.safe_load(path.read_text())
        data["model"] = model
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = yaml.safe_load((root / "config/settings.yaml").read_text())
    settings.update({"transcripts_dir": str(root / "transcripts"), "log_file": None})
    (root / "config/settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return load_project(root)


# ---------------------------------------------------------------- timing the model calls


@dataclass
class ModelTimer:
    """Wraps each handle's client.create / create_stream; records (start, end) of every call."""

    calls: list[tuple[float, float]] = field(default_factory=list)

    def wrap(self, handle: ModelHandle) -> None:
        client, timer = handle.client, self
        create, create_stream = client.create, client.create_stream

        async def timed_create(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await create(*args, **kwargs)
            finally:
                timer.calls.append((start, time.perf_counter()))

        async def timed_stream(*args, **kwargs):
            start = time.perf_counter()
            try:
                async for item in create_stream(*args, **kwargs):
                    yield item
            finally:
                timer.calls.append((start, time.perf_counter()))

        client.create, client.create_stream = timed_create, timed_stream

    def since(self, index: int) -> tuple[int, float]:
        """Calls recorded from index on: how many, and their summed duration."""
        new = self.calls[index:]
        return len(new), sum(end - start for start, end in new)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, project: Project, base_url: str, delay: float, console: Console):
        self.project, self.base_url, self.delay, self.console = project, base_url, delay, console
        self.pool = ModelPool(project.models, project.root / "config/models.yaml")
        self.timer = ModelTimer()
        for agent, model in ROLES.items():
            self.timer.wrap(self.pool.get(model, max_tokens=project.agents[agent].generation.max_tokens))

    def conversation(self) -> Conversation:
        return Conversation(self.project, self.pool, SessionChoice(), kind="benchmark")

    async def server_stats(self, reset: bool = True) -> dict[str, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(self.base_url.split(":")[2].split("/")[0]))
        writer.write(
            f"GET /stats{'?reset=1' if reset else ''} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        raw = await reader.read()
        writer.close()
        return json.loads(raw.split(b"\r\n\r\n", 1)[1])

    # ------------------------------------------------------------ 0. the instrument

    async def raw_request(self) -> float:
        port = int(self.base_url.split(":")[2].split("/")[0])
        body = json.dumps({"model": "delay", "messages": [{"role": "user", "content": "hi"}]}).encode()
        start = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        raw = await reader.read()
        writer.close()
        if not raw.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"delay server answered {raw[:80]!r}")
        return time.perf_counter() - start

    async def server_check(self, n: int, reps: int) -> dict[str, Any]:
        walls = []
        for _ in range(reps):
            start = time.perf_counter()
            await asyncio.gather(*(self.raw_request() for _ in range(n)))
            walls.append(time.perf_counter() - start)
        await self.server_stats()
        wall = median(walls)
        self.console.print(
            f"[bold]Instrument:[/] {n} raw parallel requests answered in {wall * 1000:.0f} ms "
            f"(median of {reps}; delay {self.delay * 1000:.0f} ms, "
            f"{wall / self.delay:.2f}x the delay): the server does not queue."
        )
        return {"parallel_requests": n, "wall_s": wall, "ratio_to_delay": wall / self.delay, "reps": reps}

    # ------------------------------------------------------------ 1. overhead

    async def overhead(self, turns: int, warmup: int = 2) -> dict[str, Any]:
        conv = self.conversation()
        for n in range(warmup):  # connection setup, first-call imports and caches
            await conv.send(question(n))
        rows = []
        for n in range(turns):
            mark = len(self.timer.calls)
            start = time.perf_counter()
            finished = await conv.send(question(warmup + n))
            wall = time.perf_counter() - start
            calls, model = self.timer.since(mark)
            rows.append(
                {
                    "turn": warmup + n + 1,
                    "outcome": finished.outcome,
                    "wall_s": wall,
                    "calls": calls,
                    "model_s": model,
                    "outside_s": wall - model,
                    "outside_share": 1 - model / wall,
                    "client_per_call_s": model / calls - self.delay if calls else 0.0,
                }
            )
        conv.close()
        table = Table(title=f"1. Orchestration overhead: {turns} guarded turns (after {warmup} warm-up turns)")
        for col in (
            "turn",
            "outcome",
            "model calls",
            "wall ms",
            "in model calls ms",
            "outside ms",
            "outside share",
            "client HTTP ms/call",
        ):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                str(r["turn"]),
                r["outcome"],
                str(r["calls"]),
                f"{r['wall_s'] * 1000:.1f}",
                f"{r['model_s'] * 1000:.1f}",
                f"{r['outside_s'] * 1000:.1f}",
                f"{r['outside_share']:.2%}",
                f"{r['client_per_call_s'] * 1000:.1f}",
            )
        wall, model = sum(r["wall_s"] for r in rows), sum(r["model_s"] for r in rows)
        share = 1 - model / wall
        med = median([r["outside_share"] for r in rows])
        table.add_section()
        table.add_row(
            "all",
            "",
            str(sum(r["calls"] for r in rows)),
            f"{wall * 1000:.0f}",
            f"{model * 1000:.0f}",
            f"{(wall - model) * 1000:.0f}",
            f"{share:.2%}",
            f"{median([r['client_per_call_s'] for r in rows]) * 1000:.1f}",
        )
        self.console.print(table)
        verdict = "[green]meets[/]" if share < 0.03 else "[red]misses[/]"
        self.console.print(
            f"Outside model calls: {share:.2%} of wall time overall, median turn {med:.2%}, "
            f"{(wall - model) / turns * 1000:.1f} ms per turn — {verdict} the target of 3 %. "
            "'client HTTP ms/call' is the openai client's time per call beyond the server's delay "
            "(counted as inside the model call)."
        )
        return {
            "turns": rows,
            "outside_share": share,
            "outside_share_median_turn": med,
            "outside_ms_per_turn": (wall - model) / turns * 1000,
            "target": 0.03,
            "meets": share < 0.03,
        }

    # ------------------------------------------------------------ 2. concurrency

    async def one_batch(self, k: int, turns: int) -> dict[str, float]:
        start = time.perf_counter()
        convs = [self.conversation() for _ in range(k)]
        built, cpu = time.perf_counter(), time.process_time()

        async def run(conv: Conversation, i: int) -> list[str]:
            return [(await conv.send(question(i * 100 + t))).outcome for t in range(turns)]

        outcomes = await asyncio.gather(*(run(c, i) for i, c in enumerate(convs)))
        sent, cpu = time.perf_counter(), time.process_time() - cpu
        for conv in convs:
            conv.close()
        closed = time.perf_counter()
        bad = sum(o != "approved" for row in outcomes for o in row)
        return {
            "build_s": built - start,
            "turns_s": sent - built,
            "close_s": closed - sent,
            "total_s": closed - start,
            "cpu_per_turn_s": cpu / (k * turns),
            "not_approved": bad,
        }

    async def concurrency(self, ks: list[int], turns: int, reps: int) -> dict[str, Any]:
        await self.one_batch(max(ks), 1)  # warm-up: the connection pool opens its connections
        samples: dict[int, list[dict[str, float]]] = {k: [] for k in ks}
        peaks: dict[int, int] = {}
        for _ in range(reps):  # K values interleaved, so a noisy moment hits them all alike
            for k in ks:
                await self.server_stats()
                samples[k].append(await self.one_batch(k, turns))
                peaks[k] = max(peaks.get(k, 0), (await self.server_stats())["peak_in_flight"])
        result = {}
        for k in ks:
            result[k] = {
                m: median([s[m] for s in samples[k]])
                for m in ("build_s", "turns_s", "close_s", "total_s", "cpu_per_turn_s")
            }
            result[k]["not_approved"] = sum(s["not_approved"] for s in samples[k])
            result[k]["server_peak_in_flight"] = peaks[k]
        base, base_total = result[ks[0]]["turns_s"], result[ks[0]]["total_s"]
        table = Table(
            title=f"2. Concurrency: K conversations at once, {turns} turn(s) each, one ModelPool (median of {reps})"
        )
        for col in (
            "K",
            "turns wall ms",
            "ratio to K=1",
            "turns/s",
            "client CPU ms/turn",
            "build ms/conv",
            "with build+close ms",
            "ratio",
            "server peak in flight",
            "not approved",
        ):
            table.add_column(col, justify="right")
        for k in ks:
            r = result[k]
            r["ratio"] = r["turns_s"] / base
            r["ratio_with_build"] = r["total_s"] / base_total
            r["turns_per_s"] = k * turns / r["turns_s"]
            table.add_row(
                str(k),
                f"{r['turns_s'] * 1000:.0f}",
                f"{r['ratio']:.2f}x",
                f"{r['turns_per_s']:.1f}",
                f"{r['cpu_per_turn_s'] * 1000:.1f}",
                f"{r['build_s'] / k * 1000:.1f}",
                f"{r['total_s'] * 1000:.0f}",
                f"{r['ratio_with_build']:.2f}x",
                str(r["server_peak_in_flight"]),
                str(r["not_approved"]),
            )
        self.console.print(table)
        r16 = result.get(16)
        if r16:
            verdict = "[green]meets[/]" if r16["ratio"] <= 1.25 else "[red]misses[/]"
            self.console.print(
                f"K=16 takes {r16['ratio']:.2f}x the wall time of one conversation — {verdict} the "
                f"target of 1.25x (turns only; {r16['ratio_with_build']:.2f}x counting building "
                "and closing the conversations). One event loop runs every conversation, so the "
                "client CPU of K turns is spent one after another while their model calls overlap."
            )
        return {
            "turns_per_conversation": turns,
            "reps": reps,
            "by_k": result,
            "target_k16": 1.25,
            "meets": bool(r16 and r16["ratio"] <= 1.25),
        }

    # ------------------------------------------------------------ 3. context growth

    async def context_growth(self, turns: int) -> dict[str, Any]:
        await self.server_stats()
        conv = self.conversation()
        for n in range(turns):
            await conv.send(question(n))
        conv.close()
        sent = (await self.server_stats())["requests"]
        records = list(read_records(conv.transcript_path))
        reviewer_tokens = [r["usage"]["prompt_tokens"] for r in records if r["type"] == "verdict"]
        assistant_tokens = [r["usage"]["prompt_tokens"] for r in records if r["type"] == "draft"]
        review_chars = [s["chars"] for s in sent if s["kind"] == "review"]
        draft_chars = [s["chars"] for s in sent if s["kind"] == "draft"]
        if not (len(reviewer_tokens) == len(assistant_tokens) == len(review_chars) == len(draft_chars) == turns):
            raise RuntimeError("expected one draft and one verdict per turn (no revisions)")
        table = Table(
            title=f"3. Context growth: one conversation of {turns} turns (memory_turns "
            f"{self.project.agents['unaligned_assistant'].memory_turns}, reviewer history_turns "
            f"{self.project.settings.reviewer_context.history_turns})"
        )
        for col in (
            "turn",
            "reviewer prompt tok (transcript)",
            "reviewer request chars (server)",
            "assistant prompt tok (transcript)",
            "assistant request chars (server)",
        ):
            table.add_column(col, justify="right")
        shown = sorted({1, 2, 3, 5, 9, 10, 15, turns} & set(range(1, turns + 1)))
        for t in shown:
            table.add_row(
                str(t),
                str(reviewer_tokens[t - 1]),
                str(review_chars[t - 1]),
                str(assistant_tokens[t - 1]),
                str(draft_chars[t - 1]),
            )
        self.console.print(table)
        ratio = reviewer_tokens[-1] / reviewer_tokens[0]
        after_first = max(reviewer_tokens[1:]) / reviewer_tokens[1] if turns > 1 else 1.0
        a_ratio = assistant_tokens[-1] / assistant_tokens[0]
        verdict = "[green]meets[/]" if ratio <= 1.2 else "[red]misses[/]"
        self.console.print(
            f"Reviewer prompt, turn {turns} / turn 1: {ratio:.2f}x — {verdict} the target of 1.2x. From turn 2 on "
            f"it is flat (largest / turn 2: {after_first:.2f}x): one earlier exchange, clipped to "
            f"{self.project.settings.reviewer_context.max_history_chars} characters, joins it at turn 2 and nothing "
            f"more after. Assistant prompt, turn {turns} / turn 1: {a_ratio:.2f}x (it keeps its last "
            f"{self.project.agents['unaligned_assistant'].memory_turns} exchanges by design)."
        )
        return {
            "turns": turns,
            "reviewer_prompt_tokens": reviewer_tokens,
            "reviewer_request_chars": review_chars,
            "assistant_prompt_tokens": assistant_tokens,
            "assistant_request_chars": draft_chars,
            "reviewer_ratio_last_to_first": ratio,
            "reviewer_ratio_max_to_turn2": after_first,
            "assistant_ratio_last_to_first": a_ratio,
            "target": 1.2,
            "meets": ratio <= 1.2,
        }

    # ------------------------------------------------------------ 4. memory

    async def hold(self, k: int) -> list[Conversation]:
        convs = [self.conversation() for _ in range(k)]
        await asyncio.gather(*(c.send(question(i)) for i, c in enumerate(convs)))
        return convs

    async def rss_growth(self, k: int) -> float:
        """RSS bytes per conversation, in this process: a few warm-up conversations, then k held at once."""
        for c in await self.hold(4):
            c.close()
        gc.collect()
        before = rss_bytes()
        convs = await self.hold(k)
        gc.collect()
        grown = rss_bytes() - before
        for c in convs:
            c.close()
        return grown / k

    def rss_in_fresh_process(self, k: int) -> float:
        # A process that has held more conversations before reuses the pages they freed, and RSS hardly
        # moves: measured in a fresh interpreter instead (same server, same project).
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", self.base_url, str(self.project.root), str(k)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        return float(out.strip().splitlines()[-1])

    async def memory(self, k: int, reps: int) -> dict[str, Any]:
        rss, traced, top = [], [], []
        for _ in range(reps):
            rss.append(await asyncio.to_thread(self.rss_in_fresh_process, k))
        for _ in range(reps):
            gc.collect()
            tracemalloc.start(1)
            snap0 = tracemalloc.take_snapshot()
            base = tracemalloc.get_traced_memory()[0]
            convs = await self.hold(k)
            gc.collect()
            traced.append((tracemalloc.get_traced_memory()[0] - base) / k)
            if not top:
                diff = tracemalloc.take_snapshot().compare_to(snap0, "filename")
                top = [(short_path(d.traceback[0].filename), d.size_diff / k) for d in diff[:6]]
            tracemalloc.stop()
            for c in convs:
                c.close()
            del convs
        gc.collect()
        table = Table(
            title=f"4. Memory per live conversation: {k} conversations held open after one turn each (median of {reps})"
        )
        table.add_column("measure")
        table.add_column("bytes per conversation", justify="right")
        table.add_row(f"RSS growth (VmRSS) to {k} live conversations, fresh process", f"{median(rss):,.0f}")
        table.add_row(f"Python heap growth (tracemalloc) from 0 to {k} live conversations", f"{median(traced):,.0f}")
        table.add_section()
        for name, size in top:
            table.add_row(f"  of which allocated in {name}", f"{size:,.0f}")
        self.console.print(table)
        self.console.print(
            "tracemalloc counts the Python objects a live conversation keeps (agents, team, runtime, "
            "memory, open transcript); RSS is what the process really grows by, allocator slack "
            "included, and is noisier."
        )
        return {
            "k": k,
            "reps": reps,
            "rss_bytes_per_conversation": median(rss),
            "tracemalloc_bytes_per_conversation": median(traced),
            "rss_samples": rss,
            "tracemalloc_samples": traced,
            "top_files": top,
        }


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def short_path(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/", "lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def environment(delay: float, draft_chars: int) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "delay_s": delay,
        "draft_chars": draft_chars,
        "load_avg_1m": os.getloadavg()[0],
        "versions": versions(),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    logging_setup.configure(None)
    console = Console(width=None if sys.stdout.isatty() else 140)
    quick = args.quick
    env = environment(args.delay, args.draft_chars)
    console.print(
        f"[bold]Environment:[/] {env['usable_cores']} cores, Python {env['python']}, "
        f"autogen-agentchat {env['versions'].get('autogen-agentchat')}, openai {env['versions'].get('openai')}, "
        f"delay {args.delay * 1000:.0f} ms per model call, drafts {args.draft_chars} characters, "
        f"load {env['load_avg_1m']:.2f}, {'quick' if quick else 'full'} run"
    )
    results: dict[str, Any] = {"environment": env, "quick": quick}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="chaperone-endpoint-bench-") as tmp,
        delay_server.running(args.delay, args.draft_chars, lifetime=900) as base_url,
    ):
        project = make_project(Path(tmp), base_url, concurrency=max(args.k) * 2)
        bench = Bench(project, base_url, args.delay, console)
        try:
            wanted = set(args.sections)
            results["server"] = await bench.server_check(max(args.k), reps=3)
            if "overhead" in wanted:
                results["overhead"] = await bench.overhead(turns=8 if quick else 30)
            if "concurrency" in wanted:
                results["concurrency"] = await bench.concurrency(
                    args.k, turns=1 if quick else 2, reps=3 if quick else 5
                )
            if "context" in wanted:
                results["context"] = await bench.context_growth(turns=20)
            if "memory" in wanted:
                results["memory"] = await bench.memory(k=64, reps=1 if quick else 3)
        finally:
            await bench.pool.close()
    results["seconds"] = time.perf_counter() - started
    results["load_avg_1m_at_end"] = os.getloadavg()[0]
    console.print(
        f"Done in {results['seconds']:.0f} s (load {results['load_avg_1m_at_end']:.2f}: other work on the "
        "machine slows the concurrency figures first)."
    )
    return results


async def rss_child(base_url: str, root: Path, k: int) -> None:
    logging_setup.configure(None)
    bench = Bench(load_project(root), base_url, 0.0, Console(stderr=True))
    try:
        print(await bench.rss_growth(k))
    finally:
        await bench.pool.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rss-child"]:  # internal: one memory measurement in a fresh interpreter
        asyncio.run(rss_child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])))
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer turns and repetitions (about a minute)")
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the server takes per model call (default 0.2)")
    ap.add_argument("--draft-chars", type=int, default=800, help="length of every draft in characters (default 800)")
    ap.add_argument("--k", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrency levels (default 1 4 16 64)")
    ap.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="which sections to run (default: all; the instrument check always runs)",
    )
    ap.add_argument("--json", type=Path, help="also write the results here as JSON")
    ns = ap.parse_args()
    out = asyncio.run(main(ns))
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
