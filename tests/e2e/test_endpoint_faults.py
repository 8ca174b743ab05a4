"""Endpoint faults injected for real: an OpenAI-compatible server on 127.0.0.1 misbehaves on cue
(tests/support/fault_server.py) and real conversations, the scenario CLI and a batch evaluation run against it.

Each fault: the number of requests that reached the server (1 + max_retries where the openai client retries,
exactly 1 where a retry cannot help), the wait between them, and how the turn ends: withheld with an error
outcome, one `error` record naming the model and what failed, a complete transcript, nothing delivered.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaperone.audit.transcript import read_records, verify
from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation
from chaperone.engine.events import Activity, TurnResult
from chaperone.models.pool import ModelPool
from tests.support.eval_fakes import PROMPTS_CSV, World
from tests.support.fault_server import PARTIAL_DRAFT, FaultServer
from tests.support.projects import make_project, run_cli

TIMEOUT, RETRIES = 1.0, 1  # seconds per attempt; retries after the first attempt
KEY_ENV, SECRET = "CHAPERONE_FAULT_KEY", "sk-fault-0123456789abcdefSECRET"

# fault → what the error line says. Retried by the openai client: 1 + max_retries requests.
RETRIED = {
    "429": "answered HTTP 429 Too Many Requests",
    "429:1": "answered HTTP 429 Too Many Requests: scripted 429; Retry-After 1 s",
    "500": "answered HTTP 500 Internal Server Error",
    "503": "answered HTTP 503 Service Unavailable",
    "hang": f"no answer within the {TIMEOUT:g} s timeout",
    "drop": "the connection broke before the answer was complete",
}
# A retry cannot help: the endpoint answered, and what it said is unusable. Exactly 1 request.
NOT_RETRIED = {
    "malformed": "the endpoint's reply was not valid JSON",
    "empty_choices": "the endpoint's reply had no choices",
}


def endpoint(server: FaultServer, **overrides) -> dict:
    return {
        "kind": "openai",
        "base_url": server.base_url,
        "model": "fake",
        "api_key_env": KEY_ENV,
        "timeout": TIMEOUT,
        "max_retries": RETRIES,
        "model_info": {"json_output": True, "structured_output": True},
        **overrides,
    }


@pytest.fixture
def serve(monkeypatch):
    """Start fault servers for one test; all stop (hung handlers included) when it ends."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    with contextlib.ExitStack() as stack:
        yield lambda *queue, **kw: stack.enter_context(FaultServer(*queue, **kw))


@dataclass
class Turn:
    finished: TurnResult
    records: list[dict]
    transcript: Path
    pieces: list[str]
    seconds: float

    def of(self, kind: str) -> list[dict]:
        return [r for r in self.records if r["type"] == kind]


async def converse(
    tmp_path: Path,
    assistant: FaultServer,
    reviewer: FaultServer,
    *,
    watch: bool = False,
    assistant_settings: dict | None = None,
    reviewer_settings: dict | None = None,
) -> Turn:
    """One guarded turn, the assistant on one server and the reviewer on another."""
    models = {
        "assistant-ep": endpoint(assistant, **(assistant_settings or {})),
        "reviewer-ep": endpoint(reviewer, **(reviewer_settings or {})),
    }
    root = make_project(tmp_path, models, assistant_model="assistant-ep", reviewer_model="reviewer-ep")
    project = load_project(root)
    pool = ModelPool(project.models, root / "config/models.yaml")
    pieces: list[str] = []

    def watcher(activity: Activity) -> None:
        if activity.piece:
            pieces.append(activity.piece)

    conv = Conversation(project, pool, SessionChoice(), kind="test", watchers=[watcher] if watch else None)
    started = time.monotonic()
    try:
        finished = await conv.send("How do I kill a stuck Python process?")
    finally:
        conv.close()
        await pool.close()
    return Turn(
        finished, list(read_records(conv.transcript_path)), conv.transcript_path, pieces, time.monotonic() - started
    )


def assert_failed_closed(turn: Turn, *, role: str, says: str) -> str:
    """Withheld with an error outcome, one clear error record, a complete transcript, nothing delivered."""
    assert turn.finished.outcome == "error"
    assert not turn.of("delivered")
    [error] = turn.of("error")
    message = error["message"]
    model = "assistant-ep" if role == "assistant" else "reviewer-ep"
    assert message.startswith(f"model '{model}' at http://127.0.0.1:") and says in message, message
    assert "\n" not in message and "Traceback" not in message and len(message) <= 300
    [withheld] = turn.of("withheld")
    failed = "the review" if role == "reviewer" else "the assistant"
    assert withheld["reason"] == f"because {failed} failed: {message}"
    assert turn.records[-1]["type"] == "closing" and turn.records[-1]["outcome"] == "error"
    assert verify(turn.transcript).complete
    assert SECRET not in turn.transcript.read_text()
    return message


