"""One served request = one guarded conversation: built from the request, primed with the earlier
messages, run under the request's time limit, closed (transcript and run manifest) whatever happens.

Who closes a conversation: the request that runs it, after its turn has stopped (completions.py). A
shutdown does not close conversations under running turns; it sets `stopping`, each request stops its own
turn, answers 503 and closes its own transcript. `close_all` at the very end only waits for that (and
closes, as a last resort, what no request closed in time). Closing is idempotent: one closing record and
one manifest line, whoever asks and however often."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from chaperone.config.project import Project
from chaperone.config.schema import SCRIPTED_KINDS
from chaperone.engine.choice import SessionChoice, build_reviewer, flag_blame, resolve
from chaperone.engine.conversation import Conversation
from chaperone.engine.memory import ConversationMemory
from chaperone.errors import ConfigError
from chaperone.models.pool import ModelPool
from chaperone.serve.config import ServeConfig, ServedModel
from chaperone.serve.wire import ChatRequest, RequestError


def served_choice(
    served: ServedModel, *, max_tokens: int | None = None, instructions: str | None = None
) -> SessionChoice:
    """The conversation choice for one request to this served model (the client's max_tokens and system text)."""
    return SessionChoice(
        policy=served.policy,
        assistant=served.assistant,
        reviewer=served.reviewer,
        assistant_model=served.assistant_model,
        reviewer_model=served.reviewer_model,
        max_revisions=served.max_revisions,
        assistant_max_tokens=max_tokens,
        assistant_instructions=instructions,
    )


def check_against_project(config: ServeConfig, project: Project, path: Path, flags: Collection[str] = ()) -> set[str]:
    """Every served model must name agents, policies and models the project has (a typo fails at start).
    A wrong name is blamed on `path`'s entry, or on the command-line flag when it came from one (`flags`:
    the SessionChoice fields the command line set for every served model).

    Returns the model names the served configurations call."""
    used: set[str] = set()
    for name, served in config.models.items():

        def blame(field: str, message: str, name: str = name) -> ConfigError:
            if field in flags:
                return flag_blame(field, message)
            return ConfigError(path, message, where=f"models.{name}.{field}")

        used |= resolve(project, served_choice(served), blame).models
    return used


@dataclass
class ServedResult:
    """What the HTTP layer answers with: the engine's turn result in the wire's terms."""

    outcome: str  # a TurnOutcome of the turn, or "interrupted" (engine.events) when the server stopped it
    content: str
    revisions: int = 0
    categories: list[str] = field(default_factory=list)
    reason: str = ""
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    )
    cut: bool = False  # the approved answer stopped at the assistant's token limit

    @property
    def finish_reason(self) -> str:
        # OpenAI's own words: "content_filter" for content omitted by a filter, "length" for an answer cut
        # at max_tokens. Clients already know what they mean.
        if self.outcome != "approved":
            return "content_filter"
        return "length" if self.cut else "stop"


class ServedConversation:
    """A request's conversation, with what its sinks saw of the turn."""

    def __init__(self, service: GuardedService, request: ChatRequest, key_name: str):
        self.request, self.key_name = request, key_name
        served = service.config.models[request.model]
        choice = served_choice(served, max_tokens=request.max_tokens, instructions="\n\n".join(request.system) or None)
        header = {
            "serve": {
                "model": request.model,
                "key": key_name,
                "user": request.user,
                "system": request.system,
                "ignored_fields": request.ignored,
                "history": [{"user": u, "assistant": a} for u, a in request.history],
            }
        }
        self.conversation = Conversation(
            service.project,
            service.pool,
            choice,
            kind="serve",
            run_id=service.run_id(),
            extra_header=header,
        )
        self.conversation.remember(request.history)  # what the client says was said before
        self.id = self.conversation.transcript.conversation_id
        self.file = self.conversation.transcript_path.name
        self.policy = self.conversation.policy.name
        self._closing: asyncio.Future[None] | None = None

    async def run(self) -> ServedResult:
        result = await self.conversation.send(self.request.last_user)
        usage = result.usage
        return ServedResult(
            outcome=result.outcome,
            content=result.text,
            revisions=result.revisions,
            categories=result.categories,
            reason=result.reason.split(":", 1)[0],
            cut=result.cut,
            usage={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total,
            },
        )

    def stream_to(self, sink: Callable[[Any], None]) -> None:
        """A streamed request's reader of the turn's events (approved prefixes under chunked review)."""
        self.conversation.stream_to(sink)

    def record_failure(self, message: str) -> None:
        """A failure outside the turn (time limit, shutdown, a client gone): on the record before closing."""
        self.conversation.record_error(message)

    def close(self, outcome: str | None = None) -> asyncio.Future[None]:
        """Close the transcript and add it to the run manifest, once: every caller gets the same closing to
        await (shield it: it must finish even if the caller is cancelled)."""
        if self._closing is None:
            # The manifest update fsyncs: off the event loop.
            self._closing = asyncio.ensure_future(asyncio.to_thread(self.conversation.close, outcome))
        return self._closing

    def extra(self, result: ServedResult) -> dict[str, Any]:
        info: dict[str, Any] = {
            "transcript_id": self.id,
            "transcript": self.file,
            "outcome": result.outcome,
            "revisions": result.revisions,
            "categories": result.categories,
            "policy": self.policy,
        }
        if result.reason and result.outcome != "approved":
            info["reason"] = result.reason
        return info


