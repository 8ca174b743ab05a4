"""What a shipped head decides on a part of the split, by kind of row (`reviewer decisions`).

`reviewer compare` reads the held-out curves; this reads the operating point: the head as it ships (its main
fit, its card's threshold, its combination with the prompted reviewer's score when the card has one) applied
to every cached row of one part and source, and how many of the harmless rows it sends back (needless
refusals) and how many harmful ones it catches, for each kind of row (the row id without its last segment:
`embedded_assistant-hw-tech` for the hand-written technical requests, `embedded_assistant-xstest`, …).

Only the overall score and the card's threshold decide here; a policy's category rules and the refusal route
(a draft that only declines goes to the refusal check) are left out, the same for every head compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chaperone.reviewer_head import compare, data
from chaperone.reviewer_head.features import FeatureCache
from chaperone.reviewer_head.head import OVERALL, ReviewerHead


class DecisionsInputError(ValueError):
    """A missing input; the message says what to run."""


@dataclass(frozen=True)
class RowDecision:
    id: str  # the row's id in the manifest
    kind: str
    harmful: bool
    score: float  # the overall score the threshold is read against (combined, for a stacked head)
    send_back: bool


def kind_of(row_id: str) -> str:
    """`embedded_assistant-hw-tech-041` -> `embedded_assistant-hw-tech`: rows written from one request file."""
    head, sep, _last = row_id.rpartition("-")
    return head if sep else row_id


def threshold_of(head: ReviewerHead) -> tuple[float, str]:
    """The card's operating threshold: the combination's when it has one, else the head-alone one."""
    for section in ("stack", "alone"):
        value = ((head.card.get(section) or {}).get("threshold") or {}).get("value")
        if isinstance(value, (int, float)):
            return float(value), section
    raise DecisionsInputError(
        "the head's card has no threshold: write one with `reviewer compare … --stack-into` or `--alone-into`"
    )


def decide_rows(
    rows: Sequence[data.SplitRow],
    head: ReviewerHead,
    cache: FeatureCache,
    prompted: dict[str, dict] | None = None,
) -> tuple[list[RowDecision], dict]:
    """Each cached row's decision by the head as it ships. A stacked head needs the prompted reviewer's score
    of each row (`prompted`, by comparison-sample id); rows without features or without that score are
    counted, not guessed."""
    threshold, rule = threshold_of(head)
    have = [r for r in rows if r.row.text_sha in cache]
    skipped = {"no_features": len(rows) - len(have), "no_prompted_score": 0}
    if head.stack is not None:
        if not prompted:
            raise DecisionsInputError(
                "this head decides with the prompted reviewer's score: give --sample and --eval (its results)"
            )
        scored = [r for r in have if (prompted.get(r.row.text_sha[: compare.ID_CHARS]) or {}).get("score") is not None]
        skipped["no_prompted_score"] = len(have) - len(scored)
        have = scored
    if not have:
        return [], {"threshold": threshold, "rule": rule, "skipped": skipped}
    overall = head.outputs.index(OVERALL)
    probs = head.score_matrix(cache.matrix([r.row.text_sha for r in have], head.layers))[:, overall]
    out = []
    for r, p in zip(have, probs, strict=True):
        score = float(p)
        if head.stack is not None:
            score = head.stacked(score, float(prompted[r.row.text_sha[: compare.ID_CHARS]]["score"]))
        out.append(RowDecision(r.row.id, kind_of(r.row.id), r.row.harmful, score, score >= threshold))
    return out, {"threshold": threshold, "rule": rule, "skipped": skipped}


def summarise(decisions: Sequence[RowDecision]) -> dict[str, dict]:
    """Per kind and over all: harmless rows sent back (needless refusals) and harmful rows caught."""
    groups: dict[str, list[RowDecision]] = defaultdict(list)
    for d in decisions:
        groups[d.kind].append(d)
        groups["all"].append(d)
    out = {}
    for kind, items in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        harmless = [d for d in items if not d.harmful]
        harmful = [d for d in items if d.harmful]
        out[kind] = {
            "harmless": len(harmless),
            "harmless_sent_back": sum(d.send_back for d in harmless),
            "harmful": len(harmful),
            "harmful_sent_back": sum(d.send_back for d in harmful),
        }
    return out


def rows_of(manifest: Path, part: str, sources: Sequence[str], listed: Path | None = None) -> list[data.SplitRow]:
    """The manifest's rows of `part` ("all": every part) and `sources`, only those `listed` names if given."""
    try:
        rows = compare.read_rows(manifest, sources, listed)
    except compare.CompareInputError as exc:
        raise DecisionsInputError(str(exc)) from None
    return compare.part_rows(rows, part, sources)


def prompted_scores(samples: Sequence[Path], runs: Sequence[Path]) -> dict[str, dict]:
    if len(samples) != len(runs):
        raise DecisionsInputError("give one eval run for each sample file, in the same order (--sample/--eval)")
    try:
        return compare.prompted_results(samples, runs, "reviewer-alone results")
    except compare.CompareInputError as exc:
        raise DecisionsInputError(str(exc)) from None


def markdown(summary: dict[str, dict]) -> str:
    lines = ["| rows | harmless sent back | harmful sent back |", "|---|---|---|"]
    for kind, f in summary.items():
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(
            f"| {name} | {_share(f['harmless_sent_back'], f['harmless'])} | "
            f"{_share(f['harmful_sent_back'], f['harmful'])} |"
        )
    return "\n".join(lines)


def _share(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "–"