# ---------------------------------------------------------------- every fault, on either endpoint


@pytest.mark.parametrize("role", ["assistant", "reviewer"])
@pytest.mark.parametrize("fault", [*RETRIED, *NOT_RETRIED])
async def test_a_fault_that_never_clears_ends_the_turn_withheld_with_one_error_line(serve, tmp_path, fault, role):
    faulty = serve(then=fault)
    healthy = serve()
    assistant, reviewer = (faulty, healthy) if role == "assistant" else (healthy, faulty)
    turn = await converse(tmp_path, assistant, reviewer)

    message = assert_failed_closed(turn, role=role, says={**RETRIED, **NOT_RETRIED}[fault])
    expected = 1 + RETRIES if fault in RETRIED else 1
    assert faulty.behaviours == [fault] * expected  # bounded: the configured retries, no more
    assert message.endswith(f"{expected} attempts)" if fault in RETRIED else "not retried)")
    if role == "reviewer":  # the draft was written, and never reached the user
        assert healthy.behaviours == ["ok"] and len(turn.of("draft")) == 1 and not turn.of("verdict")
    else:
        assert not healthy.hits and not turn.of("draft")
    # Waits: Retry-After honoured; otherwise backoff (0.5 s less up to 25% jitter before the first retry).
    gaps = faulty.gaps()
    if fault == "429:1":
        assert all(gap >= 1.0 for gap in gaps), gaps
    elif fault == "hang":  # each attempt waited out the timeout, then the backoff
        assert all(gap >= TIMEOUT + 0.37 for gap in gaps), gaps
    elif fault in RETRIED:
        assert all(gap >= 0.37 for gap in gaps), gaps
    # The turn's length is bounded by attempts × timeout + backoff.
    assert turn.seconds < (1 + RETRIES) * TIMEOUT + 1.5 + 3.0


async def test_without_retry_after_the_backoff_doubles(serve, tmp_path):
    fault = "429"
    faulty, healthy = serve(then=fault), serve()
    turn = await converse(tmp_path, faulty, healthy, assistant_settings={"max_retries": 3})
    assert turn.finished.outcome == "error" and faulty.behaviours == [fault] * 4
    # The client sleeps 0.5 × 2^n s less up to 25% jitter: never less than 0.375, 0.75, 1.5 s.
    gaps = faulty.gaps()
    assert [gap >= low for gap, low in zip(gaps, (0.375, 0.75, 1.5), strict=False)] == [True] * 3, gaps


@pytest.mark.parametrize(
    "role, queue",
    [
        ("assistant", ("503", "503")),
        ("reviewer", ("429:1",)),
        ("reviewer", ("drop", "500")),
        ("assistant", ("hang",)),
    ],
)
async def test_a_fault_that_clears_within_the_retries_ends_in_a_normal_approved_turn(serve, tmp_path, role, queue):
    faulty = serve(*queue, then="ok")
    healthy = serve()
    assistant, reviewer = (faulty, healthy) if role == "assistant" else (healthy, faulty)
    retries = {"max_retries": len(queue)}
    turn = await converse(
        tmp_path, assistant, reviewer, **{"assistant_settings" if role == "assistant" else "reviewer_settings": retries}
    )
    assert turn.finished.outcome == "approved", turn.of("error")
    assert [r["content"] for r in turn.of("delivered")] == ["A plain, helpful answer."]
    assert faulty.behaviours == [*queue, "ok"] and not turn.of("error")
    assert verify(turn.transcript).complete


# ---------------------------------------------------------------- the reviewer, specifically: fail closed


@pytest.mark.parametrize("fault", ["500", "hang"])
async def test_an_unreachable_reviewer_never_counts_as_an_approval(serve, tmp_path, fault):
    assistant = serve(responder=lambda body: "Here is exactly what you asked for.")
    reviewer = serve(then=fault)
    turn = await converse(tmp_path, assistant, reviewer, reviewer_settings={"max_retries": 0})  # retries: above
    message = assert_failed_closed(turn, role="reviewer", says=RETRIED[fault])
    assert reviewer.behaviours == [fault] and message.endswith("not retried)")
    # The draft exists, the user got the fallback instead, and the reason says the review failed.
    assert [d["content"] for d in turn.of("draft")] == ["Here is exactly what you asked for."]
    [withheld] = turn.of("withheld")
    assert withheld["content"] != "Here is exactly what you asked for."
    assert withheld["reason"].startswith("because the review failed: model 'reviewer-ep'")
    assert "Here is exactly what you asked for." not in {r.get("content") for r in turn.of("delivered")}


