"""Build AutoGen model clients from the validated models.yaml schema (never from load_component).

One `ModelPool` per process: each named model is built once, so two agents that
name the same embedded model share one loaded copy of its weights. With `contexts: per_role`
(the default) each role asking for it gets its own llama.cpp context on those weights; with
`contexts: shared`, one context serves every role.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelInfo,
)

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.config.schema import (
    SCRIPTED_KINDS,
    EmbeddedModelSpec,
    GenerationSpec,
    ModelsFile,
    OpenAIModelSpec,
    ReplayModelSpec,
    ScriptedModelSpec,
)
from chaperone.errors import ChaperoneError, ConfigError, ModelCallError

# The endpoint slots the current task holds (ids of the semaphores), inherited by the tasks it starts. A chunk
# review started by a draft being written rides on that draft's slot: were it to wait for a slot of its own
# while every slot is held by drafts waiting for their chunks' verdicts, nothing would move again.
_SLOTS_HELD: ContextVar[frozenset[int]] = ContextVar("chaperone_slots_held", default=frozenset())


@dataclass
class ModelHandle:
    name: str
    spec: Any
    client: ChatCompletionClient
    limit: asyncio.Semaphore | None = None  # bound on calls in flight to a remote endpoint

    @property
    def label(self) -> str:
        """What the transcript records as the model: config name and the backend's model id."""
        backend = getattr(self.spec, "model", None) or getattr(self.client, "model_name", None) or self.spec.kind
        return f"{self.name} ({backend})"

    @property
    def scripted(self) -> bool:
        """No model behind it: fixed or rule-chosen replies (kinds replay, scripted), no real judgement."""
        return self.spec.kind in SCRIPTED_KINDS

    @property
    def serial(self) -> bool:
        """One call at a time on this client (the embedded model: each client is one llama.cpp context behind
        a lock; with `contexts: per_role` each role has a client of its own)."""
        return isinstance(self.spec, EmbeddedModelSpec)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A place among the endpoint's max_concurrency calls in flight; none needed inside one already held
        (so a draft under chunked review and its one chunk review count as at most two calls)."""
        if self.limit is None or id(self.limit) in _SLOTS_HELD.get():
            yield
            return
        async with self.limit:
            held = _SLOTS_HELD.set(_SLOTS_HELD.get() | {id(self.limit)})
            try:
                yield
            finally:
                _SLOTS_HELD.reset(held)

    def generation_args(self, gen: GenerationSpec) -> dict[str, Any]:
        """The agent's generation settings in the form this backend accepts."""
        args: dict[str, Any] = {"max_tokens": gen.max_tokens, "temperature": gen.temperature, "top_p": gen.top_p}
        if isinstance(self.spec, EmbeddedModelSpec):
            args["repeat_penalty"] = gen.repeat_penalty  # llama.cpp only; OpenAI's API has no such field
        return args

    def stream_args(self) -> dict[str, Any]:
        """Extra arguments for a streamed call: OpenAI endpoints report token usage only when asked."""
        if isinstance(self.spec, OpenAIModelSpec):
            return {"stream_options": {"include_usage": True}}
        return {}

    def structured_output_args(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        """How to ask this backend for JSON matching schema (empty when it cannot: parse defensively)."""
        info = self.client.model_info
        if isinstance(self.spec, EmbeddedModelSpec):  # llama.cpp turns the schema into a decoding grammar
            return {"response_format": {"type": "json_object", "schema": schema}}
        if info.get("structured_output"):
            return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}}
        if info.get("json_output"):
            return {"response_format": {"type": "json_object"}}
        return {}


