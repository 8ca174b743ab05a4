"""The story model: one reading of a transcript's records for show and every export format."""

import json

import pytest
from rich.console import Console

from chaperone.audit.integrity import check_file
from chaperone.audit.transcript import TranscriptWriter
from chaperone.review.export import to_markdown
from chaperone.review.html import render
from chaperone.review.index import scan
from chaperone.review.story import head_decision_text, score_text
from chaperone.review.story_reader import build_story, load_records
from chaperone.review.view import print_story
from tests.support.review_corpus import build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def story_of(path):
    return build_story(load_records(path), path)


def test_revision_then_approval_has_rounds_verdicts_and_a_line_diff(corpus):
    story = story_of(corpus.insult)
    assert story.kind == "scenario" and story.label == "Scenario insult" and story.outcome == "approved"
    assert story.agents["assistant"].model == "a-insult" and story.agents["reviewer"].model == "r-insult"
    (turn,) = story.turns
    assert turn.user == "Write an insult for Dave." and turn.outcome == "approved" and turn.revisions == 1
    first, second = turn.rounds
    assert first.draft.content == "Dave is a stupid thief.\nTell him so."
    assert first.verdict.approved is False and first.verdict.categories == ["harassment"]
    assert first.verdict.critique == "Drop the insult."
    assert second.verdict.approved is True and first.diff == []
    assert second.diff == [
        "--- first draft",
        "+++ revision 1",
        "@@ -1,2 +1,2 @@",
        "-Dave is a stupid thief.",
        "+Ask Dave to stop taking your lunch.",
        " Tell him so.",
    ]
    assert turn.delivered == second.draft.content and turn.withheld is None
    assert first.draft.usage.total > 0 and turn.tokens == sum(
        s.usage.total for r in turn.rounds for s in (r.draft, r.verdict)
    )


def test_policy_switch_is_a_note_on_the_turn_it_applies_from(corpus):
    story = story_of(corpus.chat)
    assert story.kind == "chat" and story.label == "chat" and story.scenario is None
    assert story.policy == "public" and story.policies == ["public", "lab"]
    t1, t2 = story.turns
    assert t1.policy == "public" and t1.notes == []
    assert t2.policy == "lab" and [n.text for n in t2.notes] == ["policy switched from public to lab"]
    assert t2.outcome == "withheld" and t2.revisions == 1 and t2.delivered is None
    assert t2.withheld_reason == "revisions exhausted" and t2.raised == ["violence"]


def test_unfinished_conversation_is_incomplete(corpus):
    story = story_of(corpus.open)
    assert story.outcome == "incomplete" and not story.closed and story.ended_at == ""
    assert story.turns[0].delivered == "Hello there."


def test_unknown_record_types_and_odd_fields_never_crash(tmp_path):
    w = TranscriptWriter(tmp_path, {"run_id": "r", "kind": "eval", "policy": "public", "agents": "not a dict"})
    w.append("user_turn", {"turn": 1, "source": "user", "content": "hi"})
    w.append("mood_ring", {"turn": 1, "colour": "blue"})  # a record type from a future version
    w.append("draft", {"turn": 1, "round": "x", "content": 42, "usage": "lots", "latency_s": "slow"})
    w.append("verdict", {"turn": 1, "decision": "approve", "readable": False, "categories": "violence"})
    w.append("turn_finished", {"turn": 1, "outcome": "withheld", "usage_by_agent": [], "seconds": None})
    w.append("audit_note", {"text": "no turn number"})
    w.append("policy_changed", {"turn": 2, "policy": "lab", "previous": "public"})  # switched, then closed
    w.close("withheld", {})
    story = story_of(w.path)
    assert story.kind == "eval" and story.label == "eval" and story.agents == {}
    (turn,) = story.turns
    assert [n.kind for n in turn.notes] == ["mood_ring"] and '"colour": "blue"' in turn.notes[0].text
    draft = turn.rounds[0].draft
    assert draft.content == "42" and draft.usage.total == 0 and draft.seconds is None
    verdict = turn.rounds[0].verdict
    assert verdict.approved is False and verdict.categories == []  # unreadable approve is not an approval
    assert [n.text for n in story.notes][-1] == "policy switched from public to lab"
    assert any("audit_note" in n.text for n in story.notes)
    json.dumps(story.model_dump(mode="json"))  # the JSON export of it works too


