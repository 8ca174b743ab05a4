"""Terminal rendering for `review`: the list table, a conversation's story, the stats tables, verify lines.
Every piece of transcript text goes through `untrusted` (rich Text with control characters made visible)
or `_safe` (the same for markup titles), never through markup as is: a model wrote it."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chaperone.audit.integrity import DUPLICATE, INCOMPLETE, INTACT, Integrity
from chaperone.config.schema import SCRIPTED_KINDS
from chaperone.review.index import Summary
from chaperone.review.story import (
    CUT_NOTE,
    Round,
    Story,
    TurnStory,
    head_decision_text,
    local_time,
    scores_text,
)
from chaperone.untrusted import CONTROLS, untrusted


def _safe(text: str) -> str:
    return escape(text.translate(CONTROLS))


OUTCOME_STYLE: dict[str, str] = {  # every outcome of engine.events, turn and conversation, and INCOMPLETE
    "approved": "green",
    "withheld": "yellow",
    "error": "red",
    "interrupted": "magenta",
    "cancelled": "magenta",
    "incomplete": "yellow",
    "unreviewed": "cyan",
}


def _outcome(outcome: str) -> Text:
    return untrusted(outcome, style=OUTCOME_STYLE.get(outcome, "white"))


def list_table(summaries: list[Summary]) -> Table:
    table = Table(title="Conversations (newest first)")
    table.add_column("id", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("scenario / kind", ratio=1, min_width=14)
    table.add_column("policy")
    table.add_column("models (a / r)", max_width=18)
    for col in ("turns", "revs", "withheld"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    for s in summaries:
        row = s.row()
        # A file that is not intact (or unfinished) cannot vouch for its own outcome: its status takes the
        # outcome's place (TAMPERED, UNLISTED, DUPLICATE, ...; --json keeps both).
        outcome = _outcome(row["outcome"]) if s.trusted else untrusted(s.status.upper(), style="bold red")
        models = row["models"]
        table.add_row(
            row["id"][:8],
            local_time(row["started_at"])[:16],
            untrusted(row["label"]),
            untrusted(" → ".join(row["policies"]) or "?"),
            untrusted(f"{models.get('assistant', '?')} / {models.get('reviewer', '—')}"),
            str(row["turns"]),
            str(row["revisions"]),
            str(row["withheld"]),
            outcome,
        )
    return table


def unreadable_line(s: Summary) -> Text:
    return Text.assemble(("unreadable ", "bold red"), (f"{s.path}: {s.problem}", ""))


def status_style(status: str) -> str:
    return "green" if status == INTACT else "yellow" if status == INCOMPLETE else "bold red"


def verification_badge(i: Integrity) -> Text:
    return untrusted(i.text(), style=status_style(i.status))


def _step_note(step: Any) -> str:
    secs = f" · {step.seconds:.1f}s" if step.seconds is not None else ""
    return f"{step.usage.prompt_tokens} in / {step.usage.completion_tokens} out tok{secs}"


def _diff(lines: list[str]) -> Text:
    text = Text()
    for line in lines:
        style = (
            "bold"
            if line.startswith(("---", "+++"))
            else "green"
            if line.startswith("+")
            else "red"
            if line.startswith("-")
            else "cyan"
            if line.startswith("@@")
            else "dim"
        )
        text.append(line.translate(CONTROLS) + "\n", style=style)
    text.rstrip()
    return text


def _chunks(r: Round) -> list[Any]:
    """Chunked review: each verdict on the draft while it was written, what was shown, what was taken back."""
    parts: list[Any] = []
    for c in r.chunks:
        line = Text.assemble(
            (f"  {c.source or 'reviewer'} ", "bold"),
            (f"chunk {c.chunk} ", "dim"),
            ("approve" if c.approved else "REVISE", "green" if c.approved else "bold red"),
            (f"  first {c.end} characters, {c.draft_tokens} tokens written · {_step_note(c)}", "dim"),
        )
        if c.categories:
            line.append("  [" + ", ".join(c.categories).translate(CONTROLS) + "]", style="magenta")
        if not c.readable:
            line.append("  (unreadable verdict: fail closed)", style="red")
        if c.flagged:
            line.append("  FLAGGED for a human", style="bold yellow")
        parts.append(line)
        if c.head_overall is not None:
            parts.append(untrusted("    head decision: " + head_decision_text(c), style="dim"))
        if c.critique and not c.approved:
            parts.append(untrusted("    ↳ " + c.critique, style="red"))
    if r.released:
        parts.append(untrusted(f"  shown to the user while written: the first {r.released} characters", style="green"))
    if r.withdrawn is not None:
        parts.append(
            untrusted(f"  withdrawn: {len(r.withdrawn)} characters shown, taken back ({r.withdrawn_reason})", "red")
        )
    return parts


def _round(r: Round) -> list[Any]:
    parts: list[Any] = []
    if r.draft is not None:
        parts.append(
            Panel(
                untrusted(r.draft.content or "(empty)"),
                border_style="yellow",
                title_align="left",
                title=f"[yellow]{_safe(r.draft.source or 'assistant')} · {r.label}[/]",
                subtitle=f"[dim]{_safe(r.draft.model)} · {_step_note(r.draft)}{_stopped(r.draft)}[/]",
                subtitle_align="right",
            )
        )
    if r.same_as_previous:
        parts.append(untrusted("  (identical to the previous draft)", style="dim"))
    if r.diff:
        parts.append(
            Panel(
                _diff(r.diff), title="[dim]changes from the previous draft[/]", title_align="left", border_style="dim"
            )
        )
    parts.extend(_chunks(r))
    v = r.verdict
    if v is not None:
        head = Text.assemble(
            (f"{v.source or 'reviewer'} ", "bold"),
            ("APPROVE" if v.approved else "REVISE", "bold green" if v.approved else "bold red"),
        )
        if v.categories:
            head.append("  [" + ", ".join(v.categories).translate(CONTROLS) + "]", style="magenta")
        if not v.readable:
            head.append("  (unreadable verdict: fail closed)", style="red")
        if v.flagged:
            head.append("  FLAGGED for a human", style="bold yellow")
        head.append(f"  {_step_note(v)}", style="dim")
        if v.chunk is not None:
            head.append(f"  (chunk {v.chunk}'s verdict: the draft stopped there)", style="dim")
        parts.append(head)
        if v.scores is not None:
            parts.append(untrusted("  head scores: " + scores_text(v.scores), style="dim"))
        if v.decided_by == "head" and (v.rule or v.not_ok_threshold is not None):
            parts.append(untrusted("  head decision: " + head_decision_text(v), style="dim"))
        if v.request_score is not None:
            parts.append(untrusted("  request head: " + v.request_score.text, style="dim"))
        if v.critique and not v.approved:
            parts.append(untrusted("  ↳ " + v.critique, style="red"))
    return parts


def _stopped(draft: Any) -> str:
    if draft.stopped_at_chunk is None:
        return ""
    saved = f", {draft.tokens_saved} tokens of its budget unused" if draft.tokens_saved is not None else ""
    return f" · stopped at chunk {draft.stopped_at_chunk}{saved}"


def _turn(t: TurnStory, show_debate: bool) -> list[Any]:
    parts: list[Any] = [untrusted(f"• {n.text}", style="bold magenta") for n in t.notes]
    secs = f" · {t.seconds:.1f}s" if t.seconds is not None else ""
    cats = f" · {', '.join(t.categories)}" if t.categories else ""
    parts.append(
        Text.assemble(
            (f"turn {t.number} ", "bold"),
            _outcome(t.outcome),
            ("  FLAGGED for a human" if t.flagged else "", "bold yellow"),
            (
                f" · {t.revisions} revision(s) · policy {t.policy or '?'} · {t.tokens:,} tok{secs}{cats}".translate(
                    CONTROLS
                ),
                "dim",
            ),
        )
    )
    if t.user is not None:
        parts.append(
            Panel(
                untrusted(t.user),
                title=f"[bold cyan]{_safe(t.user_source or 'user')}[/]",
                border_style="cyan",
                title_align="left",
            )
        )
    if show_debate:
        for r in t.rounds:
            parts.extend(_round(r))
    for message in t.errors:
        parts.append(untrusted(f"error: {message}", style="bold red"))
    if t.delivered is not None:
        note = f" after {t.revisions} revision{'s' * (t.revisions > 1)}" if t.revisions else ""
        note += CUT_NOTE if t.delivered_cut else ""
        parts.append(
            Panel(
                untrusted(t.delivered),
                border_style="green",
                title_align="left",
                title=f"[bold green]delivered{note}[/]",
            )
        )
    elif t.withheld is not None:
        parts.append(
            Panel(
                untrusted(t.withheld),
                border_style="red",
                title_align="left",
                title=f"[bold red]withheld[/] [dim]({_safe(t.withheld_reason)})[/]",
            )
        )
    else:
        parts.append(untrusted("nothing delivered yet (turn did not finish)", style="yellow"))
    return parts


def served_rows(story: Story) -> list[tuple[str, str]]:
    """What a served conversation's client sent besides its last turn: who, which model, its instructions."""
    s = story.served
    if s is None:
        return []
    rows = [("served", f"model {s.model or '?'} · key {s.key or '(none)'}" + (f" · user {s.user}" if s.user else ""))]
    rows += [("client system", text) for text in s.system]
    for n, (user, answer) in enumerate(s.history, start=1):
        rows += [(f"history {n} user", user), (f"history {n} assistant", answer)]
    if s.ignored_fields:
        rows.append(("ignored fields", ", ".join(s.ignored_fields)))
    return rows


