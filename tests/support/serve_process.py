"""`run.py serve` as a real process on 127.0.0.1 for tests: started on a free port, stopped with a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_BANNER = re.compile(r"serving on http://\S+:(\d+)/v1")


class ServeProcess:
    def __init__(self, project: Path, *args: str, env: dict[str, str] | None = None):
        self.project, self.args = project, args
        self.env = {**os.environ, "COLUMNS": "200", **(env or {})}
        self.lines: list[str] = []  # everything the server wrote to stderr and stdout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> ServeProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), "--project", str(self.project), "serve", "--port", "0", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        ready = threading.Event()

        def drain() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                m = _BANNER.search(line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(timeout)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("the server did not start:\n" + self.output)
        return self

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        time.sleep(0.05)  # let the reader thread take the last lines
        return code

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
