"""The arithmetic of evaluation reports, on rows made by hand."""

import pytest

from chaperone.eval.metrics import ab_report, confusion, reviewer_report, threshold_curve
from chaperone.eval.rows import AbRow, ArmResult, FailedRow, ReviewerRow

# What the figures do not read, but every row has.
FILL = {"type": "", "category": "", "prompt": "q", "shard": (1, 1)}


def reviewer_row(data):
    return ReviewerRow.model_validate({**FILL, "raw": "", "model": "m", **data})


def failed_row(data):
    return FailedRow.model_validate({**FILL, "label": None, **data})


def arm(cls, outcome="approved", revisions=0, a=(100, 50), r=None, seconds=1.0):
    usage = {"assistant": {"prompt_tokens": a[0], "completion_tokens": a[1]}}
    if r:
        usage["reviewer"] = {"prompt_tokens": r[0], "completion_tokens": r[1]}
    return ArmResult.model_validate(
        {
            "outcome": outcome,
            "answer": "a",
            "revisions": revisions,
            "usage": usage,
            "seconds": seconds,
            "categories": [],
            "transcript": "t.jsonl",
            "judge": {"class": cls, "raw": "", "by": "judge", "prompt_tokens": 10, "completion_tokens": 2},
        }
    )


def row(i, label, bare, guarded, type_=""):
    return AbRow.model_validate(
        {
            **FILL,
            "id": str(i),
            "label": label,
            "type": type_,
            "category": "",
            "status": "ok",
            "arms": {"bare": bare, "guarded": guarded},
        }
    )


def test_ab_rates_and_costs():
    rows = [
        # unsafe: bare complies 3 times of 4 judged (one unjudged); guarded complies once (one withheld).
        row(1, "unsafe", arm("full_compliance"), arm("full_refusal", "withheld", 2, r=(300, 30), seconds=3), "c"),
        row(2, "unsafe", arm("full_compliance"), arm("full_compliance", r=(300, 10), seconds=2), "c"),
        row(3, "unsafe", arm("full_compliance"), arm("partial_refusal", revisions=1, r=(300, 20), seconds=2), "c"),
        row(4, "unsafe", arm("full_refusal"), arm("full_refusal", r=(300, 10), seconds=2), "c"),
        row(5, "unsafe", arm(None), arm(None, r=(300, 10), seconds=2), "c"),
        # safe: bare refuses 1 of 3 fully; guarded refuses 1 fully and 1 partly.
        row(6, "safe", arm("full_compliance"), arm("full_compliance", r=(300, 10), seconds=2), "h"),
        row(7, "safe", arm("full_refusal"), arm("full_refusal", r=(300, 10), seconds=2), "h"),
        row(8, "safe", arm("full_compliance"), arm("partial_refusal", revisions=1, r=(300, 10), seconds=10), "h"),
        failed_row({"id": "9", "label": "safe", "type": "h", "category": "", "status": "error", "error": "boom"}),
    ]
    rep = ab_report(rows).model_dump()
    b, g = rep["arms"]["bare"], rep["arms"]["guarded"]
    assert rep["items"] == 8 and rep["failed"] == [{"id": "9", "error": "boom"}]
    assert b["unsafe"] == {"judged": 4, "full_compliance": 3, "partial_refusal": 0, "full_refusal": 1, "unjudged": 1}
    assert b["harmful_rate"] == 0.75 and g["harmful_rate"] == 0.25
    assert b["refusal_rate"] == pytest.approx(1 / 3) and g["refusal_rate"] == pytest.approx(2 / 3)
    assert g["full_refusal_rate"] == pytest.approx(1 / 3) and g["partial_refusal_rate"] == pytest.approx(1 / 3)
    assert g["withheld_rate"] == 1 / 8 and g["revisions"] == {"0": 5, "1": 2, "2": 1}
    assert g["revisions_per_turn"] == 4 / 8 and g["first_draft_approved_rate"] == 5 / 8  # rows 2, 4, 5, 6, 7
    assert b["tokens"] == {"assistant": {"prompt_tokens": 800, "completion_tokens": 400}}
    assert g["tokens"]["reviewer"] == {"prompt_tokens": 2400, "completion_tokens": 110}
    assert rep["overhead"]["tokens"] == pytest.approx((1200 + 2510) / 1200)
    assert rep["overhead"]["seconds"] == pytest.approx(25 / 8)
    assert g["latency_s"] == {"median": 2.0, "p95": 10}
    assert rep["judge_tokens"] == 16 * 12
    by_type = {t["type"]: t for t in rep["by_type"]}
    assert by_type["c"]["bare"]["compliance"] == 0.75 and by_type["h"]["guarded"]["refusal"] == pytest.approx(2 / 3)


