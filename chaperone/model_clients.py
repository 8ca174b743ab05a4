"""Build AutoGen model clients from the validated models.yaml schema (never from load_component).

One `ModelPool` per process: each named model is built once, so two agents that
name the same embedded model share one loaded llama.cpp instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from autogen_core.models import ChatCompletionClient, ModelInfo

from chaperone.errors import ChaperoneError, ConfigError
from chaperone.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.schema import EmbeddedModelSpec, GenerationSpec, ModelsFile, OpenAIModelSpec, ReplayModelSpec


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

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.limit is None:
            yield
        else:
            async with self.limit:
                yield

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

    def get(self, name: str, *, max_tokens: int = 512) -> ModelHandle:
        spec = self.models.models.get(name)
        if spec is None:
            raise ConfigError(self.models_path, f"model '{name}' is not defined", where="models")
        if isinstance(spec, ReplayModelSpec):
            return self._build(name, spec, max_tokens)  # a script is consumed: each conversation gets its own
        if name not in self._handles:
            self._handles[name] = self._build(name, spec, max_tokens)
        return self._handles[name]

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
            from chaperone.embedded_model import ensure_model
            from chaperone.llama_client import EmbeddedChatCompletionClient

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
        raise ChaperoneError(f"model '{name}': unsupported kind")  # unreachable: the schema limits kinds

    def _openai(self, name: str, spec: OpenAIModelSpec) -> ChatCompletionClient:
        from autogen_ext.models.openai import OpenAIChatCompletionClient

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
        return OpenAIChatCompletionClient(**kwargs)

    async def close(self) -> None:
        for handle in self._handles.values():
            with contextlib.suppress(Exception):
                await handle.client.close()
        self._handles.clear()
