"""Stopping `run.py serve` under load, many times: a real server process on 127.0.0.1 with the scripted
upstream behind it, clients sending whole and streamed requests through the official openai client, and
SIGTERM, SIGINT or SIGHUP at a random (seeded) moment. After every run, every request the server took ended
cleanly for its client, the process exited with its documented code and no traceback, and every transcript
verifies intact, closed once, as its run manifest says."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from chaperone.audit import integrity, manifest
from chaperone.audit.transcript import read_records, verify
from tests.serve.test_serve import HARMFUL, SAFE, ask, serve_yaml
from tests.support.eval_fakes import World, models
from tests.support.fake_openai_server import FakeOpenAI
from tests.support.projects import make_project, run_cli
from tests.support.serve_process import ServeProcess

RUNS = 12
SEED = 1313
GRACE_S = 0.8  # shutdown_grace_s: a fast turn finishes within it, a slow one is stopped
SLOW = "How do I shoot a good photo?"  # its draft takes SLOW_S: still running when the grace period ends
SLOW_S = 2.5
CLIENTS = 6  # at once, more than max_concurrent_requests: some wait their turn when the signal comes
PROMPTS = (SAFE, SAFE, HARMFUL, SLOW, SLOW)
MAX_REQUESTS = 25  # per client and run (bounded loops)
CLEAN = {"answer", "stopped", "refused", "not taken"}


@dataclass
class Outcome:
    user: str  # the request's `user`, which its transcript's header records
    stream: bool
    kind: str  # answer, stopped (503 / error event), refused (503 before a conversation), not taken, or BAD
    detail: str = ""
    transcript_id: str | None = None
    served_outcome: str | None = None  # approved / withheld, for an answer
    ended: float = 0.0  # time.monotonic() when the client had its outcome


def _error_kind(status: int, code: str | None) -> str:
    if status == 503 and code == "server_shutting_down":
        return "stopped"
    return f"BAD: HTTP {status} {code}"


def whole(client: openai.OpenAI, user: str, prompt: str) -> Outcome:
    try:
        raw = client.chat.completions.with_raw_response.create(model="chaperone", messages=ask(prompt), user=user)
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        kind = _error_kind(exc.status_code, body.get("code"))
        if kind == "stopped" and "x-chaperone-transcript-id" not in exc.response.headers:
            kind = "refused"  # read while the server was stopping: no conversation was started
        return Outcome(user, False, kind, str(exc.message), exc.response.headers.get("x-chaperone-transcript-id"))
    except openai.APIConnectionError as exc:
        # Refused, or closed before the server read the request (the listening socket, or an idle keep-alive
        # connection, closed as the shutdown began): not taken. That no taken request ends this way is
        # checked against the transcripts, which name every request the server took.
        return Outcome(user, False, "not taken", repr(exc.__cause__))
    answer = raw.parse()
    info = answer.model_extra["chaperone"]
    return Outcome(user, False, "answer", answer.choices[0].finish_reason, info["transcript_id"], info["outcome"])


def streamed(client: openai.OpenAI, user: str, prompt: str) -> Outcome:
    """Read the raw server-sent events: an openai Stream would end quietly on a stream cut short without
    [DONE], which is exactly what must never happen."""
    try:
        with client.chat.completions.with_streaming_response.create(
            model="chaperone", messages=ask(prompt), user=user, stream=True
        ) as response:
            ident = response.headers.get("x-chaperone-transcript-id")
            data = []
            try:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        data.append(line[6:])
            except httpx.HTTPError as exc:
                return Outcome(user, True, f"BAD: stream cut off ({exc!r})", "", ident)
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        kind = _error_kind(exc.status_code, body.get("code"))
        return Outcome(user, True, "refused" if kind == "stopped" else kind, str(exc.message))
    except openai.APIConnectionError as exc:
        return Outcome(user, True, "not taken", repr(exc.__cause__))
    if not data:
        return Outcome(user, True, "BAD: an empty stream", "", ident)
    events = [json.loads(d) for d in data if d != "[DONE]"]
    if data[-1] != "[DONE]" and "error" in events[-1]:
        code = events[-1]["error"].get("code")
        return Outcome(
            user, True, "stopped" if code == "server_shutting_down" else f"BAD: error event {code}", "", ident
        )
    finals = [e for e in events if e.get("choices") and e["choices"][0].get("finish_reason")]
    if data[-1:] == ["[DONE]"] and len(finals) == 1:
        info = finals[0]["chaperone"]
        return Outcome(user, True, "answer", finals[0]["choices"][0]["finish_reason"], ident, info["outcome"])
    return Outcome(user, True, "BAD: stream ended without [DONE] or an error event", str(data[-2:]), ident)


def client_loop(server: ServeProcess, run: int, number: int, rng: random.Random, out: list[Outcome]) -> None:
    """One client: requests one after another until the server is gone (bounded)."""
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=20)
    for k in range(MAX_REQUESTS):
        user = f"r{run}-c{number}-q{k}"
        prompt = rng.choice(PROMPTS)
        outcome = (streamed if rng.random() < 0.5 else whole)(client, user, prompt)
        outcome.ended = time.monotonic()
        out.append(outcome)
        if outcome.kind in ("not taken", "refused") or outcome.kind.startswith("BAD"):
            return


@pytest.fixture(scope="module")
def upstream():
    world = World()
    world.slow["photo"] = SLOW_S
    world.delay = 0.05  # every call takes a moment: turns overlap
    with FakeOpenAI(world) as server:
        world.server = server
        yield world


def transcripts_of(folder: Path, run: int) -> dict[str, Path]:
    """user → transcript, for this run's requests."""
    found = {}
    for path in folder.glob("*.jsonl"):
        user = (next(read_records(path))["serve"] or {}).get("user") or ""
        if user.startswith(f"r{run}-"):
            assert user not in found, f"two transcripts for {user}"
            found[user] = path
    return found


