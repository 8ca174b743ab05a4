"""Figures across many conversations: how often the first draft passes, how many revisions a turn takes,
how often the user gets the fallback, which categories the reviewer raises, and what the reviewer costs.

Definitions (also in `review stats --help` and docs/review.md):
- conversations: distinct conversation ids. A transcript copied under another name is counted once (the
  original when the folder tells which it is, else the first file); `duplicates` lists the copies left out,
  `status` how many files have each integrity status (chaperone/audit/integrity.py).
- rated turns: turns that finished as approved, withheld or error. Cancelled turns and turns without a
  turn_finished record (a conversation still running or crashed) are counted separately, not rated.
- approval on first draft: rated turns delivered with 0 revisions / rated turns.
- withheld rate: rated turns that ended withheld (revisions exhausted) / rated turns; errors likewise.
- categories: for each category, the rated turns that raised it in any verdict, and the verdicts naming it.
- tokens and model seconds: every draft (assistant role) and verdict (reviewer role) of the selected
  conversations, cancelled turns included (that compute was spent).
- chunked review (only when a transcript has it): verdicts on drafts being written, how many sent a draft
  back, drafts stopped early and the max_tokens budget they left unused, turns whose shown text was withdrawn.
  Their tokens and seconds count in the reviewer's.
- latency per turn: a rated turn's wall seconds; median by `statistics.median`, p95 by nearest rank
  (the ceil(0.95·n)-th smallest value).
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from chaperone.audit.integrity import DUPLICATE
from chaperone.engine.events import TURN_OUTCOMES
from chaperone.figures import nearest_rank
from chaperone.review.index import Summary

RATED = ("approved", "withheld", "error")  # turn outcomes a rate is computed over (engine.events.TurnOutcome)


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def counted(summaries: list[Summary]) -> tuple[list[Summary], list[Summary]]:
    """One summary per conversation id (a copied transcript is counted once: the original when the folder
    tells it, else the first file), and the duplicate files left out."""
    readable = [s for s in summaries if s.story is not None]
    seen: set[str] = set()
    kept: list[Summary] = []
    left_out: list[Summary] = []
    for s in sorted(readable, key=lambda s: s.status == DUPLICATE):  # stable: originals first
        cid = s.story.conversation_id
        if cid in seen:
            left_out.append(s)
            continue
        seen.add(cid)
        kept.append(s)
    order = {id(s): n for n, s in enumerate(readable)}
    return sorted(kept, key=lambda s: order[id(s)]), left_out


def compute(summaries: list[Summary]) -> dict[str, Any]:
    kept, left_out = counted(summaries)
    stories = [s.story for s in kept]
    turns = [t for story in stories for t in story.turns]
    rated = [t for t in turns if t.outcome in RATED]
    revisions = Counter(t.revisions for t in rated)
    turn_cats: Counter[str] = Counter()
    verdict_cats: Counter[str] = Counter()
    tokens = {role: {"prompt": 0, "completion": 0} for role in ("assistant", "reviewer")}
    seconds = {"assistant": 0.0, "reviewer": 0.0}
    chunked = {"chunk_verdicts": 0, "sent_back": 0, "drafts_stopped": 0, "tokens_saved": 0, "turns_withdrawn": 0}
    for t in turns:
        chunked["turns_withdrawn"] += any(r.withdrawn is not None for r in t.rounds)
        for r in t.rounds:
            for c in r.chunks:
                tokens["reviewer"]["prompt"] += c.usage.prompt_tokens
                tokens["reviewer"]["completion"] += c.usage.completion_tokens
                seconds["reviewer"] += c.seconds or 0.0
                chunked["chunk_verdicts"] += 1
                chunked["sent_back"] += not c.approved
            if r.draft is not None and r.draft.stopped_at_chunk is not None:
                chunked["drafts_stopped"] += 1
                chunked["tokens_saved"] += r.draft.tokens_saved or 0
            for role, step in (("assistant", r.draft), ("reviewer", r.verdict)):
                if step is None:
                    continue
                tokens[role]["prompt"] += step.usage.prompt_tokens
                tokens[role]["completion"] += step.usage.completion_tokens
                seconds[role] += step.seconds or 0.0
            if r.verdict is not None:
                verdict_cats.update(set(r.verdict.categories))
        if t.outcome in RATED:
            turn_cats.update(t.raised)
    latencies = [t.seconds for t in rated if t.seconds is not None]
    total_tokens = sum(v["prompt"] + v["completion"] for v in tokens.values())
    total_seconds = sum(seconds.values())
    n = len(rated)
    return {
        **({"chunked_review": chunked} if chunked["chunk_verdicts"] else {}),
        "conversations": len(stories),
        "tampered": sum(s.tampered for s in summaries),
        "status": dict(Counter(s.status for s in summaries if s.readable)),  # chaperone/audit/integrity.py
        "duplicates": [str(s.path) for s in left_out],
        "unreadable": [str(s.path) for s in summaries if not s.readable],
        "turns": {
            "rated": n,
            "cancelled": sum(t.outcome == "cancelled" for t in turns),
            "unreviewed": sum(t.outcome == "unreviewed" for t in turns),  # eval baselines: no reviewer
            "unfinished": sum(t.outcome not in TURN_OUTCOMES for t in turns),
        },
        "approved_first_draft": {
            "turns": sum(t.outcome == "approved" and t.revisions == 0 for t in rated),
            "rate": _ratio(sum(t.outcome == "approved" and t.revisions == 0 for t in rated), n),
        },
        "revisions_per_turn": {str(k): revisions[k] for k in sorted(revisions)},
        "mean_revisions": round(sum(k * v for k, v in revisions.items()) / n, 3) if n else None,
        "withheld": {
            "turns": sum(t.outcome == "withheld" for t in rated),
            "rate": _ratio(sum(t.outcome == "withheld" for t in rated), n),
        },
        "errors": {
            "turns": sum(t.outcome == "error" for t in rated),
            "rate": _ratio(sum(t.outcome == "error" for t in rated), n),
        },
        "categories": {
            c: {"turns": turn_cats[c], "verdicts": verdict_cats[c]}
            for c in sorted(set(turn_cats) | set(verdict_cats), key=lambda c: (-turn_cats[c], c))
        },
        "tokens": {role: {**v, "total": v["prompt"] + v["completion"]} for role, v in tokens.items()},
        "reviewer_share": {
            "tokens": _ratio(tokens["reviewer"]["prompt"] + tokens["reviewer"]["completion"], total_tokens),
            "model_seconds": _ratio(seconds["reviewer"], total_seconds),
        },
        "model_seconds": {role: round(v, 3) for role, v in seconds.items()},
        "latency_per_turn": {
            "turns": len(latencies),
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "p95": nearest_rank(latencies, 95),
        },
    }
