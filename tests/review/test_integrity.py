"""One truth about integrity (issue 13, finding 3): every view gives a transcript the same status, computed
from its own chain, its folder's run manifests and the other files of its folder (chaperone/audit/integrity.py)."""

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from chaperone.review.cli import review
from chaperone.review.index import scan
from chaperone.review.stats import compute


def run(*args):
    return CliRunner().invoke(review, list(args), obj={})


def lines_of(path):
    return path.read_text().splitlines(keepends=True)


def statuses(folder, path):
    """The status each view gives one file: list --json, show, export json, export html, verify --json."""
    listed = json.loads(run("list", "--dir", str(folder), "--json").output)
    (row,) = [r for r in listed["conversations"] if r["path"] == str(path)]
    shown = run("show", str(path)).output
    badge = re.search(r"integrity\s+(\w+)", shown).group(1).lower()
    exported = json.loads(run("export", str(path), "--format", "json", "-o", "-").output)
    page = run("export", str(path), "--format", "html", "-o", "-").output
    (chip,) = set(re.findall(r'data-chain="(\w+)"', page))
    verified = run("verify", str(path), "--json")
    (file,) = json.loads(verified.output)["files"]
    return {
        "list": row["status"],
        "list-integrity": row["integrity"]["status"],
        "show": badge,
        "export json": exported["verification"]["status"],
        "html": chip,
        "verify": file["status"],
    }, verified.exit_code


def cut_records(folder, corpus):
    target = folder / corpus.insult.name
    target.write_text("".join(lines_of(target)[:-2]))  # whole records cut from the end, at a record boundary
    return target


def edit_record(folder, corpus):
    target = folder / corpus.insult.name
    target.write_text(target.read_text().replace("Drop the insult.", "Fine."))
    return target


def delete_manifests(folder, corpus):
    shutil.rmtree(folder / "manifests")
    (folder / corpus.chat.name).unlink()  # ... together with a transcript: nothing lists it any more
    return folder / corpus.coding.name


def copy_transcript(folder, corpus):
    copy = folder / ("20990101T000000Z-" + corpus.coding.name.split("-", 1)[1])
    shutil.copy(folder / corpus.coding.name, copy)
    return copy


def original_of_a_copy(folder, corpus):
    copy_transcript(folder, corpus)
    return folder / corpus.coding.name


def unfinished(folder, corpus):
    return folder / corpus.open.name


def untouched(folder, corpus):
    return folder / corpus.insult.name


@pytest.mark.parametrize(
    "change, status, code",
    [
        (untouched, "intact", 0),
        (unfinished, "incomplete", 0),
        (cut_records, "tampered", 1),
        (edit_record, "tampered", 1),
        (delete_manifests, "unlisted", 1),
        (copy_transcript, "duplicate", 1),
        (original_of_a_copy, "intact", 0),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_every_view_says_the_same_word(folder, corpus, change, status, code):
    path = change(folder, corpus)
    seen, exit_code = statuses(folder, path)
    assert set(seen.values()) == {status}, seen
    assert exit_code == code


def test_records_cut_at_a_record_boundary_are_tampered_alone_and_with_the_folder(folder, corpus):
    target = cut_records(folder, corpus)
    alone = run("verify", str(target))
    assert alone.exit_code == 1
    assert alone.output.startswith(f"TAMPERED   {target}: cut short: 7 records, run manifest ")
    with_folder = run("verify", "--dir", str(folder))
    assert with_folder.exit_code == 1 and f"TAMPERED   {target}: cut short" in with_folder.output
    row = next(line for line in run("list", "--dir", str(folder)).output.splitlines() if "Scenario insult" in line)
    assert "TAMPERED" in row and "approved" not in row  # a file that cannot vouch for itself: no outcome shown


def test_deleting_the_manifests_with_a_transcript_is_reported(folder, corpus):
    delete_manifests(folder, corpus)
    proc = run("verify", "--dir", str(folder), "--json")
    assert proc.exit_code == 1
    out = json.loads(proc.output)
    by_name = {f["path"].rsplit("/", 1)[1]: f for f in out["files"]}
    assert by_name[corpus.coding.name]["status"] == "unlisted"
    assert (
        "run manifest" in by_name[corpus.coding.name]["problem"]
        and "is missing" in by_name[corpus.coding.name]["problem"]
    )
    assert by_name[corpus.open.name]["status"] == "incomplete"  # unfinished: never in a manifest
    assert out["counts"]["unlisted"] == 2 and out["ok"] is False
    text = run("verify", "--dir", str(folder)).output
    assert f"UNLISTED   {folder / corpus.coding.name}: closed, but its run manifest" in text


def test_a_transcript_deleted_from_a_listed_run_is_reported_at_folder_level(folder, corpus):
    (folder / corpus.chat.name).unlink()
    proc = run("verify", "--dir", str(folder), "--json")
    assert proc.exit_code == 1
    (problem,) = json.loads(proc.output)["folder_problems"]
    assert problem["kind"] == "deleted" and problem["path"] == str(folder / corpus.chat.name)
    # Checking one remaining file says nothing of the folder's deleted ones: that file is intact.
    assert run("verify", str(folder / corpus.coding.name)).exit_code == 0


def test_a_duplicated_transcript_fails_verify_and_is_counted_once(folder, corpus):
    copy = copy_transcript(folder, corpus)
    proc = run("verify", "--dir", str(folder))
    assert proc.exit_code == 1
    assert f"DUPLICATE  {copy}: a copy of {corpus.coding.name} (same conversation id)" in proc.output
    st = compute(scan([folder]))
    assert st["conversations"] == 4 and st["duplicates"] == [str(copy)]
    assert st["status"]["duplicate"] == 1
    shown = run("stats", "--dir", str(folder)).output
    assert "4 (1 DUPLICATE file(s) not counted again)" in shown


def test_copies_nothing_lists_are_all_duplicates(folder, corpus):
    """Without a manifest entry, nothing tells which copy came first: every copy is a duplicate."""
    shutil.rmtree(folder / "manifests")
    copy = copy_transcript(folder, corpus)
    files = {f["path"]: f["status"] for f in json.loads(run("verify", "--dir", str(folder), "--json").output)["files"]}
    assert files[str(copy)] == files[str(folder / corpus.coding.name)] == "duplicate"
    assert compute(scan([folder]))["conversations"] == 4


def test_the_docs_state_the_statuses_and_exit_codes_the_code_uses():
    """docs/review.md's "What verify says" table and its verify command line tell what integrity.py does."""
    from chaperone.audit.integrity import PASSING, STATUSES
    from tests.support.projects import REPO

    text = (REPO / "docs" / "review.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| .* \| ([^|]+) \|$", text, re.M))
    assert set(table) == set(STATUSES)
    assert {s for s, code in table.items() if code.strip().startswith("0")} == set(PASSING)
    (command,) = [line for line in text.splitlines() if re.search(r"run\.py review verify +#", line)]
    assert all(status in command.split("#", 1)[1] for status in PASSING), command
