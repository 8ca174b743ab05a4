"""The embedded model as an AutoGen ChatCompletionClient, run in-process by llama-cpp-python.

autogen-ext's LlamaCppChatCompletionClient sends no max_tokens, cannot stream and
lets two agents call one llama.cpp context at once. This subclass fixes all three:
a generation cap, real token streaming, and an asyncio lock so one llama.cpp context
safely serves every agent that uses it. Generation runs in a worker thread and
stops between tokens when the caller cancels.

`for_role()` gives a role its own client: its own llama.cpp context (KV cache) and lock over the
weights this client loaded (one copy in memory), so two roles neither evict each other's prompt
prefix nor wait for each other (models.yaml `contexts: per_role`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    LLMMessage,
    ModelFamily,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from autogen_ext.models.llama_cpp import LlamaCppChatCompletionClient
from loguru import logger
from pydantic import BaseModel

from chaperone.models import draft_states
from chaperone.models.llama_contexts import ContextStats, context_on, count_reads
from chaperone.models.worker_thread import run_to_end

EMBEDDED_MODEL_INFO = ModelInfo(
    vision=False, function_calling=False, json_output=True, structured_output=True, family=ModelFamily.UNKNOWN
)
_DONE = object()


def to_llama_messages(messages: Sequence[LLMMessage]) -> list[dict[str, str]]:
    converted: list[dict[str, str]] = []
    for msg in messages:
        if isinstance(msg, SystemMessage):
            converted.append({"role": "system", "content": msg.content})
        elif isinstance(msg, UserMessage) and isinstance(msg.content, str):
            converted.append({"role": "user", "content": msg.content})
        elif isinstance(msg, AssistantMessage) and isinstance(msg.content, str):
            converted.append({"role": "assistant", "content": msg.content})
        else:
            raise ValueError(f"the embedded model takes text messages only, not {type(msg).__name__}")
    return converted


class EmbeddedChatCompletionClient(LlamaCppChatCompletionClient):
    """One llama.cpp context, shared by every agent that uses this client, one call at a time."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 42,
        state_cache_mb: int = 512,
        default_max_tokens: int = 512,
        weights_of: EmbeddedChatCompletionClient | None = None,
    ) -> None:
        """`weights_of`: build this client's own context over that client's loaded weights instead of loading
        `model_path` (see `for_role`); the context settings are then that client's."""
        if weights_of is None:
            super().__init__(
                model_info=EMBEDDED_MODEL_INFO,
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_batch=n_batch,
                seed=seed,
                verbose=False,
            )
        else:  # what LlamaCppChatCompletionClient.__init__ sets, without loading a second copy of the weights
            self._model_info = EMBEDDED_MODEL_INFO
            self.llm = context_on(weights_of.llm)
            self._total_usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.stats = ContextStats()
        count_reads(self.llm, self.stats)
        if state_cache_mb > 0:
            # Saved prompt states let a role's fixed prefix survive its other calls; the cache keeps one logits
            # row per state and counts every byte it holds, so state_cache_mb is what it really takes.
            from chaperone.models.state_cache import LastRowStateCache

            self.llm.set_cache(LastRowStateCache(capacity_bytes=state_cache_mb << 20))
        self._lock = asyncio.Lock()
        self._default_max_tokens = default_max_tokens
        self._seed = seed
        self._state_cache_mb = state_cache_mb
        self.model_name = Path(model_path).name
        self._model_path = Path(model_path)
        self._formatter: Any = None
        self._n_threads = n_threads
        self._extractor: Any = None
        self._capture: Any = None  # set by enable_capture(): hidden states readable in this context
        self._role_clients: list[EmbeddedChatCompletionClient] = []
        self._weights_client = weights_of
        # While a draft is written in this context (capture enabled): the queue of reads its thread runs between
        # two tokens (models/between_tokens.py); None otherwise.
        self._writing: Any = None

    def for_role(self, *, default_max_tokens: int) -> EmbeddedChatCompletionClient:
        """A client with its own llama.cpp context (KV cache) and its own lock over this client's weights: the
        two run at the same time and neither evicts the other's cached prompt. Same seed and state cache size.
        Closed with this client (before the weights are freed)."""
        owner = self._weights_client or self
        client = EmbeddedChatCompletionClient(
            self._model_path,
            n_threads=self._n_threads,
            seed=self._seed,
            state_cache_mb=self._state_cache_mb,
            default_max_tokens=default_max_tokens,
            weights_of=owner,
        )
        owner._role_clients.append(client)
        return client

    async def close(self) -> None:
        """Free the contexts built on these weights first (theirs, the hidden-state extractor's), then these.

        Each once the call in flight on it has ended: a call holds its client's lock until its worker thread
        returns, and freeing a context a thread still computes in is a segmentation fault (a server stopped
        while a cancelled warm-up still read its prompt)."""
        for client in self._role_clients:
            await client.close()
        self._role_clients.clear()
        async with self._lock:
            if self._extractor is not None:
                with contextlib.suppress(Exception):
                    await run_to_end(self._extractor.close)  # waits for an extraction in flight (its own lock)
                self._extractor = None
            self.llm.close()

    def hidden_state_extractor(self) -> Any:
        """The hidden states of this model instance (chaperone.models.hidden_states), for a reviewer head:
        its own llama.cpp context on the same weights, built on first use."""
        if self._extractor is None:
            from chaperone.models.hidden_states import HiddenStateExtractor

            self._extractor = HiddenStateExtractor(self.llm, n_threads=self._n_threads)
        return self._extractor

    @property
    def weights_owner(self) -> EmbeddedChatCompletionClient:
        """The client that loaded the weights: its context is the assistant's (ModelPool gives every other role a
        context of its own, `for_role`)."""
        return self._weights_client or self

    def enable_capture(self) -> None:
        """Let a reviewer read hidden states in this client's own context (chaperone.models.in_context): its
        context is rebuilt with an idle eval callback, once; what it held is dropped (a cache, nothing more)."""
        if self._capture is None:
            from chaperone.models.in_context import attach_capture

            self._capture = attach_capture(self.llm)

    async def read_in_context(
        self, messages: Sequence[Mapping[str, str]], layers: Sequence[int], *, max_new: int, while_writing: bool = True
    ) -> Any:
        """The last token's hidden states for these chat messages read on top of what this context holds (an
        `Extraction`), or None when it cannot help: capture not enabled, the context busy with something other
        than writing, or more than `max_new` tokens to read. Never waits for the context to be free: while its
        role writes, the writing thread reads between two tokens (in_context.read_while_writing), unless
        `while_writing` is False: then None, and the caller reads in its own context, alongside the writing."""
        if self._capture is None:
            return None
        from chaperone.models.hidden_states import chat_tokens
        from chaperone.models.in_context import read_held, read_while_writing

        if self._lock.locked():
            if self._writing is None or not while_writing:
                return None
            return await read_while_writing(self._writing, self.llm, self._capture, messages, layers, max_new=max_new)

        async with self._lock:
            tokens = chat_tokens(self.llm, messages)
            # One forward pass cannot be stopped: a cancelled caller keeps the lock until it ends.
            return await run_to_end(read_held, self.llm, self._capture, tokens, layers, max_new=max_new)

    def _chat_prompt(self, messages: Sequence[LLMMessage]) -> list[int]:
        """The tokens create_chat_completion would feed for these messages, up to the assistant's turn.

        Built with the same formatter llama-cpp-python picks for this GGUF (its own chat template), so the
        prompt and its KV-cache prefix are the ones the generating calls use."""
        from llama_cpp import llama_chat_format

        llm = self.llm
        if self._formatter is None:
            eos, bos = llm.token_eos(), llm.token_bos()
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=llm.metadata["tokenizer.chat_template"],
                eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        result = self._formatter(messages=to_llama_messages(messages))
        return llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def _option_logprobs(
        self, messages: Sequence[LLMMessage], prefix: str, options: Sequence[str]
    ) -> tuple[dict[str, float], int]:
        """Worker thread: log-probabilities of each option's first token right after `prefix` in the reply.

        One forward pass over the prompt (its cached prefix reused, as the generating calls do), no
        token generated. An option's first token is where its tokenisation leaves the common prefix."""
        import numpy as np
        from llama_cpp import Llama

        llm = self.llm
        base = self._chat_prompt(messages)
        text_ids = [llm.tokenize(f"{prefix}{o}".encode(), add_bos=False, special=False) for o in options]
        common = min(Llama.longest_token_prefix(text_ids[0], ids) for ids in text_ids)
        if any(len(ids) <= common for ids in text_ids):
            raise ValueError(f"options {list(options)!r} do not have distinct first tokens after {prefix!r}")
        tokens = base + text_ids[0][:common]
        if llm.cache is not None:  # as Llama._create_completion does: a saved state with a longer prefix
            try:
                item = llm.cache[tokens]
                if Llama.longest_token_prefix(item.input_ids.tolist(), tokens) > Llama.longest_token_prefix(
                    llm._input_ids.tolist(), tokens
                ):
                    llm.load_state(item)
            except KeyError:
                pass
        reuse = min(Llama.longest_token_prefix(llm._input_ids.tolist(), tokens), len(tokens) - 1)
        llm.n_tokens = reuse  # eval() drops the KV cache past this point and reads the rest
        self.stats.calls += 1
        self.stats.prompt_tokens += len(tokens)
        llm._chaperone_prompt_pending = True
        llm.eval(tokens[reuse:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        log_z = top + np.log(np.exp(logits - top).sum())
        if llm.cache is not None:  # the cache keeps one logits row of the saved state (state_cache.py)
            llm.cache[tokens] = llm.save_state()
        return {o: float(logits[ids[common]] - log_z) for o, ids in zip(options, text_ids, strict=False)}, len(tokens)

    async def option_logprobs(
        self, messages: Sequence[LLMMessage], prefix: str, options: Sequence[str]
    ) -> tuple[dict[str, float], int]:
        """Log-probability of each option starting the reply after `prefix`, and the prompt's token count.

        Runs in a worker thread under the model's lock, like every other call on this instance."""
        async with self._lock:
            started = time.perf_counter()
            # One forward pass cannot be stopped: a cancelled caller keeps the lock until it ends.
            result = await run_to_end(self._option_logprobs, messages, prefix, options)
            self._total_usage["prompt_tokens"] += result[1]
            logger.debug(
                "embedded model: scored {} options over {} prompt tokens in {:.2f}s",
                len(options),
                result[1],
                time.perf_counter() - started,
            )
            return result

    def _request(self, messages: Sequence[LLMMessage], json_output: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {"max_tokens": self._default_max_tokens, "seed": self._seed}
        args.update(extra)
        if isinstance(json_output, type) and issubclass(json_output, BaseModel):
            args["response_format"] = {"type": "json_object", "schema": json_output.model_json_schema()}
        elif json_output is True:
            args.setdefault("response_format", {"type": "json_object"})
        args["messages"] = to_llama_messages(messages)
        args["stream"] = True
        return args

    def _generate(
        self,
        args: dict[str, Any],
        sink: asyncio.Queue[Any],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
        draft: Any = None,
    ) -> None:
        """Worker thread: stream tokens into the queue; stop between tokens when asked. `draft` (a DraftStates):
        the draft tokens' hidden states are recorded into it as they are evaluated."""
        finish = "unknown"
        pieces = 0
        writing = self._writing
        floor: int | None = None
        self.llm._chaperone_prompt_pending = True
        if draft is not None:
            self._capture.follow(draft)
        try:
            for chunk in self.llm.create_chat_completion(**args):
                if stop.is_set():
                    finish = "cancelled"
                    break
                choice = chunk["choices"][0]
                piece = choice.get("delta", {}).get("content")
                if piece:
                    pieces += 1  # llama-cpp-python streams one chunk per generated token
                    loop.call_soon_threadsafe(sink.put_nowait, piece)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if writing is not None:
                    # The generator is suspended at its yield: the context is free until the next chunk is asked
                    # for. At the first chunk it holds the prompt (read in batches) and maybe a few generated
                    # tokens; everything after that was evaluated one token at a time and may be re-evaluated.
                    floor = self.llm.n_tokens if floor is None else floor
                    writing.run_pending(floor)
            if writing is not None and floor is not None and finish != "cancelled":
                writing.run_pending(floor)  # handed in after the last chunk: the context holds the whole draft
            # The context then holds the prompt and every generated token but the last one evaluated;
            # the end-of-turn token is generated but never streamed.
            prompt_tokens = self.llm.n_tokens - pieces + (1 if finish == "length" else 0)
            self.stats.calls += 1
            self.stats.prompt_tokens += prompt_tokens
            loop.call_soon_threadsafe(sink.put_nowait, ("finish", finish, pieces, prompt_tokens))
        except BaseException as exc:  # handed to the event loop, raised there
            loop.call_soon_threadsafe(sink.put_nowait, exc)
        finally:
            if draft is not None:
                self._capture.unfollow()
                draft.end()
            if writing is not None:
                writing.close()  # reads handed in from now on are answered None: their callers read elsewhere
            self.llm._chaperone_prompt_pending = False
            loop.call_soon_threadsafe(sink.put_nowait, _DONE)

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        if tools:
            raise ValueError("the embedded model client does not support tools")
        extra = dict(extra_create_args)
        draft = extra.pop(draft_states.ARG, None)
        args = self._request(messages, json_output, extra)
        async with self._lock:
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            if draft is not None and self._capture is not None:
                draft.begin(self.llm, len(self._chat_prompt(messages)), loop)
            else:
                draft = None  # no capture in this context: the caller sees the DraftStates never begun
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = threading.Event()
            if self._capture is not None:
                from chaperone.models.between_tokens import BetweenTokens

                self._writing = BetweenTokens()
            worker = threading.Thread(target=self._generate, args=(args, queue, loop, stop, draft), daemon=True)
            if cancellation_token is not None:
                cancellation_token.add_callback(stop.set)
            worker.start()
            parts: list[str] = []
            finish, completion_tokens, prompt_tokens = "unknown", 0, 0
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, tuple):
                        _, finish, completion_tokens, prompt_tokens = item
                        continue
                    parts.append(item)
                    yield item
            finally:
                stop.set()  # caller went away or was cancelled: let the worker stop between tokens
                if worker.is_alive():
                    await run_to_end(worker.join)  # a second cancellation must not free the lock under it
                self._writing = None
            if finish == "cancelled" or (cancellation_token is not None and cancellation_token.is_cancelled()):
                raise asyncio.CancelledError("generation cancelled")
            text = "".join(parts)
            usage = RequestUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            self._total_usage["prompt_tokens"] += usage.prompt_tokens
            self._total_usage["completion_tokens"] += usage.completion_tokens
            logger.debug(
                "embedded model: {} prompt + {} completion tokens in {:.2f}s ({})",
                usage.prompt_tokens,
                usage.completion_tokens,
                time.perf_counter() - started,
                finish,
            )
            yield CreateResult(
                content=text,
                usage=usage,
                finish_reason="length" if finish == "length" else "stop",
                cached=False,
            )

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        result: CreateResult | None = None
        async for item in self.create_stream(
            messages,
            tools=tools,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        ):
            if isinstance(item, CreateResult):
                result = item
        assert result is not None
        return result
