"""Figures across conversations, checked against what the transcripts hold."""

import statistics

import pytest

from chaperone.audit.transcript import TranscriptWriter, read_records
from chaperone.figures import nearest_rank
from chaperone.review.index import scan
from chaperone.review.stats import compute
from tests.support.review_corpus import build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def test_rates_distribution_categories_and_tokens(corpus):
    st = compute(scan([corpus.folder]))
    # coding: approved first draft; insult: 1 revision then approved; chat: approved + withheld after 1
    # revision; open: one approved turn (the conversation never closed, the turn did finish).
    assert st["conversations"] == 4 and st["turns"] == {"rated": 5, "cancelled": 0, "unreviewed": 0, "unfinished": 0}
    assert st["approved_first_draft"] == {"turns": 3, "rate": 0.6}
    assert st["revisions_per_turn"] == {"0": 3, "1": 2} and st["mean_revisions"] == 0.4
    assert st["withheld"] == {"turns": 1, "rate": 0.2} and st["errors"] == {"turns": 0, "rate": 0.0}
    assert st["categories"] == {"harassment": {"turns": 1, "verdicts": 1}, "violence": {"turns": 1, "verdicts": 2}}
    # Tokens per role, summed independently from the raw records.
    raw = [r for p in (corpus.coding, corpus.insult, corpus.chat, corpus.open) for r in read_records(p)]
    for role, kind in (("assistant", "draft"), ("reviewer", "verdict")):
        assert st["tokens"][role]["prompt"] == sum(r["usage"]["prompt_tokens"] for r in raw if r["type"] == kind)
        assert st["tokens"][role]["completion"] == sum(
            r["usage"]["completion_tokens"] for r in raw if r["type"] == kind
        )
    total = st["tokens"]["assistant"]["total"] + st["tokens"]["reviewer"]["total"]
    assert st["reviewer_share"]["tokens"] == round(st["tokens"]["reviewer"]["total"] / total, 4)
    seconds = [r["seconds"] for r in raw if r["type"] == "turn_finished"]
    assert st["latency_per_turn"]["median"] == round(statistics.median(seconds), 3)


def test_nearest_rank_percentile():
    assert nearest_rank([], 95) is None
    assert nearest_rank([5.0], 95) == 5.0
    assert nearest_rank(list(range(1, 21)), 95) == 19  # ceil(0.95 * 20) = 19th smallest
    assert nearest_rank(list(range(1, 101)), 95) == 95
    assert nearest_rank([3, 1, 2], 50) == 2


def test_cancelled_and_unfinished_turns_are_not_rated_and_latency_is_exact(tmp_path):
    w = TranscriptWriter(tmp_path, {"kind": "chat", "policy": "public"})
    for n in range(1, 21):  # 20 finished turns taking 1..20 s, the reviewer doing 3 s of each
        w.append("user_turn", {"turn": n, "source": "user", "content": f"q{n}"})
        w.append(
            "draft",
            {
                "turn": n,
                "round": 1,
                "source": "a",
                "content": "x",
                "model": "m",
                "usage": {"prompt_tokens": 10, "completion_tokens": 10},
                "latency_s": n - 3,
            },
        )
        w.append(
            "verdict",
            {
                "turn": n,
                "round": 1,
                "source": "r",
                "decision": "approve",
                "readable": True,
                "categories": [],
                "critique": "",
                "model": "m",
                "usage": {"prompt_tokens": 50, "completion_tokens": 10},
                "latency_s": 3,
            },
        )
        w.append(
            "turn_finished",
            {
                "turn": n,
                "outcome": "approved",
                "revisions": 0,
                "categories": [],
                "usage_by_agent": {},
                "seconds": float(n),
            },
        )
    w.append("user_turn", {"turn": 21, "content": "cancelled one"})
    w.append("turn_finished", {"turn": 21, "outcome": "cancelled", "revisions": 0, "categories": [], "seconds": 500.0})
    w.append("user_turn", {"turn": 22, "content": "still running"})
    st = compute(scan([tmp_path]))
    assert st["turns"] == {"rated": 20, "cancelled": 1, "unreviewed": 0, "unfinished": 1}
    assert st["approved_first_draft"]["rate"] == 1.0 and st["withheld"]["rate"] == 0.0
    assert st["latency_per_turn"] == {"turns": 20, "median": 10.5, "p95": 19.0}
    assert st["reviewer_share"]["tokens"] == 0.75  # 60 of 80 tokens per turn
    assert st["model_seconds"] == {"assistant": sum(n - 3 for n in range(1, 21)), "reviewer": 60.0}
    assert st["reviewer_share"]["model_seconds"] == round(60 / (60 + 150), 4)


def test_unreadable_and_tampered_files_are_reported(tmp_path, corpus):
    import shutil

    shutil.copy(corpus.insult, tmp_path / corpus.insult.name)
    (tmp_path / "junk.jsonl").write_text("nope\n")
    edited = tmp_path / corpus.insult.name
    edited.write_text(edited.read_text().replace("Dave", "Bob", 1))
    st = compute(scan([tmp_path]))
    assert st["conversations"] == 1 and st["tampered"] == 1 and st["unreadable"] == [str(tmp_path / "junk.jsonl")]
