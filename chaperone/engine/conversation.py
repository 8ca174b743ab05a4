"""Assemble a guarded conversation from a project: agents, models, policy, transcript.

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

from chaperone import __version__
from chaperone.audit import manifest
from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.audit.transcript import TranscriptWriter
from chaperone.config.project import Project
from chaperone.config.schema import PolicySpec
from chaperone.engine.assistant import DraftingAgent
from chaperone.engine.bare_chat import BareChat
from chaperone.engine.choice import SessionChoice, build_reviewer
from chaperone.engine.events import Delivered, Sink, Totals, TurnFinished, Watcher, Withheld
from chaperone.engine.guarded_chat import GuardedChat
from chaperone.engine.memory import ConversationMemory
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
        choice: SessionChoice,
        *,
        kind: str,
        sinks: list[Sink] | None = None,
        run_id: str | None = None,
        extra_header: dict | None = None,
        watchers: list[Watcher] | None = None,
        guarded: bool = True,
    ):
        self.project = project
        s = project.settings
        policy = project.policy(choice.policy or s.default_policy)
        a_spec = project.agent(choice.assistant or s.agents.assistant, role="assistant")
        if choice.assistant_max_tokens is not None:
            a_spec = a_spec.model_copy(
                update={"generation": a_spec.generation.model_copy(update={"max_tokens": choice.assistant_max_tokens})}
            )
        if choice.assistant_instructions:
            a_spec = a_spec.model_copy(
                update={
                    "system_prompt": f"{a_spec.system_prompt.rstrip()}\n\n"
                    f"Instructions from the application you serve:\n"
                    f"{choice.assistant_instructions}"
                }
            )
        r_spec = project.agent(choice.reviewer or s.agents.reviewer, role="reviewer")
        u_spec = project.agent(s.agents.user_proxy, role="user_proxy")
        a_model = choice.assistant_model or a_spec.model
        project.check_model(a_model, project.root / "config/models.yaml", "models")
        memory = ConversationMemory(keep=max(a_spec.memory_turns, s.reviewer_context.history_turns))
        a_handle = pool.get(a_model, max_tokens=a_spec.generation.max_tokens)
        assistant = DraftingAgent(
            a_spec, a_handle, memory, user_name=u_spec.name, reviewer_name=r_spec.name, memory_turns=a_spec.memory_turns
        )
        reviewer = build_reviewer(project, pool, choice, memory, policy) if guarded else None
        self.max_revisions = choice.max_revisions if choice.max_revisions is not None else s.max_revisions
        self.totals = Totals()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        agents: dict[str, Any] = {"assistant": {"name": a_spec.name, "model": _model_summary(pool, a_model)}}
        if reviewer is not None:
            agents["reviewer"] = {"name": reviewer.name, "model": _model_summary(pool, reviewer.model.name)}
        agents["user_proxy"] = {"name": u_spec.name}
        header = {
            "run_id": self.run_id,
            "kind": kind,
            "policy": policy.name,
            "max_revisions": self.max_revisions,
            "agents": agents,
            "versions": versions(),
            **({} if guarded else {"guarded": False}),
            **(extra_header or {}),
        }
        self.transcript = TranscriptWriter(project.transcripts_dir, header, GLOBAL_REDACTOR)
        fallback = policy.fallback or s.fallback_message
        all_sinks = [self.transcript, self.totals, *(sinks or [])]
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
        policy = self.project.policy(name)
        previous = self.policy.name
        self.chat.reviewer.policy = policy
        self.chat.fallback = policy.fallback or self.project.settings.fallback_message
        self.policy = policy
        self.transcript.append(
            "policy_changed", {"turn": self.chat.turns + 1, "policy": policy.name, "previous": previous}
        )
        return policy

    async def send(self, text: str, cancellation_token=None) -> TurnFinished:
        return await self.chat.send(text, cancellation_token)

    def close(self, outcome: str | None = None) -> None:
        if self.transcript.closed:
            return
        outcome = outcome or self.totals.outcome
        self.transcript.close(outcome, self.totals.as_dict())
        manifest.record(
            self.project.transcripts_dir,
            self.run_id,
            self.transcript.path,
            self.transcript.records,
            self.transcript.last_hash,
            outcome,
        )

    @property
    def roles(self) -> dict[str, str]:
        """Agent name → role, for reporting usage by role."""
        roles = {self.chat.assistant.name: "assistant"}
        reviewer = getattr(self.chat, "reviewer", None)  # the bare baseline has none
        if reviewer is not None:
            roles[reviewer.name] = "reviewer"
        return roles

    @property
    def transcript_path(self):
        return self.transcript.path


__all__ = ["Conversation", "Delivered", "SessionChoice", "Totals", "Withheld"]
