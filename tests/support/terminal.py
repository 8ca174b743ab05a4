"""Drive a real program in a real pseudo-terminal, as a person would: tmux runs it, send-keys types,
capture-pane reads the screen."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid


class Terminal:
    def __init__(
        self,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        width: int = 120,
        height: int = 50,
    ):
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed (scripts/setup_test_tools.sh installs it)")
        self.socket = f"chaperone-test-{uuid.uuid4().hex[:8]}"  # a private tmux server per terminal
        self.log = f"/tmp/{self.socket}.exit"
        env_prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # The exit status is kept in a file so a test can check how the program ended.
        script = f"cd {shlex.quote(cwd or os.getcwd())} && env {env_prefix} {shlex.join(command)}; echo $? > {self.log}"
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "bash", "-c", script)
        self._tmux("set-option", "-t", "t", "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def type(self, text: str, enter: bool = True) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text)
        if enter:
            self.keys("Enter")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        """The visible screen plus the scrollback, as plain text."""
        return self._tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-2000")

    def wait_for(self, text: str, timeout: float = 30, *, after: int = 0) -> str:
        """Wait until `text` shows on the screen (at or after character `after`); return the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen[after:]:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear within {timeout}s; the screen shows:\n{screen}")
            time.sleep(0.1)

    def wait_for_any(self, texts: list[str], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if any(t in screen for t in texts):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"none of {texts!r} appeared within {timeout}s; the screen shows:\n{screen}")
            time.sleep(0.2)

    def wait_for_prompt(self, prompt: str, timeout: float = 30) -> str:
        """Wait until the last line on the screen is an empty prompt: the program is ready for input."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            lines = [line for line in screen.splitlines() if line.strip()]
            if lines and lines[-1].rstrip() == prompt.rstrip():
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"no empty prompt {prompt!r} within {timeout}s; the screen shows:\n{screen}")
            time.sleep(0.05)

    def exit_code(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.log):
            if time.monotonic() > deadline:
                raise AssertionError(f"the program did not exit within {timeout}s; the screen shows:\n{self.screen()}")
            time.sleep(0.1)
        with open(self.log) as fh:
            return int(fh.read().strip() or -1)

    def program_pid(self) -> int:
        """The program's process (the child of the pane's shell)."""
        shell = self._tmux("list-panes", "-t", "t", "-F", "#{pane_pid}").split()[0]
        children = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True).stdout.split()
        return int(children[0])

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        if os.path.exists(self.log):
            os.remove(self.log)
