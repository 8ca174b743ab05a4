"""A minimal OpenAI-compatible chat server on 127.0.0.1 that answers every request after a fixed delay.

The instrument of `endpoint_bench.py`: it stands in for a model whose every call takes exactly
`--delay` seconds, so whatever the client spends beyond that is the client's own cost. Stdlib
asyncio only (one coroutine per connection, HTTP/1.1 keep-alive), so 64+ requests wait out their
delays side by side instead of queueing.

- `POST /v1/chat/completions`: a request with `response_format` (the reviewer's structured call)
  gets the verdict `{"ok_to_send": "yes"}`; any other request (a draft) gets a fixed-length text.
  `usage.prompt_tokens` is the characters of the request's messages / 4, so a growing prompt shows up.
  `stream: true` is answered with server-sent events (word by word, usage last when asked).
- `GET /stats`: what it was sent, one entry per chat request (kind, characters, prompt tokens), as JSON;
  `GET /stats?reset=1` returns them and starts a new list.

Run as a subprocess: `python benchmarks/delay_server.py --delay 0.2` prints `PORT <n>` on its first
stdout line, then serves until its stdin closes (the parent ended, however it ended) or `--lifetime`
seconds have passed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

VERDICT = json.dumps({"ok_to_send": "yes"})
WORD = "lorem "  # drafts are this word repeated to the requested length


def draft_text(chars: int) -> str:
    """Exactly `chars` characters (at least one) of words, ending in a full stop."""
    text = (WORD * (max(chars, 1) // len(WORD) + 1))[: max(chars, 1) - 1]
    return text + "."


def tokens_for(chars: int) -> int:
    """A stand-in tokenizer: about four characters a token, as for English text."""
    return max(1, (chars + 3) // 4)


def message_chars(body: dict[str, Any]) -> int:
    total = 0
    for msg in body.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):  # content parts
            total += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return total


class DelayServer:
    def __init__(self, delay: float, draft_chars: int):
        self.delay = delay
        self.draft = draft_text(draft_chars)
        self.stats: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    # ------------------------------------------------------------------ HTTP/1.1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
                keep_alive = headers.get("connection", "").lower() != "close"
                await self.route(method, target, body, writer)
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    @staticmethod
    def respond(
        writer: asyncio.StreamWriter, status: str, payload: bytes, content_type: str = "application/json"
    ) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: keep-alive\r\n\r\n".encode()
            + payload
        )

    async def route(self, method: str, target: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        path, _, query = target.partition("?")
        if method == "GET" and path == "/stats":
            stats = self.stats
            payload = json.dumps({"requests": stats, "peak_in_flight": self.peak_in_flight, "delay": self.delay})
            if "reset=1" in query:
                self.stats, self.peak_in_flight = [], self.in_flight
            self.respond(writer, "200 OK", payload.encode())
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self.respond(writer, "404 Not Found", b'{"error": {"message": "not found"}}')
            return
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            self.respond(writer, "400 Bad Request", b'{"error": {"message": "body is not JSON"}}')
            return
        await self.complete(request, writer)

    # ------------------------------------------------------------------ chat completions

    async def complete(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        review = "response_format" in request
        chars = message_chars(request)
        content = VERDICT if review else self.draft
        usage = {"prompt_tokens": tokens_for(chars), "completion_tokens": tokens_for(len(content))}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self.stats.append(
            {
                "kind": "review" if review else "draft",
                "chars": chars,
                "prompt_tokens": usage["prompt_tokens"],
                "t": time.monotonic(),
            }
        )
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        base = {
            "id": f"chatcmpl-{len(self.stats)}",
            "created": int(time.time()),
            "model": request.get("model", "delay"),
        }
        if request.get("stream"):
            await self.stream(request, writer, base, content, usage)
            return
        payload = {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        }
        self.respond(writer, "200 OK", json.dumps(payload).encode())

    async def stream(
        self,
        request: dict[str, Any],
        writer: asyncio.StreamWriter,
        base: dict[str, Any],
        content: str,
        usage: dict[str, int],
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: keep-alive\r\n\r\n"
        )
        chunk = {**base, "object": "chat.completion.chunk"}
        words = content.split(" ")
        events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        events += [
            {**chunk, "choices": [{"index": 0, "delta": {"content": w + (" " if i < len(words) - 1 else "")}}]}
            for i, w in enumerate(words)
        ]
        events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (request.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        for piece in (data.encode(), b""):  # one chunk of events, then the terminating empty chunk
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")


async def serve(delay: float, draft_chars: int, lifetime: float, port: int = 0) -> None:
    app = DelayServer(delay, draft_chars)
    server = await asyncio.start_server(app.handle, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:  # EOF on stdin: the parent closed the pipe or is gone
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    async with server:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), lifetime)


@contextlib.contextmanager
def running(delay: float = 0.2, draft_chars: int = 800, lifetime: float = 900) -> Iterator[str]:
    """Start the server in a subprocess (its CPU is not the caller's), yield its base URL, stop it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--delay",
            str(delay),
            "--draft-chars",
            str(draft_chars),
            "--lifetime",
            str(lifetime),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"delay server did not start (said {line!r})")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.stdin.close()  # the server stops on EOF
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay", type=float, default=0.2, help="seconds before each answer (default 0.2)")
    ap.add_argument("--draft-chars", type=int, default=800, help="length of every draft (default 800)")
    ap.add_argument("--lifetime", type=float, default=900, help="stop after this many seconds at the latest")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.delay, args.draft_chars, args.lifetime, args.port))


if __name__ == "__main__":
    main()
