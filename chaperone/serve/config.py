"""The schema of config/serve.yaml: where the server listens, who gets in, what it serves, its limits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from chaperone.config import yaml_files
from chaperone.config.schema import Name, Strict
from chaperone.errors import ConfigError


class KeySources(Strict):
    """Where the bearer keys clients must send come from. Never from this file: it may be committed."""

    env: str | None = Field("CHAPERONE_API_KEYS", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = None  # outside the project folder; one key a line, "name=key" or "name=sha256:HEX"


class ServedModel(Strict):
    """One name a client may put in "model": a guarded configuration (agents + policy)."""

    description: str = ""
    policy: Name | None = None  # default: settings.yaml's default_policy
    assistant: Name | None = None  # agent names (agents/*.yaml); default: settings.yaml's agents
    reviewer: Name | None = None
    assistant_model: Name | None = None  # model names (config/models.yaml); default: the agents' own
    reviewer_model: Name | None = None
    max_revisions: int | None = Field(None, ge=0, le=10)


class Limits(Strict):
    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)
    max_messages: int = Field(64, ge=1, le=10_000)
    max_message_tokens: int = Field(4000, ge=1, le=1_000_000)
    max_concurrent_per_key: int = Field(4, ge=1, le=10_000)
    requests_per_minute: int = Field(60, ge=1, le=1_000_000)
    request_timeout_s: float = Field(300.0, gt=0, le=86_400)
    max_concurrent_requests: int = Field(64, ge=1, le=100_000)  # server-wide; more wait their turn


class ServeConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    keys: KeySources = KeySources()
    models: dict[Name, ServedModel] = Field(min_length=1)
    limits: Limits = Limits()
    # A client's system (or developer) messages: "append" adds them to the assistant's own system prompt
    # (the reviewer never reads them as instructions), "ignore" drops them, "reject" answers 400.
    client_system_messages: Literal["append", "ignore", "reject"] = "append"
    ignored_fields: list[str] = Field(
        default_factory=list
    )  # request fields accepted but not acted on; every other unknown field is a 400
    stream_keepalive_s: float = Field(10.0, gt=0, le=600)  # SSE comments while the reviewer decides
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)  # on SIGTERM: time in-flight requests get to finish

    @model_validator(mode="after")
    def _no_overlap(self) -> ServeConfig:
        from chaperone.serve.wire import SUPPORTED_FIELDS

        clash = sorted(set(self.ignored_fields) & SUPPORTED_FIELDS)
        if clash:
            raise ValueError(f"ignored_fields lists fields the server acts on: {', '.join(clash)}")
        return self


def load_serve_config(root: Path) -> ServeConfig:
    path = root / "config" / "serve.yaml"
    if not path.exists():
        raise ConfigError(path, "not found: the server's settings (models served, keys, limits) live here")
    return yaml_files.load(ServeConfig, path)
