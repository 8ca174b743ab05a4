"""The coloured terminal view of a conversation (a sink) and the scenario summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chaperone.engine.events import (
    ChunkVerdict,
    Delivered,
    Draft,
    ErrorEvent,
    TurnFinished,
    UserTurn,
    VerdictEvent,
    Withdrawn,
    Withheld,
)
from chaperone.untrusted import untrusted

CUT_NOTE = " (cut at the token limit)"  # an answer that stopped at the assistant's max_tokens, mid-sentence


class ConsoleView:
    """Prints each event as it happens. With show_drafts off, only what the user would see."""

    def __init__(self, console: Console, show_drafts: bool = True):
        self.console = console
        self.show_drafts = show_drafts

    def heading(self, title: str, subtitle: str = "") -> None:
        self.console.rule(f"[bold]{escape(title)}[/bold]" + (f" [dim]{escape(subtitle)}[/dim]" if subtitle else ""))

    def __call__(self, event: Any) -> None:
        c = self.console
        if isinstance(event, UserTurn):
            c.print(
                Panel(
                    untrusted(event.content),
                    title=f"[bold cyan]user · turn {event.turn}[/]",
                    border_style="cyan",
                    title_align="left",
                )
            )
        elif isinstance(event, Draft) and self.show_drafts:
            label = "draft" if event.round == 1 else f"revision {event.round - 1}"
            c.print(
                Panel(
                    untrusted(event.content or "(empty)"),
                    border_style="yellow",
                    title_align="left",
                    title=f"[yellow]{escape(event.source)} · {label}[/]",
                    subtitle=f"[dim]{event.usage.completion_tokens} tok · {event.latency_s:.1f}s"
                    f"{' · cut at the token limit' if event.cut else ''}"
                    f"{f' · stopped at chunk {event.stopped_at_chunk}' if event.stopped_at_chunk else ''}[/]",
                    subtitle_align="right",
                )
            )
        elif isinstance(event, VerdictEvent) and self.show_drafts:
            ok = event.decision == "approve" and event.readable
            colour = "green" if ok else "red"
            head = Text.assemble((f"{event.source} ", "bold"), ("APPROVE" if ok else "REVISE", f"bold {colour}"))
            if event.categories:
                head.append("  [" + ", ".join(event.categories) + "]", style="magenta")
            if not event.readable:
                head.append("  (unreadable verdict: fail closed)", style="red")
            head.append(f"  {event.usage.completion_tokens} tok · {event.latency_s:.1f}s", style="dim")
            c.print(head)
            if event.critique and not ok:
                c.print(untrusted("  ↳ " + event.critique, style="red"))
        elif isinstance(event, ChunkVerdict) and self.show_drafts:
            ok = event.decision == "approve" and event.readable
            head = Text.assemble(
                (f"{event.source} ", "bold"),
                (f"chunk {event.chunk} ", "dim"),
                ("approve" if ok else "REVISE", "green" if ok else "bold red"),
                (f"  first {event.end} characters, {event.draft_tokens} tokens written", "dim"),
            )
            if event.categories:
                head.append("  [" + ", ".join(event.categories) + "]", style="magenta")
            if not event.readable:
                head.append("  (unreadable verdict: fail closed)", style="red")
            c.print(head)
            if event.critique and not ok:
                c.print(untrusted("  ↳ " + event.critique, style="red"))
        elif isinstance(event, Withdrawn) and self.show_drafts:
            c.print(Text(f"withdrawn: {len(event.content)} characters already shown ({event.reason})", style="red"))
        elif isinstance(event, Delivered):
            note = "" if not event.revisions else f" after {event.revisions} revision{'s' * (event.revisions > 1)}"
            note += CUT_NOTE if event.cut else ""
            c.print(
                Panel(
                    untrusted(event.content),
                    border_style="green",
                    title_align="left",
                    title=f"[bold green]delivered{note}[/]",
                )
            )
        elif isinstance(event, Withheld):
            c.print(
                Panel(
                    untrusted(event.content),
                    border_style="red",
                    title_align="left",
                    title=f"[bold red]withheld[/] [dim]({escape(event.reason)})[/]",
                )
            )
        elif isinstance(event, ErrorEvent):
            c.print(untrusted(f"error: {event.message}", style="bold red"))
        elif isinstance(event, TurnFinished) and self.show_drafts:
            c.print(
                Text(
                    f"turn {event.turn}: {event.outcome}, {event.revisions} revision(s), {event.seconds:.1f}s",
                    style="dim",
                )
            )


def summary_table(results: list[Any]) -> Table:
    """One row per scenario; tokens per role (the agents filling a role may differ between scenarios)."""
    roles = ("assistant", "reviewer")
    table = Table(title="Scenario results", show_lines=False)
    table.add_column("scenario", ratio=1)  # the only column that wraps; the figures keep their width
    for col, right in (
        ("turns", True),
        ("revisions", True),
        ("outcome", False),
        ("expectation", False),
        ("assistant tok", True),
        ("reviewer tok", True),
        ("seconds", True),
    ):
        table.add_column(col, justify="right" if right else "left", no_wrap=True, min_width=len(col))
    for r in results:
        met = "[green]met[/]" if r.met else "[red]FAILED[/]"
        outcome_colour = {"approved": "green", "withheld": "yellow", "mixed": "cyan"}.get(r.outcome, "red")
        row = [escape(r.name), str(len(r.turns)), str(r.revisions), f"[{outcome_colour}]{r.outcome}[/]", met]
        for role in roles:
            total = sum(
                u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
                for agent, u in r.usage_by_agent.items()
                if r.roles.get(agent) == role
            )
            row.append(f"{total:,}")
        row.append(f"{r.seconds:.1f}")
        table.add_row(*row)
    return table


def failure_lines(results: list[Any]) -> list[str]:
    lines = []
    for r in results:
        for t in r.turns:
            for f in t.failures:
                lines.append(f"{r.path}: turn {t.turn}: {f}")
    return lines
