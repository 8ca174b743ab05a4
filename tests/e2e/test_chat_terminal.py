"""The terminal chat, used as a person would: the real program in a tmux pseudo-terminal, scripted models."""

from __future__ import annotations

import sys
import time

import pytest

from chaperone.audit.transcript import read_records, verify
from tests.support.fake_openai_server import FakeOpenAI
from tests.support.projects import APPROVE, REPO, replay, revise
from tests.support.terminal import Terminal


def start_chat(root, *args: str) -> Terminal:
    return Terminal(
        [sys.executable, str(REPO / "run.py"), "--project", str(root), "chat", *args],
        env={"TERM": "xterm-256color", "NO_COLOR": "1"},
    )


PROMPT = "you ›"


def say(term: Terminal, text: str) -> None:
    """Type a line once the chat is waiting for one, as a person would."""
    term.wait_for_prompt(PROMPT)
    term.type(text)


def transcript_of(root):
    (path,) = (root.parent / "transcripts").glob("*.jsonl")
    return path, list(read_records(path))


def test_a_person_chats_switches_debate_and_policy_and_quits(project_factory):
    root = project_factory(
        {
            "assistant-script": replay(
                "Run `kill <PID>`.", "You idiot, kill it.", "Run `kill -9 <PID>`, please.", "Both lines arrived."
            ),
            "reviewer-script": replay(APPROVE, revise("Drop the insult.", "harassment"), APPROVE, APPROVE),
        }
    )
    term = start_chat(root)
    try:
        term.wait_for("you ›")
        screen = term.screen()
        assert "policy public" in screen and "transcript:" in screen

        say(term, "How do I kill a stuck process?")
        term.wait_for("Run `kill <PID>`.")
        assert "You idiot" not in term.screen()

        # The debate: drafts, verdicts and critiques become visible.
        say(term, "/debate on")
        term.wait_for("debate shown")
        mark = len(term.screen())
        say(term, "And a stubborn one?")
        screen = term.wait_for("approved after 1 revision", after=mark)
        tail = screen[mark:]
        assert "You idiot, kill it." in tail and "REVISE" in tail and "Drop the insult." in tail
        assert "Run `kill -9 <PID>`, please." in tail

        say(term, "/debate off")
        term.wait_for("debate hidden")
        say(term, "/policy lab")
        term.wait_for("policy: lab")
        say(term, "/policy nosuch")
        term.wait_for("no policy named 'nosuch'. Known: lab, public")
        say(term, "/histroy")
        term.wait_for("Did you mean /history?")

        # Multi-line input: Esc then Enter starts a new line instead of sending.
        term.wait_for_prompt(PROMPT)
        term.type("line one", enter=False)
        term.keys("Escape", "Enter")
        term.type("line two")
        term.wait_for("Both lines arrived.")

        say(term, "/history")
        screen = term.wait_for("this conversation")
        assert "harassment" in screen and "stubborn" in screen
        say(term, "/transcript")
        path, _ = transcript_of(root)
        term.wait_for(f"transcript: {path}")
        say(term, "/help")
        term.wait_for("/debate on|off")

        say(term, "/quit")
        assert term.exit_code() == 0
        screen = term.wait_for("chat ended after 3 turns")
        ended = " ".join(screen[screen.index("chat ended") :].split())  # the status may wrap on a narrow screen
        assert ended.startswith("chat ended after 3 turns · transcript (intact · hash chain and run manifest agree · ")
    finally:
        term.close()

    path, records = transcript_of(root)
    assert verify(path).complete and verify(path).intact
    assert records[0]["kind"] == "chat" and records[0]["policy"] == "public"
    users = [r["content"] for r in records if r["type"] == "user_turn"]
    assert users == ["How do I kill a stuck process?", "And a stubborn one?", "line one\nline two"]
    switch = next(r for r in records if r["type"] == "policy_changed")
    assert (switch["previous"], switch["policy"], switch["turn"]) == ("public", "lab", 3)
    delivered = [r["content"] for r in records if r["type"] == "delivered"]
    assert delivered == ["Run `kill <PID>`.", "Run `kill -9 <PID>`, please.", "Both lines arrived."]
    assert records[-1]["type"] == "closing" and records[-1]["outcome"] == "approved"


