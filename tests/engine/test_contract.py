"""The engine's contract: resolve() is the one place a choice becomes a cast, send() says what the user got,
both chats answer to the same protocol, and token usage adds up in one way."""

from __future__ import annotations

import pytest

from chaperone.config.project import load_project
from chaperone.engine.bare_chat import BareChat
from chaperone.engine.choice import SessionChoice, flag_blame, resolve
from chaperone.engine.conversation import Conversation
from chaperone.engine.events import (
    CONVERSATION_OUTCOMES,
    TURN_OUTCOMES,
    Delivered,
    Usage,
    Withheld,
    add_usage,
    total_usage,
)
from chaperone.engine.guarded_chat import GuardedChat
from chaperone.errors import ConfigError
from chaperone.models.pool import ModelPool
from tests.support.projects import APPROVE, replay, revise


def _project(project_factory, assistant=("fine",), reviewer=(APPROVE,), **kw):
    root = project_factory({"assistant-script": replay(*assistant), "reviewer-script": replay(*reviewer)}, **kw)
    project = load_project(root)
    return project, ModelPool(project.models, root / "config/models.yaml")


def test_resolve_applies_the_choice_and_names_the_models(project_factory):
    project, _ = _project(project_factory)
    cast = resolve(project, SessionChoice(policy="lab", assistant_max_tokens=33, assistant_instructions="Be brief."))
    assert cast.policy.name == "lab"
    assert cast.assistant.generation.max_tokens == 33
    assert cast.assistant.system_prompt.endswith("Instructions from the application you serve:\nBe brief.")
    # The project's own agent is not changed by a conversation's choice.
    assert project.agent(cast.assistant.name, role="assistant").generation.max_tokens != 33
    assert cast.models == {"assistant-script", "reviewer-script"}
    assert cast.fallback == (cast.policy.fallback or project.settings.fallback_message)
    assert cast.max_revisions == project.settings.max_revisions
    assert resolve(project, SessionChoice(max_revisions=0)).max_revisions == 0


@pytest.mark.parametrize(
    ("choice", "blamed", "message"),
    [
        ({"policy": "casino"}, "--policy", "no policy named 'casino'"),
        ({"reviewer": "unaligned_assistant"}, "--reviewer", "has role 'assistant', expected 'reviewer'"),
        ({"assistant_model": "nope"}, "--assistant-model", "model 'nope' is not defined"),
    ],
)
def test_resolve_blames_where_a_wrong_name_came_from(project_factory, choice, blamed, message):
    project, _ = _project(project_factory)
    with pytest.raises(ConfigError, match=message) as caught:
        resolve(project, SessionChoice(**choice), flag_blame)
    assert caught.value.path == blamed
    with pytest.raises(ConfigError, match=message) as unblamed:  # without blame: the project's own files
        resolve(project, SessionChoice(**choice))
    assert not unblamed.value.path.startswith("--")


async def test_send_returns_the_delivered_answer(project_factory):
    project, pool = _project(project_factory, assistant=("Use `kill <PID>`.",))
    events: list = []
    conv = Conversation(project, pool, SessionChoice(), kind="test", sinks=[events.append])
    result = await conv.send("How do I kill a stuck process?")
    conv.close()
    assert isinstance(conv.chat, GuardedChat)
    assert (result.outcome, result.delivered, result.text, result.reason) == (
        "approved",
        True,
        "Use `kill <PID>`.",
        "",
    )
    assert [e.content for e in events if isinstance(e, Delivered)] == [result.text]
    assert result.usage == total_usage(result.usage_by_agent.values())


async def test_send_returns_the_fallback_and_why_when_withheld(project_factory):
    project, pool = _project(
        project_factory, assistant=("bad 1", "bad 2"), reviewer=(revise(), revise()), settings={"max_revisions": 1}
    )
    events: list = []
    conv = Conversation(project, pool, SessionChoice(), kind="test", sinks=[events.append])
    result = await conv.send("hurt someone")
    conv.close()
    withheld = [e for e in events if isinstance(e, Withheld)]
    assert (result.outcome, result.delivered, result.revisions) == ("withheld", False, 1)
    assert result.text == conv.cast.fallback == withheld[0].content
    assert result.reason == withheld[0].reason == "revisions exhausted"
    assert result.categories == ["harassment"]


async def test_the_bare_chat_has_no_reviewer_and_delivers_unreviewed(project_factory):
    project, pool = _project(project_factory, assistant=("anything goes",))
    conv = Conversation(project, pool, SessionChoice(), kind="test", guarded=False)
    assert isinstance(conv.chat, BareChat) and conv.chat.reviewer is None
    result = await conv.send("hi")
    conv.close()
    assert (result.outcome, result.delivered, result.text) == ("unreviewed", True, "anything goes")
    assert set(conv.roles.values()) == {"assistant"}
    with pytest.raises(Exception, match="no reviewer"):
        conv.switch_policy("lab")


async def test_remember_primes_what_the_agents_know(project_factory):
    project, pool = _project(project_factory, assistant=("It was 42.",))
    conv = Conversation(project, pool, SessionChoice(), kind="test")
    conv.remember([("What is the answer?", "42.")])
    await conv.send("What did you say?")
    conv.close()
    prompt = conv.chat.assistant.model.client.create_calls[0]["messages"]
    assert [m.content for m in prompt[1:3]] == ["What is the answer?", "42."]


def test_usage_adds_up():
    a, b = Usage(prompt_tokens=3, completion_tokens=1), Usage(prompt_tokens=10, completion_tokens=5)
    assert (a + b).model_dump() == {"prompt_tokens": 13, "completion_tokens": 6}
    assert total_usage([a, b, a]).total == 23 and total_usage([]).total == 0
    totals: dict[str, Usage] = {}
    add_usage(totals, "reviewer", a)
    add_usage(totals, "reviewer", b)
    assert totals["reviewer"] == a + b and a.total == 4  # the addends are not changed


def test_one_outcome_vocabulary():
    assert "cancelled" in TURN_OUTCOMES and "interrupted" not in TURN_OUTCOMES
    assert "interrupted" in CONVERSATION_OUTCOMES and "cancelled" not in CONVERSATION_OUTCOMES
    assert {"approved", "withheld", "error", "unreviewed"} <= set(TURN_OUTCOMES) & set(CONVERSATION_OUTCOMES)
