"""A head-alone threshold chosen at a stated recall on the dev sample, with no prompted reviewer run.

`reviewer compare --alone-into` keeps the prompted reviewer's recall on the dev rows, so it needs the prompted
reviewer's results there (an eval run: about 5 s a row on the embedded model). A deployer retraining on their
own answers, or a retrain that must keep an earlier head's operating point, states the recall instead:

    python run.py reviewer threshold --head heads/my-head.npz --recall 0.7 \\
        --dev-sample heads/compare-dev-seed0.jsonl --sample heads/compare-test-seed0.jsonl

The threshold is the highest value whose recall on the dev sample's rows, read on the head's cross-source dev
scores (heads that did not fit the row's source, written by `reviewer train --loso`), is at least the recall
asked for. It goes into the head's card as its `alone` section (what the embedded reviewer decides with), with
the dev figures, the figures with each source left out on the test sample, and the proposed category
thresholds, the same section `compare --alone-into` writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from chaperone.reviewer_head.compare import (
    ID_CHARS,
    CompareInputError,
    _card,
    _jsonl,
    _samples,
    category_thresholds,
    recall_threshold,
)
from chaperone.reviewer_head.head import OVERALL
from chaperone.reviewer_head.train import curve_figures
from chaperone.reviewer_head.train import scores_path as train_scores_path

SAMPLE_FIX = "write it with `python run.py reviewer compare-sample`"
RECALL_ROUNDING = 5e-5  # half the last decimal of the 4-decimal recalls cards record


def _fold_scores(scores_file: Path, fold: str) -> dict[str, float]:
    """The overall score of each row in one fold of a training run's held-out scores, by sample id. `fold` is
    "cross-source-dev" or "loso" (each row scored by the head that left its source out)."""
    lines = _jsonl(scores_file, "held-out head scores", "run `python run.py reviewer train --loso`")
    out: dict[str, float] = {}
    for line in lines:
        if line["fold"] == fold or (fold == "loso" and line["fold"] == f"loso:{line['source']}"):
            out[line["text_sha"][:ID_CHARS]] = float(line["scores"][OVERALL])
    return out


def _figures(rows: list[dict], scores: dict[str, float]) -> tuple[list[int], list[float]]:
    scored = [r for r in rows if r["id"] in scores]
    return [int(r["label"] == "unsafe") for r in scored], [scores[r["id"]] for r in scored]


def alone_at_recall(
    head_npz: Path, recall: float, dev_sample: Sequence[Path], test_sample: Sequence[Path] = ()
) -> dict:
    """The card's `alone` section for a threshold at `recall` on the dev sample (see the module's text)."""
    if not 0.0 < recall <= 1.0:
        raise CompareInputError(f"--recall must be in (0, 1], not {recall}")
    scores_file = train_scores_path(head_npz)
    labels, scores = _figures(_samples(dev_sample, SAMPLE_FIX), _fold_scores(scores_file, "cross-source-dev"))
    if len(set(labels)) < 2:
        raise CompareInputError(
            f"{scores_file}: the dev sample has {len(labels)} rows with cross-source dev scores, not both harmful "
            "and harmless ones: train with --loso, and give the dev sample of the head's manifest"
        )
    section = {
        "fitted_on_dev_rows": len(labels),
        "threshold": {
            "chosen_by": f"the recall asked for ({recall}) on the dev sample, kept, at the fewest false positives",
            # A recall copied from a card is rounded to 4 decimals (83/119 reads 0.6975): met within that rounding.
            **recall_threshold(labels, scores, recall - RECALL_ROUNDING),
        },
        "dev": curve_figures(labels, scores),
        "test_left_out": None,
        "proposed_category_thresholds": category_thresholds(scores_file),
    }
    if test_sample:
        y, s = _figures(_samples(test_sample, SAMPLE_FIX), _fold_scores(scores_file, "loso"))
        if len(set(y)) == 2:
            section["test_left_out"] = curve_figures(y, s)
    return section


def write_alone_at_recall(
    head_npz: Path, recall: float, dev_sample: Sequence[Path], test_sample: Sequence[Path] = ()
) -> tuple[Path, dict]:
    """Write the section into the head's card, dropping any combination: (the card's path, the section)."""
    section = alone_at_recall(head_npz, recall, dev_sample, test_sample)
    card_path, card = _card(head_npz)
    card.pop("stack", None)
    card["alone"] = section
    card_path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return card_path, section
