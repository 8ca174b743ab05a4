"""Which agents, models and policy a conversation uses: the choice a front door makes, resolved once.

Every front door builds a `SessionChoice` (flags, a scenario file, a served model's entry) and calls
`resolve()`; the `Cast` it returns is what `Conversation`, the reviewer and the start-up checks read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from chaperone.config.project import Project
from chaperone.config.schema import AgentSpec, PolicySpec, ScriptedModelSpec
from chaperone.engine import chunk_head, head_decision
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.reviewer import ReviewingAgent
from chaperone.errors import ConfigError
from chaperone.models.pool import ModelPool

T = TypeVar("T")


@dataclass
class SessionChoice:
    """Which agents, models and policy a conversation uses (None: the project's defaults)."""

    policy: str | None = None
    assistant: str | None = None
    reviewer: str | None = None
    assistant_model: str | None = None
    reviewer_model: str | None = None
    max_revisions: int | None = None
    assistant_max_tokens: int | None = None  # an evaluation may cap answers shorter than the agent does
    # The serving client's own system messages: added to the assistant's system prompt, never the reviewer's.
    assistant_instructions: str | None = None
    # False: the reviewer decides by its prompt alone even where its agent file names a judgement head (the
    # eval's --no-head: the prompted reviewer's figures, side by side with the head's, from the same files).
    reviewer_head: bool = True


@dataclass(frozen=True)
class Cast:
    """A resolved choice: the specs as the conversation will run them (overrides applied)."""

    policy: PolicySpec
    assistant: AgentSpec
    reviewer: AgentSpec
    user_proxy: AgentSpec
    assistant_model: str
    reviewer_model: str
    max_revisions: int
    fallback: str

    @property
    def models(self) -> set[str]:
        """The model names a conversation with this cast calls."""
        return {self.assistant_model, self.reviewer_model}


# How to report a wrong chosen name: (field of SessionChoice, message) -> the error to raise, naming where
# the name came from (a command-line flag, a line of a scenario file, a served model's entry).
Blame = Callable[[str, str], ConfigError]


def flag_blame(field: str, message: str) -> ConfigError:
    """Blame the command-line flag of that name (--assistant-model for assistant_model)."""
    return ConfigError("--" + field.replace("_", "-"), message)


def resolve(project: Project, choice: SessionChoice, blame: Blame | None = None) -> Cast:
    """The cast for this choice. An unknown agent, model or policy, or an agent of the wrong role, raises
    ConfigError; with `blame`, an error about a name the choice gave is reported where that name came from."""
    s = project.settings

    def checked(field: str, lookup: Callable[[], T]) -> T:
        try:
            return lookup()
        except ConfigError as exc:
            if blame is None or getattr(choice, field) is None:
                raise
            raise blame(field, exc.message) from None

    models_file = project.root / "config/models.yaml"
    policy = checked("policy", lambda: project.policy(choice.policy or s.default_policy))
    a_spec = checked("assistant", lambda: project.agent(choice.assistant or s.agents.assistant, role="assistant"))
    r_spec = checked("reviewer", lambda: project.agent(choice.reviewer or s.agents.reviewer, role="reviewer"))
    if not choice.reviewer_head and (r_spec.head is not None or r_spec.request_head is not None):
        r_spec = r_spec.model_copy(update={"head": None, "request_head": None})
    u_spec = project.agent(s.agents.user_proxy, role="user_proxy")
    a_model = choice.assistant_model or a_spec.model
    r_model = choice.reviewer_model or r_spec.model
    checked("assistant_model", lambda: project.check_model(a_model, models_file, "model"))
    checked("reviewer_model", lambda: project.check_model(r_model, models_file, "model"))
    checked("assistant_model", lambda: _plays(project, a_model, "assistant", models_file))
    checked("reviewer_model", lambda: _plays(project, r_model, "reviewer", models_file))
    if choice.assistant_max_tokens is not None:
        generation = a_spec.generation.model_copy(update={"max_tokens": choice.assistant_max_tokens})
        a_spec = a_spec.model_copy(update={"generation": generation})
    if choice.assistant_instructions:
        prompt = (
            f"{a_spec.system_prompt.rstrip()}\n\nInstructions from the application you serve:\n"
            f"{choice.assistant_instructions}"
        )
        a_spec = a_spec.model_copy(update={"system_prompt": prompt})
    return Cast(
        policy=policy,
        assistant=a_spec,
        reviewer=r_spec,
        user_proxy=u_spec,
        assistant_model=a_model,
        reviewer_model=r_model,
        max_revisions=choice.max_revisions if choice.max_revisions is not None else s.max_revisions,
        fallback=policy.fallback or s.fallback_message,
    )


def _plays(project: Project, name: str, role: str, models_file: object) -> None:
    """A scripted model answers as one role: a scripted assistant's replies are no verdicts, and the reverse."""
    spec = project.models.models[name]
    if isinstance(spec, ScriptedModelSpec) and spec.role != role:
        raise ConfigError(
            models_file,
            f"model '{name}' is a scripted {spec.role} (role: {spec.role}); it cannot be the {role}",
            where=f"models.{name}.role",
        )


def models_used(project: Project, choice: SessionChoice) -> set[str]:
    """The model names a conversation with this choice will call (assistant and reviewer)."""
    return resolve(project, choice).models


def build_reviewer(project: Project, pool: ModelPool, cast: Cast, memory: ConversationMemory) -> ReviewingAgent:
    spec = cast.reviewer
    handle = pool.get(cast.reviewer_model, max_tokens=spec.generation.max_tokens, role="reviewer")
    return ReviewingAgent(
        spec,
        handle,
        cast.policy,
        memory,
        user_name=cast.user_proxy.name,
        assistant_name=cast.assistant.name,
        context=project.settings.reviewer_context,
        head=head_decision.load_for(spec, handle, project.root),
        request_head=head_decision.load_for(spec, handle, project.root, request=True),
        chunk_head=chunk_head.load_for(spec, handle, project.root),
    )