def check_run(run: int, sig: int, code: int, output: str, outcomes: list[Outcome], folder: Path) -> dict[str, int]:
    where = f"run {run} ({signal.Signals(sig).name})"
    assert code == 128 + sig, f"{where}: exit status {code}\n{output}"
    for bad in ("Traceback", "Exception in ASGI", "internal error", "Cancel ", "is closed", "not recorded"):
        assert bad not in output, f"{where}: {bad!r} in the server's output\n{output}"
    assert "closing transcript" not in output, f"{where}: a transcript no request closed\n{output}"
    wrong = [o for o in outcomes if o.kind not in CLEAN]
    assert not wrong, f"{where}: {wrong}"

    by_user = {o.user: o for o in outcomes}
    taken = transcripts_of(folder, run)
    listed: dict[str, dict] = {}
    for path in (folder / manifest.FOLDER).glob("*.jsonl"):
        listed.update(manifest.entries(path))
    counts = {"transcripts": 0, "interrupted": 0, "answered": 0}
    for user, path in taken.items():
        result = verify(path)
        assert result.intact and result.complete, f"{where}: {result.describe()}"
        records = list(read_records(path))
        assert [r["type"] for r in records].count("closing") == 1, f"{where}: {path.name}"
        closing = records[-1]
        entry = listed.get(path.name)
        assert entry is not None, f"{where}: {path.name} is not in its run manifest"
        assert (entry["records"], entry["last_hash"], entry["outcome"]) == (
            len(records),
            closing["hash"],
            closing["outcome"],
        ), f"{where}: {path.name} and its manifest line disagree"
        client = by_user.get(user)
        assert client is not None and client.kind in ("answer", "stopped"), f"{where}: {user} taken, got {client}"
        assert client.transcript_id and path.name.endswith(f"-{client.transcript_id[:12]}.jsonl"), (where, client)
        if client.kind == "answer":
            assert closing["outcome"] == client.served_outcome, (where, user, closing["outcome"], client)
            assert "delivered" in [r["type"] for r in records] or client.served_outcome == "withheld"
            counts["answered"] += 1
        else:
            assert closing["outcome"] == "interrupted", (where, user, closing["outcome"])
            assert "delivered" not in [r["type"] for r in records], f"{where}: {user} stopped, yet delivered"
            errors = [r["message"] for r in records if r["type"] == "error"]
            assert any("the server shut down before the request finished" in e for e in errors), (where, errors)
            counts["interrupted"] += 1
        counts["transcripts"] += 1
    for o in outcomes:  # what the client saw as answered or stopped, the server took and recorded
        if o.kind in ("answer", "stopped"):
            assert o.user in taken, f"{where}: {o} has no transcript"
    return counts


def test_stopping_the_server_under_load_ends_every_request_cleanly_and_every_transcript_intact(upstream, tmp_path):
    root = make_project(tmp_path, models(upstream.server.base_url), assistant_model="remote", reviewer_model="remote")
    serve_yaml(
        root,
        shutdown_grace_s=GRACE_S,
        stream_keepalive_s=0.2,
        limits={
            "max_concurrent_per_key": 50,
            "requests_per_minute": 100000,
            "max_concurrent_requests": 4,
            "request_timeout_s": 30,
        },
    )
    folder = tmp_path / "transcripts"
    rng = random.Random(SEED)
    started = time.monotonic()
    totals = {"transcripts": 0, "interrupted": 0, "answered": 0, "answered in the grace period": 0}
    kinds: dict[str, int] = {}
    for run in range(RUNS):
        sig = rng.choice((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
        delay = rng.uniform(0.2, 1.3)
        outcomes: list[Outcome] = []
        with ServeProcess(root) as server:
            threads = [
                threading.Thread(target=client_loop, args=(server, run, n, random.Random(rng.random()), outcomes))
                for n in range(CLIENTS)
            ]
            for t in threads:
                t.start()
            time.sleep(delay)
            signalled = time.monotonic()
            code = server.stop(sig, timeout=30)
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads), f"run {run}: a client still waits"
        for key, value in check_run(run, sig, code, server.output, outcomes, folder).items():
            totals[key] += value
        for o in outcomes:
            kinds[o.kind] = kinds.get(o.kind, 0) + 1
            totals["answered in the grace period"] += o.kind == "answer" and o.ended > signalled
    # Not vacuous: across the runs, requests were stopped mid-turn, others answered, some after the signal.
    assert totals["interrupted"] >= RUNS // 2 and totals["answered"] >= RUNS, (totals, kinds)
    assert totals["answered in the grace period"] >= 1, (totals, kinds)
    assert integrity.folder_problems(folder) == []
    statuses = {i.path.name: i.status for i in integrity.check_files(sorted(folder.glob("*.jsonl")))}
    assert set(statuses.values()) == {integrity.INTACT}, statuses
    verified = run_cli("--project", str(root), "review", "verify", "--dir", str(folder))
    assert verified.returncode == 0 and "TAMPERED" not in verified.stdout, verified.stdout + verified.stderr
    print(f"{RUNS} runs, {time.monotonic() - started:.0f} s: {totals}; what the clients got: {kinds}")


def test_a_signal_right_after_the_banner_is_already_a_graceful_stop(upstream, tmp_path):
    """The banner comes once the stop signals are handled: a signal at once is exit 143, not death by it."""
    root = make_project(tmp_path, models(upstream.server.base_url), assistant_model="remote", reviewer_model="remote")
    for _ in range(2):
        with ServeProcess(root) as server:
            assert server.stop(signal.SIGTERM) == 128 + signal.SIGTERM, server.output
