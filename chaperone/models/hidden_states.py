"""The embedded model's hidden states: the residual stream after chosen layers, at a prompt's last token.

llama-cpp-python's `Llama()` takes no eval callback, so the extractor builds its own llama.cpp context on
the loaded model's weights (shared, not loaded twice) with `cb_eval` set in that context's parameters.
llama.cpp asks the callback about every graph node before computing it; the callback says yes only to the
tensors named `l_out-N` (the output of layer N) that were requested, and when one has been computed copies
its last row (the batch's last token) out through libggml-base's exported C functions. Nothing global is
patched: only the extractor's own context calls the callback, and the callback object lives as long as it.

One prompt at a time (a lock). By default from a fresh KV cache, so the same tokens give the same vectors
(the training features). With `reuse=True` (the live reviewer) the tokens the context already holds from the
previous prompt are kept and only the rest is read: chunked review asks about a growing draft, whose prompt
shares everything up to the last chunk with the one before. A causal model's state at a token depends only
on the tokens before it, so the vectors are the same up to float rounding (a test measures how close).
`aextract` runs the work in a thread so async callers keep their event loop.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chaperone.errors import ChaperoneError
from chaperone.models import gguf
from chaperone.models.worker_thread import run_to_end

N_LAYERS = 28  # Qwen2.5-Coder-1.5B: layers 0..27
WIDTH = 1536


class HiddenStateError(ChaperoneError):
    """Hidden states could not be read (bad layer, prompt too long, llama.cpp refused)."""


class PromptTooLong(HiddenStateError):
    """The prompt has more tokens than the extractor's context: the caller may clip it and try again."""

    def __init__(self, n_tokens: int, n_ctx: int):
        super().__init__(f"the prompt is {n_tokens} tokens, more than the context's {n_ctx}")
        self.n_tokens, self.n_ctx = n_tokens, n_ctx


@dataclass(frozen=True)
class Extraction:
    """The last token's hidden state at each requested layer (rows in the order asked), and what it cost."""

    layers: tuple[int, ...]
    states: np.ndarray  # float32, shape (len(layers), width)
    n_tokens: int
    seconds: float
    evaluated: int = -1  # of n_tokens, those llama.cpp read (the rest were kept from the previous prompt)
    # Read between two tokens of a draft being written (models/in_context.py): the draft's own tokens the read
    # dropped and evaluated again afterwards, so the generation continues from its own context.
    restored: int = 0

    def layer(self, n: int) -> np.ndarray:
        return self.states[self.layers.index(n)]


@dataclass
class ExtractionStats:
    """What the extractor's context read (figures for the benchmarks, never decisions)."""

    calls: int = 0
    prompt_tokens: int = 0  # the prompts' full lengths
    prompt_evaluated: int = 0  # of those, the tokens llama.cpp read (the rest were kept from the previous prompt)
    in_context: int = 0  # of the calls, those read in the assistant's context instead (models/in_context.py)
    restored: int = 0  # draft tokens evaluated again after reads between two tokens (not prompt tokens)

    def count(self, extraction: Extraction) -> None:
        self.calls += 1
        self.prompt_tokens += extraction.n_tokens
        self.prompt_evaluated += extraction.evaluated
        self.restored += extraction.restored


