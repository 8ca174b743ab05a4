"""Measure reviewer prompt candidates against each other on the same items, in one run (one model load).

Each candidate (benchmarks/reviewer_candidates.yaml) is the project's own ReviewingAgent with another
decision-stage system prompt (and optionally a refusal_check, max_request_chars); every verdict is scored
as P(not OK) from the decision token, so each candidate gives its whole precision/recall curve. Items come
from the same selection code as `run.py eval --reviewer-only` (so `--split dev` here is the eval's dev
part). Rows are appended to --out as they finish (a rerun skips what is done); the table at the end is
computed from that file.

    python benchmarks/reviewer_candidates.py data/reviewer_set.jsonl --split dev --out /tmp/cands.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaperone.config.project import load_project
from chaperone.config.schema import RefusalCheckSpec
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.reviewer import ReviewingAgent
from chaperone.eval.config import Columns
from chaperone.eval.data import load_items, select, split
from chaperone.eval.metrics import confusion, threshold_curve
from chaperone.models.pool import ModelPool

COLUMNS = Columns(id="id", prompt="prompt", answer="response", label="harmful", category="category")


def summary(rows: list[dict]) -> dict:
    curve = threshold_curve(rows)
    at_half = confusion(
        [
            r
            if r.get("checked_as", "answer") != "answer"
            else {**r, "decision": "revise" if r["score"] >= 0.5 else "approve"}
            for r in rows
        ]
    )
    points = curve["points"] if curve else []
    best_f1 = max(points, key=lambda p: p["f1"] or 0.0) if points else None
    # The highest threshold that still reaches recall 0.95, and what it costs in false positives.
    high_recall = max((p for p in points if (p["recall"] or 0) >= 0.95), key=lambda p: p["threshold"], default=None)
    return {
        "items": len(rows),
        "auc": curve["roc_auc"] if curve else None,
        "at_0.5": at_half,
        "best_f1": best_f1,
        "recall_0.95": high_recall,
        "seconds": statistics.median(r["seconds"] for r in rows),
        "tokens": statistics.mean(r["prompt_tokens"] + r["completion_tokens"] for r in rows),
    }


def table(by_candidate: dict[str, list[dict]]) -> str:
    lines = [
        "| candidate | items | ROC AUC | P / R / F1 / FPR at 0.5 | best F1 (threshold: P / R / FPR) | "
        "FPR at recall >= 0.95 (threshold) | s/verdict (median) | tokens/verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def f(v):
        return "—" if v is None else f"{v:.2f}"

    for name, rows in by_candidate.items():
        s = summary(rows)
        h, b, r = s["at_0.5"], s["best_f1"], s["recall_0.95"]
        lines.append(
            f"| {name} | {s['items']} | {f(s['auc'])} | {f(h['precision'])} / {f(h['recall'])} / {f(h['f1'])} / "
            f"{f(h['false_positive_rate'])} | {f(b['f1'])} ({f(b['threshold'])}: {f(b['precision'])} / "
            f"{f(b['recall'])} / {f(b['false_positive_rate'])}) | "
            f"{f(r['false_positive_rate']) + ' (' + f(r['threshold']) + ')' if r else '—'} | "
            f"{s['seconds']:.2f} | {s['tokens']:.0f} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    project = load_project(ROOT)
    candidates = yaml.safe_load(args.candidates.read_text(encoding="utf-8"))
    names = args.only or list(candidates)
    items = load_items(args.source, COLUMNS, need_label=True, need_answer=True)
    if args.split:
        items = split(items, args.split, test_fraction=args.test_fraction, seed=args.split_seed)
    items = select(items, sample=args.sample, seed=args.seed)
    done = set()
    if args.out.exists():
        done = {(r["candidate"], r["id"]) for r in map(json.loads, args.out.read_text().splitlines())}
    pool = ModelPool(project.models, ROOT / "config/models.yaml")
    base = project.agent(project.settings.agents.reviewer, role="reviewer")
    policy = project.policy(args.policy or project.settings.default_policy)
    model = pool.get(base.model, max_tokens=base.generation.max_tokens)
    print(f"{len(items)} items x {len(names)} candidates", flush=True)
    with args.out.open("a", encoding="utf-8") as out:
        for name in names:  # candidate by candidate: its rubric prefix stays in the KV cache
            check = candidates[name].get("refusal_check")
            spec = base.model_copy(
                update={
                    "system_prompt": candidates[name]["system_prompt"],
                    "refusal_check": RefusalCheckSpec(**check) if check else None,
                }
            )
            context = project.settings.reviewer_context
            if candidates[name].get("max_request_chars") is not None:
                context = context.model_copy(update={"max_request_chars": candidates[name]["max_request_chars"]})
            reviewer = ReviewingAgent(
                spec, model, policy, ConversationMemory(), user_name="user", assistant_name="assistant", context=context
            )
            for n, item in enumerate(items, 1):
                if (name, item.id) in done:
                    continue
                if args.routed_only and reviewer._decision_system(item.answer or "")[1] == "answer":
                    continue  # the refusal check does not change this item: its score is the base prompt's
                result = await reviewer.judge(item.prompt, item.answer or "", critique=False)
                row = {
                    "candidate": name,
                    "id": item.id,
                    "label": item.label,
                    "category": item.category,
                    "score": result.verdict.score,
                    "readable": result.verdict.readable,
                    "decision": result.verdict.decision,
                    "checked_as": result.verdict.checked_as,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "seconds": round(result.seconds, 3),
                }
                out.write(json.dumps(row) + "\n")
                out.flush()
                if n % 20 == 0:
                    print(f"{name}: {n}/{len(items)}", flush=True)
    await pool.close()
    rows = [json.loads(line) for line in args.out.read_text().splitlines()]
    ids = {i.id for i in items}
    by = {
        name: [r for r in rows if r["candidate"] == name and r["id"] in ids and r["score"] is not None]
        for name in names
    }
    print(table(by))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("--candidates", type=Path, default=ROOT / "benchmarks/reviewer_candidates.yaml")
    ap.add_argument("--only", nargs="*", help="candidate names (default: all, in file order)")
    ap.add_argument("--split", choices=["dev", "test"])
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--test-fraction", type=float, default=0.6)
    ap.add_argument("--sample", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default=None)
    ap.add_argument(
        "--routed-only",
        action="store_true",
        help="only the drafts a candidate's refusal_check routes (quick look at what it changes)",
    )
    ap.add_argument("--out", type=Path, required=True)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
