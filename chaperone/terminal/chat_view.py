"""What the terminal chat shows: the answers (a sink of the event stream) and a live status line
(a watcher of the turn's progress) that says what is happening while the user waits."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from chaperone.engine.events import Activity, Delivered, Released, TurnFinished, UserTurn, Withdrawn, Withheld
from chaperone.terminal.console_view import CUT_NOTE, ConsoleView
from chaperone.untrusted import untrusted

PREVIEW_LINES = 12  # the tail of a draft being written, shown in debate mode


class ChatView(ConsoleView):
    """The console view, minus echoing what the user just typed; a cancelled turn is one quiet line."""

    def __init__(self, console: Console, show_drafts: bool = False):
        super().__init__(console, show_drafts=show_drafts)
        self.history: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> None:
        if isinstance(event, UserTurn):
            self.history.append(
                {
                    "turn": event.turn,
                    "user": event.content,
                    "outcome": "running",
                    "revisions": 0,
                    "answer": "",
                    "categories": [],
                }
            )
            if self.show_drafts:
                self.console.rule(f"[dim]turn {event.turn}[/]", style="dim")
            return
        if isinstance(event, Withheld) and event.reason == "turn cancelled":
            self.console.print(Text("turn cancelled: nothing was delivered. Back to the prompt.", style="yellow"))
            return
        if isinstance(event, (Delivered, Withheld)) and self.history:
            self.history[-1]["answer"] = event.content
        if isinstance(event, Released):
            # Chunked review: an approved prefix, shown at once. A line per chunk (a live status area is on
            # screen, and rich prints whole lines above it).
            if event.start == 0:
                self.console.print(Text("assistant · shown as the reviewer approves it", style="bold green"))
            self.console.print(untrusted(event.content.strip()), soft_wrap=True)
            return
        if isinstance(event, Withdrawn):
            self.console.print(
                Text(
                    f"✗ withdrawn: the text shown above is not the answer ({event.reason})",
                    style="bold red",
                )
            )
            return
        if isinstance(event, Delivered) and event.released:
            rest = event.content[event.released :].strip()
            if rest:
                self.console.print(untrusted(rest), soft_wrap=True)
            note = "✓ approved: the whole answer was reviewed" + (
                f", after {event.revisions} revision{'s' * (event.revisions > 1)}" if event.revisions else ""
            )
            self.console.print(Text(note + (CUT_NOTE if event.cut else ""), style="green"))
            return
        if isinstance(event, Delivered):
            note = "approved" + (
                f" after {event.revisions} revision{'s' * (event.revisions > 1)}" if event.revisions else ""
            )
            note += CUT_NOTE if event.cut else ""
            self.console.print(
                Panel(
                    untrusted(event.content),
                    border_style="green",
                    title_align="left",
                    title=f"[bold green]assistant[/] [dim]· {note}[/]",
                )
            )
            return
        if isinstance(event, TurnFinished) and self.history:
            self.history[-1].update(outcome=event.outcome, revisions=event.revisions, categories=event.categories)
        super().__call__(event)

    def history_table(self) -> Table:
        table = Table(title="this conversation", show_lines=True, title_justify="left")
        for col in ("turn", "you asked", "outcome", "revisions", "you got"):
            table.add_column(col, overflow="fold", ratio=2 if col.startswith("you") else None)
        colours = {"approved": "green", "withheld": "yellow", "cancelled": "dim"}
        for row in self.history:
            outcome = row["outcome"] + (f" [{', '.join(row['categories'])}]" if row["categories"] else "")
            table.add_row(
                str(row["turn"]),
                untrusted(_clip(row["user"])),
                Text(outcome, style=colours.get(row["outcome"], "red")),
                str(row["revisions"]),
                untrusted(_clip(row["answer"])),
            )
        return table


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TurnStatus:
    """A transient live area: spinner + "drafting (round 2) · 57 tokens · 4.1s"; in debate mode also the
    tail of the draft being written, labelled unreviewed. Gone when the turn ends."""

    def __init__(self, console: Console):
        self.console = console
        self.show_preview = False
        self._live: Live | None = None
        self._spinner = Spinner("dots", style="cyan")
        self._reset()

    def _reset(self) -> None:
        self.stage, self.round, self.tokens = "starting", 1, 0
        self.preview: list[str] = []
        self._turn_started = self._stage_started = time.perf_counter()

    def start(self) -> None:
        self._reset()
        self._live = Live(
            console=self.console,
            get_renderable=self._render,
            transient=True,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __call__(self, activity: Activity) -> None:
        if (activity.stage, activity.round) != (self.stage, self.round):
            self.stage, self.round = activity.stage, activity.round
            self._stage_started = time.perf_counter()
            self.preview = []
        self.tokens = activity.tokens
        if activity.piece:
            self.preview.append(activity.piece)

    def describe(self) -> str:
        what = {
            "starting": "starting",
            "drafting": "drafting" if self.round == 1 else f"drafting revision {self.round - 1}",
            "reviewing": f"reviewing round {self.round}",
            "critiquing": f"reviewer writing its critique, round {self.round}",
        }[self.stage]
        figures = [what]
        if self.stage == "drafting" and self.tokens:
            figures.append(f"{self.tokens} tokens")
        now = time.perf_counter()
        figures.append(f"{now - self._stage_started:.1f}s")
        if now - self._turn_started > now - self._stage_started + 0.05:
            figures.append(f"turn {now - self._turn_started:.1f}s")
        return " · ".join(figures)

    def _render(self) -> RenderableType:
        line = Table.grid(padding=(0, 1))
        line.add_row(self._spinner, Text(self.describe(), style="cyan"), Text("Ctrl-C cancels", style="dim"))
        if not (self.show_preview and self.stage == "drafting" and self.preview):
            return line
        tail = "".join(self.preview).splitlines()[-PREVIEW_LINES:]
        return Group(
            Panel(
                untrusted("\n".join(tail)),
                border_style="dim yellow",
                title_align="left",
                title="[yellow]draft being written · not reviewed yet[/]",
            ),
            line,
        )