# At shutdown, how long close_all waits for the requests still running to stop their turns and close their
# own transcripts before it closes what is left itself.
OWNERS_WAIT_S = 10.0


class GuardedService:
    """What the HTTP layer calls: it owns the project, the model pool and the open conversations."""

    def __init__(self, project: Project, pool: ModelPool, config: ServeConfig):
        self.project, self.pool, self.config = project, pool, config
        self._started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self._instance = uuid.uuid4().hex[:6]
        self.gate = asyncio.Semaphore(config.limits.max_concurrent_requests)
        self.open: set[ServedConversation] = set()
        self.served = 0  # requests that got a conversation (and so a transcript)
        # Set when the requests in flight must stop (the shutdown's grace period is over): each one stops
        # its turn, answers 503 (a stream: an error event) and closes its transcript as interrupted.
        self.stopping = asyncio.Event()
        self._stop_timer: asyncio.TimerHandle | None = None

    def run_id(self) -> str:
        # One run manifest per server and day: a long-running server never rewrites an ever-growing file.
        return f"serve-{self._started}-{self._instance}-{datetime.now(UTC):%Y%m%d}"

    def scripted_models(self, name: str) -> list[str]:
        """The scripted models (rules, no real judgement) a served model's conversations use: a label for listings."""
        cast = resolve(self.project, served_choice(self.config.models[name]))
        specs = self.project.models.models
        return [
            m for m in dict.fromkeys((cast.assistant_model, cast.reviewer_model)) if specs[m].kind in SCRIPTED_KINDS
        ]

    async def warm_up(self) -> list[str]:
        """Each served model's reviewer reads its fixed prompt prefix before the first request comes
        (ReviewingAgent.warm_up: the embedded model only); the names warmed. The app runs it as a task, so
        the server answers at once; a request that comes first simply shares the model with it."""
        warmed = []
        for name, served in self.config.models.items():
            try:
                cast = resolve(self.project, served_choice(served))
                reviewer = build_reviewer(self.project, self.pool, cast, ConversationMemory())
                if await reviewer.warm_up():
                    warmed.append(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never stops the server: the first request pays as before
                logger.debug("warm-up of {} skipped: {}: {}", name, type(exc).__name__, exc)
        if warmed:
            logger.info("reviewer prompts read ahead for {}", ", ".join(warmed))
        return warmed

    def start(self, request: ChatRequest, key_name: str) -> ServedConversation:
        if request.model not in self.config.models:
            known = ", ".join(sorted(self.config.models))
            raise RequestError(
                404,
                f"the model '{request.model}' does not exist (this server offers: {known})",
                param="model",
                code="model_not_found",
            )
        if self.stopping.is_set():  # read while the server was stopping: no conversation is started
            raise RequestError(
                503,
                "the server is shutting down; this request was not started",
                kind="server_error",
                code="server_shutting_down",
            )
        served = ServedConversation(self, request, key_name)
        self.open.add(served)
        self.served += 1
        return served

    def stop_after(self, grace_s: float) -> None:
        """The server was told to stop (a signal): the requests in flight get `grace_s` seconds to finish,
        then they are stopped. A later call with no grace (a second Ctrl-C) stops them at once; any other
        later call changes nothing."""
        if self.stopping.is_set():
            return
        if self._stop_timer is not None:
            if grace_s > 0:
                return
            self._stop_timer.cancel()
        self._stop_timer = asyncio.get_running_loop().call_later(max(grace_s, 0), self.stop)

    def stop(self) -> None:
        """Stop every request in flight now (each closes its own transcript as interrupted)."""
        if not self.stopping.is_set():
            if self.open:
                logger.warning("stopping {} request(s) still in flight", len(self.open))
            self.stopping.set()

    async def finish(self, served: ServedConversation, outcome: str | None = None) -> None:
        try:
            await asyncio.shield(served.close(outcome))
        finally:
            self.open.discard(served)

    async def close_all(self, message: str) -> None:
        """At shutdown: stop what still runs, let each request close its own transcript, and close as
        interrupted whatever none closed in time, so no transcript is left without an end."""
        self.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OWNERS_WAIT_S
        while self.open and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for served in list(self.open):
            logger.warning("closing transcript {} of an unfinished request: {}", served.file, message)
            served.record_failure(message)
            await self.finish(served, "interrupted")
