"""Which agents, models and policy a conversation uses: the choice a front door makes, resolved once."""

from __future__ import annotations

from dataclasses import dataclass

from chaperone.config.project import Project
from chaperone.config.schema import PolicySpec
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.reviewer import ReviewingAgent
from chaperone.models.pool import ModelPool


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


def models_used(project: Project, choice: SessionChoice) -> set[str]:
    """The model names a conversation with this choice will call (assistant and reviewer)."""
    agents = project.settings.agents
    return {
        choice.assistant_model or project.agent(choice.assistant or agents.assistant, role="assistant").model,
        choice.reviewer_model or project.agent(choice.reviewer or agents.reviewer, role="reviewer").model,
    }


def build_reviewer(
    project: Project, pool: ModelPool, choice: SessionChoice, memory: ConversationMemory, policy: PolicySpec
) -> ReviewingAgent:
    s = project.settings
    r_spec = project.agent(choice.reviewer or s.agents.reviewer, role="reviewer")
    r_model = choice.reviewer_model or r_spec.model
    project.check_model(r_model, project.root / "config/models.yaml", "models")
    u_name = project.agent(s.agents.user_proxy, role="user_proxy").name
    a_name = project.agent(choice.assistant or s.agents.assistant, role="assistant").name
    return ReviewingAgent(
        r_spec,
        pool.get(r_model, max_tokens=r_spec.generation.max_tokens),
        policy,
        memory,
        user_name=u_name,
        assistant_name=a_name,
        context=s.reviewer_context,
    )
