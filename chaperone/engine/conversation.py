"""A conversation: the resolved cast, a chat behind the `Chat` contract, its transcript and its totals.

Scenario runs, the terminal chat and evaluations all start conversations here, so
they share one engine and one transcript format.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import uuid
from importlib import metadata
from typing import Any

from autogen_core import CancellationToken

from chaperone import __version__
from chaperone.audit import manifest
from chaperone.audit.integrity import Integrity, check_file
from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.audit.signing import signer_for
from chaperone.audit.transcript import TranscriptWriter
from chaperone.config.project import Project
from chaperone.config.schema import PolicySpec
from chaperone.engine import chunked_review
from chaperone.engine.assistant import DraftingAgent
from chaperone.engine.bare_chat import BareChat
from chaperone.engine.base import Chat
from chaperone.engine.choice import Cast, SessionChoice, build_reviewer, resolve
from chaperone.engine.events import ErrorEvent, Sink, Totals, TurnResult, Watcher
from chaperone.engine.guarded_chat import GuardedChat
from chaperone.engine.memory import ConversationMemory
from chaperone.errors import ChaperoneError
from chaperone.models.pool import ModelPool


def versions() -> dict[str, str]:
    return dict(_installed_versions())


@functools.cache  # reading package metadata costs ~1.3 ms, most of building a Conversation; it cannot change
def _installed_versions() -> dict[str, str]:
    found = {"chaperone": __version__, "python": platform.python_version()}
    for dist in ("autogen-agentchat", "autogen-ext", "llama_cpp_python", "openai"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def _head_summary(judge: Any) -> dict[str, Any]:
    """A trained head in the transcript header: its file, the layers it reads and what it belongs to."""
    head = judge.head
    return {
        "file": judge.path,
        "layers": head.layers,
        "model_sha256": head.model_sha256,
        "prompt_sha256": head.prompt_sha256,
    }


def _model_summary(pool: ModelPool, name: str) -> dict[str, Any]:
    spec = pool.models.models[name]
    # Only descriptive fields: the key itself is never read into the header, only the variable's name.
    keep = ("kind", "model", "base_url", "api_key_env")
    return {"name": name, **{k: getattr(spec, k) for k in keep if getattr(spec, k, None) is not None}}


class Conversation:
    """A guarded chat (or, for an evaluation's baseline, the bare assistant) plus its transcript and totals."""

    def __init__(
        self,
        project: Project,
        pool: ModelPool,
        choice: SessionChoice | Cast,
        *,
        kind: str,
        sinks: list[Sink] | None = None,
        run_id: str | None = None,
        extra_header: dict | None = None,
        watchers: list[Watcher] | None = None,
        guarded: bool = True,
    ):
        self.project = project
        # A front door that already resolved its choice (to check the models first) passes the cast.
        self.cast = cast = choice if isinstance(choice, Cast) else resolve(project, choice)
        policy, a_spec, u_spec = cast.policy, cast.assistant, cast.user_proxy
        memory = ConversationMemory(keep=max(a_spec.memory_turns, project.settings.reviewer_context.history_turns))
        assistant = DraftingAgent(
            a_spec,
            pool.get(cast.assistant_model, max_tokens=a_spec.generation.max_tokens, role="assistant"),
            memory,
            user_name=u_spec.name,
            reviewer_name=cast.reviewer.name,
            memory_turns=a_spec.memory_turns,
        )
        reviewer = build_reviewer(project, pool, cast, memory) if guarded else None
        self.max_revisions = cast.max_revisions
        self.totals = Totals()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.signer = signer_for(project)  # signs the run-manifest line at close (None: no key configured)
        agents: dict[str, Any] = {
            "assistant": {"name": a_spec.name, "model": _model_summary(pool, cast.assistant_model)}
        }
        if reviewer is not None:
            agents["reviewer"] = {"name": reviewer.name, "model": _model_summary(pool, reviewer.model.name)}
            if reviewer.head is not None:  # the decision comes from this trained head (engine/head_decision.py)
                agents["reviewer"]["head"] = _head_summary(reviewer.head)
            if reviewer.request_head is not None:  # refusals are decided by P(request harmful) from this head
                agents["reviewer"]["request_head"] = _head_summary(reviewer.request_head)
        agents["user_proxy"] = {"name": u_spec.name}
        streaming: dict[str, Any] = {}
        if reviewer is not None and policy.streaming == "chunks":  # absent for `whole`: those headers are unchanged
            why = chunked_review.unavailable(assistant.model, reviewer.model)
            streaming = {"streaming": {"mode": "whole" if why else "chunks", **policy.chunks.model_dump()}}
            if why:
                streaming["streaming"]["why_not_chunks"] = why
        header = {
            "run_id": self.run_id,
            "kind": kind,
            "policy": policy.name,
            "max_revisions": self.max_revisions,
            "agents": agents,
            "versions": versions(),
            **({} if guarded else {"guarded": False}),
            **streaming,
            **(extra_header or {}),
        }
        self.transcript = TranscriptWriter(project.transcripts_dir, header, GLOBAL_REDACTOR)
        fallback = cast.fallback
        all_sinks = [self.transcript, self.totals, *(sinks or [])]
        self.chat: Chat
        if reviewer is None:
            self.chat = BareChat(assistant, memory, user_name=u_spec.name, fallback=fallback, sinks=all_sinks)
        else:
            self.chat = GuardedChat(
                assistant,
                reviewer,
                memory,
                user_name=u_spec.name,
                max_revisions=self.max_revisions,
                fallback=fallback,
                sinks=all_sinks,
                watchers=watchers,
            )
        self.policy = policy

    def switch_policy(self, name: str) -> PolicySpec:
        """Review the next turns under another policy; the transcript records the switch."""
        if self.chat.reviewer is None:
            raise ChaperoneError("this conversation has no reviewer: there is no policy to switch")
        policy = self.project.policy(name)
        previous = self.policy.name
        self.chat.reviewer.policy = policy
        self.chat.fallback = policy.fallback or self.project.settings.fallback_message
        self.policy = policy
        self.transcript.append(
            "policy_changed", {"turn": self.chat.turns + 1, "policy": policy.name, "previous": previous}
        )
        return policy

    async def warm_up(self) -> bool:
        """The reviewer reads its fixed prompt prefix ahead of the first turn (ReviewingAgent.warm_up)."""
        return await self.chat.reviewer.warm_up() if self.chat.reviewer is not None else False

    async def send(self, text: str, cancellation_token: CancellationToken | None = None) -> TurnResult:
        """One user turn; the result says what the user got (see engine.events.TurnResult)."""
        return await self.chat.send(text, cancellation_token)

    def stream_to(self, sink: Sink) -> None:
        """A reader that receives the events as they happen and cannot take back text it was shown (a stream).

        Under chunked review it gets each approved prefix (`Released`) as it is written; when shown text is
        withdrawn, the turn ends with the fallback rather than a revision that reader could not show."""
        self.chat.sinks.append(sink)
        if isinstance(self.chat, GuardedChat):
            self.chat.stop_on_withdraw = True

    def remember(self, history: list[tuple[str, str]]) -> None:
        """Earlier exchanges the agents should know (a served request's history), before the first turn."""
        for user, answer in history:
            self.chat.memory.add(user, answer)

    def record_error(self, message: str) -> None:
        """A failure outside a turn (a time limit, a shutdown, a client gone), on the record before closing
        (after the closing record it is only logged: the transcript sink never writes past it)."""
        self.transcript(ErrorEvent(turn=self.chat.turns, source="chaperone", message=message))

    def close(self, outcome: str | None = None) -> None:
        """The closing record, then the run manifest's line: once, however many callers (and threads) close
        the conversation; a later call writes nothing."""
        outcome = outcome or self.totals.outcome
        if not self.transcript.close(outcome, self.totals.as_dict()):
            return  # already closed: one closing record, one manifest line
        manifest.record(
            self.project.transcripts_dir,
            self.run_id,
            self.transcript.path,
            self.transcript.records,
            self.transcript.last_hash,
            outcome,
            self.transcript.conversation_id,
            signer=self.signer,
        )

    def integrity(self) -> Integrity:
        """The transcript's status as every review view words it (chaperone/audit/integrity.py), read back from
        the file, its run manifest and its folder: after close(), `intact` when all agree. With a signing key,
        the manifest line's signature is checked with that key's public half."""
        keys = {self.signer.key_id: self.signer.private.public_key()} if self.signer else None
        return check_file(self.transcript.path, keys)

    @property
    def roles(self) -> dict[str, str]:
        """Agent name → role, for reporting usage by role."""
        roles = {self.chat.assistant.name: "assistant"}
        if self.chat.reviewer is not None:  # the bare baseline has none
            roles[self.chat.reviewer.name] = "reviewer"
        return roles

    @property
    def transcript_path(self):
        return self.transcript.path