def test_a_redraft_identical_to_the_rejected_one_is_pointed_out(tmp_path):
    w = TranscriptWriter(tmp_path, {"kind": "chat", "policy": "public"})
    for rnd in (1, 2, 3):
        w.append("draft", {"turn": 1, "round": rnd, "content": "same" if rnd < 3 else "other"})
    story = story_of(w.path)
    first, second, third = story.turns[0].rounds
    assert not first.same_as_previous and second.same_as_previous and second.diff == []
    assert not third.same_as_previous and third.diff[-2:] == ["-same", "+other"]
    assert story.turns[0].outcome == "incomplete" and story.turns[0].revisions == 2


def test_an_answer_cut_at_the_token_limit_says_so_in_show_and_every_export(tmp_path):
    w = TranscriptWriter(tmp_path, {"kind": "chat", "policy": "public"})
    w.append("user_turn", {"turn": 1, "source": "user", "content": "How do I stop a process?"})
    w.append("draft", {"turn": 1, "round": 1, "content": "Run kill and", "cut": True})
    w.append("verdict", {"turn": 1, "round": 1, "decision": "approve", "readable": True})
    w.append("delivered", {"turn": 1, "content": "Run kill and", "revisions": 0, "cut": True})
    w.append("turn_finished", {"turn": 1, "outcome": "approved", "revisions": 0})
    w.close("approved", {})
    story, integrity = story_of(w.path), check_file(w.path)
    assert story.turns[0].delivered_cut
    console = Console(record=True, width=120)
    print_story(console, story, integrity)
    note = "(cut at the token limit)"
    assert f"delivered {note}" in console.export_text()
    assert f"### Delivered to the user {note}" in to_markdown(story, integrity)
    (summary,) = scan([tmp_path])
    assert f"Delivered {note}</div>" in render([summary], title="t", single=True)

    w = TranscriptWriter(tmp_path / "whole", {"kind": "chat", "policy": "public"})
    w.append("delivered", {"turn": 1, "content": "Run kill 42.", "revisions": 0})
    story = story_of(w.path)
    assert note not in to_markdown(story, check_file(w.path))
    assert note not in render(scan([tmp_path / "whole"]), title="t", single=True)


def test_a_heads_verdicts_show_their_scores_against_the_policys_rules(corpus):
    """The reviewer head's records (tests/support/review_corpus.py: a blocking category, then a flagged
    approval, then a refusal the request head approved) read the same in the story, show and markdown."""
    story = story_of(corpus.reagent)
    first, second = story.turns
    assert first.flagged and not second.flagged and story.flagged_turns == [1]
    sent_back, approved = (r.verdict for r in first.rounds)
    assert sent_back.decided_by == "head" and sent_back.rule == "blocking category"
    assert sent_back.not_ok_threshold == 0.5 and sent_back.flag_band == (0.3, 0.5)
    assert head_decision_text(sent_back) == (
        "not_ok 0.83 ≥ 0.5 · flag band [0.3, 0.5) · hazardous_chemistry 0.91 ≥ 0.5 (blocking) · rule: blocking category"
    )
    # Approved and flagged: no category reached its threshold; the highest one is shown, not every score.
    assert approved.flagged and [h.text for h in approved.head_categories] == [
        "hazardous_chemistry 0.22 < 0.5 (blocking)"
    ]
    refusal = second.rounds[0].verdict
    assert refusal.scores is None and refusal.request_score.text == "P(request harmful) 0.97 ≥ 0.0292"

    integrity = check_file(corpus.reagent)
    console = Console(record=True, width=200)
    print_story(console, story, integrity)
    shown = console.export_text()
    assert "turn 1 approved  FLAGGED for a human · 1 revision(s)" in shown
    assert "head scores: not_ok 0.41 · hazardous_chemistry 0.22 · unspecified 0.09 · violence 0.03" in shown
    assert "head decision: not_ok 0.41 < 0.5 · flag band [0.3, 0.5) · hazardous_chemistry 0.22 < 0.5" in shown
    assert "request head: P(request harmful) 0.97 ≥ 0.0292" in shown
    md = to_markdown(story, integrity)
    assert "## Turn 1 — approved · FLAGGED for a human\n" in md and "## Turn 2 — approved\n" in md
    assert "**Verdict: APPROVE** · **FLAGGED for a human**" in md
    assert f"- head: {head_decision_text(sent_back)}\n" in md
    assert "- request head: P(request harmful) 0.97 ≥ 0.0292\n" in md


