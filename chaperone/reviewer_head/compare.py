"""The head and today's prompted reviewer on the same held-out rows, side by side.

The prompted reviewer is run by the product's own reviewer-alone evaluation (`run.py eval run ...
--reviewer-only`), so it is judged exactly as chat, scenarios and serve judge; the head's scores come from
a training run (`reviewer train --loso` writes every held-out row's scores beside the head). This module
chooses the rows both are measured on and joins the two:

    python run.py reviewer compare-sample --per-source 30          # heads/compare-test-seed0.jsonl
    python run.py reviewer extract --part test --per-source 30      # the same rows' features
    python run.py eval run heads/compare-test-seed0.jsonl --reviewer-only \\
        --columns id=id,prompt=request,answer=draft,label=label,category=category,type=source \\
        --out evals/prompted-compare
    python run.py reviewer train --loso
    python run.py reviewer compare --eval evals/prompted-compare

Three decisions on each row: the prompted reviewer (its P(not OK) from the decision token), the head trained
on the seeded split (these rows are its test part), and the head trained with the row's whole source left out
(the figure that counts: answers from a source it never saw).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from chaperone.reviewer_head import data
from chaperone.reviewer_head.head import OVERALL
from chaperone.reviewer_head.train import curve_figures

DEFAULT_SAMPLE = data.REPO / "heads" / "compare-test-seed0.jsonl"
EVAL_COLUMNS = "id=id,prompt=request,answer=draft,label=label,category=category,type=source"
ID_CHARS = 20  # the id of a row in the sample: the head of its text sha256


class CompareInputError(ValueError):
    """A missing or unreadable input; the message says what to run."""


def comparison_rows(rows: list[data.SplitRow], per_source: int, seed: int) -> list[data.SplitRow]:
    """Test rows only, `per_source` of each source, both labels: the same selection `reviewer extract --part
    test --per-source N --sample-seed S` extracts."""
    return data.sample([r for r in rows if r.part == "test"], per_source, seed)


def write_sample(manifest: Path, out: Path, per_source: int, seed: int) -> int:
    from chaperone.reviewer_head.prompt import load_prompt

    no_request = load_prompt().no_request  # statements with no request (ToxiGen) read as the head reads them
    rows, _summary = data.read_manifest(manifest)
    chosen = comparison_rows(rows, per_source, seed)
    with out.open("w", encoding="utf-8") as fh:
        for r in chosen:
            line = {
                "id": r.row.text_sha[:ID_CHARS],
                "source": r.row.source,
                "request": r.row.request if r.row.request.strip() else no_request,
                "draft": r.row.draft,
                "label": "unsafe" if r.row.harmful else "safe",
                "category": r.row.category or "",
                "licence": r.row.licence,
            }
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return len(chosen)


def _jsonl(path: Path, what: str, fix: str) -> list[dict]:
    if not path.is_file():
        raise CompareInputError(f"{path}: no {what}; {fix}")
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                break  # the torn last line of a run still writing
            raise CompareInputError(f"{path}:{n}: not JSON") from None
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _decision_figures(labels: list[int], revise: list[bool]) -> dict:
    pos = sum(labels)
    neg = len(labels) - pos
    tp = sum(1 for y, r in zip(labels, revise, strict=True) if y and r)
    fp = sum(1 for y, r in zip(labels, revise, strict=True) if not y and r)
    return {"recall": round(tp / pos, 4) if pos else None, "fpr": round(fp / neg, 4) if neg else None}


def compare(
    sample: Path, eval_dir: Path, scores: Path, cache_costs: dict[str, tuple[int, float]] | None = None
) -> dict:
    """Join the sample, the prompted reviewer's results and the head's held-out scores; figures per source
    and overall, for the rows all three decisions scored."""
    sample_rows = _jsonl(sample, "comparison sample", "write it with `python run.py reviewer compare-sample`")
    results = _jsonl(
        eval_dir / "results.jsonl",
        "reviewer-alone results",
        f"run `python run.py eval run {sample} --reviewer-only --columns {EVAL_COLUMNS} --out {eval_dir}`",
    )
    head_lines = _jsonl(scores, "held-out head scores", "run `python run.py reviewer train --loso`")
    prompted = {r["id"]: r for r in results if r.get("status") == "ok"}
    main: dict[str, float] = {}
    loso: dict[str, float] = {}
    for line in head_lines:
        key = line["text_sha"][:ID_CHARS]
        if line["fold"] == "main" and line["part"] == "test":
            main[key] = line["scores"][OVERALL]
        elif line["fold"] == f"loso:{line['source']}":
            loso[key] = line["scores"][OVERALL]
    joined = [r for r in sample_rows if r["id"] in prompted and r["id"] in main and r["id"] in loso]
    missing = {
        "prompted": sum(1 for r in sample_rows if r["id"] not in prompted),
        "head_test": sum(1 for r in sample_rows if r["id"] not in main),
        "head_loso": sum(1 for r in sample_rows if r["id"] not in loso),
    }

    def figures(rows: list[dict]) -> dict:
        y = [int(r["label"] == "unsafe") for r in rows]
        p_scores = [prompted[r["id"]].get("score") for r in rows]
        out = {
            "n": len(rows),
            "harmful": sum(y),
            "prompted": curve_figures(y, [0.5 if s is None else s for s in p_scores]),
            "prompted_decision": _decision_figures(y, [prompted[r["id"]]["decision"] != "approve" for r in rows]),
            "head_test": curve_figures(y, [main[r["id"]] for r in rows]),
            "head_left_out": curve_figures(y, [loso[r["id"]] for r in rows]),
        }
        out["prompted"]["unscored"] = sum(1 for s in p_scores if s is None)
        return out

    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in joined:
        by_source[r["source"]].append(r)
    report = {
        "rows": len(sample_rows),
        "joined": len(joined),
        "missing": missing,
        "overall": figures(joined) if joined else {"n": 0},
        "by_source": {s: figures(rows) for s, rows in sorted(by_source.items())},
        "cost": {
            "prompted": {
                "median_seconds": _median([prompted[r["id"]]["seconds"] for r in joined]),
                "median_prompt_tokens": _median([prompted[r["id"]]["prompt_tokens"] for r in joined]),
                "median_completion_tokens": _median([prompted[r["id"]]["completion_tokens"] for r in joined]),
            }
        },
    }
    if cache_costs:
        have = [cache_costs[r["id"]] for r in joined if r["id"] in cache_costs]
        report["cost"]["head"] = {
            "median_seconds": _median([s for _t, s in have]),
            "median_prompt_tokens": _median([float(t) for t, _s in have]),
            "median_completion_tokens": 0,
        }
    return report


def head_costs(cache) -> dict[str, tuple[int, float]]:
    """Prompt tokens and seconds of each cached row's single forward pass, keyed like the sample's ids."""
    return {key[:ID_CHARS]: (e.n_tokens, e.seconds) for key, e in cache.entries.items()}


def markdown(report: dict) -> str:
    """The comparison as a Markdown table (docs, closing notes)."""

    def auc(f: dict) -> str:
        return "–" if f.get("auc") is None else f"{f['auc']:.3f}"

    def at(f: dict, key: str) -> str:
        return "–" if f.get(key) is None else f"{f[key]:.2f}"

    lines = [
        "| rows | n (harmful) | prompted AUC | prompted R@5% | head AUC (split) | head AUC (source left out) "
        "| left-out R@1% | left-out R@5% | left-out FPR@95% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    items = [("**all**", report["overall"]), *report["by_source"].items()]
    for name, f in items:
        if not f.get("n"):
            continue
        lo = f["head_left_out"]
        lines.append(
            f"| {name} | {f['n']} ({f['harmful']}) | {auc(f['prompted'])} | {at(f['prompted'], 'recall_at_fpr_0.05')} "
            f"| {auc(f['head_test'])} | {auc(lo)} | {at(lo, 'recall_at_fpr_0.01')} | {at(lo, 'recall_at_fpr_0.05')} "
            f"| {at(lo, 'fpr_at_recall_0.95')} |"
        )
    cost = report["cost"]
    for who in ("prompted", "head"):
        if who in cost:
            c = cost[who]
            lines.append(
                f"\n{who}: median {c['median_seconds']} s and {c['median_prompt_tokens']} prompt tokens per verdict"
            )
    return "\n".join(lines)
