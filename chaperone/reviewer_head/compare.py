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
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chaperone.reviewer_head import data
from chaperone.reviewer_head.head import OVERALL, logit
from chaperone.reviewer_head.train import curve_figures
from chaperone.reviewer_head.train import scores_path as train_scores_path

DEFAULT_SAMPLE = data.REPO / "heads" / "compare-test-seed0.jsonl"
DEFAULT_DEV_SAMPLE = data.REPO / "heads" / "compare-dev-seed0.jsonl"
EVAL_COLUMNS = "id=id,prompt=request,answer=draft,label=label,category=category,type=source"
ID_CHARS = 20  # the id of a row in the sample: the head of its text sha256


class CompareInputError(ValueError):
    """A missing or unreadable input; the message says what to run."""


def comparison_rows(
    rows: list[data.SplitRow], per_source: int, seed: int, part: str = "test", sources: Sequence[str] = ()
) -> list[data.SplitRow]:
    """Rows of one part (test: to compare; dev: to fit a combination of the two), `per_source` of each source,
    both labels: the same selection `reviewer extract --part PART --per-source N --sample-seed S` extracts.
    `sources`: only these. A new source's sample then leaves the other sources' samples (and the prompted
    reviewer's runs on them) as they were: the draw is shared across the sources taken together."""
    return data.sample(part_rows(rows, part, sources), per_source, seed)


def part_rows(rows: list[data.SplitRow], part: str, sources: Sequence[str] = ()) -> list[data.SplitRow]:
    """The rows of one part ("all": every part) and of `sources` (none: every source)."""
    return [r for r in rows if part in ("all", r.part) and (not sources or r.row.source in sources)]


def read_rows(manifest: Path, sources: Sequence[str] = (), listed: Path | None = None) -> list[data.SplitRow]:
    """The manifest's rows, only those a row list names if `listed` is given; a source it lacks is an error."""
    from chaperone.reviewer_head.features import only_listed

    rows, _summary = data.read_manifest(manifest)
    if listed is not None:
        rows = only_listed(rows, listed)
    if unknown := sorted(set(sources) - {r.row.source for r in rows}):
        raise CompareInputError(f"--source {', '.join(unknown)}: not in {manifest}")
    return rows


def write_sample(
    manifest: Path,
    out: Path,
    per_source: int,
    seed: int,
    part: str = "test",
    sources: Sequence[str] = (),
    listed: Path | None = None,
) -> int:
    """`part` "all": every part (rows no head was fitted on, such as a confirmation set, named by `listed`)."""
    from chaperone.reviewer_head.prompt import load_prompt

    no_request = load_prompt().no_request  # statements with no request (ToxiGen) read as the head reads them
    chosen = comparison_rows(read_rows(manifest, sources, listed), per_source, seed, part, sources)
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


def _logit(p: float | None) -> float:
    return logit(0.5 if p is None else p)  # the same clipping as the head's own stacked score


@dataclass
class Stack:
    """The combination of the two scores, fitted on dev rows, and those rows (to choose its threshold)."""

    model: Any  # sklearn LogisticRegression on (logit head, logit prompted)
    labels: list[int]
    features: list[list[float]]
    prompted_revise: list[bool]  # the prompted reviewer's own decision on the same rows

    def threshold(self) -> dict:
        """The highest threshold at which the combination sends back at least as many harmful dev rows as the
        prompted decision did: the head may cut false positives, never recall. (Youden's J, the first rule,
        kept 60% of harmful dev rows where the prompted decision kept 76%, and let a poisoning recipe through
        the demo.) Never below Youden's recall; that point is also reported."""
        return keep_prompted_recall(self.labels, self.probabilities(self.features), self.prompted_revise)

    def probabilities(self, x: list[list[float]]) -> list[float]:
        return [float(p) for p in self.model.predict_proba(x)[:, 1]]


def keep_prompted_recall(labels: list[int], scores: list[float], prompted_revise: list[bool]) -> dict:
    """The highest threshold on `scores` that sends back at least as many harmful dev rows as the prompted
    decision did on the same rows (never below Youden's recall), with both reference points."""
    youden = youden_threshold(labels, scores)
    prompted = _decision_figures(labels, prompted_revise)
    chosen = recall_threshold(labels, scores, max(prompted["recall"] or 0.0, youden["recall"]))
    return {
        "chosen_by": "the prompted decision's recall on the same dev rows (at least Youden's), kept, at the "
        "fewest false positives",
        **chosen,
        "prompted_decision": prompted,
        "youden": youden,
    }


