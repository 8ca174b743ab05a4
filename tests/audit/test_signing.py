"""Signed run manifests (issue 13, finding 4): someone who can write the transcripts folder can rewrite a
conversation and recompute every hash and the manifest, and an unkeyed check calls it intact; with the
deployment's public key, the forgery fails."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest
import yaml
from click.testing import CliRunner

from chaperone.audit import manifest, signing
from chaperone.audit.transcript import GENESIS, canonical, record_hash
from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation
from chaperone.errors import ConfigError
from chaperone.models.pool import ModelPool
from chaperone.review.cli import review
from chaperone.startup import ready_pool
from tests.support.projects import APPROVE, make_project, replay, run_cli

QUESTION = "What is the weather like in Lisbon?"
FORGED = "Help me write a threatening letter."


def run(*args):
    return CliRunner().invoke(review, list(args), obj={})


def keypair(where):
    private, public, kid = signing.generate(where)
    return private, public, kid


def converse(root, n=2, run_id="run1"):
    """n closed conversations of one run, written the real way (Conversation signs at close)."""
    project = load_project(root)

    async def one():
        conv = Conversation(
            project, ModelPool(project.models, root / "config/models.yaml"), SessionChoice(), kind="test", run_id=run_id
        )
        await conv.send(QUESTION)
        conv.close()
        return conv.transcript_path

    return [asyncio.run(one()) for _ in range(n)]


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    """A project whose run manifests are signed, two conversations, and the key pair (kept outside)."""
    private, public, kid = keypair(tmp_path / "keys")
    monkeypatch.setenv(signing.ENV_SIGNING_KEY, str(private))
    root = make_project(tmp_path, {"assistant-script": replay("Sunny, 24 °C."), "reviewer-script": replay(APPROVE)})
    paths = converse(root)
    monkeypatch.delenv(signing.ENV_SIGNING_KEY)
    return tmp_path / "transcripts", paths, public, kid, private


def forge_transcript(path, old, new):
    """Rewrite a user turn and recompute every record's prev and hash: the chain holds again."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert any(old in json.dumps(r) for r in records)
    prev = GENESIS
    out = []
    for r in records:
        r = json.loads(json.dumps(r).replace(old, new))
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
        out.append(r)
    path.write_text("".join(canonical(r) + "\n" for r in out))
    return len(out), prev


def forge_manifest(folder, name, last_hash, *, strip=False, resign=None):
    """Update the transcript's manifest line and recompute the prev of every line after it."""
    (path,) = (folder / "manifests").glob("*.jsonl")
    lines = path.read_bytes().splitlines()
    prev = manifest.GENESIS
    out = []
    for raw in lines:
        entry = json.loads(raw)
        if entry["transcript"] == name:
            entry["last_hash"] = last_hash
        entry["prev"] = prev
        if strip or resign:
            entry = {k: v for k, v in entry.items() if k not in ("sig", "key_id", "signed_at")}
        if resign:
            entry = resign.sign(entry)
        raw = json.dumps(entry, sort_keys=True, ensure_ascii=False).encode()
        out.append(raw)
        prev = manifest.line_hash(raw)
    path.write_bytes(b"".join(r + b"\n" for r in out))


def status_of(proc, path):
    (file,) = [f for f in json.loads(proc.output)["files"] if f["path"] == str(path)]
    return file


def test_signed_lines_carry_the_key_id_the_prev_hash_and_a_signature(deployment):
    folder, _paths, public, kid, _ = deployment
    (path,) = (folder / "manifests").glob("*.jsonl")
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["prev"] == manifest.GENESIS and second["prev"] == manifest.line_hash(path.read_bytes().split(b"\n")[0])
    assert first["key_id"] == second["key_id"] == kid and len(kid) == 16
    assert first["conversation_id"] and first["signed_at"].endswith("Z") and first["sig"]
    proc = run("verify", "--dir", str(folder), "--public-key", str(public), "--json")
    assert proc.exit_code == 0, proc.output
    out = json.loads(proc.output)
    assert out["keyed"] is True and out["keys"] == [kid] and out["note"] == ""
    assert {f["status"] for f in out["files"]} == {"intact"} and {f["signed_by"] for f in out["files"]} == {kid}
    text = run("verify", "--dir", str(folder), "--public-key", str(public)).output
    assert f"signatures checked with key {kid}" in text and "unkeyed" not in text


def test_the_forgery_verifies_clean_without_a_key_and_fails_with_it(deployment):
    folder, (target, _other), public, _kid, _ = deployment
    _records, last = forge_transcript(target, QUESTION, FORGED)
    forge_manifest(folder, target.name, last)
    unkeyed = run("verify", "--dir", str(folder), "--json")
    assert unkeyed.exit_code == 0, unkeyed.output  # what an unkeyed trail cannot show, and says so
    assert json.loads(unkeyed.output)["keyed"] is False
    assert json.loads(unkeyed.output)["note"] == signing.UNKEYED_NOTE
    assert signing.UNKEYED_NOTE in run("verify", "--dir", str(folder)).output
    keyed = run("verify", "--dir", str(folder), "--public-key", str(public), "--json")
    assert keyed.exit_code == 1
    forged = status_of(keyed, target)
    assert forged["status"] == "tampered" and "does not verify" in forged["problem"]
    # Every view says so, as verify does, with the key from the environment.
    os.environ[signing.ENV_PUBLIC_KEY] = str(public)
    try:
        listed = json.loads(run("list", "--dir", str(folder), "--json").output)
        (row,) = [r for r in listed["conversations"] if r["path"] == str(target)]
        assert row["status"] == "tampered"
        assert run("verify", str(target)).exit_code == 1
    finally:
        del os.environ[signing.ENV_PUBLIC_KEY]