def test_the_terminal_says_the_answer_was_withheld_because_the_review_failed(serve, tmp_path):
    import yaml

    assistant, reviewer = serve(), serve(then="500")
    models = {"assistant-ep": endpoint(assistant, max_retries=0), "reviewer-ep": endpoint(reviewer, max_retries=0)}
    root = make_project(tmp_path, models, assistant_model="assistant-ep", reviewer_model="reviewer-ep")
    (root / "scenarios" / "s.yaml").write_text(
        yaml.safe_dump({"name": "reviewer down", "turns": [{"user": "hi", "expect": {"outcome": "approved"}}]})
    )
    proc = run_cli("--project", str(root), "scenario", str(root / "scenarios"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and SECRET not in out
    flat = " ".join(out.split())  # rich wraps long lines
    assert "withheld (because the review failed: model 'reviewer-ep' at http://127.0.0.1:" in flat
    assert "HTTP 500 Internal Server Error" in flat
    assert reviewer.behaviours == ["500"]  # max_retries: 0 means exactly one request


# ---------------------------------------------------------------- streaming, with a live view watching


@pytest.mark.parametrize(
    "fault, says",
    [
        ("truncated_stream", "the streamed answer stopped before the model finished (no finish_reason)"),
        ("drop", "the connection broke before the answer was complete"),
        ("stall_stream", f"no answer within the {TIMEOUT:g} s timeout"),
    ],
)
async def test_a_stream_cut_short_is_an_error_and_its_partial_draft_is_never_reviewed(serve, tmp_path, fault, says):
    assistant, reviewer = serve(then=fault), serve()
    turn = await converse(tmp_path, assistant, reviewer, watch=True)
    message = assert_failed_closed(turn, role="assistant", says=says)
    assert turn.pieces, "the draft was streamed to the live view"
    assert "partial answer was discarded (" in message and message.endswith("not retried)")
    assert assistant.behaviours == [fault]  # half an answer was shown live: not silently redrafted
    assert not reviewer.hits and not turn.of("draft")  # the partial draft never reached the reviewer
    assert PARTIAL_DRAFT not in turn.transcript.read_text()
    assert turn.seconds < TIMEOUT + 3.0  # no hang: at most one read timeout


async def test_a_complete_stream_is_still_delivered(serve, tmp_path):
    assistant, reviewer = serve(), serve()
    turn = await converse(tmp_path, assistant, reviewer, watch=True)
    assert turn.finished.outcome == "approved" and "".join(turn.pieces) == "A plain, helpful answer."
    assert assistant.hits[0].body["stream"] is True


# ---------------------------------------------------------------- a batch: the others go on, resume retries


def test_a_batch_reports_the_failed_item_and_resume_runs_only_it(serve, tmp_path):
    world, broken = World(), {"on": True}

    def choose(body: dict, n: int) -> str:
        about_photos = any(m["role"] == "user" and "good photo" in m["content"] for m in body["messages"])
        return "503" if broken["on"] and about_photos else "ok"

    server = serve(choose=choose, responder=world)
    root = make_project(
        tmp_path, {"remote": endpoint(server, max_retries=1)}, assistant_model="remote", reviewer_model="remote"
    )
    lines = PROMPTS_CSV.splitlines()
    (tmp_path / "prompts.csv").write_text("\n".join([lines[0], lines[1], lines[3], lines[4]]) + "\n")  # p1 p3 p4
    out = tmp_path / "run"

    def evaluate(*args: str):
        return run_cli("--project", str(root), "eval", *args, "--judge-model", "remote")

    proc = evaluate(str(tmp_path / "prompts.csv"), "--out", str(out), "--concurrency", "3")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "1 item(s) failed" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert [f["id"] for f in report["failed"]] == ["p4"]
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["p1"]["status"] == rows["p3"]["status"] == "ok"
    assert rows["p4"]["status"] == "error" and "ended with error" in rows["p4"]["error"]
    assert [h.behaviour for h in server.hits].count("503") == 2  # the bare arm's draft: 1 + max_retries
    # The failed conversation's transcript says what failed, and is complete.
    transcripts = list((tmp_path / "transcripts").glob("*.jsonl"))
    failed = [t for t in transcripts if list(read_records(t))[-1].get("outcome") == "error"]
    assert len(failed) == 1 and all(verify(t).complete for t in transcripts)
    [error] = [r for r in read_records(failed[0]) if r["type"] == "error"]
    assert (
        "HTTP 503 Service Unavailable" in error["message"] and "(InternalServerError, 2 attempts)" in error["message"]
    )

    broken["on"] = False
    world.calls.clear()
    proc = evaluate("--resume", str(out))
    assert proc.returncode == 0, proc.stderr
    drafted = [c for c in world.calls if c.startswith("draft:")]
    assert drafted and all("photo" in c for c in drafted)  # only the failed item ran again
    report = json.loads((out / "report.json").read_text())
    assert report["items"] == 3 and not report["failed"]
