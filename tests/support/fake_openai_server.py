"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: scripted, and it records what it was sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Responder = Callable[[dict], str]


def completion(body: dict, content: str, n: int, logprobs: list[dict] | None = None) -> dict:
    """A whole (non-streamed) chat completion carrying `content` (and `logprobs.content` when given)."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [choice],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def stream_events(body: dict, content: str, n: int) -> list[dict]:
    """The server-sent events of a streamed completion, word by word, ending with finish_reason
    (and a usage chunk when asked for); the caller writes `data: [DONE]` after them."""
    base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0, "model": body.get("model", "fake")}
    words = content.split(" ")
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [
        {**base, "choices": [{"index": 0, "delta": {"content": w + (" " if i < len(words) - 1 else "")}}]}
        for i, w in enumerate(words)
    ]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)},
            }
        )
    return events


class FakeOpenAI:
    """`responder(body)` gives the reply text, or (text, logprobs content list) for a server that returns
    token log-probabilities. A streamed request (stream: true) gets it word by word as
    server-sent events, `chunk_delay` seconds apart (a slow model, for progress and cancellation tests)."""

    def __init__(self, responder: Responder, chunk_delay: float = 0.0):
        self.responder = responder
        self.chunk_delay = chunk_delay
        self.disconnects = 0  # streams the client walked away from
        self.requests: list[dict] = []
        self.auth_headers: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append(body)
                outer.auth_headers.append(self.headers.get("Authorization", ""))
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                logprobs = None
                try:
                    content = outer.responder(body)
                    if isinstance(content, tuple):
                        content, logprobs = content
                except Exception as exc:  # a scripted upstream failure: a 500 with an OpenAI-style error body
                    body = json.dumps({"error": {"message": str(exc), "type": "server_error"}}).encode()
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if body.get("stream"):
                    self._stream(body, content)
                    return
                payload = json.dumps(completion(body, content, len(outer.requests), logprobs)).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    outer.disconnects += 1  # the client was killed or cancelled mid-answer

            def _stream(self, body: dict, content: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for event in stream_events(body, content, len(outer.requests)):
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                        if outer.chunk_delay:
                            time.sleep(outer.chunk_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    outer.disconnects += 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
