"""The transcripts folder as conversations: summaries, unreadable files, tampering, filters, id prefixes."""

from datetime import UTC, datetime, timedelta

import pytest

from chaperone.audit.transcript import TranscriptWriter
from chaperone.review.index import ReviewError, make_filters, parse_when, resolve, scan


def rows(summaries):
    return {s.story.label + ("/open" if not s.story.closed else ""): s.row() for s in summaries}


def test_one_summary_per_conversation_newest_first(corpus):
    summaries = scan([corpus.folder])
    assert [s.path for s in summaries] == [corpus.open, corpus.chat, corpus.insult, corpus.coding]
    r = rows(summaries)
    assert (r["Scenario insult"]["turns"], r["Scenario insult"]["revisions"], r["Scenario insult"]["withheld"]) == (
        1,
        1,
        0,
    )
    assert r["Scenario insult"]["categories"] == ["harassment"] and r["Scenario insult"]["outcome"] == "approved"
    chat = r["chat"]
    assert (chat["turns"], chat["revisions"], chat["withheld"], chat["outcome"]) == (2, 1, 1, "withheld")
    assert chat["policies"] == ["public", "lab"] and chat["models"] == {"assistant": "a-chat", "reviewer": "r-chat"}
    assert (
        r["Scenario open/open"]["outcome"] == "incomplete"
        and r["Scenario open/open"]["integrity"]["status"] == "incomplete"
    )
    assert all(row["integrity"]["status"] == "intact" for key, row in r.items() if not key.endswith("/open"))


def test_garbage_files_are_unreadable_not_errors(folder):
    (folder / "notes.jsonl").write_text("this is not json\n")
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    (folder / "other.jsonl").write_text('{"event": "something else"}\n')
    summaries = scan([folder])
    bad = {s.path.name: s.problem for s in summaries if not s.readable}
    assert set(bad) == {"notes.jsonl", "empty.jsonl", "binary.jsonl", "other.jsonl"}
    assert bad["empty.jsonl"] == "empty file" and "not a Chaperone transcript" in bad["other.jsonl"]
    assert sum(s.readable for s in summaries) == 4 and not any(s.readable for s in summaries[4:])


def test_a_tampered_transcript_is_still_listed_and_marked(folder, corpus):
    path = folder / corpus.insult.name
    path.write_text(path.read_text().replace("Drop the insult.", "Looks fine."))
    (s,) = [s for s in scan([folder]) if s.path == path]
    assert s.readable and s.tampered and s.chain == "tampered" and s.row()["integrity"]["first_bad_line"] == 4
    assert s.story.turns[0].rounds[0].verdict.critique == "Looks fine."  # shown as it now reads


def test_filters(corpus):
    summaries = scan([corpus.folder])

    def labels(**kw):
        return [s.story.label for s in make_filters(**kw).apply(summaries)]

    assert labels(kind="chat") == ["chat"]
    assert labels(scenario="INSULT") == ["Scenario insult"]
    assert labels(scenario="scenarios/coding.yaml") == ["Scenario coding"]
    assert labels(policy="lab") == ["chat"]  # switched to it mid-conversation
    assert len(labels(policy="public")) == 4
    assert labels(model="r-insult") == labels(model="a-insult") == ["Scenario insult"]
    assert labels(outcome="withheld") == ["chat"] and labels(outcome="incomplete") == ["Scenario open"]
    assert labels(category="violence") == ["chat"] and labels(category="harassment") == ["Scenario insult"]
    assert labels(limit=2) == ["Scenario open", "chat"]
    today = datetime.now().astimezone().strftime("%Y-%m-%d")
    assert len(labels(since=today, until=today)) == 4
    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).strftime("%Y-%m-%d")
    assert labels(since=tomorrow) == []
    middle = next(s for s in summaries if s.story.label == "Scenario insult").started
    assert labels(until=middle.isoformat()) == ["Scenario coding"]
    assert labels(since=middle.isoformat()) == ["Scenario open", "chat", "Scenario insult"]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"since": "yesterday"}, "--since: 'yesterday' is not a date"),
        ({"until": "2026-13-01"}, "--until: '2026-13-01' is not a date"),
        (
            {"outcome": "great"},
            "--outcome: 'great' is not one of approved, withheld, error, interrupted, unreviewed, incomplete",
        ),
        ({"limit": 0}, "--limit: must be at least 1"),
    ],
)
def test_bad_filter_values_are_clear_errors(kw, message):
    with pytest.raises(ReviewError, match=message):
        make_filters(**kw)


def test_dates_are_local_days_and_timestamps_keep_their_zone():
    start = parse_when("2026-11-26", "--since")
    end = parse_when("2026-11-26", "--until", end_of_day=True)
    assert end - start == timedelta(days=1) and start.tzinfo is not None
    assert parse_when("2026-11-26T10:00:00Z", "--since") == datetime(2026, 11, 26, 10, tzinfo=UTC)


def test_id_prefix_resolution(tmp_path):
    for cid in ("abc1230000", "abc4560000", "def7890000"):
        w = TranscriptWriter(tmp_path, {"conversation_id": cid, "kind": "chat"})
        w.close("approved", {})
    summaries = scan([tmp_path])
    assert resolve(summaries, "def").story.conversation_id == "def7890000"
    assert resolve(summaries, "ABC1").story.conversation_id == "abc1230000"
    with pytest.raises(ReviewError, match=r"id prefix 'abc' is ambiguous: 2 conversations match \(") as err:
        resolve(summaries, "abc")
    assert "abc1230000" in str(err.value) and "abc4560000" in str(err.value)
    with pytest.raises(ReviewError, match="no conversation with an id starting 'zzz' \\(3 transcripts searched\\)"):
        resolve(summaries, "zzz")
    path = summaries[0].path
    assert resolve([], str(path)).path == path  # a file path works too
