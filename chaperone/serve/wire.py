"""The OpenAI chat-completions wire format, as far as a guarded text chat can honour it.

Requests are checked field by field: what the server acts on is parsed, what the deployer chose to
accept without acting on is listed back to the client, anything else is a 400 that names the field.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

# Fields the server acts on. "max_tokens"/"max_completion_tokens" cap each draft of the assistant.
SUPPORTED_FIELDS = frozenset(
    {"model", "messages", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "user"}
)
_ROLES = {"system", "developer", "user", "assistant"}
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class RequestError(Exception):
    """A request the server will not serve: becomes an OpenAI-style error with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


def error_body(message: str, *, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def estimate_tokens(text: str) -> int:
    """Words and punctuation marks: no tokenizer counts fewer, so a cap checked this way is never stricter
    than stated (a model-specific tokenizer would need the model's files on the server)."""
    return len(_WORDISH.findall(text))


@dataclass
class ChatRequest:
    model: str
    history: list[tuple[str, str]]  # earlier (user, assistant) exchanges, oldest first
    last_user: str
    system: list[str] = field(default_factory=list)  # the client's system/developer messages, in order
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    user: str | None = None
    ignored: list[str] = field(default_factory=list)  # accepted fields the server does not act on


def _bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> RequestError:
    return RequestError(400, message, param=param, code=code)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(
                    f"{where}.content[{i}]: only text parts are supported (got {kind!r})",
                    f"{where}.content",
                    "unsupported_content",
                )
            parts.append(part["text"])
        return "\n".join(parts)
    if content is None:
        raise _bad(f"{where}.content is missing: tool calls are not supported", f"{where}.content")
    raise _bad(f"{where}.content must be a string or a list of text parts", f"{where}.content")


def parse_request(
    body: Any, *, ignored_fields: set[str], max_messages: int, max_message_tokens: int, system_policy: str
) -> ChatRequest:
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    unknown = sorted(k for k in body if k not in SUPPORTED_FIELDS and k not in ignored_fields)
    if unknown:
        raise _bad(
            f"unsupported field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} — this endpoint "
            "returns reviewed text answers only (no tools, images, logprobs or response formats)",
            unknown[0],
            "unsupported_parameter",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: one of the names GET /v1/models lists", "model", "missing_model")
    n = body.get("n", 1)
    if n not in (1, None):
        raise _bad("only n=1 is supported: each answer is reviewed on its own", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise _bad("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise _bad("stream_options supports only include_usage", "stream_options")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 65536
    ):  # OpenAI's own floor is 1: a short cap is the client's choice
        raise _bad("max_tokens must be an integer from 1 to 65536", "max_tokens")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise _bad("'user' must be a string of at most 256 characters", "user")

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list", "messages")
    if len(messages) > max_messages:
        raise RequestError(
            400,
            f"too many messages: {len(messages)} (this server takes at most {max_messages})",
            param="messages",
            code="too_many_messages",
        )
    system: list[str] = []
    turns: list[tuple[str, str]] = []  # (role, text) of user and assistant messages
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object", where)
        role = msg.get("role")
        if role not in _ROLES:
            raise _bad(
                f"{where}.role {role!r} is not supported (system, developer, user, assistant; no tools)",
                f"{where}.role",
                "unsupported_role",
            )
        extra = sorted(set(msg) - {"role", "content", "name"})
        if extra:
            raise _bad(
                f"{where}: unsupported field {extra[0]!r} (no tool calls, audio or refusals)",
                f"{where}.{extra[0]}",
                "unsupported_parameter",
            )
        text = _text(msg.get("content"), where)
        tokens = estimate_tokens(text)
        if tokens > max_message_tokens:
            raise RequestError(
                400,
                f"{where} is too long: about {tokens} tokens (at most {max_message_tokens})",
                param=f"{where}.content",
                code="message_too_long",
            )
        if role in ("system", "developer"):
            if system_policy == "reject":
                raise _bad(
                    f"{where}: system messages are not accepted by this server", f"{where}.role", "system_not_accepted"
                )
            if system_policy == "append" and text.strip():
                system.append(text)
        else:
            turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise _bad("the last message (after any system messages) must come from the user", "messages")
    if not turns[-1][1].strip():
        raise _bad("the last user message is empty", "messages")
    history: list[tuple[str, str]] = []
    pending: list[str] = []
    for role, text in turns[:-1]:
        if role == "user":
            pending.append(text)
        else:  # consecutive messages of one side are read as one
            history.append(("\n\n".join(pending), text))
            pending = []
    last = "\n\n".join([*pending, turns[-1][1]])
    ignored = sorted(k for k in body if k in ignored_fields)
    return ChatRequest(
        model=model,
        history=history,
        last_user=last,
        system=system,
        stream=bool(stream),
        include_usage=bool(options.get("include_usage")),
        max_tokens=max_tokens,
        user=user,
        ignored=ignored,
    )


def completion(
    completion_id: str, model: str, content: str, finish_reason: str, usage: dict[str, int], extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage,
        "chaperone": extra,  # ignored by OpenAI clients; read with response.model_extra["chaperone"]
    }


def chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    usage: dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}] if choices else [],
    }
    if usage is not None:
        body["usage"] = usage
    if extra is not None:
        body["chaperone"] = extra
    return body


def pieces(text: str, size: int = 24) -> list[str]:
    """The approved answer cut into stream chunks at word boundaries (the whole answer is already approved)."""
    out, current = [], ""
    for word in re.findall(r"\S+\s*|\s+", text):
        if current and len(current) + len(word) > size:
            out.append(current)
            current = ""
        current += word
    if current:
        out.append(current)
    return out or [""]