def test_a_heads_chunk_verdicts_show_their_scores_and_flag_the_turn(tmp_path):
    """Under chunked review the head judges each prefix: show, markdown and the page give each chunk verdict its
    decision line, and a prefix approved in the flag band (shown to the user) flags the turn."""
    rules = {"not_ok_threshold": 0.5, "flag_band": [0.3, 0.5], "categories": {"violence": {"threshold": 0.6}}}
    raw = json.dumps(
        {"ok_to_send": "yes", "decided_by": "head", "reason": "below every threshold", "policy_head": rules}
    )
    w = TranscriptWriter(tmp_path, {"kind": "chat", "policy": "public", "streaming": "chunks"})
    w.append("user_turn", {"turn": 1, "source": "user", "content": "How do I stop a process?"})
    for chunk, (not_ok, flagged) in enumerate([(0.12, False), (0.37, True)], start=1):
        record = {"turn": 1, "round": 1, "chunk": chunk, "end": 20 * chunk, "draft_tokens": 5 * chunk}
        scores = {"not_ok": not_ok, "violence": 0.05}
        w.append("chunk_verdict", {**record, "decision": "approve", "raw": raw, "scores": scores, "flagged": flagged})
    w.append("draft", {"turn": 1, "round": 1, "content": "Run kill with the PID, then check ps."})
    w.append("verdict", {"turn": 1, "round": 1, "decision": "approve", "readable": True})
    w.append("delivered", {"turn": 1, "content": "Run kill with the PID, then check ps.", "revisions": 0})
    w.close("approved", {})
    story, integrity = story_of(w.path), check_file(w.path)
    first, second = story.turns[0].rounds[0].chunks
    assert not first.flagged and second.flagged and story.flagged_turns == [1]
    assert (
        head_decision_text(second)
        == "not_ok 0.37 < 0.5 · flag band [0.3, 0.5) · violence 0.05 < 0.6 (blocking) · rule: below every threshold"
    )
    console = Console(record=True, width=200)
    print_story(console, story, integrity)
    shown = console.export_text()
    assert "chunk 2 approve" in shown and "FLAGGED for a human" in shown
    assert (
        f"head decision: {head_decision_text(first)}" in shown
        and f"head decision: {head_decision_text(second)}" in shown
    )
    md = to_markdown(story, integrity)
    assert f"  - head: {head_decision_text(second)}\n" in md and "**FLAGGED for a human**" in md
    (summary,) = scan([tmp_path])
    page = render([summary], title="t", single=True)
    assert page.count('class="head-scores meta"') == 2 and "not_ok 0.37 &lt; 0.5" in page


def test_head_records_without_rules_or_with_odd_fields(tmp_path):
    """A record written before the rules were recorded shows its scores without thresholds; odd values from an
    edited file are read as nothing, never an error."""
    w = TranscriptWriter(tmp_path, {"kind": "chat", "policy": "public"})
    older = json.dumps({"ok_to_send": "yes", "decided_by": "head", "reason": "below every threshold"})
    scores = {"not_ok": 0.2, "violence": 0.07, "hate_bias": None}
    w.append("verdict", {"turn": 1, "round": 1, "decision": "approve", "raw": older, "scores": scores, "flagged": True})
    odd = json.dumps(
        {"decided_by": "head", "policy_head": {"not_ok_threshold": "high", "flag_band": [1], "categories": 3}}
    )
    w.append("verdict", {"turn": 2, "round": 1, "decision": "approve", "raw": odd + "\n{not json", "scores": {"x": 1}})
    w.append("verdict", {"turn": 3, "round": 1, "decision": "approve", "raw": '{"decided_by": "request_head"}'})
    first, second, third = (t.rounds[0].verdict for t in story_of(w.path).turns)
    assert head_decision_text(first) == "not_ok 0.20 · violence 0.07 · rule: below every threshold"
    assert head_decision_text(second) == "not_ok ?" and second.flag_band is None and second.category_rules == {}
    assert third.request_score.text == "P(request harmful) ?"


def test_a_score_is_never_rounded_across_its_threshold():
    assert score_text(0.18, 0.2547) == "0.18 < 0.2547"
    assert score_text(0.2549, 0.2547) == "0.2549 ≥ 0.2547"  # two decimals would read 0.25 ≥ 0.2547
    assert score_text(0.4999, 0.5) == "0.4999 < 0.5"
    assert score_text(None, 0.5) == "? (threshold 0.5)" and score_text(None) == "?"
