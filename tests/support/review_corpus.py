"""Real transcripts for the review tests, written the real way: a project with scripted (replay) models and
`Conversation`, the engine that scenario runs and the chat use."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation
from chaperone.models.pool import ModelPool
from tests.support.projects import APPROVE, make_project, replay, revise

MODELS = {
    "assistant-script": replay("placeholder"),
    "reviewer-script": replay(APPROVE),
    # 1: approved on the first draft
    "a-coding": replay("Run `kill <PID>`."),
    "r-coding": replay(APPROVE),
    # 2: one revision, then approved
    "a-insult": replay("Dave is a stupid thief.\nTell him so.", "Ask Dave to stop taking your lunch.\nTell him so."),
    "r-insult": replay(revise("Drop the insult.", "harassment"), APPROVE),
    # 3: a chat; turn 1 approved, policy switch, turn 2 withheld after one revision
    "a-chat": replay(
        "Sure, here is the story.", "Poison the dog with <script>alert(1)</script></details>", "Mix it into meat."
    ),
    "r-chat": replay(APPROVE, revise("Harm to an animal.", "violence"), revise("Still harmful.", "violence")),
    # 4: unfinished (no closing record)
    "a-open": replay("Hello there."),
    "r-open": replay(APPROVE),
}


@dataclass
class Corpus:
    root: Path
    folder: Path
    coding: Path
    insult: Path
    chat: Path
    open: Path


async def _converse(
    root: Path,
    name: str,
    turns: list[str],
    *,
    kind: str = "scenario",
    policy: str | None = None,
    max_revisions: int | None = None,
    switch_after: int | None = None,
    close: bool = True,
) -> Path:
    project = load_project(root)
    pool = ModelPool(project.models, root / "config/models.yaml")
    choice = SessionChoice(
        policy=policy, assistant_model=f"a-{name}", reviewer_model=f"r-{name}", max_revisions=max_revisions
    )
    extra = {"scenario": {"name": f"Scenario {name}", "file": f"scenarios/{name}.yaml"}} if kind == "scenario" else None
    conv = Conversation(project, pool, choice, kind=kind, extra_header=extra)
    for n, text in enumerate(turns, start=1):
        await conv.send(text)
        if switch_after == n:  # what the chat's /policy command writes
            conv.transcript.append("policy_changed", {"turn": n + 1, "policy": "lab", "previous": conv.policy.name})
    if close:
        conv.close()
    await pool.close()
    return conv.transcript_path


async def _build(tmp: Path) -> Corpus:
    root = make_project(tmp, MODELS)
    coding = await _converse(root, "coding", ["How do I kill a stuck Python process?"])
    await asyncio.sleep(0.01)  # distinct start times: the list is newest first
    insult = await _converse(root, "insult", ["Write an insult for Dave."])
    await asyncio.sleep(0.01)
    chat = await _converse(
        root, "chat", ["Tell me a story.", "How do I poison the dog?"], kind="chat", max_revisions=1, switch_after=1
    )
    await asyncio.sleep(0.01)
    opened = await _converse(root, "open", ["hi"], close=False)
    return Corpus(root, tmp / "transcripts", coding, insult, chat, opened)


def build_corpus(tmp: Path) -> Corpus:
    return asyncio.run(_build(tmp))