def test_the_forgery_with_its_signature_stripped_is_unsigned(deployment):
    folder, (target, other), public, _, _ = deployment
    _, last = forge_transcript(target, QUESTION, FORGED)
    forge_manifest(folder, target.name, last, strip=True)
    proc = run("verify", "--dir", str(folder), "--public-key", str(public), "--json")
    assert proc.exit_code == 1
    assert status_of(proc, target)["status"] == "unsigned"
    assert "not signed" in status_of(proc, target)["problem"]
    assert status_of(proc, other)["status"] == "unsigned"  # stripped too, to hide the recomputed prev


def test_a_second_key_pairs_signature_fails(deployment, tmp_path):
    folder, (target, other), public, kid, _ = deployment
    theirs, _, their_kid = keypair(tmp_path / "attacker")
    signer = signing.load_signer(theirs, folder, "test")
    _, last = forge_transcript(target, QUESTION, FORGED)
    forge_manifest(folder, target.name, last, resign=signer)
    assert run("verify", "--dir", str(folder)).exit_code == 0  # consistent, signed: but by whom?
    proc = run("verify", "--dir", str(folder), "--public-key", str(public), "--json")
    assert proc.exit_code == 1
    for path in (target, other):
        file = status_of(proc, path)
        assert file["status"] == "tampered"
        assert f"signed by key {their_kid}, not by the given key {kid}" in file["problem"]


def test_unsigned_entries_fail_when_a_key_is_required(tmp_path):
    _, public, _ = keypair(tmp_path / "keys")
    root = make_project(tmp_path, {"assistant-script": replay("Sunny."), "reviewer-script": replay(APPROVE)})
    (path,) = converse(root, n=1)
    folder = tmp_path / "transcripts"
    assert run("verify", "--dir", str(folder)).exit_code == 0
    proc = run("verify", str(path), "--public-key", str(public), "--json")
    assert proc.exit_code == 1 and status_of(proc, path)["status"] == "unsigned"


def test_a_line_dropped_from_the_middle_of_a_manifest_shows(deployment):
    folder, (first, _second), _, _, _ = deployment
    (path,) = (folder / "manifests").glob("*.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[1])  # the first conversation's line removed, its transcript deleted
    first.unlink()
    proc = run("verify", "--dir", str(folder), "--json")
    assert proc.exit_code == 1
    (problem,) = json.loads(proc.output)["folder_problems"]
    assert problem["kind"] == "manifest" and "line 1: prev does not match" in problem["problem"]


def test_keygen_writes_an_owner_only_private_key_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "keys"
    proc = run("keygen", "--out", str(out))
    assert proc.exit_code == 0, proc.output
    private, public = out / signing.PRIVATE_NAME, out / signing.PUBLIC_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert "PRIVATE KEY" not in proc.output and private.read_text().splitlines()[1] not in proc.output
    assert f"key id {signing.key_id(signing.load_public_key(public))}" in proc.output
    again = run_cli("review", "keygen", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_a_signing_key_in_the_transcripts_folder_or_readable_by_others_is_refused(tmp_path, monkeypatch):
    root = make_project(tmp_path, {"assistant-script": replay("Sunny."), "reviewer-script": replay(APPROVE)})
    inside = tmp_path / "transcripts" / "keys"
    private, _, _ = keypair(inside)
    secret = private.read_text()
    monkeypatch.setenv(signing.ENV_SIGNING_KEY, str(private))
    with pytest.raises(ConfigError, match="refusing a signing key inside the transcripts folder"):
        ready_pool(load_project(root), [])
    (root / "scenarios" / "s.yaml").write_text(yaml.safe_dump({"name": "s", "turns": [{"user": "Hello?"}]}))
    proc = run_cli("--project", str(root), "scenario", str(root / "scenarios"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing a signing key inside the transcripts folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert secret.splitlines()[1] not in proc.stderr + proc.stdout
    assert not list((tmp_path / "transcripts").glob("*.jsonl"))  # refused before any conversation started

    loose, _, _ = keypair(tmp_path / "loose")
    loose.chmod(0o640)
    monkeypatch.setenv(signing.ENV_SIGNING_KEY, str(loose))
    with pytest.raises(ConfigError, match=r"readable by group or others \(mode 0640\)"):
        ready_pool(load_project(root), [])
    loose.write_text("not a key\n")
    loose.chmod(0o600)
    with pytest.raises(ConfigError, match="not an unencrypted Ed25519 private key"):
        ready_pool(load_project(root), [])


def test_the_signing_key_from_settings_and_key_material_never_leaks(tmp_path):
    private, public, kid = keypair(tmp_path / "keys")
    root = make_project(
        tmp_path,
        {"assistant-script": replay("Sunny."), "reviewer-script": replay(APPROVE)},
        settings={"audit": {"signing_key": str(private), "public_key": str(public)}},
    )
    (_path,) = converse(root, n=1)
    proc = run_cli("--project", str(root), "review", "verify", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["keys"] == [kid]  # the public key from settings
    secret_lines = private.read_text().splitlines()[1:-1]
    written = [p.read_text() for p in (tmp_path / "transcripts").rglob("*.jsonl")]
    written += [p.read_text() for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    assert secret_lines and not any(s in text for s in secret_lines for text in [*written, proc.stdout, proc.stderr])


def test_the_audit_settings_are_validated(tmp_path):
    root = make_project(
        tmp_path,
        {"assistant-script": replay("Sunny."), "reviewer-script": replay(APPROVE)},
        settings={"audit": {"signing_key": "", "public_keys": "x"}},
    )
    with pytest.raises(ConfigError) as err:
        load_project(root)
    assert "audit" in str(err.value)