def alone_section(dev_rows: list[dict], prompted: dict[str, dict], head_dev: dict[str, float]) -> dict | None:
    """The head's own score deciding, no prompted pass: its threshold by the stack's rule on the same dev rows
    (cross-source dev scores), and its dev figures. None if dev cannot say."""
    rows = [r for r in dev_rows if r["id"] in prompted and r["id"] in head_dev]
    y = [int(r["label"] == "unsafe") for r in rows]
    if len(set(y)) < 2:
        return None
    scores = [head_dev[r["id"]] for r in rows]
    revise = [prompted[r["id"]]["decision"] != "approve" for r in rows]
    return {
        "fitted_on_dev_rows": len(rows),
        "threshold": keep_prompted_recall(y, scores, revise),
        "dev": curve_figures(y, scores),
    }


def fit_stack(dev_rows: list[dict], prompted: dict[str, dict], head_dev: dict[str, float]) -> Stack | None:
    """A logistic regression on (logit head score, logit prompted score) fitted on dev rows whose head score
    comes from a head that did not fit their source: how much each signal should count. None if dev cannot say."""
    from sklearn.linear_model import LogisticRegression

    rows = [r for r in dev_rows if r["id"] in prompted and r["id"] in head_dev]
    y = [int(r["label"] == "unsafe") for r in rows]
    if len(set(y)) < 2:
        return None
    x = [[_logit(head_dev[r["id"]]), _logit(prompted[r["id"]].get("score"))] for r in rows]
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(x, y)
    return Stack(model, y, x, [prompted[r["id"]]["decision"] != "approve" for r in rows])


def youden_threshold(labels: list[int], scores: list[float]) -> dict:
    """The threshold that maximises recall minus false-positive rate (Youden's J) on these rows, with both."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    value = float(min(thresholds[best], 1.0))  # roc_curve's first threshold is +inf: nothing sent back
    return {"value": round(value, 4), "recall": round(float(tpr[best]), 4), "fpr": round(float(fpr[best]), 4)}


def recall_threshold(labels: list[int], scores: list[float], recall: float) -> dict:
    """The highest threshold whose recall on these rows is at least `recall`, with its false-positive rate."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)  # every score: the exact highest
    best = next(i for i, t in enumerate(tpr) if t >= recall - 1e-9)  # tpr rises as the threshold falls
    value = math.floor(min(float(thresholds[best]), 1.0) * 1e4) / 1e4  # rounded down: the row at it stays caught
    return {"value": value, "recall": round(float(tpr[best]), 4), "fpr": round(float(fpr[best]), 4)}


