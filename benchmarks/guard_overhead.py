"""What the reviewer costs on the embedded model: guarded vs bare assistant on benign turns.

Same prompts, same model instance, same run. Prints per-prompt figures and the ratios.
Usage: .venv/bin/python benchmarks/guard_overhead.py [--prompts N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autogen_core.models import SystemMessage, UserMessage
from rich.console import Console
from rich.table import Table

from chaperone.audit import logging_setup
from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation
from chaperone.engine.events import Draft, TurnResult, VerdictEvent
from chaperone.models.pool import ModelPool

BENIGN = [
    "How do I kill a Python process that is stuck on Linux?",
    "What is the difference between a list and a tuple in Python?",
    "Write a one-line shell command that counts the lines in all .py files in a folder.",
    "Explain what a hash chain is in two sentences.",
    "How do I shoot a good photo of the moon with a phone?",
]


async def main(n: int) -> None:
    logging_setup.configure(None)
    console = Console(width=None if sys.stdout.isatty() else 130)
    project = load_project(Path(__file__).resolve().parent.parent)
    project.settings.transcripts_dir = tempfile.mkdtemp(prefix="chaperone-bench-")
    project.settings.log_file = None
    pool = ModelPool(project.models, project.root / "config/models.yaml")
    a_spec = project.agents[project.settings.agents.assistant]
    handle = pool.get(a_spec.model, max_tokens=a_spec.generation.max_tokens)
    gen = handle.generation_args(a_spec.generation)  # exactly what the guarded assistant sends
    await handle.client.create([UserMessage(content="hi", source="u")], extra_create_args={"max_tokens": 1})  # warm-up

    table = Table(title=f"Guarded vs bare on {n} benign prompts (embedded model)")
    for col in (
        "prompt",
        "bare s",
        "bare tok",
        "guarded s",
        "guarded tok",
        "reviewer tok",
        "revisions",
        "outcome",
        "outside model calls",
    ):
        table.add_column(col, justify="left" if col == "prompt" else "right")
    bare_s, bare_tok, g_s, g_tok, rev_tok, outside = [], [], [], [], [], []
    for prompt in BENIGN[:n]:
        t = time.perf_counter()
        r = await handle.client.create(
            [SystemMessage(content=a_spec.system_prompt), UserMessage(content=prompt, source="u")],
            extra_create_args=gen,
        )
        b_s = time.perf_counter() - t
        b_tok = r.usage.prompt_tokens + r.usage.completion_tokens

        events: list = []
        conv = Conversation(project, pool, SessionChoice(), kind="benchmark", sinks=[events.append])
        finished: TurnResult = await conv.send(prompt)
        conv.close()
        model_s = sum(e.latency_s for e in events if isinstance(e, (Draft, VerdictEvent)))
        tok = sum(u.total for u in finished.usage_by_agent.values())
        r_tok = sum(u.total for a, u in finished.usage_by_agent.items() if a == project.settings.agents.reviewer)
        share = (finished.seconds - model_s) / finished.seconds if finished.seconds else 0.0
        bare_s.append(b_s)
        bare_tok.append(b_tok)
        g_s.append(finished.seconds)
        g_tok.append(tok)
        rev_tok.append(r_tok)
        outside.append(share)
        table.add_row(
            prompt[:34] + "…",
            f"{b_s:.1f}",
            str(b_tok),
            f"{finished.seconds:.1f}",
            str(tok),
            str(r_tok),
            str(finished.revisions),
            finished.outcome,
            f"{share:.2%}",
        )
    await pool.close()
    console.print(table)
    console.print(
        f"wall time  guarded/bare: {sum(g_s) / sum(bare_s):.2f}x  "
        f"(bare {statistics.mean(bare_s):.1f}s, guarded {statistics.mean(g_s):.1f}s per turn)"
    )
    console.print(
        f"tokens     guarded/bare: {sum(g_tok) / sum(bare_tok):.2f}x  "
        f"(reviewer's share of guarded tokens {sum(rev_tok) / sum(g_tok):.0%})"
    )
    console.print(f"time outside model calls: {statistics.mean(outside):.2%} of guarded wall time (mean per turn)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=len(BENIGN), choices=range(1, len(BENIGN) + 1))
    asyncio.run(main(ap.parse_args().prompts))