SLOW_ANSWER = " ".join(f"word{i}" for i in range(200))


def slow_responder(body: dict) -> str:
    if "response_format" in body:
        return '{"ok_to_send": "yes"}'
    asked = body["messages"][-1]["content"]
    return SLOW_ANSWER if "slow" in asked else "A quick answer."


def test_ctrl_c_cancels_the_turn_and_the_chat_goes_on(project_factory):
    with FakeOpenAI(slow_responder, chunk_delay=0.05) as server:
        models = {
            "remote": {
                "kind": "openai",
                "base_url": server.base_url,
                "model": "fake",
                "max_retries": 0,
                "model_info": {"json_output": True, "structured_output": True},
            }
        }
        root = project_factory(models, assistant_model="remote", reviewer_model="remote")
        term = start_chat(root, "--debate")
        try:
            term.wait_for("you ›")
            say(term, "Tell me something slow.")
            # The draft streams: the status line counts tokens, and debate mode shows the unreviewed text.
            screen = term.wait_for("tokens")
            assert "drafting" in screen
            term.wait_for("not reviewed yet")
            term.wait_for("word5 ")
            term.keys("C-c")
            term.wait_for("turn cancelled")
            started = time.monotonic()
            term.wait_for_prompt(PROMPT)  # back at the prompt

            say(term, "Now a quick one.")
            term.wait_for("A quick answer.")
            term.wait_for_prompt(PROMPT)
            term.keys("C-d")
            assert term.exit_code() == 0
            assert time.monotonic() - started < 60
        finally:
            term.close()

    path, records = transcript_of(root)
    assert verify(path).complete
    finished = [r["outcome"] for r in records if r["type"] == "turn_finished"]
    assert finished == ["cancelled", "approved"]
    # Nothing of the cancelled draft reached the user or the transcript as delivered text.
    assert [r["content"] for r in records if r["type"] == "delivered"] == ["A quick answer."]
    assert "word199" not in path.read_text()
    # The cancelled turn is not in what the assistant remembers: its next prompt has no trace of it.
    last_draft_request = [b for b in server.requests if "response_format" not in b][-1]
    assert all("slow" not in m["content"] for m in last_draft_request["messages"])
    assert records[-1]["outcome"] == "approved"


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--policy", "nosuch"], "no policy named 'nosuch'"),
        (["--assistant-model", "nosuch"], "model 'nosuch' is not defined"),
        (["--reviewer", "unaligned_assistant"], "has role 'assistant', expected 'reviewer'"),
    ],
)
def test_bad_options_are_one_clear_line(project_factory, bad, message):
    from tests.support.projects import run_cli

    root = project_factory({"assistant-script": replay("x"), "reviewer-script": replay(APPROVE)})
    proc = run_cli("--project", str(root), "chat", *bad)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not list((root.parent / "transcripts").glob("*.jsonl"))  # nothing started


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signal_mid_turn_closes_the_transcript_as_interrupted(project_factory, signame):
    import os
    import signal

    with FakeOpenAI(slow_responder, chunk_delay=0.05) as server:
        models = {
            "remote": {
                "kind": "openai",
                "base_url": server.base_url,
                "model": "fake",
                "max_retries": 0,
                "model_info": {"json_output": True, "structured_output": True},
            }
        }
        root = project_factory(models, assistant_model="remote", reviewer_model="remote")
        term = start_chat(root)
        try:
            say(term, "Tell me something slow.")
            term.wait_for("tokens")
            os.kill(term.program_pid(), getattr(signal, signame))
            assert term.exit_code() == 128 + getattr(signal, signame)
        finally:
            term.close()
    path, records = transcript_of(root)
    check = verify(path)
    assert check.intact and check.complete
    assert records[-1]["type"] == "closing" and records[-1]["outcome"] == "interrupted"
    assert not [r for r in records if r["type"] == "delivered"]
