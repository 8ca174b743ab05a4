"""The server under faults (the scripted upstream is conftest's `world`) and signals: a failing or slow
upstream, SIGTERM with requests in flight, and what it refuses at start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import openai
import pytest

from tests.serve.test_serve import SAFE, ask, serve_yaml
from tests.support.eval_fakes import models
from tests.support.projects import REPO, make_project, run_cli
from tests.support.serve_process import ServeProcess

SLOW = "How do I shoot a good photo?"  # "photo": the upstream is made slow for it per test


@pytest.fixture
def project(world, tmp_path):
    return make_project(tmp_path, models(world.server.base_url), assistant_model="remote", reviewer_model="remote")


def closings(root) -> list[dict]:
    out = []
    for path in sorted((root.parent / "transcripts").glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        out.append(
            {
                "types": [r["type"] for r in records],
                "last": records[-1],
                "errors": [r["message"] for r in records if r["type"] == "error"],
                "asked": next((r["content"] for r in records if r["type"] == "user_turn"), None),
            }
        )
    return out


def local(server: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_failing_upstream_is_a_clean_502_and_an_error_record(world, project):
    world.fail_on.add("kill a Python process")
    with ServeProcess(project) as server:
        with pytest.raises(openai.InternalServerError) as err:
            local(server).chat.completions.create(model="chaperone", messages=ask(SAFE))
        assert err.value.status_code == 502 and err.value.code == "upstream_failed"
        assert "the assistant failed" in err.value.message and "Traceback" not in err.value.message
        assert world.server.base_url not in err.value.message  # the model's address stays inside
        with pytest.raises(openai.APIError) as streamed:  # the same failure in a stream: an error event
            list(local(server).chat.completions.create(model="chaperone", messages=ask(SAFE), stream=True))
        assert "nothing was delivered" in str(streamed.value.message)
        assert server.stop() == 128 + signal.SIGTERM
    assert "Traceback" not in server.output
    for c in closings(project):
        assert c["last"]["outcome"] == "error" and c["errors"] and "delivered" not in c["types"]


def test_failing_review_never_releases_the_draft(world, project):
    original = world._answer

    def reviewer_down(body):
        if "ok_to_send" in json.dumps(body.get("response_format") or {}):
            raise RuntimeError("reviewer endpoint down")
        return original(body)

    world._answer = reviewer_down
    with ServeProcess(project) as server:
        with pytest.raises(openai.InternalServerError) as err:
            local(server).chat.completions.create(model="chaperone", messages=ask(SAFE))
        assert "the review failed" in err.value.message and "kill <PID>" not in err.value.response.text


def test_request_time_limit_is_504_and_the_turn_is_recorded_as_interrupted(world, project):
    world.slow["photo"] = 5.0
    serve_yaml(project, limits={"request_timeout_s": 1})
    with ServeProcess(project) as server:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            local(server).chat.completions.create(model="chaperone", messages=ask(SLOW))
        assert err.value.status_code == 504 and err.value.code == "request_timeout"
        assert time.monotonic() - started < 4  # the client is not kept waiting for the slow model
    [c] = closings(project)
    assert c["last"]["outcome"] == "interrupted"
    assert any("time limit of 1 s exceeded" in e for e in c["errors"])


def test_sigterm_lets_requests_in_flight_finish_and_closes_their_transcripts(world, project):
    world.slow["photo"] = 1.5
    with ServeProcess(project) as server:
        answers: list = []
        threads = [
            threading.Thread(
                target=lambda: answers.append(
                    local(server).chat.completions.create(model="chaperone", messages=ask(SLOW))
                )
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert server.stop(signal.SIGTERM) == 128 + signal.SIGTERM
        for t in threads:
            t.join(10)
    assert len(answers) == 2 and all(a.choices[0].finish_reason == "stop" for a in answers)
    assert [c["last"]["outcome"] for c in closings(project)] == ["approved", "approved"]
    with pytest.raises(openai.APIConnectionError):  # and it no longer takes requests
        local(server).chat.completions.create(model="chaperone", messages=ask(SAFE))


def test_sigterm_past_the_grace_period_closes_in_flight_transcripts_as_interrupted(world, project):
    world.slow["photo"] = 8.0
    serve_yaml(project, shutdown_grace_s=0.5)
    with ServeProcess(project) as server:
        errors: list = []

        def one(stream: bool) -> None:
            try:
                result = local(server).chat.completions.create(model="chaperone", messages=ask(SLOW), stream=stream)
                list(result) if stream else None
            except openai.APIError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(s,)) for s in (False, True)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 6  # did not wait for the 8 s model
        for t in threads:
            t.join(10)
    assert len(errors) == 2  # neither client got an answer that was never approved
    found = closings(project)
    assert len(found) == 2 and all(c["last"]["outcome"] == "interrupted" for c in found)
    assert all("delivered" not in c["types"] for c in found)
    assert run_cli("review", "verify", "--dir", str(project.parent / "transcripts")).returncode == 0


def test_refuses_a_public_address_without_keys(project):
    result = run_cli("--project", str(project), "serve", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in result.stderr and "Traceback" not in result.stderr


def test_keys_file_rules(project, tmp_path):
    inside = project / "keys.txt"
    inside.write_text("a=" + "z" * 32 + "\n")
    os.chmod(inside, 0o600)
    result = run_cli("--project", str(project), "serve", "--keys-file", str(inside), "--port", "0", timeout=60)
    assert result.returncode == 2 and "inside the project folder" in result.stderr
    outside = tmp_path / "keys.txt"
    outside.write_text("a=short\n")
    os.chmod(outside, 0o600)
    result = run_cli("--project", str(project), "serve", "--keys-file", str(outside), "--port", "0", timeout=60)
    assert result.returncode == 2 and "shorter than 16" in result.stderr and "short\n" not in result.stderr
    os.chmod(outside, 0o644)
    result = run_cli("--project", str(project), "serve", "--keys-file", str(outside), "--port", "0", timeout=60)
    assert result.returncode == 2 and "chmod 600" in result.stderr


def test_hashed_keys_from_a_file_let_clients_in(project, tmp_path):
    import hashlib

    key = "a-long-random-client-key-0123456789"
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# team keys\nwebapp=sha256:{hashlib.sha256(key.encode()).hexdigest()}\n")
    os.chmod(keys, 0o600)
    with ServeProcess(project, "--keys-file", str(keys), "--host", "0.0.0.0") as server:
        ok = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        assert ok.chat.completions.create(model="chaperone", messages=ask(SAFE)).choices[0].finish_reason == "stop"
        with pytest.raises(openai.AuthenticationError):
            local(server).chat.completions.create(model="chaperone", messages=ask(SAFE))
    assert "1 API key(s): webapp" in server.output


def test_a_bad_serve_yaml_is_one_line_naming_file_line_and_field(project):
    serve_yaml(project, limits={"requests_per_minte": 5})
    result = run_cli("--project", str(project), "serve", "--port", "0", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "serve.yaml:" in result.stderr and "did you mean 'requests_per_minute'" in result.stderr
    shutil.copy(REPO / "config" / "serve.yaml", project / "config" / "serve.yaml")
    serve_yaml(project, models={"chaperone": {"policy": "pubic"}})
    result = run_cli("--project", str(project), "serve", "--port", "0", timeout=60)
    assert result.returncode == 2 and "no policy named 'pubic'" in result.stderr
    assert "serve.yaml: models.chaperone.policy:" in result.stderr


def test_a_wrong_name_given_on_the_command_line_blames_the_flag_not_serve_yaml(project):
    result = run_cli("--project", str(project), "serve", "--port", "0", "--policy", "nope", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--policy: no policy named 'nope'" in result.stderr and "serve.yaml" not in result.stderr
    result = run_cli("--project", str(project), "serve", "--port", "0", "--reviewer-model", "nope", timeout=60)
    assert result.returncode == 2 and "--reviewer-model: " in result.stderr and "serve.yaml" not in result.stderr


def test_a_client_that_walks_away_mid_stream_ends_its_turn_and_frees_its_slot(world, project):
    import httpx2 as httpx

    world.slow["photo"] = 3.0
    serve_yaml(project, limits={"max_concurrent_per_key": 1}, stream_keepalive_s=0.2)
    with ServeProcess(project) as server:
        body = {"model": "chaperone", "messages": ask(SLOW), "stream": True}
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=10) as response:
            first = next(response.iter_lines())  # the stream is open, the turn is running ...
            assert first.startswith("data: ")
        # ... and the client is gone. Its slot is free again, and its turn is cancelled and recorded.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(c["last"]["type"] == "closing" for c in closings(project)):
            time.sleep(0.1)
        answer = local(server).chat.completions.create(model="chaperone", messages=ask(SAFE))
        assert answer.choices[0].finish_reason == "stop"
    # File names sort by second, then by a random id: find the walked-away request by what it asked.
    [first_turn] = [c for c in closings(project) if c["asked"] == SLOW]
    assert first_turn["last"]["outcome"] == "interrupted" and "delivered" not in first_turn["types"]
    assert any("cancelled" in e for e in first_turn["errors"])


def test_a_client_that_walks_away_from_a_whole_answer_ends_its_turn_and_frees_its_slot(world, project):
    import httpx2 as httpx

    world.slow["photo"] = 6.0
    serve_yaml(project, limits={"max_concurrent_per_key": 1})
    with ServeProcess(project) as server:
        body = {"model": "chaperone", "messages": ask(SLOW)}
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):  # the client gives up and closes its connection ...
            httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=0.5)
        # ... and well before the 6 s draft or the 300 s time limit, its slot is free again.
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not any(c["last"]["type"] == "closing" for c in closings(project)):
            time.sleep(0.05)
        answer = local(server).chat.completions.create(model="chaperone", messages=ask(SAFE))
        assert answer.choices[0].finish_reason == "stop" and time.monotonic() - started < 4.5
        assert server.stop() == 128 + signal.SIGTERM
    assert "Traceback" not in server.output
    [gone] = [c for c in closings(project) if c["asked"] == SLOW]
    assert gone["last"]["outcome"] == "interrupted" and "delivered" not in gone["types"]
    assert any("the client went away before the answer was ready" in e for e in gone["errors"])
    assert run_cli("review", "verify", "--dir", str(project.parent / "transcripts")).returncode == 0
