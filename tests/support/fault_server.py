"""A real OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on cue, for fault-injection tests.

Each request gets a behaviour: from a queue given up front ("first two calls 503"), then `then` for every
later call; or from `choose(body, n)` (n counts from 1), e.g. by whether the request is the reviewer's.

Behaviours:
  ok                answer (text, or a verdict for requests with response_format; streamed if asked)
  429               rate limited, no Retry-After header
  429:N             rate limited with `Retry-After: N` (seconds)
  500, 503          server errors
  hang              say nothing until `hang_seconds` pass (past the client's timeout) or the server stops
  drop              headers and half the body, then the connection closes (a streamed request: chunked
                    transfer, half the events, then close without the last chunk)
  malformed         200, Content-Type application/json, a body that is not JSON
  empty_choices     200, valid JSON, "choices": []
  truncated_stream  200, server-sent events that stop mid-answer: no finish_reason, no [DONE], clean close
  stall_stream      200, half the server-sent events, then silence until `hang_seconds` pass

Every request's arrival (monotonic seconds), behaviour and body are kept in `hits`, so a test can count
the attempts and measure the gaps between them (backoff, Retry-After).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.fake_openai_server import completion, stream_events

Chooser = Callable[[dict, int], str]
Responder = Callable[[dict], str]

PARTIAL_DRAFT = "Here is the first half of an answer that never"


def default_responder(body: dict) -> str:
    """A plain answer for the assistant; an approval (or a critique, when asked for one) for the reviewer."""
    if "response_format" not in body:
        return "A plain, helpful answer."
    schema = (body["response_format"].get("json_schema") or {}).get("schema") or {}
    if "critique" in schema.get("properties", {}):
        return json.dumps({"critique": "Needs work.", "categories": []})
    return '{"ok_to_send": "yes"}'


@dataclass
class Hit:
    at: float  # time.monotonic() on arrival
    behaviour: str
    body: dict


class FaultServer:
    def __init__(
        self,
        *queue: str,
        then: str = "ok",
        choose: Chooser | None = None,
        responder: Responder = default_responder,
        hang_seconds: float = 10.0,
    ):
        self.queue, self.then, self.choose = deque(queue), then, choose
        self.responder, self.hang_seconds = responder, hang_seconds
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                arrived = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with outer._lock:
                    n = len(outer.hits) + 1
                    behaviour = outer._next(body, n)
                    outer.hits.append(Hit(arrived, behaviour, body))
                # the client may give up first (its timeout): nothing to answer then
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._act(behaviour, body, n)

            def _act(self, behaviour: str, body: dict, n: int) -> None:
                code, _, retry_after = behaviour.partition(":")
                if code in ("429", "500", "503"):
                    payload = json.dumps({"error": {"message": f"scripted {code}", "type": "server_error"}}).encode()
                    headers = {"Retry-After": retry_after} if retry_after else {}
                    return self._send(int(code), payload, **headers)
                if behaviour == "hang":
                    outer._stopping.wait(outer.hang_seconds)
                    return
                streamed = bool(body.get("stream"))
                if behaviour == "ok":
                    content = outer.responder(body)
                    if streamed:
                        return self._sse(stream_events(body, content, n), done=True)
                    return self._send(200, json.dumps(completion(body, content, n)).encode())
                if behaviour == "drop":
                    if streamed:
                        return self._chunked_then_drop(stream_events(body, outer.responder(body), n))
                    payload = json.dumps(completion(body, outer.responder(body), n)).encode()
                    self._head(200, {"Content-Type": "application/json", "Content-Length": str(len(payload))})
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    return  # the connection closes with half the promised body
                if behaviour == "malformed":
                    return self._send(200, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "message": {"rol')
                if behaviour == "empty_choices":
                    return self._send(200, json.dumps({**completion(body, "", n), "choices": []}).encode())
                if behaviour == "truncated_stream":
                    events = [
                        e
                        for e in stream_events(body, PARTIAL_DRAFT, n)
                        if "usage" not in e and not e["choices"][0].get("finish_reason")
                    ]
                    return self._sse(events, done=False)  # no finish_reason, no usage, no [DONE]
                if behaviour == "stall_stream":
                    events = stream_events(body, outer.responder(body), n)
                    self._sse(events[: len(events) // 2], done=False)
                    self.wfile.flush()
                    outer._stopping.wait(outer.hang_seconds)
                    return
                raise ValueError(f"unknown behaviour {behaviour!r}")

            def _head(self, code: int, headers: dict[str, str]) -> None:
                self.send_response(code)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()

            def _send(self, code: int, payload: bytes, **headers: str) -> None:
                self._head(code, {"Content-Type": "application/json", "Content-Length": str(len(payload)), **headers})
                self.wfile.write(payload)

            def _sse(self, events: list[dict], *, done: bool) -> None:
                self._head(200, {"Content-Type": "text/event-stream"})  # HTTP/1.0: the body ends when we close
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                if done:
                    self.wfile.write(b"data: [DONE]\n\n")

            def _chunked_then_drop(self, events: list[dict]) -> None:
                self.protocol_version = "HTTP/1.1"
                self.close_connection = True
                self._head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
                for event in events[: len(events) // 2]:
                    data = f"data: {json.dumps(event)}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                # ... and no terminating zero-length chunk: the peer sees an incomplete chunked body

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutdown() waits for the loop to notice, and tests start and stop many servers.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def _next(self, body: dict, n: int) -> str:
        if self.choose is not None:
            return self.choose(body, n)
        return self.queue.popleft() if self.queue else self.then

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def behaviours(self) -> list[str]:
        return [h.behaviour for h in self.hits]

    def gaps(self) -> list[float]:
        """Seconds between consecutive request arrivals."""
        return [b.at - a.at for a, b in zip(self.hits, self.hits[1:], strict=False)]

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()  # hung handlers return now
        self.server.shutdown()
        self.server.server_close()
