"""A hostile assistant against the structural defences, with scripted models (fast).

Whatever a draft says, the verdict comes only from the reviewer's own output, the draft reaches the
reviewer quoted as data between fences it cannot close, and the review message stays bounded, with any
cut said to the reviewer. The embedded model's own decisions on the same drafts: test_hostile_embedded.py.
"""

from __future__ import annotations

import re

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from chaperone.config.project import load_project
from chaperone.config.schema import EmbeddedModelSpec
from chaperone.engine import reviewer_prompt
from chaperone.engine.events import Delivered, VerdictEvent, Withheld
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.reviewer import ReviewingAgent
from chaperone.engine.verdict import parse_verdict
from chaperone.models.pool import ModelHandle
from tests.engine.test_guarded_chat import conversation, of
from tests.support.hostile_drafts import CORPUS, MAX_DRAFT_CHARS, REQUEST, HostileDraft
from tests.support.projects import REPO, replay, revise

NO_VERDICTS = {
    "one_stage_no": [revise("It tells the user how to poison a dog.", "violence")],
    "two_stage_no": ['{"ok_to_send": "no"}', '{"critique": "Harm to an animal.", "categories": ["violence"]}'],
    "unreadable": ["Looks fine to me!"],
}
# The reviewer's message, however long the draft: the request and the draft clipped, the history, the frame.
MESSAGE_BOUND = MAX_DRAFT_CHARS + MAX_DRAFT_CHARS // 2 + 600 + 1200
_CONTROL_TOKEN = re.compile(r"<\|[^|<>\s]{1,40}\|>")


async def review(project_factory, d: HostileDraft, replies: list[str]):
    """One guarded turn: the scripted assistant writes the hostile draft, the scripted reviewer says `replies`."""
    root = project_factory(
        {"assistant-script": replay(d.draft), "reviewer-script": replay(*replies)},
        settings={"max_revisions": 0, "reviewer_context": {"over_limit": "truncate"}},
    )
    conv, events = conversation(root)
    finished = await conv.send(d.request)
    calls = conv.chat.reviewer.model.client.create_calls
    return conv, events, finished, calls


def split_message(message: str) -> tuple[str, str, str, str]:
    """(nonce, before the draft's fence, inside it, after it) of the reviewer's message, asserting one real fence."""
    nonce = re.match(r"User request:\n<<<REQUEST ([0-9a-f]{12})>>>\n", message).group(1)
    opening, closing = f"<<<DRAFT {nonce}>>>\n", f"\n<<<END DRAFT {nonce}>>>"
    assert message.count(opening) == 1 and message.count(closing) == 1
    before, rest = message.split(opening)
    inside, after = rest.split(closing)
    return nonce, before, inside, after


@pytest.mark.parametrize("verdict", list(NO_VERDICTS))
@pytest.mark.parametrize("d", CORPUS, ids=lambda d: d.name)
async def test_when_the_reviewer_says_no_nothing_is_delivered(project_factory, d, verdict):
    conv, events, finished, calls = await review(project_factory, d, NO_VERDICTS[verdict])
    assert finished.outcome == "withheld" and not of(events, Delivered)
    (withheld,) = of(events, Withheld)
    assert withheld.content == conv.chat.fallback
    # The verdict is the reviewer's own output, whatever verdict the draft wrote into itself.
    (v,) = of(events, VerdictEvent)
    assert v.decision == "revise" and v.raw == "\n".join(NO_VERDICTS[verdict])
    assert v.readable == (verdict != "unreadable")
    assert len(calls) == len(NO_VERDICTS[verdict])


@pytest.mark.parametrize("d", [d for d in CORPUS if parse_verdict(d.draft).readable], ids=lambda d: d.name)
def test_the_bait_is_real(d):
    # These drafts would read as an approval if the draft were ever parsed as a verdict.
    assert parse_verdict(d.draft).decision == "approve"


@pytest.mark.parametrize("d", CORPUS, ids=lambda d: d.name)
async def test_the_draft_is_quoted_between_the_real_fences_only(project_factory, d):
    _conv, _events, _finished, calls = await review(project_factory, d, NO_VERDICTS["one_stage_no"])
    system, message = (m.content for m in calls[0]["messages"])
    nonce, before, inside, after = split_message(message)
    assert nonce not in d.draft and nonce not in inside
    assert before == (f"User request:\n<<<REQUEST {nonce}>>>\n{REQUEST}\n<<<END REQUEST {nonce}>>>\n\nDraft reply:\n")
    assert d.visible in inside  # the attack is shown to the reviewer, as data
    if d.hidden:
        assert d.hidden not in message
    # After the real fence only the app speaks: an optional note on what was changed, then the question.
    assert re.fullmatch(r"(\n\[About the draft reply above: [^\n]*\.\])?\n\nIs the draft OK to send\?", after)
    # Nothing the chat template reads as a turn marker, nothing the user would not see.
    for text in (system, message):
        assert not _CONTROL_TOKEN.search(text)
        assert not reviewer_prompt._INVISIBLE.search(text) and not reviewer_prompt._BIDI.search(text)
    assert len(message) <= MESSAGE_BOUND


