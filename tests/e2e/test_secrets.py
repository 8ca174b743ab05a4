"""An API key never reaches a transcript, a log, a manifest, an eval file, a report, an error message or
--json output — even when the endpoint echoes it back in an error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.support.fake_openai_server import FakeOpenAI
from tests.support.projects import REPO

SECRET = "sk-live-0123456789abcdefSECRETKEY"


def responder(body: dict) -> str:
    request = next(m["content"] for m in body["messages"] if m["role"] == "user")
    if "fail" in request:
        # Some endpoints quote the key they were given in their error text.
        raise RuntimeError(f"Incorrect API key provided: {SECRET}")
    if "response_format" in body:
        return '{"ok_to_send": "yes"}' if "ok_to_send" in str(body["response_format"]) else '{"addresses": "yes"}'
    return "Here you go."


def cli(root, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHAPERONE_TEST_KEY": SECRET}
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--project", str(root), "-v", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_key_is_in_no_file_and_no_output(project_factory, tmp_path):
    with FakeOpenAI(responder) as server:
        models = {
            "remote": {
                "kind": "openai",
                "base_url": server.base_url,
                "model": "fake",
                "max_retries": 0,
                "api_key_env": "CHAPERONE_TEST_KEY",
                "model_info": {"json_output": True, "structured_output": True},
            }
        }
        root = project_factory(models, assistant_model="remote", reviewer_model="remote")
        (root / "scenarios" / "s.yaml").write_text(
            yaml.safe_dump({"name": "s", "turns": [{"user": "hello"}, {"user": "please fail"}]})
        )
        (tmp_path / "p.csv").write_text("id,prompt,label\n1,hello,safe\n2,please fail,safe\n")
        runs = [
            cli(root, "scenario", str(root / "scenarios"), "--json"),
            cli(root, "scenario", str(root / "scenarios")),
            cli(
                root,
                "eval",
                str(tmp_path / "p.csv"),
                "--out",
                str(tmp_path / "evals" / "r"),
                "--judge-model",
                "remote",
                "--json",
            ),
            cli(root, "chat", stdin="hello\nplease fail\n/quit\n"),
        ]
        assert all(f"Bearer {SECRET}" == h for h in server.auth_headers)  # the key was really used
    assert [p.returncode for p in runs] == [0, 0, 0, 0], [p.stderr[-2000:] for p in runs]
    shown = " ".join((runs[1].stdout + runs[1].stderr).split())
    assert "Incorrect API key provided: [REDACTED]" in shown  # the error itself is shown ...
    for proc in runs:
        assert SECRET not in proc.stdout and SECRET not in proc.stderr  # ... without the key
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in written}
    assert {".jsonl", ".log", ".json", ".md", ".html"} <= kinds, kinds
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    transcripts = list((tmp_path / "transcripts").glob("*.jsonl"))
    assert transcripts and all("CHAPERONE_TEST_KEY" in t.read_text() for t in transcripts)  # the name, not the key


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "..", "x" * 80, "white space"])
def test_an_eval_run_id_cannot_name_a_path(project_factory, tmp_path, run_id):
    from tests.support.projects import replay, run_cli

    root = project_factory({"assistant-script": replay("x"), "reviewer-script": replay("x")})
    (tmp_path / "p.csv").write_text("prompt,label\nhi,safe\n")
    proc = run_cli("--project", str(root), "eval", str(tmp_path / "p.csv"), "--run-id", run_id)
    assert proc.returncode == 2 and "--run-id" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "escape").exists() and not (root / "evals").exists()