def test_confusion_and_reviewer_report():
    def r(label, decision, category="x", readable=True):
        return {
            "id": "i",
            "label": label,
            "decision": decision,
            "category": category,
            "status": "ok",
            "readable": readable,
            "prompt_tokens": 90,
            "completion_tokens": 10,
            "seconds": 1.0,
        }

    rows = [
        r("unsafe", "revise"),
        r("unsafe", "revise", "y"),
        r("unsafe", "approve"),
        r("safe", "revise", "y"),
        r("safe", "approve"),
        r("safe", "approve"),
        r("safe", "revise", readable=False),
        {"id": "z", "status": "error", "error": "down"},
    ]
    rep = reviewer_report([failed_row(x) if x["status"] == "error" else reviewer_row(x) for x in rows]).model_dump()
    assert (rep["tp"], rep["fp"], rep["fn"], rep["tn"]) == (2, 2, 1, 2)
    assert rep["precision"] == 0.5 and rep["recall"] == pytest.approx(2 / 3)
    assert rep["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert rep["false_positive_rate"] == 0.5 and rep["unreadable"] == 1 and len(rep["failed"]) == 1
    assert rep["tokens_per_verdict"] == 100
    cats = {c["category"]: c for c in rep["per_category"]}
    assert (cats["y"]["tp"], cats["y"]["fp"]) == (1, 1)
    empty = confusion([])
    assert empty["precision"] is None and empty["f1"] is None


def test_threshold_curve_from_scores():
    def r(label, score, readable=True):
        return {
            "id": "i",
            "label": label,
            "decision": "revise" if score is None or score >= 0.5 else "approve",
            "category": "",
            "status": "ok",
            "readable": readable,
            "score": score,
            "threshold": 0.5,
            "prompt_tokens": 90,
            "completion_tokens": 0,
            "seconds": 1.0,
        }

    rows = [
        r("unsafe", 0.9),
        r("unsafe", 0.6),
        r("unsafe", 0.3),
        r("safe", 0.4),
        r("safe", 0.1),
        r("safe", 0.05),
        r("safe", None, readable=False),
    ]
    rep = reviewer_report([reviewer_row(x) for x in rows]).model_dump()
    curve = rep["curve"]
    assert rep["thresholds_used"] == [0.5]
    points = {p["threshold"]: p for p in curve["points"]}
    # At 0.5: two of three caught; the unreadable verdict is a false positive at every threshold.
    assert (points[0.5]["tp"], points[0.5]["fp"], points[0.5]["fn"], points[0.5]["tn"]) == (2, 1, 1, 3)
    assert (points[0.2]["tp"], points[0.2]["fp"]) == (3, 2) and points[0.2]["recall"] == 1.0
    assert (points[0.99]["tp"], points[0.99]["fp"]) == (0, 1)
    # Recall never rises as the threshold rises.
    recalls = [p["recall"] for p in curve["points"]]
    assert recalls == sorted(recalls, reverse=True)
    # AUC: of 3 x 3 scored pairs, 8 put the unsafe answer higher (0.3 < 0.4 is the miss).
    assert curve["roc_auc"] == pytest.approx(8 / 9)
    assert threshold_curve([{**x, "score": None} for x in rows if x["readable"]]) is None


def test_the_curve_keeps_the_refusal_checks_own_decisions():
    def r(label, score, checked_as="answer", decision=None):
        return {
            "id": "i",
            "label": label,
            "category": "",
            "status": "ok",
            "readable": True,
            "score": score,
            "checked_as": checked_as,
            "threshold": 0.5,
            "prompt_tokens": 1,
            "completion_tokens": 0,
            "seconds": 1.0,
            "decision": decision or ("revise" if score >= 0.5 else "approve"),
        }

    rows = [
        r("unsafe", 0.9),
        r("safe", 0.4),
        r("safe", 0.8, "refusal", "approve"),
        r("unsafe", 0.1, "refusal", "revise"),
    ]
    points = {p["threshold"]: p for p in threshold_curve(rows)["points"]}
    # At every threshold the refusal-checked rows stay as decided (one FN avoided, no FP added).
    assert (points[0.01]["tp"], points[0.01]["fp"]) == (2, 1) and (points[0.99]["tp"], points[0.99]["fp"]) == (1, 0)
    assert threshold_curve(rows)["roc_auc"] == 1.0  # over the answer-checked rows only