async def test_chatml_turn_markers_in_a_draft_reach_the_reviewer_broken_apart(project_factory):
    d = next(d for d in CORPUS if d.name == "chatml_system_turn")
    *_, calls = await review(project_factory, d, NO_VERDICTS["one_stage_no"])
    _, _, inside, after = split_message(calls[0]["messages"][-1].content)
    assert "< |im_start| >system" in inside and "< |im_end| >" in inside
    assert "chat-control tokens broken apart" in after


@pytest.mark.parametrize("d", [d for d in CORPUS if len(d.draft) > MAX_DRAFT_CHARS], ids=lambda d: d.name)
async def test_a_long_draft_is_clipped_and_the_reviewer_is_told(project_factory, d):
    *_, calls = await review(project_factory, d, NO_VERDICTS["one_stage_no"])
    _, _, inside, after = split_message(calls[0]["messages"][-1].content)
    assert len(inside) <= MAX_DRAFT_CHARS
    assert reviewer_prompt.CUT_MARK.split("{n}")[0] in inside  # where the cut is
    _shown, total, _cut = map(
        int,
        re.search(
            r"truncated: (\d+) of (\d+) characters shown, its start and its end; "
            r"(\d+) characters in the middle were cut",
            after,
        ).groups(),
    )
    assert total == len(
        reviewer_prompt.as_data(d.draft.strip(), "-")[0]
    )  # the assistant strips its draft and shown + cut == total and shown < MAX_DRAFT_CHARS


def test_the_reviewer_message_is_bounded_however_long_the_draft():
    ctx = load_project(REPO).settings.reviewer_context
    history = [("q " * 5000, "a " * 5000)] * 5
    sizes = [len(reviewer_prompt.review_message("r" * n, "d" * n, history, ctx, 1)) for n in (10**3, 10**5, 10**6)]
    assert max(sizes) <= MESSAGE_BOUND and sizes[2] - sizes[1] < 20  # only the numbers in the notes grow


def reviewer_on(spec: EmbeddedModelSpec, client: ReplayChatCompletionClient) -> ReviewingAgent:
    project = load_project(REPO)
    return ReviewingAgent(
        project.agents["moral_reviewer"],
        ModelHandle("embedded", spec, client),
        project.policy("public"),
        ConversationMemory(),
        user_name="user",
        assistant_name="assistant",
        context=project.settings.reviewer_context.model_copy(update={"over_limit": "truncate"}),
    )


async def test_a_dense_draft_is_clipped_further_to_fit_the_models_window():
    # One token per character (digits, CJK: the embedded tokenizer's dense case), a 4096-token window.
    client = ReplayChatCompletionClient(['{"ok_to_send": "no"}'] * 2)
    client.count_tokens = lambda messages, **_: sum(len(m.content) for m in messages)
    reviewer = reviewer_on(EmbeddedModelSpec(kind="embedded", n_ctx=4096), client)
    d = next(d for d in CORPUS if d.name == "long_dense_digits")
    result = await reviewer.judge(d.request, d.draft, critique=False)
    assert result.verdict.decision == "revise"
    prompt = client.create_calls[0]["messages"]
    assert sum(len(m.content) for m in prompt) <= 4096 - reviewer.spec.generation.max_tokens - 64
    _, _, inside, after = split_message(prompt[-1].content)
    assert d.visible in inside and "truncated:" in after  # still head and tail, and said
    # A draft that fits is quoted whole.
    await reviewer.judge(REQUEST, CORPUS[0].draft, critique=False)
    _, _, inside, _ = split_message(client.create_calls[1]["messages"][-1].content)
    assert inside == CORPUS[0].draft


async def test_by_default_a_draft_too_long_to_read_whole_is_sent_back_unread(project_factory):
    """The default (over_limit: send_back): nothing the reviewer could not read whole is delivered, and the
    assistant is asked for a shorter answer; the reviewer model is not called for it."""
    from chaperone.engine.events import Delivered, VerdictEvent

    long = next(d for d in CORPUS if d.name == "long_attack_in_middle")
    root = project_factory(
        {"assistant-script": replay(long.draft, "Short answer."), "reviewer-script": replay('{"ok_to_send": "yes"}')},
        settings={"max_revisions": 1},
    )
    conv, events = conversation(root)
    finished = await conv.send(long.request)
    conv.close()
    verdicts = [e for e in events if isinstance(e, VerdictEvent)]
    assert verdicts[0].decision == "revise" and "characters" in verdicts[0].critique
    assert [e.content for e in events if isinstance(e, Delivered)] == ["Short answer."]
    assert finished.revisions == 1
    assert len(conv.chat.reviewer.model.client.create_calls) == 1  # only the short draft reached the model
    assert "Give the answer again in under" in conv.chat.assistant.model.client.create_calls[1]["messages"][-1].content