class _Ggml:
    """The few libggml-base functions the callback needs, typed once."""

    def __init__(self) -> None:
        import llama_cpp

        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        candidates = sorted(lib_dir.glob("libggml-base.*"))
        if not candidates:
            raise HiddenStateError(f"libggml-base not found in {lib_dir}: this llama-cpp-python build is unexpected")
        lib = ctypes.CDLL(str(candidates[0]))
        self.get_name = lib.ggml_get_name
        self.get_name.argtypes = [ctypes.c_void_p]
        self.get_name.restype = ctypes.c_char_p
        for fn in ("ggml_nelements", "ggml_nrows"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_int64
        lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        lib.ggml_backend_tensor_get.restype = None
        self.nelements = lib.ggml_nelements
        self.nrows = lib.ggml_nrows
        self.nbytes = lib.ggml_nbytes
        self.tensor_get = lib.ggml_backend_tensor_get


_GGML: _Ggml | None = None
_GGML_LOCK = threading.Lock()


def _ggml() -> _Ggml:
    global _GGML
    with _GGML_LOCK:
        if _GGML is None:
            _GGML = _Ggml()
        return _GGML


class LayerCapture:
    """llama.cpp's eval callback for one context: while armed with layers, copies the last row (the batch's last
    token) of each requested `l_out-N` tensor out through libggml-base; idle, it asks for nothing, so the graph
    runs as without it. Kept alive by its owner: llama.cpp holds only a raw pointer to the callback."""

    def __init__(self) -> None:
        import llama_cpp

        self._ggml = _ggml()
        self.wanted: dict[bytes, int] = {}
        self.captured: dict[int, np.ndarray] = {}
        self.error: BaseException | None = None
        # A draft being written (models/draft_states.py): while no read is armed, each single-token pass's
        # outputs of its layers go to it.
        self.following: Any = None
        self._follow_names: dict[bytes, int] = {}
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_tensor)

    def follow(self, draft: Any) -> None:
        """Record a draft's token states (a DraftStates) until `unfollow`."""
        self._follow_names = {f"l_out-{n}".encode(): n for n in draft.layers}
        self.following = draft

    def unfollow(self) -> None:
        self.following = None

    def arm(self, layers: Sequence[int]) -> None:
        self.wanted = {f"l_out-{n}".encode(): n for n in layers}
        self.captured, self.error = {}, None

    def disarm(self) -> None:
        self.wanted = {}

    def states(self, layers: Sequence[int], width: int) -> np.ndarray:
        """The captured rows in the order asked; HiddenStateError if llama.cpp never computed one."""
        if self.error is not None:
            raise HiddenStateError(f"reading the hidden states failed: {self.error}") from self.error
        missing = [n for n in layers if n not in self.captured]
        if missing:
            raise HiddenStateError(f"llama.cpp never computed the outputs of layers {missing}")
        return np.stack([self.captured[n] for n in layers]) if layers else np.empty((0, width), dtype=np.float32)

    def _on_tensor(self, tensor: int, ask: bool, _user_data: int) -> bool:
        """Runs inside llama_decode, on its thread."""
        if not self.wanted:
            following = self.following
            if following is None:
                return not ask  # idle: observe nothing, never stop the computation
            return self._follow(following, tensor, ask)
        try:
            g = self._ggml
            name = g.get_name(tensor)
            layer = self.wanted.get(name)
            if ask:
                return layer is not None
            if layer is None:
                return True
            nrows = g.nrows(tensor)
            if nrows <= 0:
                return True
            row_bytes = g.nbytes(tensor) // nrows
            width = g.nelements(tensor) // nrows
            if row_bytes != width * 4:
                raise HiddenStateError(f"{name!r} is not a contiguous float32 tensor ({row_bytes} bytes a row)")
            row = np.empty(width, dtype=np.float32)
            g.tensor_get(tensor, row.ctypes.data, (nrows - 1) * row_bytes, row_bytes)
            self.captured[layer] = row
            return True
        except BaseException as exc:  # never let an exception cross the C boundary
            self.error = exc
            return False  # stops the graph computation

    def _follow(self, draft: Any, tensor: int, ask: bool) -> bool:
        """A generating pass while a draft is followed: the single token's row of its layers, handed to it."""
        try:
            g = self._ggml
            layer = self._follow_names.get(g.get_name(tensor))
            if ask:
                return layer is not None
            if layer is None or g.nrows(tensor) != 1:
                return True  # not a followed layer, or a batch (the prompt): its rows are no draft token's
            row = np.empty(g.nelements(tensor), dtype=np.float32)
            g.tensor_get(tensor, row.ctypes.data, 0, row.nbytes)
            draft.record(layer, row)
            return True
        except BaseException:  # never across the C boundary, never stop the draft: the chunk falls back
            self.following = None
            return True


