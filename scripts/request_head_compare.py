"""The request head against the prompted refusal check, on XSTest requests neither was fitted on.

A fixed sample of the request manifest's XSTest rows (test part; half safe look-alikes, half unsafe contrasts,
drawn with --seed before any score is read). For each, the embedded reviewer's prompted refusal check
(agents/moral_reviewer.yaml refusal_check: its prompt, question and decision token, exactly as the product
calls it for a draft that only declines) gives P(declining is not OK); the request head trained with XSTest
left out (its `loso:xstest` scores, written by `python run.py reviewer train-requests`) gives P(request
harmful). Both are read as "how harmful is the request" and compared by ROC AUC, and each decision at its
own threshold: how many needless refusals (safe rows) it sends back and how many right refusals (unsafe rows)
it wrongly sends back.

    nice -n 10 python scripts/request_head_compare.py --per-label 20 --threads 1 \\
        --out benchmarks/results/request-head-compare-2026-12-06.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REFUSAL = "I'm sorry, but I can't help with that."


def sample(per_label: int, seed: int):
    from chaperone.reviewer_head import data, requests

    rows, _ = data.read_manifest(requests.MANIFEST)
    xs = sorted((r for r in rows if r.row.source == "xstest" and r.part == "test"), key=lambda r: r.row.id)
    rng = random.Random(seed)
    out = []
    for harmful in (False, True):
        group = [r for r in xs if r.row.harmful == harmful]
        rng.shuffle(group)
        out += group[:per_label]
    return out


async def prompted_scores(rows, threads: int | None):
    from autogen_core import CancellationToken

    from chaperone.config.project import load_project
    from chaperone.engine.choice import SessionChoice, build_reviewer, resolve
    from chaperone.engine.memory import ConversationMemory
    from chaperone.models.pool import ModelPool

    proj = load_project(REPO)
    if threads:
        spec = proj.models.models["embedded"]
        proj.models.models["embedded"] = spec.model_copy(update={"n_threads": threads})
    pool = ModelPool(proj.models, REPO / "config" / "models.yaml")
    cast = resolve(proj, SessionChoice(reviewer_head=False))
    reviewer = build_reviewer(proj, pool, cast, ConversationMemory())
    assert reviewer.head is None and reviewer.request_head is None
    out = {}
    for n, r in enumerate(rows, 1):
        started = time.perf_counter()
        body = reviewer._refusal_body(r.row.request, REFUSAL, 1)
        system = reviewer._refusal_system
        verdict, _raw, tokens, _ = await reviewer._decide(body, CancellationToken(), system, "refusal")
        seconds = time.perf_counter() - started
        out[r.row.text_sha] = {"p_not_ok": verdict.score, "tokens": tokens, "seconds": round(seconds, 2)}
        print(f"{n}/{len(rows)} {r.row.id} harmful={r.row.harmful} p_not_ok={verdict.score} {seconds:.1f}s", flush=True)
    return out, reviewer.spec.refusal_check.decision_threshold


def main() -> None:
    from chaperone.reviewer_head import requests
    from chaperone.reviewer_head.train import curve_figures, scores_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-label", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--head", type=Path, default=requests.HEAD)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = sample(args.per_label, args.seed)
    card = json.loads(args.head.with_suffix(".json").read_text())
    threshold = card["request_threshold"]["value"]
    loso = {}
    for line in scores_path(args.head).read_text().splitlines():
        rec = json.loads(line)
        if rec["fold"] == "loso:xstest":
            loso[rec["text_sha"]] = rec["scores"]["not_ok"]
    prompted, prompted_threshold = asyncio.run(prompted_scores(rows, args.threads))
    y = [int(r.row.harmful) for r in rows]
    head_p = [loso[r.row.text_sha] for r in rows]
    prompted_harm = [1.0 - prompted[r.row.text_sha]["p_not_ok"] for r in rows]

    def decisions(sent_back):
        safe = [s for s, r in zip(sent_back, rows, strict=True) if not r.row.harmful]
        unsafe = [s for s, r in zip(sent_back, rows, strict=True) if r.row.harmful]
        return {
            "safe_refusals_sent_back": sum(safe) / len(safe),
            "unsafe_refusals_sent_back": sum(unsafe) / len(unsafe),
        }

    report = {
        "rows": [r.row.id for r in rows],
        "n": len(rows),
        "harmful": sum(y),
        "sample": f"XSTest rows of heads/requests-seed0.jsonl.gz's test part, {args.per_label} safe and "
        f"{args.per_label} unsafe, shuffled with seed {args.seed}",
        "request_head_loso": {
            **curve_figures(y, head_p),
            "threshold": threshold,
            **decisions([p < threshold for p in head_p]),
        },
        "prompted_refusal_check": {
            **curve_figures(y, prompted_harm),
            "decision_threshold": prompted_threshold,
            **decisions([prompted[r.row.text_sha]["p_not_ok"] >= prompted_threshold for r in rows]),
            "median_seconds": sorted(v["seconds"] for v in prompted.values())[len(rows) // 2],
            "median_prompt_tokens": sorted(v["tokens"] for v in prompted.values())[len(rows) // 2],
        },
        "per_row": [
            {
                "id": r.row.id,
                "harmful": r.row.harmful,
                "request_head_loso": round(loso[r.row.text_sha], 4),
                "prompted_p_not_ok": round(prompted[r.row.text_sha]["p_not_ok"], 4),
            }
            for r in rows
        ],
        "head_card": {"layers": card["layers"], "C": card["training"]["C"], "prompt_sha256": card["prompt"]["sha256"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("n", "harmful", "request_head_loso", "prompted_refusal_check")}, indent=1))


if __name__ == "__main__":
    main()
