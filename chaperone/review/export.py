"""`review export`: one conversation as a file a person can read or attach to an audit (markdown, JSON;
HTML lives in html_report). All three render the same story model."""

from __future__ import annotations

import json
from typing import Any

from chaperone.audit.integrity import Integrity
from chaperone.review.story import CUT_NOTE, Story, TurnStory, head_decision_text, local_time, scores_text

FORMATS = ("md", "html", "json")


def to_json(story: Story, v: Integrity) -> str:
    return json.dumps(
        {"story": story.model_dump(mode="json"), "verification": v.as_dict()}, indent=2, ensure_ascii=False
    )


def _fence(text: str, lang: str = "text") -> str:
    """A code fence longer than any backtick run inside the text, so model output cannot close it."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _cell(value: Any) -> str:
    """A markdown table cell: a pipe or a newline in a name would break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _step(step: Any) -> str:
    secs = f" · {step.seconds:.1f} s" if step.seconds is not None else ""
    return f"{step.usage.prompt_tokens} prompt + {step.usage.completion_tokens} completion tokens{secs}"


def _turn_md(t: TurnStory) -> list[str]:
    out = [f"> **{n.text}**\n" for n in t.notes]
    secs = f" · {t.seconds:.1f} s" if t.seconds is not None else ""
    cats = f" · categories: {', '.join(t.categories)}" if t.categories else ""
    flag = " · FLAGGED for a human" if t.flagged else ""
    out.append(f"## Turn {t.number} — {t.outcome}{flag}\n")
    out.append(f"{t.revisions} revision(s) · policy {t.policy or '?'} · {t.tokens:,} tokens{secs}{cats}\n")
    if t.user is not None:
        out += [f"**{t.user_source or 'user'}:**\n", _fence(t.user), ""]
    for r in t.rounds:
        out.append(f"### {r.label.capitalize()}\n")
        if r.draft is not None:
            stopped = ""
            if r.draft.stopped_at_chunk is not None:
                stopped = f" · stopped at chunk {r.draft.stopped_at_chunk}"
                stopped += f" ({r.draft.tokens_saved} tokens of its budget unused)" if r.draft.tokens_saved else ""
            out += [f"*{r.draft.source} · {r.draft.model} · {_step(r.draft)}{stopped}*\n", _fence(r.draft.content), ""]
        if r.same_as_previous:
            out.append("*Identical to the previous draft.*\n")
        if r.diff:
            out += ["Changes from the previous draft:\n", _fence("\n".join(r.diff), "diff"), ""]
        for c in r.chunks:
            decision = "approve" if c.approved else "REVISE"
            line = f"- chunk {c.chunk}: **{decision}** (first {c.end} characters, {c.draft_tokens} tokens written)"
            line += f" · categories: {', '.join(c.categories)}" if c.categories else ""
            line += "" if c.readable else " · unreadable verdict (fail closed)"
            line += " · **FLAGGED for a human**" if c.flagged else ""
            out.append(line + f" · *{_step(c)}*")
            if c.scores is not None:
                out.append(f"  - head: {head_decision_text(c)}")
            if c.critique and not c.approved:
                out.append(f"  - critique: {_cell(c.critique)}")
        if r.chunks:
            out.append("")
        if r.released:
            out.append(f"*Shown to the user while written: the first {r.released} characters.*\n")
        if r.withdrawn is not None:
            out += [f"**Withdrawn** ({r.withdrawn_reason}): the user had been shown\n", _fence(r.withdrawn), ""]
        v = r.verdict
        if v is not None:
            decision = "APPROVE" if v.approved else "REVISE"
            line = f"**Verdict: {decision}**" + (f" · categories: {', '.join(v.categories)}" if v.categories else "")
            line += "" if v.readable else " · unreadable verdict (fail closed)"
            line += f" · chunk {v.chunk}'s verdict (the draft stopped there)" if v.chunk is not None else ""
            line += " · **FLAGGED for a human**" if v.flagged else ""
            out += [line + f" · *{_step(v)}*\n"]
            if v.scores is not None:
                out.append(f"- head: {head_decision_text(v)}")
                out.append(f"- all head scores: {scores_text(v.scores)}\n")
            if v.request_score is not None:
                out.append(f"- request head: {v.request_score.text}\n")
            if v.critique and not v.approved:
                out += ["Critique:\n", _fence(v.critique), ""]
    for message in t.errors:
        out += [f"**Error:** {message}\n"]
    if t.delivered is not None:
        cut = CUT_NOTE if t.delivered_cut else ""
        out += [f"### Delivered to the user{cut}\n", _fence(t.delivered), ""]
    elif t.withheld is not None:
        out += [f"### Withheld ({t.withheld_reason}) — the user got\n", _fence(t.withheld), ""]
    else:
        out += ["*Nothing delivered: the turn did not finish.*\n"]
    return out


def _served_md(story: Story) -> list[str]:
    s = story.served
    if s is None:
        return []
    out = ["## What the client sent\n", "| | |", "|---|---|"]
    out += [f"| served model | {_cell(s.model or '?')} |", f"| key | {_cell(s.key or '(none)')} |"]
    out += [f"| user | {_cell(s.user)} |"] if s.user else []
    out += [f"| ignored fields | {_cell(', '.join(s.ignored_fields))} |"] if s.ignored_fields else []
    out.append("")
    for text in s.system:
        out += ["### Client system message\n", _fence(text), ""]
    for n, (user, answer) in enumerate(s.history, start=1):
        out += [f"### History {n}: user\n", _fence(user), "", f"### History {n}: assistant\n", _fence(answer), ""]
    return out


def to_markdown(story: Story, v: Integrity) -> str:
    scenario = story.scenario or {}
    out = [
        f"# Conversation {story.conversation_id}\n",
        f"**Integrity: {_cell(v.text())}**\n",
        "| | |",
        "|---|---|",
        f"| kind | {_cell(story.kind)}{' — ' + _cell(scenario.get('name', '')) if scenario else ''} |",
        f"| started | {local_time(story.started_at)} |",
        f"| ended | {local_time(story.ended_at) if story.ended_at else '—'} |",
        f"| policy | {_cell(' → '.join(story.policies) or '?')} |",
        *([f"| review | {_cell(story.streaming)} |"] if story.streaming else []),
    ]
    for role, agent in story.agents.items():
        out.append(f"| {_cell(role)} | {_cell(agent.name)} · {_cell(agent.model or '—')} |")
    out += [f"| outcome | {_cell(story.outcome)} |", f"| file | {_cell(story.path)} |", ""]
    out += _served_md(story)
    for t in story.turns:
        out += _turn_md(t)
    for n in story.notes:
        out.append(f"> **{n.text}**\n")
    return "\n".join(out).rstrip() + "\n"