def story_header(story: Story, v: Integrity) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    scenario = story.scenario or {}
    rows = [
        ("conversation", story.conversation_id),
        ("file", story.path),
        ("started", local_time(story.started_at)),
        ("ended", local_time(story.ended_at) if story.ended_at else "—"),
        ("kind", story.kind + (f": {scenario.get('name')} ({scenario.get('file')})" if scenario else "")),
        ("policy", " → ".join(story.policies) or "?"),
        *([("review", story.streaming)] if story.streaming else []),
    ]
    for role, agent in story.agents.items():
        model = agent.model + (f" ({agent.model_kind})" if agent.model_kind else "") if agent.model else ""
        if agent.model_kind in SCRIPTED_KINDS:
            model += " — fixed rules, no model, no real judgement"
        rows.append((role, f"{agent.name}" + (f" · {model}" if model else "")))
    rows += served_rows(story)
    totals = story.totals
    if totals:
        rows.append(
            (
                "totals",
                f"{totals.get('turns', '?')} turns · {totals.get('revisions', '?')} revisions · "
                f"{totals.get('seconds', '?')}s",
            )
        )
    for key, value in rows:
        grid.add_row(key, untrusted(str(value)))
    grid.add_row("outcome", _outcome(story.outcome))
    grid.add_row("integrity", verification_badge(v))
    return Panel(
        grid, title=f"[bold]{_safe(story.label)}[/]", title_align="left", border_style="red" if v.fails() else "blue"
    )


