"""The interactive terminal chat: a person talks to the guarded assistant.

The same engine as the scenario runs (a `Conversation`: same events, same transcript format);
only the driver differs. Input comes from prompt_toolkit on a terminal (line editing, history,
Esc-Enter for a new line), or line by line from a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from chaperone.engine.conversation import Conversation
from chaperone.errors import ChaperoneError
from chaperone.terminal.chat_view import ChatView, TurnStatus
from chaperone.terminal.commands import Command, Invalid, Message, help_rows, parse

InputFunc = Callable[[], Awaitable[str]]  # raises EOFError at the end of input


def terminal_input() -> InputFunc:
    """prompt_toolkit: Enter sends, Esc then Enter (Alt-Enter) starts a new line, Ctrl-C clears the line."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import HTML
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    # In-memory history on purpose: what people type can be sensitive, and the transcript already keeps it.
    session: PromptSession[str] = PromptSession(
        history=InMemoryHistory(), key_bindings=bindings, prompt_continuation=lambda width, *_: "." * (width - 1) + " "
    )

    async def read() -> str:
        while True:
            try:
                return await session.prompt_async(HTML("<b><ansicyan>you ›</ansicyan></b> "))
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line, as in a shell
                print("(Ctrl-D or /quit ends the chat)")

    return read


def piped_input() -> InputFunc:
    """One message per line from a pipe or file, for scripted use."""

    async def read() -> str:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read


class ChatSession:
    def __init__(
        self,
        conversation: Conversation,
        console: Console,
        view: ChatView,
        status: TurnStatus,
        read: InputFunc,
        banner: str,
    ):
        self.conv, self.console, self.view, self.status = conversation, console, view, status
        self.read, self.banner = read, banner
        self._turn: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._stopping = False
        self.exit_code = 0

    # -- signals: Ctrl-C cancels the running turn; SIGTERM/SIGHUP end the chat cleanly ----------------
    def _on_interrupt(self) -> None:
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()

    def _on_terminate(self, signum: int) -> None:
        self._stopping = True
        self.exit_code = 128 + signum  # the shell convention for "ended by a signal"
        self._on_interrupt()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        # prompt_toolkit installs and removes its own SIGINT handler around each prompt: re-install ours.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
            loop.add_signal_handler(signal.SIGTERM, self._on_terminate, signal.SIGTERM)
            loop.add_signal_handler(signal.SIGHUP, self._on_terminate, signal.SIGHUP)

    async def run(self) -> None:
        self.console.print(self.banner)
        warming = asyncio.ensure_future(self.conv.warm_up())  # while the person types the first line
        try:
            while not self._stopping:
                self._install_signals()
                self._reader = asyncio.ensure_future(self.read())
                try:
                    line = await self._reader
                except (EOFError, asyncio.CancelledError):
                    break
                item = parse(line)
                if item is None:
                    continue
                if isinstance(item, Invalid):
                    self.console.print(Text(item.problem, style="yellow"))
                elif isinstance(item, Command):
                    if self.command(item):
                        break
                elif isinstance(item, Message):
                    await self.turn(item.text)
        finally:
            warming.cancel()
            # Awaited, not only cancelled: a warm-up mid forward pass ends it before the models are closed.
            await asyncio.gather(warming, return_exceptions=True)
            self.finish()

    async def turn(self, text: str) -> None:
        self._install_signals()
        self.status.show_preview = self.view.show_drafts
        self.status.start()
        self._turn = asyncio.ensure_future(self.conv.send(text))
        try:
            await self._turn
        except asyncio.CancelledError:
            pass  # the engine recorded the cancelled turn; the view said so
        finally:
            self.status.stop()
            self._turn = None

    def command(self, cmd: Command) -> bool:
        """Run one slash command; True when the chat should end."""
        c = self.console
        if cmd.name == "quit":
            return True
        if cmd.name == "help":
            table = Table(show_header=False, box=None, padding=(0, 2))
            for synopsis, text in help_rows():
                table.add_row(Text(synopsis, style="bold"), text)
            c.print(table)
            c.print(
                "Enter sends · Esc then Enter (or Alt-Enter) starts a new line · Ctrl-C cancels a running turn",
                style="dim",
            )
        elif cmd.name == "debate":
            self.view.show_drafts = cmd.arg == "on"
            c.print(f"debate {'shown: drafts, verdicts and critiques' if cmd.arg == 'on' else 'hidden'}", style="dim")
        elif cmd.name == "policy":
            self._policy(cmd.arg)
        elif cmd.name == "history":
            if self.view.history:
                c.print(self.view.history_table())
            else:
                c.print("no turns yet", style="dim")
        elif cmd.name == "transcript":
            c.print(f"transcript: {escape(str(self.conv.transcript_path))}", soft_wrap=True)
        return False

    def _policy(self, name: str) -> None:
        known = sorted(self.conv.project.policies)
        if not name:
            for p in known:
                spec = self.conv.project.policies[p]
                mark = "→" if p == self.conv.policy.name else " "
                self.console.print(f"{mark} [bold]{escape(p)}[/]  {escape(spec.title)}")
            return
        try:
            policy = self.conv.switch_policy(name)
        except ChaperoneError:
            self.console.print(Text(f"no policy named '{name}'. Known: {', '.join(known)}", style="yellow"))
            return
        self.console.print(f"policy: [bold]{escape(policy.name)}[/] ({escape(policy.title)}) from the next turn on")

    def finish(self) -> None:
        self.status.stop()
        self.conv.close()
        state = self.conv.integrity().text()  # the words review show and verify give this transcript
        turns = self.conv.totals.turns
        self.console.print(
            f"chat ended after {turns} turn{'s' * (turns != 1)} · transcript ({escape(state)}):", style="dim"
        )
        self.console.print(escape(str(self.conv.transcript_path)), soft_wrap=True)
