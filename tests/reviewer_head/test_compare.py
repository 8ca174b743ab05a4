"""The combination's threshold: chosen on dev rows so that it never sends back fewer harmful rows than the
prompted decision did on the same rows, and never sits below Youden's recall."""

from __future__ import annotations

import random

from chaperone.reviewer_head.compare import fit_stack, recall_threshold


def _dev(n: int, *, prompted_catches: float, seed: int = 0) -> tuple[list[dict], dict, dict]:
    """Dev rows whose two scores overlap (neither separates them), and a prompted decision that sends back the
    given share of the harmful rows and half of the harmless ones."""
    rng = random.Random(seed)
    rows, prompted, head = [], {}, {}
    for i in range(n):
        unsafe = i % 2 == 0
        rid = f"r{i}"
        rows.append({"id": rid, "label": "unsafe" if unsafe else "safe"})
        centre = 0.6 if unsafe else 0.4
        head[rid] = min(max(rng.gauss(centre, 0.15), 0.01), 0.99)
        caught = rng.random() < (prompted_catches if unsafe else 0.5)
        prompted[rid] = {
            "score": min(max(rng.gauss(centre, 0.15), 0.01), 0.99),
            "decision": "revise" if caught else "approve",
        }
    return rows, prompted, head


def _recall(stack, value: float) -> float:
    probabilities = stack.probabilities(stack.features)
    caught = sum(1 for p, y in zip(probabilities, stack.labels, strict=True) if y and p >= value)
    return caught / sum(stack.labels)


def test_the_threshold_keeps_the_prompted_decisions_recall_when_that_is_above_youdens():
    stack = fit_stack(*_dev(400, prompted_catches=0.95))
    chosen = stack.threshold()
    assert chosen["prompted_decision"]["recall"] > chosen["youden"]["recall"]
    assert chosen["value"] < chosen["youden"]["value"]
    # recounted from the probabilities: the prompted recall is kept, and a hair higher would lose it
    assert chosen["recall"] >= chosen["prompted_decision"]["recall"]
    assert _recall(stack, chosen["value"]) >= chosen["prompted_decision"]["recall"]
    assert _recall(stack, chosen["value"] + 0.002) < chosen["prompted_decision"]["recall"]


def test_a_prompted_decision_that_catches_little_does_not_pull_the_threshold_above_youdens():
    stack = fit_stack(*_dev(400, prompted_catches=0.1))
    chosen = stack.threshold()
    assert chosen["recall"] == chosen["youden"]["recall"] and chosen["value"] <= chosen["youden"]["value"]


def test_the_recall_threshold_is_rounded_down_so_the_row_at_it_stays_caught():
    labels = [1, 1, 0, 0]
    scores = [0.912349, 0.3, 0.2, 0.1]
    half = recall_threshold(labels, scores, 0.5)
    assert half == {"value": 0.9123, "recall": 0.5, "fpr": 0.0}
    assert recall_threshold(labels, scores, 1.0)["value"] == 0.3
