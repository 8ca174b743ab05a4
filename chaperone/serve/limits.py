"""Per-key admission: requests per minute (sliding window) and requests in flight. Over a limit is an
immediate 429 with Retry-After, never a queue a client cannot see."""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable, Iterator

from chaperone.serve.wire import RequestError

WINDOW_S = 60.0


class KeyLimits:
    def __init__(self, requests_per_minute: int, max_concurrent: int, clock: Callable[[], float] = time.monotonic):
        self.rpm, self.max_concurrent, self.clock = requests_per_minute, max_concurrent, clock
        self._recent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._in_flight: dict[str, int] = collections.defaultdict(int)

    def _admit_rate(self, key: str) -> None:
        now = self.clock()
        recent = self._recent[key]
        while recent and recent[0] <= now - WINDOW_S:
            recent.popleft()
        if len(recent) >= self.rpm:
            wait = max(1, math.ceil(recent[0] + WINDOW_S - now))
            raise RequestError(
                429,
                f"rate limit: {self.rpm} requests per minute for this key; retry in {wait} s",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )
        recent.append(now)

    @contextlib.contextmanager
    def admit(self, key: str) -> Iterator[None]:
        """Count one request against the key while it runs; raise RequestError(429) when over a limit."""
        if self._in_flight[key] >= self.max_concurrent:
            raise RequestError(
                429,
                f"too many requests in flight for this key (at most {self.max_concurrent}); "
                "retry when one has finished",
                kind="rate_limit_error",
                code="concurrency_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        self._admit_rate(key)
        self._in_flight[key] += 1
        try:
            yield
        finally:
            self._in_flight[key] -= 1

    def in_flight(self, key: str) -> int:
        return self._in_flight[key]