@dataclass
class ModelPool:
    models: ModelsFile
    models_path: Path
    cache_dir: Path | None = None
    _handles: dict[str, ModelHandle] = field(default_factory=dict)

    def get(self, name: str, *, max_tokens: int = 512, role: str | None = None) -> ModelHandle:
        """The model's handle. `role` (the agent's role): on an embedded model with `contexts: per_role`, every
        role but the assistant gets a client of its own, with its own llama.cpp context and lock over the
        weights already loaded; the assistant, and callers naming no role, use the model's first context."""
        spec = self.models.models.get(name)
        if spec is None:
            raise ConfigError(self.models_path, f"model '{name}' is not defined", where="models")
        if isinstance(spec, ReplayModelSpec):
            return self._build(name, spec, max_tokens)  # a script is consumed: each conversation gets its own
        if name not in self._handles:
            self._handles[name] = self._build(name, spec, max_tokens)
        handle = self._handles[name]
        for_role = getattr(handle.client, "for_role", None)  # a stand-in client that cannot: one context, shared
        if (
            isinstance(spec, EmbeddedModelSpec)
            and spec.contexts == "per_role"
            and role is not None
            and role != "assistant"
            and for_role is not None
        ):
            key = f"{name}\0{role}"  # no model name holds a NUL
            if key not in self._handles:
                self._handles[key] = ModelHandle(name, spec, for_role(default_max_tokens=max_tokens))
            return self._handles[key]
        return handle

    def check_ready(self, name: str) -> None:
        """Fail fast, before any conversation starts, on what would fail later (an unset key variable)."""
        spec = self.models.models.get(name)
        if isinstance(spec, OpenAIModelSpec) and spec.api_key_env and not os.environ.get(spec.api_key_env):
            raise ConfigError(
                self.models_path,
                f"environment variable {spec.api_key_env} is not set (it holds the API key for model '{name}')",
                where=f"models.{name}.api_key_env",
            )

    def _build(self, name: str, spec: Any, max_tokens: int) -> ModelHandle:
        if isinstance(spec, EmbeddedModelSpec):
            from chaperone.models.embedded import EmbeddedChatCompletionClient
            from chaperone.models.gguf import ensure_model

            path = ensure_model(self.cache_dir)
            try:
                client = EmbeddedChatCompletionClient(
                    path,
                    n_ctx=spec.n_ctx,
                    n_threads=spec.n_threads or os.cpu_count(),
                    n_batch=spec.n_batch,
                    seed=spec.seed,
                    state_cache_mb=spec.state_cache_mb,
                    default_max_tokens=max_tokens,
                )
            except (ValueError, OSError, RuntimeError) as exc:  # llama.cpp refuses the file or the settings
                raise ChaperoneError(f"model '{name}': llama.cpp could not load {path}: {exc}") from None
            return ModelHandle(name, spec, client)
        if isinstance(spec, OpenAIModelSpec):
            return ModelHandle(name, spec, self._openai(name, spec), asyncio.Semaphore(spec.max_concurrency))
        if isinstance(spec, ReplayModelSpec):
            from autogen_ext.models.replay import ReplayChatCompletionClient

            return ModelHandle(name, spec, ReplayChatCompletionClient(list(spec.replies)))
        if isinstance(spec, ScriptedModelSpec):
            from chaperone.models.scripted import ScriptedChatCompletionClient

            return ModelHandle(name, spec, ScriptedChatCompletionClient(spec))
        raise ChaperoneError(f"model '{name}': unsupported kind")  # unreachable: the schema limits kinds

    def _openai(self, name: str, spec: OpenAIModelSpec) -> ChatCompletionClient:
        api_key = "not-needed"  # local servers (Ollama, llama.cpp, vLLM) accept any key
        if spec.api_key_env:
            self.check_ready(name)
            api_key = os.environ[spec.api_key_env]
            GLOBAL_REDACTOR.add(api_key)
        info = ModelInfo(**spec.model_info.model_dump())
        kwargs: dict[str, Any] = dict(
            model=spec.model, api_key=api_key, model_info=info, timeout=spec.timeout, max_retries=spec.max_retries
        )
        if spec.base_url:
            kwargs["base_url"] = spec.base_url
        return _checked_openai_client()(CallFailure(name, spec), **kwargs)

    async def close(self) -> None:
        # Newest first: a role's own context closes before the weights it was built on.
        for handle in reversed(list(self._handles.values())):
            with contextlib.suppress(Exception):
                await handle.client.close()
        self._handles.clear()


# ---------------------------------------------------------------- OpenAI-compatible endpoints: failures
#
# Retries are the openai client's own (max_retries, timeout from models.yaml): it retries timeouts,
# connection errors and HTTP 408/409/429/5xx with exponential backoff and jitter, honouring Retry-After.
# What is left to us: a call that has failed for good becomes one line naming the model, the endpoint and
# what went wrong; and a streamed answer that stops before the model finished is an error, never a draft.


class StreamCutShort(Exception):
    """A streamed completion ended without a finish_reason: the answer is partial."""


@dataclass
class CallFailure:
    """Turns what the openai client raised into a ModelCallError a person can act on."""

    name: str
    spec: OpenAIModelSpec
    retried_status: Callable[[Any], bool] = lambda response: False  # the client's own rule for HTTP statuses

    @property
    def where(self) -> str:
        url = urlsplit(self.spec.base_url or "https://api.openai.com/v1")  # no user:password, no query
        return f"model '{self.name}' at {url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}{url.path}"

    def __call__(self, exc: Exception, *, streamed_pieces: int | None = None) -> ModelCallError:
        import openai

        what, retried = self._what(exc, openai), False
        mid_stream = getattr(exc, "after_chunks", 0) > 0  # the client retries a request, not a stream under way
        if isinstance(exc, openai.APIConnectionError) and not mid_stream:  # timeouts are connection errors too
            retried = True
        elif isinstance(exc, openai.APIStatusError):
            retried = self.retried_status(exc.response)
        if streamed_pieces:
            what += f" after {streamed_pieces} streamed piece(s); the partial answer was discarded"
        tried = f"{1 + self.spec.max_retries} attempts" if retried and self.spec.max_retries else "not retried"
        tag = f"{type(exc).__name__}, " if isinstance(exc, (openai.OpenAIError, json.JSONDecodeError)) else ""
        return ModelCallError(f"{self.where}: {what} ({tag}{tried})")

    def _what(self, exc: Exception, openai: Any) -> str:
        if isinstance(exc, openai.APITimeoutError):
            return f"no answer within the {self.spec.timeout:g} s timeout"
        if isinstance(exc, openai.APIConnectionError):
            cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
            if cause == "ConnectError":
                return "could not connect"
            return "the connection broke before the answer was complete"
        if isinstance(exc, openai.APIStatusError):
            detail = exc.body.get("message") if isinstance(exc.body, dict) else exc.body
            reason = getattr(exc.response, "reason_phrase", "") or ""
            text = f"the endpoint answered HTTP {exc.status_code} {reason}".rstrip()
            if detail:
                text += f": {' '.join(str(detail).split())[:160]}"
            wait = exc.response.headers.get("retry-after")
            return text + (f"; Retry-After {wait} s" if wait else "")
        if isinstance(exc, json.JSONDecodeError):
            return "the endpoint's reply was not valid JSON"
        if isinstance(exc, IndexError):  # autogen reads choices[0] of the completion
            return 'the endpoint\'s reply had no choices (an empty "choices" list)'
        if isinstance(exc, StreamCutShort):
            return "the streamed answer stopped before the model finished (no finish_reason)"
        first = (str(exc).strip().splitlines() or [""])[0]
        return first or "the call failed"