def print_story(console: Console, story: Story, v: Integrity, show_debate: bool = True) -> None:
    console.print(story_header(story, v))
    for t in story.turns:
        console.rule(style="dim")
        console.print(Group(*_turn(t, show_debate)))
    for n in story.notes:
        console.print(untrusted(f"• {n.text}", style="bold magenta"))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _not_intact(st: dict[str, Any]) -> str:
    shown = (INTACT, INCOMPLETE, DUPLICATE)
    marks = [f"{n} {status.upper()}" for status, n in st["status"].items() if status not in shown]
    if st["duplicates"]:
        marks.append(f"{len(st['duplicates'])} DUPLICATE file(s) not counted again")
    return f" ({', '.join(marks)})" if marks else ""


def stats_tables(st: dict[str, Any]) -> list[Any]:
    t = Table(title="Review statistics", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    turns = st["turns"]
    lat = st["latency_per_turn"]
    rows = [
        ("conversations", f"{st['conversations']}" + _not_intact(st)),
        (
            "turns rated",
            f"{turns['rated']}  (+{turns['cancelled']} cancelled, {turns['unfinished']} unfinished"
            + (f", {turns['unreviewed']} unreviewed eval baselines" if turns.get("unreviewed") else "")
            + ")",
        ),
        (
            "approved on first draft",
            f"{_pct(st['approved_first_draft']['rate'])}  ({st['approved_first_draft']['turns']})",
        ),
        ("revisions per turn", "  ".join(f"{k}: {v}" for k, v in st["revisions_per_turn"].items()) or "—"),
        ("withheld", f"{_pct(st['withheld']['rate'])}  ({st['withheld']['turns']})"),
        ("errors", f"{_pct(st['errors']['rate'])}  ({st['errors']['turns']})"),
        ("latency per turn", "—" if lat["median"] is None else f"median {lat['median']:.1f}s · p95 {lat['p95']:.1f}s"),
        (
            "reviewer share",
            f"{_pct(st['reviewer_share']['tokens'])} of tokens · "
            f"{_pct(st['reviewer_share']['model_seconds'])} of model seconds",
        ),
    ]
    chunked = st.get("chunked_review")
    if chunked:
        rows.append(
            (
                "chunked review",
                f"{chunked['chunk_verdicts']} chunk verdicts ({chunked['sent_back']} sent back) · "
                f"{chunked['drafts_stopped']} drafts stopped early, {chunked['tokens_saved']:,} tokens of budget "
                f"unused · {chunked['turns_withdrawn']} turns withdrew shown text",
            )
        )
    for k, v in rows:
        t.add_row(k, v)
    tok = Table(title="Tokens per role")
    for col in ("role", "prompt", "completion", "total", "model s"):
        tok.add_column(col, justify="left" if col == "role" else "right")
    for role, v in st["tokens"].items():
        tok.add_row(
            role, f"{v['prompt']:,}", f"{v['completion']:,}", f"{v['total']:,}", f"{st['model_seconds'][role]:.1f}"
        )
    cats = Table(title="Categories raised")
    for col in ("category", "turns", "verdicts"):
        cats.add_column(col, justify="left" if col == "category" else "right")
    for c, v in st["categories"].items():
        cats.add_row(untrusted(c), str(v["turns"]), str(v["verdicts"]))
    return [t, tok, cats] if st["categories"] else [t, tok]


def verify_line(s: Summary) -> Text:
    """One file's status, the same words `list`, `show`, `export` and the HTML badge use."""
    i = s.integrity
    label = i.status.upper() if i.fails() else i.status
    return Text.assemble((f"{label:<11}", status_style(i.status)), f"{i.path}: {i.detail()}")