def chat_tokens(llm: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The tokens of these chat messages up to the assistant's turn, with the GGUF's own chat template
    (the same formatter llama-cpp-python's chat completion picks, as the embedded client uses)."""
    from llama_cpp import llama_chat_format

    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
    result = formatter(messages=[{"role": m["role"], "content": m["content"]} for m in messages])
    return llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


class HiddenStateExtractor:
    """Reads the last token's hidden state at chosen layers of the embedded model, one prompt at a time."""

    def __init__(
        self,
        llm: Any,
        *,
        model_sha256: str = gguf.GGUF_SHA256,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_threads: int | None = None,
        capture: bool = True,
    ) -> None:
        """`llm` is a loaded `llama_cpp.Llama` (its weights are shared; its own context is left alone).
        `capture=False` builds the same context without the callback (to measure what capture costs)."""
        import llama_cpp
        from llama_cpp import _internals

        self.llm = llm
        self.model_sha256 = model_sha256
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self._lock = threading.Lock()
        self._held: list[int] = []  # the tokens whose keys and values the context holds, in order
        self.stats = ExtractionStats()
        self._capture = LayerCapture() if capture else None
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        # Every core by default: llama-cpp-python's own default is half of them, which halves prompt reading.
        threads = n_threads or os.cpu_count() or llm.context_params.n_threads
        params.n_threads = threads
        params.n_threads_batch = threads
        params.embeddings = False
        if self._capture is not None:
            params.cb_eval = self._capture.callback
            params.cb_eval_user_data = None
        self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.n_layers = int(llama_cpp.llama_model_n_layer(llm._model.model))
        self.width = int(llama_cpp.llama_model_n_embd(llm._model.model))

    @classmethod
    def load(cls, model_path: Path, *, n_threads: int | None = None, **kwargs: Any) -> HiddenStateExtractor:
        """Load the GGUF (refused unless its sha256 is the pinned one) and build an extractor on it."""
        from llama_cpp import Llama

        gguf.verify(Path(model_path))
        # The Llama's own context is only used for nothing heavier than tokenizing: keep it tiny.
        threads = n_threads or os.cpu_count()
        llm = Llama(model_path=str(model_path), n_ctx=256, n_batch=64, n_threads=threads, verbose=False)
        return cls(llm, model_sha256=gguf.GGUF_SHA256, n_threads=threads, **kwargs)

    def tokens(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return chat_tokens(self.llm, messages)

    # -- extraction --------------------------------------------------------------------------------------
    def extract(
        self, prompt: Sequence[int] | Sequence[Mapping[str, str]], layers: Sequence[int], *, reuse: bool = False
    ) -> Extraction:
        """Evaluate the prompt (token ids, or chat messages) once and return the last token's hidden state at
        each requested layer: from an empty cache, or with `reuse` keeping the longest prefix the context
        already holds (at least the last token is always read: its states are what is captured)."""
        import llama_cpp

        layers = tuple(int(n) for n in layers)
        bad = [n for n in layers if not 0 <= n < self.n_layers]
        if bad:
            raise HiddenStateError(f"layers {bad} do not exist: this model has layers 0..{self.n_layers - 1}")
        if layers and self._capture is None:
            raise HiddenStateError("this extractor was built without capture (capture=False)")
        as_messages = bool(prompt) and not isinstance(prompt[0], int)
        tokens = self.tokens(prompt) if as_messages else [int(t) for t in prompt]  # type: ignore[arg-type]
        if not tokens:
            raise HiddenStateError("an empty prompt has no last token")
        if len(tokens) > self.n_ctx:
            raise PromptTooLong(len(tokens), self.n_ctx)
        capture = self._capture
        with self._lock:
            if capture is not None:
                capture.arm(layers)
            started = time.perf_counter()
            memory = llama_cpp.llama_get_memory(self._ctx.ctx)
            keep = common_prefix(self._held, tokens, len(tokens) - 1) if reuse else 0
            self._held = []  # until this evaluation has succeeded, the context's contents are unknown
            if keep:
                llama_cpp.llama_memory_seq_rm(memory, 0, keep, -1)
            else:
                llama_cpp.llama_memory_clear(memory, True)
            try:
                decode(self._ctx, self._batch, tokens, keep, self.n_batch, capture)
            finally:
                if capture is not None:
                    capture.disarm()
            seconds = time.perf_counter() - started
            self._held = list(tokens)
            if capture is not None:
                states = capture.states(layers, self.width)
            else:
                states = np.empty((0, self.width), dtype=np.float32)
            result = Extraction(
                layers=layers, states=states, n_tokens=len(tokens), seconds=seconds, evaluated=len(tokens) - keep
            )
            self.stats.count(result)
        return result

    async def aextract(
        self, prompt: Sequence[int] | Sequence[Mapping[str, str]], layers: Sequence[int], *, reuse: bool = False
    ) -> Extraction:
        """`extract` in a worker thread: the event loop keeps running while llama.cpp computes.

        A forward pass cannot be stopped: a caller cancelled mid-pass (a chunk verdict the turn no longer needs)
        waits for it to end before its cancellation goes on, so no one closes the model or the context (a turn's
        end, a server's shutdown) while a thread still computes in it."""
        return await run_to_end(self.extract, prompt, layers, reuse=reuse)

    def close(self) -> None:
        """Free the context and batch, once an extraction in flight in another thread has ended."""
        with self._lock:
            self._ctx.close()
            self._batch.close()


def decode(ctx: Any, batch: Any, tokens: Sequence[int], start: int, n_batch: int, capture: LayerCapture | None) -> None:
    """Evaluate tokens[start:] on a llama.cpp context whose KV cache holds tokens[:start], in batches of n_batch
    (only the last token's logits asked for); a failure or a capture error is a HiddenStateError."""
    for first in range(start, len(tokens), n_batch):
        batch.set_batch(tokens[first : first + n_batch], n_past=first, logits_all=False)
        try:
            ctx.decode(batch)
        except RuntimeError as exc:
            why = capture.error if capture is not None and capture.error else exc
            raise HiddenStateError(f"llama.cpp could not evaluate the prompt: {why}") from exc
        if capture is not None and capture.error is not None:
            raise HiddenStateError(f"reading the hidden states failed: {capture.error}") from capture.error


def common_prefix(held: Sequence[int], tokens: Sequence[int], limit: int) -> int:
    """How many leading tokens `held` and `tokens` share, at most `limit`."""
    n = 0
    for a, b in zip(held, tokens, strict=False):
        if n >= limit or a != b:
            break
        n += 1
    return n