@functools.cache
def _checked_openai_client() -> type:
    """OpenAIChatCompletionClient, with failures explained and cut-short streams refused.

    Built on first use: importing the openai client costs start-up time that commands without a
    remote model should not pay."""
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    class CheckedOpenAIChatCompletionClient(OpenAIChatCompletionClient):
        def __init__(self, failure: CallFailure, **kwargs: Any):
            super().__init__(**kwargs)
            # 408/409/429/5xx unless Retry-After exceeds 120 s or x-should-retry says no
            failure.retried_status = self._client._should_retry
            self._failure = failure

        async def create(self, *args: Any, **kwargs: Any) -> CreateResult:
            try:
                return await super().create(*args, **kwargs)
            except Exception as exc:
                raise self._failure(exc) from exc

        async def create_stream(self, *args: Any, **kwargs: Any):  # type: ignore[override]
            pieces = 0
            try:
                async for item in super().create_stream(*args, **kwargs):
                    pieces += not isinstance(item, CreateResult)
                    yield item
            except Exception as exc:
                raise self._failure(exc, streamed_pieces=pieces) from exc

        # autogen turns whatever arrived into a result, even when the stream stopped halfway (no [DONE],
        # no finish_reason): a partial draft would then be reviewed and could be delivered.
        def _create_stream_chunks(self, *args: Any, **kwargs: Any):
            return _finished_or_raise(super()._create_stream_chunks(*args, **kwargs))

        def _create_stream_chunks_beta_client(self, *args: Any, **kwargs: Any):
            return _finished_or_raise(super()._create_stream_chunks_beta_client(*args, **kwargs))

    return CheckedOpenAIChatCompletionClient


async def _finished_or_raise(chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    finished, count = False, 0
    try:
        async for chunk in chunks:
            count += 1
            finished = finished or any(choice.finish_reason for choice in chunk.choices)
            yield chunk
    except Exception as exc:
        exc.after_chunks = count  # type: ignore[attr-defined]
        raise
    if not finished:
        raise StreamCutShort()


PieceHook = Callable[[str], None]


def combined_token(tokens: list[CancellationToken | None]) -> CancellationToken:
    """One token that any of the given ones cancels (the call's own, the turn's)."""
    combined = CancellationToken()
    for token in tokens:
        if token is not None:
            token.add_callback(combined.cancel)
    return combined


async def call_model(
    model: ModelHandle,
    messages: list[LLMMessage],
    args: dict,
    tokens: list[CancellationToken | None],
    on_piece: PieceHook | None = None,
) -> CreateResult:
    """One model call that any of the given tokens can cancel, even with a client that ignores tokens.

    With on_piece, the call streams and hands over each piece of text as it arrives (live views only:
    the pieces are unreviewed); the result is the same CreateResult either way.
    """
    combined = combined_token(tokens)
    async with model.slot():
        if on_piece is None:
            call = model.client.create(messages, extra_create_args=args, cancellation_token=combined)
        else:
            call = _streamed(model, messages, args, combined, on_piece)
        future = asyncio.ensure_future(call)
        combined.link_future(future)
        return await future


async def _streamed(
    model: ModelHandle, messages: list[LLMMessage], args: dict, token: CancellationToken, on_piece: PieceHook
) -> CreateResult:
    result: CreateResult | None = None
    async for item in model.client.create_stream(
        messages, extra_create_args={**args, **model.stream_args()}, cancellation_token=token
    ):
        if isinstance(item, CreateResult):
            result = item
        elif item:
            on_piece(item)
    if result is None:
        raise RuntimeError(f"model {model.label} ended its stream without a result")
    return result


def text_of(content: object) -> str:
    return content if isinstance(content, str) else str(content)