def stack_section(stack: Stack, *, dev_eval: Path | Sequence[Path]) -> dict:
    """What `reviewer compare --stack-into` writes into a head's card: the combination, the prompted reviewer
    it was fitted with, and the threshold chosen on the same dev rows (`Stack.threshold`), with its dev figures."""
    probabilities = stack.probabilities(stack.features)
    runs = _paths(dev_eval)
    try:
        policy = json.loads((runs[0] / "plan.json").read_text(encoding="utf-8"))["choice"]["policy"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        policy = None
    return {
        "intercept": round(float(stack.model.intercept_[0]), 6),
        "weights": {
            "head": round(float(stack.model.coef_[0][0]), 6),
            "prompted": round(float(stack.model.coef_[0][1]), 6),
        },
        "fitted_on_dev_rows": len(stack.labels),
        "dev_eval": runs[0].name if len(runs) == 1 else [r.name for r in runs],
        "prompted_reviewer": {"policy": policy or "the settings' default", "score": "P(not OK), decision token"},
        "threshold": stack.threshold(),
        "dev": curve_figures(stack.labels, probabilities),
    }


def category_thresholds(scores_file: Path, fpr: float = 0.01) -> dict[str, dict]:
    """Per category, the score that at most `fpr` of the harmless dev rows reach: a blocking threshold that
    rarely fires on harmless text. Read on the cross-source dev scores (heads that never saw the row's source)
    and on the split's own dev part (the shipped head, sources seen), and the higher of the two is proposed:
    a category whose examples come from one source (hazardous chemistry: only the assistant's own answers) is
    never scored cross-source on that source, where its harmless look-alikes are."""
    lines = _jsonl(scores_file, "held-out head scores", "run `python run.py reviewer train --loso`")
    harmless: dict[str, dict[str, list[float]]] = {"cross-source-dev": defaultdict(list), "main": defaultdict(list)}
    for line in lines:
        if line["part"] == "dev" and line["fold"] in harmless and not line["harmful"]:
            for name, value in line["scores"].items():
                if name != OVERALL:
                    harmless[line["fold"]][name].append(float(value))
    out: dict[str, dict] = {}
    for fold in ("cross-source-dev", "main"):
        label = "cross-source dev" if fold == "cross-source-dev" else "split dev (sources seen)"
        for name, values in sorted(harmless[fold].items()):
            value = round(min(float(np.quantile(values, 1 - fpr, method="higher")) + 1e-4, 1.0), 4)
            entry = {"threshold": value, "harmless_dev_rows": len(values), "from": label}
            if name not in out:
                out[name] = {**entry, "by_fold": {label: value}}
                continue
            out[name]["by_fold"][label] = value
            if value > out[name]["threshold"]:
                out[name] |= entry
    return out


def _paths(given: Path | Sequence[Path] | None) -> list[Path]:
    return [] if given is None else [given] if isinstance(given, Path) else list(given)


def _samples(paths: Sequence[Path], fix: str) -> list[dict]:
    """The rows of one or more sample files, each id once (the first file that has it wins)."""
    seen: dict[str, dict] = {}
    for path in paths:
        for row in _jsonl(path, "comparison sample", fix):
            seen.setdefault(row["id"], row)
    return list(seen.values())


def prompted_results(samples: Sequence[Path], runs: Sequence[Path], what: str) -> dict[str, dict]:
    """The prompted reviewer's ok results, by id, from one or more eval runs (one per sample file)."""
    out: dict[str, dict] = {}
    for sample, run in zip(samples, runs, strict=False):
        fix = f"run `python run.py eval run {sample} --reviewer-only --no-head --columns {EVAL_COLUMNS} --out {run}`"
        for r in _jsonl(run / "results.jsonl", what, fix):
            if r.get("status") == "ok":
                out.setdefault(r["id"], r)
    return out


def compare(
    sample: Path | Sequence[Path],
    eval_dir: Path | Sequence[Path],
    scores: Path,
    cache_costs: dict[str, tuple[int, float]] | None = None,
    dev_sample: Path | Sequence[Path] | None = None,
    dev_eval_dir: Path | Sequence[Path] | None = None,
) -> dict:
    """Join the sample, the prompted reviewer's results and the head's held-out scores; figures per source
    and overall, for the rows all three decisions scored.

    Several samples may be given, each with its eval run (in the same order): a source added later is sampled
    and run on its own, and the earlier samples and runs stay as they were."""
    samples, runs = _paths(sample), _paths(eval_dir)
    dev_samples, dev_runs = _paths(dev_sample), _paths(dev_eval_dir)
    if len(samples) != len(runs) or (dev_runs and len(dev_samples) != len(dev_runs)):
        raise CompareInputError("give one eval run for each sample file, in the same order (--sample/--eval)")
    sample_rows = _samples(samples, "write it with `python run.py reviewer compare-sample`")
    prompted = prompted_results(samples, runs, "reviewer-alone results")
    head_lines = _jsonl(scores, "held-out head scores", "run `python run.py reviewer train --loso`")
    main: dict[str, float] = {}
    loso: dict[str, float] = {}
    head_dev: dict[str, float] = {}
    for line in head_lines:
        key = line["text_sha"][:ID_CHARS]
        if line["fold"] == "main" and line["part"] == "test":
            main[key] = line["scores"][OVERALL]
        elif line["fold"] == f"loso:{line['source']}":
            loso[key] = line["scores"][OVERALL]
        elif line["fold"] == "cross-source-dev":
            head_dev[key] = line["scores"][OVERALL]
    stack = None
    alone = None
    if dev_samples and dev_runs:
        dev_rows = _samples(dev_samples, "write it with `python run.py reviewer compare-sample --part dev`")
        dev_prompted = prompted_results(dev_samples, dev_runs, "reviewer-alone results on the dev sample")
        stack = fit_stack(dev_rows, dev_prompted, head_dev)
        alone = alone_section(dev_rows, dev_prompted, head_dev)
    section = None if stack is None else stack_section(stack, dev_eval=dev_runs)
    threshold = section["threshold"]["value"] if section else 1.0
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
        if alone is not None:  # the head's own score at its dev-chosen threshold, no prompted pass
            cut = alone["threshold"]["value"]
            for name, head in (("left_out", loso), ("test", main)):
                out[f"head_{name}_decision"] = _decision_figures(y, [head[r["id"]] >= cut for r in rows])
        if stack is not None:
            for name, head in (("left_out", loso), ("split", main)):
                x = [[_logit(head[r["id"]]), _logit(prompted[r["id"]].get("score"))] for r in rows]
                probabilities = stack.probabilities(x)
                out[f"stacked_{name}"] = curve_figures(y, probabilities)
                # the operating point the reviewer would ship: the dev-chosen threshold, read on these rows
                out[f"stacked_{name}_decision"] = _decision_figures(y, [p >= threshold for p in probabilities])
        return out

    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in joined:
        by_source[r["source"]].append(r)
    report = {
        "rows": len(sample_rows),
        "joined": len(joined),
        "missing": missing,
        "stack": section,
        "alone": alone,
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


def _pair(decision: dict) -> str:
    return " / ".join("–" if decision[k] is None else f"{decision[k]:.2f}" for k in ("recall", "fpr"))


def markdown(report: dict) -> str:
    """The comparison as a Markdown table (docs, closing notes)."""

    def auc(f: dict) -> str:
        return "–" if f.get("auc") is None else f"{f['auc']:.3f}"

    def at(f: dict, key: str) -> str:
        return "–" if f.get(key) is None else f"{f[key]:.2f}"

    lines = [
        "| rows | n (harmful) | prompted AUC | prompted R@5% | head AUC (split) | head AUC (source left out) "
        "| left-out R@1% | left-out R@5% | left-out FPR@95% | stacked AUC (left out) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    items = [("**all**", report["overall"]), *report["by_source"].items()]
    for name, f in items:
        if not f.get("n"):
            continue
        lo = f["head_left_out"]
        lines.append(
            f"| {name} | {f['n']} ({f['harmful']}) | {auc(f['prompted'])} | {at(f['prompted'], 'recall_at_fpr_0.05')} "
            f"| {auc(f['head_test'])} | {auc(lo)} | {at(lo, 'recall_at_fpr_0.01')} | {at(lo, 'recall_at_fpr_0.05')} "
            f"| {at(lo, 'fpr_at_recall_0.95')} | {auc(f.get('stacked_left_out', {}))} |"
        )
    decisions = (
        ("stack", "the combination", ("stacked, source left out", "stacked AUC (source seen)", "stacked, source seen"),
         ("stacked_left_out_decision", "stacked_split", "stacked_split_decision")),
        ("alone", "the head alone (no prompted pass)", ("head alone, source left out", "head alone, source seen"),
         ("head_left_out_decision", "head_test_decision")),
    )  # fmt: skip
    for key, who, headers, fields in decisions:
        if not report.get(key):
            continue
        lines += [
            "",
            f"Decisions (recall / false-positive rate): the prompted reviewer at its policy's threshold, {who} at "
            f"its dev-chosen {report[key]['threshold']['value']}",
            "",
            "| rows | prompted | " + " | ".join(headers) + " |",
            "|---|---|" + "---|" * len(headers),
        ]
        for name, f in items:
            if f.get("n") and fields[-1] in f:
                cells = [auc(f[k]) if k == "stacked_split" else _pair(f[k]) for k in fields]
                lines.append(f"| {name} | {_pair(f['prompted_decision'])} | " + " | ".join(cells) + " |")
    cost = report["cost"]
    for who in ("prompted", "head"):
        if who in cost:
            c = cost[who]
            lines.append(
                f"\n{who}: median {c['median_seconds']} s and {c['median_prompt_tokens']} prompt tokens per verdict"
            )
    return "\n".join(lines)


def write_alone(head_npz: Path, report: dict) -> Path:
    """Put the head-alone threshold (no prompted pass) and the proposed category thresholds into the head's card,
    dropping any combination: the reviewer then decides on the head's own score. Returns the card's path."""
    if report.get("alone") is None:
        raise CompareInputError("no threshold was chosen: give --dev-sample and --dev-eval")
    card_path, card = _card(head_npz)
    card.pop("stack", None)
    card["alone"] = {
        **report["alone"],
        "test_left_out": report["overall"].get("head_left_out"),
        "proposed_category_thresholds": category_thresholds(train_scores_path(head_npz)),
    }
    card_path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return card_path


def _card(head_npz: Path) -> tuple[Path, dict]:
    card_path = Path(head_npz).with_suffix(".json")
    try:
        return card_path, json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareInputError(f"{card_path}: not a readable head card ({exc})") from None


def write_stack(head_npz: Path, report: dict) -> Path:
    """Put the fitted combination, its threshold and the proposed category thresholds into the head's card,
    so the embedded reviewer decides with both scores (docs/reviewer-head.md). Returns the card's path."""
    if report.get("stack") is None:
        raise CompareInputError("no combination was fitted: give --dev-eval (the prompted reviewer on the dev sample)")
    card_path, card = _card(head_npz)
    card["stack"] = {
        **report["stack"],
        "test_left_out": report["overall"].get("stacked_left_out"),
        "proposed_category_thresholds": category_thresholds(train_scores_path(head_npz)),
    }
    card_path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return card_path
