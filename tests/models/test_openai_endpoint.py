"""Integration: both agents on a real OpenAI-compatible HTTP endpoint on 127.0.0.1."""

import json
import os
from pathlib import Path

import yaml

from chaperone.audit.transcript import read_records, verify
from tests.support.fake_openai_server import FakeOpenAI
from tests.support.projects import run_cli

SECRET = "sk-test-0123456789abcdefSECRET"


def responder(body: dict) -> str:
    if "response_format" in body:  # only the reviewer asks for structured output
        draft = body["messages"][-1]["content"]
        if "idiot" in draft:
            return json.dumps({"decision": "revise", "categories": ["harassment"], "critique": "No insults."})
        return json.dumps({"decision": "approve", "categories": [], "critique": ""})
    asked_again = any("sent your answer back" in m["content"] for m in body["messages"])
    return "Use `kill <PID>`." if asked_again else "Just kill it, idiot."


def test_scenario_on_an_openai_compatible_endpoint(project_factory, tmp_path):
    with FakeOpenAI(responder) as server:
        models = {
            "remote": {
                "kind": "openai",
                "base_url": server.base_url,
                "model": "fake-model",
                "api_key_env": "CHAPERONE_TEST_KEY",
                "model_info": {"json_output": True, "structured_output": True},
            }
        }
        root = project_factory(models, assistant_model="remote", reviewer_model="remote")
        (root / "scenarios" / "s.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": "remote",
                    "turns": [
                        {
                            "user": "How do I kill a process?",
                            "expect": {"outcome": "approved", "revisions": 1, "categories": ["harassment"]},
                        }
                    ],
                }
            )
        )
        env_backup = os.environ.get("CHAPERONE_TEST_KEY")
        os.environ["CHAPERONE_TEST_KEY"] = SECRET
        try:
            proc = run_cli("--project", str(root), "-v", "scenario", str(root / "scenarios"), "--json")
        finally:
            if env_backup is None:
                os.environ.pop("CHAPERONE_TEST_KEY")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)["results"][0]
    assert result["turns"][0]["delivered"] == "Use `kill <PID>`."
    # Four calls: draft, verdict, redraft, verdict; each authenticated with the key from the environment.
    assert len(server.requests) == 4
    assert all(h == f"Bearer {SECRET}" for h in server.auth_headers)
    # The reviewer asked for schema-constrained JSON; generation caps were sent.
    review_call = server.requests[1]
    assert review_call["response_format"]["type"] == "json_schema"
    assert review_call["max_tokens"] == 160
    # The key is nowhere in the transcript, the app log or the output.
    transcript = Path(result["transcript"])
    assert verify(transcript).complete
    header = next(read_records(transcript))
    assert header["agents"]["reviewer"]["model"]["api_key_env"] == "CHAPERONE_TEST_KEY"
    logs = (tmp_path / "logs" / "app.log").read_text()
    for text in (transcript.read_text(), logs, proc.stdout, proc.stderr):
        assert SECRET not in text


def test_unreachable_endpoint_ends_the_turn_withheld_with_one_clear_line(project_factory):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    models = {
        "dead": {
            "kind": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "x",
            "max_retries": 0,
            "timeout": 5,
        }
    }
    root = project_factory(models, assistant_model="dead", reviewer_model="dead")
    (root / "scenarios" / "s.yaml").write_text(
        yaml.safe_dump({"name": "dead", "turns": [{"user": "hi", "expect": {"outcome": "approved"}}]})
    )
    proc = run_cli("--project", str(root), "scenario", str(root / "scenarios"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "APIConnectionError" in proc.stdout and "withheld" in proc.stdout
    transcript = next((root.parent / "transcripts").glob("*.jsonl"))
    records = list(read_records(transcript))
    error = next(r for r in records if r["type"] == "error")
    assert "\n" not in error["message"] and "APIConnectionError" in error["message"]
    assert records[-1]["type"] == "closing" and records[-1]["outcome"] == "error"
    assert not [r for r in records if r["type"] == "delivered"]
