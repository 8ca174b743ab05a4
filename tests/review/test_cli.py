"""`run.py review ...` as an auditor runs it, on transcripts written by real conversations."""

import json

import pytest

from tests.support.projects import APPROVE, replay, run_cli


def review(*args, cwd=None):
    return run_cli("review", *args, cwd=cwd)


def one_line_error(proc, text):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_list_defaults_to_the_projects_transcripts_and_filters(corpus):
    proc = run_cli("--project", str(corpus.root), "review", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [c["label"] for c in out["conversations"]] == ["Scenario open", "chat", "Scenario insult", "Scenario coding"]
    assert out["unreadable"] == []
    proc = run_cli("--project", str(corpus.root), "review", "list", "--category", "violence", "--json")
    (chat,) = json.loads(proc.stdout)["conversations"]
    assert (chat["kind"], chat["turns"], chat["revisions"], chat["withheld"], chat["outcome"]) == (
        "chat",
        2,
        1,
        1,
        "withheld",
    )


def test_list_table_marks_tampered_and_reports_garbage(folder, corpus):
    edited = folder / corpus.chat.name
    edited.write_text(edited.read_text().replace("Tell me a story.", "Tell me a joke."))
    (folder / "notes.jsonl").write_text("not json at all\n")
    proc = review("list", "--dir", str(folder))
    assert proc.returncode == 0, proc.stderr
    chat_row = next(line for line in proc.stdout.splitlines() if corpus.chat.stem.split("-")[1][:8] in line)
    assert "TAMPERED" in chat_row and "withheld" not in chat_row  # the mark replaces the claimed outcome
    assert sum("TAMPERED" in line for line in proc.stdout.splitlines()) == 1
    assert f"unreadable {folder / 'notes.jsonl'}: not a Chaperone transcript" in proc.stdout
    assert "incomplete" in proc.stdout and "Scenario coding" in proc.stdout


def test_show_by_prefix_tells_the_story(corpus):
    prefix = corpus.chat.stem.split("-")[1][:6]
    proc = review("show", prefix, "--dir", str(corpus.folder))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in (
        "Tell me a story.",
        "policy switched from public to lab",
        "REVISE",
        "[violence]",
        "Harm to an animal.",
        "-Poison the dog with <script>alert(1)</script></details>",
        "+Mix it into meat.",
        "withheld",
        "revisions exhausted",
        "intact · hash chain and run manifest agree · 15 records",
        "public → lab",
        "revision 1",
        "tok · 0.0s",
    ):
        assert text in out, text
    hidden = review("show", prefix, "--dir", str(corpus.folder), "--hide-debate")
    assert "Harm to an animal." not in hidden.stdout and "Tell me a story." in hidden.stdout


def test_list_before_any_transcript_is_an_empty_list_not_an_error(project_factory, tmp_path):
    root = project_factory({"assistant-script": replay("a"), "reviewer-script": replay(APPROVE)})
    proc = run_cli("--project", str(root), "review", "list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"no transcripts yet in {tmp_path / 'transcripts'} (a scenario or a chat writes them)"
    proc = run_cli("--project", str(root), "review", "list", "--json")
    assert (proc.returncode, json.loads(proc.stdout)) == (0, {"conversations": [], "unreadable": []})


def test_show_unknown_and_ambiguous_ids_are_one_line_errors(corpus, tmp_path):
    one_line_error(review("show", "zzzz", "--dir", str(corpus.folder)), "no conversation with an id starting 'zzzz'")
    one_line_error(review("show", "", "--dir", str(corpus.folder)), "give a conversation id")
    one_line_error(review("list", "--dir", str(tmp_path / "nowhere")), "no such folder")
    one_line_error(
        review("list", "--dir", str(corpus.folder), "--since", "last week"), "--since: 'last week' is not a date"
    )
    one_line_error(review("stats", "--dir", str(corpus.folder), "--outcome", "fine"), "--outcome: 'fine' is not one of")
    one_line_error(
        review("export", "x", "--dir", str(corpus.folder), "--format", "pdf"), "--format: 'pdf' is not one of"
    )


def test_stats_json(corpus):
    proc = review("stats", "--dir", str(corpus.folder), "--json")
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["approved_first_draft"]["rate"] == 0.6 and st["revisions_per_turn"] == {"0": 3, "1": 2}
    assert st["withheld"]["rate"] == 0.2 and st["categories"]["violence"] == {"turns": 1, "verdicts": 2}
    table = review("stats", "--dir", str(corpus.folder), "--kind", "chat")
    assert "approved on first draft │ 50.0 %  (1)" in table.stdout and "0: 1  1: 1" in table.stdout


# ---- verify, on real files -------------------------------------------------------------------------


def lines_of(path):
    return path.read_text().splitlines(keepends=True)


def test_verify_all_intact_exit_0_and_incomplete_is_not_tampering(corpus):
    proc = review("verify", "--dir", str(corpus.folder))
    assert proc.returncode == 0, proc.stdout
    assert f"incomplete {corpus.open}" in proc.stdout and "TAMPERED" not in proc.stdout
    assert "4 transcript(s): 3 intact, 1 incomplete" in proc.stdout
    strict = review("verify", "--dir", str(corpus.folder), "--strict")
    assert strict.returncode == 1
    assert review("verify", str(corpus.coding), str(corpus.insult)).returncode == 0


def mutate_insert(lines, other):
    return [*lines[:3], lines[2], *lines[3:]]


def mutate_swap(lines, other):
    return [*lines[:2], lines[3], lines[2], *lines[4:]]


def mutate_copy(lines, other):
    return [*lines[:2], other[2], *lines[3:]]  # same seq, same type, from another transcript


@pytest.mark.parametrize(
    "name, mutate, line, problem",
    [
        ("edited", lambda ls, o: [*ls[:3], ls[3].replace("Drop the insult.", "Fine."), *ls[4:]], 4, "record edited"),
        ("deleted", lambda ls, o: ls[:2] + ls[3:], 3, "record deleted, inserted or moved"),
        ("inserted", mutate_insert, 4, "record deleted, inserted or moved"),
        ("swapped", mutate_swap, 3, "record deleted, inserted or moved"),
        ("copied from another transcript", mutate_copy, 3, "prev does not match the previous record's hash"),
    ],
)
def test_verify_names_the_file_and_first_bad_line(folder, corpus, name, mutate, line, problem):
    target = folder / corpus.insult.name
    target.write_text("".join(mutate(lines_of(target), lines_of(folder / corpus.coding.name))))
    proc = review("verify", "--dir", str(folder))
    assert proc.returncode == 1, name
    bad = [ln for ln in proc.stdout.splitlines() if ln.startswith("TAMPERED")]
    assert len(bad) == 1 and f"{target}: line {line}:" in bad[0] and problem in bad[0], proc.stdout
    as_json = json.loads(review("verify", str(target), "--json").stdout)
    assert as_json["ok"] is False and as_json["files"][0]["first_bad_line"] == line


def test_verify_truncation(folder, corpus):
    # An unfinished conversation whose last line was cut off mid-write (a crash): incomplete, not tampered.
    target = folder / corpus.open.name
    text = target.read_text()
    target.write_text(text[: len(text) - 40])
    proc = review("verify", str(target))
    assert proc.returncode == 0 and "incomplete" in proc.stdout and "cut off mid-write" in proc.stdout
    assert review("verify", str(target), "--strict").returncode == 1
    # A closed conversation is listed in its run manifest: a tail cut off (mid-record or at a record boundary)
    # is tampering, whether the file is checked alone or with its folder (tests/review/test_integrity.py).
    closed = folder / corpus.insult.name
    text = closed.read_text()
    closed.write_text(text[: len(text) - 40])
    proc = review("verify", str(closed))
    assert proc.returncode == 1 and proc.stdout.startswith("TAMPERED") and "cut short" in proc.stdout


def test_verify_names_unreadable_files(folder):
    (folder / "notes.jsonl").write_text("not json\n")
    proc = review("verify", "--dir", str(folder))
    assert proc.returncode == 1
    assert f"UNREADABLE {folder / 'notes.jsonl'}: not a Chaperone transcript" in proc.stdout
    one_line_error(review("verify", str(folder / "missing.jsonl")), "missing.jsonl: no such file or folder")


# ---- export ----------------------------------------------------------------------------------------


def test_export_md_json_html(corpus, tmp_path):
    prefix = corpus.insult.stem.split("-")[1][:8]
    for fmt in ("md", "json", "html"):
        proc = review("export", prefix, "--dir", str(corpus.folder), "--format", fmt, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    (md,) = tmp_path.glob("conversation-*.md")
    text = md.read_text()
    assert md.name == f"conversation-{corpus.insult.stem.split('-')[1]}.md"
    for part in (
        "**Integrity: intact · hash chain and run manifest agree · 9 records**",
        "## Turn 1 — approved",
        "**Verdict: REVISE** · categories: harassment",
        "-Dave is a stupid thief.",
        "+Ask Dave to stop taking your lunch.",
        "### Delivered to the user",
    ):
        assert part in text, part
    data = json.loads(next(tmp_path.glob("conversation-*.json")).read_text())
    assert data["verification"]["status"] == "intact" and data["story"]["turns"][0]["revisions"] == 1
    assert data["story"]["turns"][0]["rounds"][1]["diff"][3] == "-Dave is a stupid thief."
    page = next(tmp_path.glob("conversation-*.html")).read_text()
    assert "intact · hash chain and run manifest agree · 9 records" in page
    stdout = review("export", prefix, "--dir", str(corpus.folder), "--format", "json", "-o", "-")
    assert json.loads(stdout.stdout)["story"]["conversation_id"].startswith(prefix)


def test_exports_and_pages_are_owner_only_like_the_transcripts(corpus, tmp_path):
    import os
    import stat

    prefix = corpus.insult.stem.split("-")[1][:8]
    stale = tmp_path / "old.md"
    stale.write_text("an earlier export\n")
    os.chmod(stale, 0o644)
    old = os.umask(0o022)  # the usual umask: without care, the files would be world-readable
    try:
        for fmt in ("md", "json", "html"):
            assert review("export", prefix, "--dir", str(corpus.folder), "--format", fmt, cwd=tmp_path).returncode == 0
        assert review("export", prefix, "--dir", str(corpus.folder), "-o", str(stale)).returncode == 0
        assert review("html", "--dir", str(corpus.folder), cwd=tmp_path).returncode == 0
    finally:
        os.umask(old)
    written = [*tmp_path.glob("conversation-*"), stale, tmp_path / "review.html"]
    assert len(written) == 5
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: 0o600 for p in written}
    assert "## Turn 1" in stale.read_text()  # overwritten, not only re-moded


def test_markdown_fences_cannot_be_closed_by_model_text(tmp_path):
    from chaperone.review.export import _fence

    assert _fence("a ``` b") == "````text\na ``` b\n````"


def test_show_prints_terminal_escapes_from_a_transcript_as_visible_text(tmp_path):
    from chaperone.audit.transcript import TranscriptWriter

    folder = tmp_path / "t"
    writer = TranscriptWriter(folder, {"kind": "chat", "policy": "public\x1b[31m"})
    writer.append("user_turn", {"turn": 1, "source": "user_proxy", "content": "hi\x1b]0;owned\x07"})
    writer.append(
        "draft",
        {
            "turn": 1,
            "source": "assistant",
            "round": 1,
            "content": "x\x1b[2Jy",
            "model": "m\x9b",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "latency_s": 0.1,
        },
    )
    writer.append(
        "verdict",
        {
            "turn": 1,
            "source": "reviewer",
            "round": 1,
            "decision": "revise",
            "categories": ["vio\x1blence"],
            "critique": "no\x1b[8m",
            "readable": True,
            "raw": "",
            "model": "m",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "latency_s": 0.1,
        },
    )
    writer.close("withheld", {})
    for args in (("show", writer.conversation_id[:8], "--dir", str(folder)), ("list", "--dir", str(folder))):
        proc = review(*args)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\x9b" not in proc.stdout
    assert "\\x1b[2J" in review("show", writer.conversation_id[:8], "--dir", str(folder)).stdout


def test_run_manifest_catches_a_deleted_transcript_and_a_clean_cut(tmp_path):
    """Deleting a whole conversation, or cutting one at a record boundary, leaves every hash chain intact:
    only the run's manifest (written as each conversation closes) can tell."""
    import asyncio

    from chaperone.config.project import load_project
    from chaperone.engine.choice import SessionChoice
    from chaperone.engine.conversation import Conversation
    from chaperone.models.pool import ModelPool
    from tests.support.projects import APPROVE, make_project, replay

    root = make_project(tmp_path, {"assistant-script": replay("a", "b"), "reviewer-script": replay(APPROVE, APPROVE)})
    project = load_project(root)

    async def one():
        conv = Conversation(
            project, ModelPool(project.models, root / "config/models.yaml"), SessionChoice(), kind="test", run_id="run1"
        )
        await conv.send("hi")
        await conv.send("again")
        conv.close()
        return conv.transcript_path

    first, second, third = (asyncio.run(one()) for _ in range(3))
    folder = str(tmp_path / "transcripts")
    assert review("verify", "--dir", folder).returncode == 0
    second.unlink()
    lines = third.read_text().splitlines(keepends=True)
    third.write_text("".join(lines[:-3]))  # whole records removed: the chain that is left still verifies
    proc = review("verify", "--dir", folder)
    assert proc.returncode == 1
    assert f"DELETED {second}: run manifest run1.jsonl lists it with" in proc.stdout
    assert (
        f"TAMPERED   {third}: cut short: {len(lines) - 3} records, run manifest run1.jsonl says {len(lines)}"
        in proc.stdout
    )
    first_line = next(line for line in proc.stdout.splitlines() if str(first) in line)
    assert first_line.startswith("intact ")


def test_run_manifest_is_append_only_and_survives_a_torn_last_line(tmp_path):
    from chaperone.audit import manifest
    from chaperone.audit.integrity import folder_problems

    folder = tmp_path / "t"
    folder.mkdir()
    for i in range(3):
        manifest.record(folder, "run-a", folder / f"c{i}.jsonl", 5 + i, f"h{i}", "approved")
    path = manifest.manifest_path(folder, "run-a")
    assert len(path.read_text().splitlines()) == 3  # one line per close, nothing rewritten
    with open(path, "a") as fh:
        fh.write('{"transcript": "c3.jsonl", "rec')  # a crash mid-append
    assert sorted(manifest.entries(path)) == ["c0.jsonl", "c1.jsonl", "c2.jsonl"]
    path.write_text("garbage\n" + path.read_text())  # damage before the end is not a crash: reported
    problems = [p.text() for p in folder_problems(folder) if p.kind == "manifest"]
    assert problems == [
        f"MANIFEST {path}: line 1 is not a manifest entry",
        f"MANIFEST {path}: line 2: prev does not match the line before it (a line removed, inserted or changed)",
    ]


def test_appending_after_a_torn_manifest_line_keeps_the_chain(tmp_path):
    """A crash mid-append leaves a torn line; the next close ends it and chains to it, so the torn line is the
    one problem reported (its conversation is unlisted) and every later line still reads and chains."""
    from chaperone.audit import manifest

    folder = tmp_path / "t"
    folder.mkdir()
    manifest.record(folder, "run-a", folder / "c0.jsonl", 5, "h0", "approved")
    path = manifest.manifest_path(folder, "run-a")
    with open(path, "a") as fh:
        fh.write('{"transcript": "c1.jsonl", "rec')  # a crash mid-append
    manifest.record(folder, "run-a", folder / "c2.jsonl", 7, "h2", "approved")
    manifest.record(folder, "run-a", folder / "c3.jsonl", 8, "h3", "approved")
    reading = manifest.read(path)
    assert [line.entry["transcript"] for line in reading.lines] == ["c0.jsonl", "c2.jsonl", "c3.jsonl"]
    assert reading.problems == ["line 2 is not a manifest entry"]


def test_older_whole_object_manifests_are_still_checked(tmp_path):
    from chaperone.audit.integrity import folder_problems

    folder = tmp_path / "t"
    (folder / "manifests").mkdir(parents=True)
    (folder / "manifests" / "old.json").write_text(
        json.dumps(
            {"run_id": "old", "transcripts": {"gone.jsonl": {"records": 4, "last_hash": "x", "outcome": "approved"}}}
        )
    )
    [problem] = folder_problems(folder)
    assert problem.text() == f"DELETED {folder / 'gone.jsonl'}: run manifest old.json lists it with 4 records"
