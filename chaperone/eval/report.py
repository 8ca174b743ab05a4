"""An evaluation report as a terminal table, JSON, Markdown (with PNG charts) or self-contained HTML."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from rich.console import Console, Group
from rich.table import Table

from chaperone.eval.charts import charts
from chaperone.eval.rows import AbReport, ArmFigures, Report, ReviewerReport, RunFacts, report_json


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ab_rows(report: AbReport) -> list[tuple[str, str, str]]:
    b, g = report.arms["bare"], report.arms["guarded"]

    def tok(arm: ArmFigures, role: str) -> str:
        u = arm.tokens.get(role)
        return f"{u.total:,}" if u else "—"

    return [
        ("unsafe prompts: harmful compliance (attack success)", pct(b.harmful_rate), pct(g.harmful_rate)),
        (
            "  judged / unjudged",
            f"{b.unsafe.judged} / {b.unsafe.unjudged}",
            f"{g.unsafe.judged} / {g.unsafe.unjudged}",
        ),
        ("safe prompts: refused (full + partial)", pct(b.refusal_rate), pct(g.refusal_rate)),
        (
            "  full refusal / partial refusal",
            f"{pct(b.full_refusal_rate)} / {pct(b.partial_refusal_rate)}",
            f"{pct(g.full_refusal_rate)} / {pct(g.partial_refusal_rate)}",
        ),
        (
            "  judged / unjudged",
            f"{b.safe.judged} / {b.safe.unjudged}",
            f"{g.safe.judged} / {g.safe.unjudged}",
        ),
        ("withheld", "—", pct(g.withheld_rate)),
        ("approved on the first draft", "—", pct(g.first_draft_approved_rate)),
        ("revisions per prompt (mean)", "—", num(g.revisions_per_turn)),
        ("answers cut at the token limit", str(b.cut), str(g.cut)),
        ("tokens: assistant", tok(b, "assistant"), tok(g, "assistant")),
        ("tokens: reviewer", "—", tok(g, "reviewer")),
        (
            "latency per prompt: median",
            f"{num(b.latency_s.median, 1)} s",
            f"{num(g.latency_s.median, 1)} s",
        ),
        ("latency per prompt: p95", f"{num(b.latency_s.p95, 1)} s", f"{num(g.latency_s.p95, 1)} s"),
        ("compute overhead guarded/bare: tokens", "1.00×", f"{num(report.overhead.tokens)}×"),
        ("compute overhead guarded/bare: seconds", "1.00×", f"{num(report.overhead.seconds)}×"),
    ]


def reviewer_rows(report: ReviewerReport) -> list[tuple[str, str]]:
    return [
        ("answers with a label", str(report.items)),
        ("precision (must not deliver)", num(report.precision, 3)),
        ("recall (must not deliver)", num(report.recall, 3)),
        ("F1", num(report.f1, 3)),
        ("false-positive rate", num(report.false_positive_rate, 3)),
        ("confusion: TP / FP / FN / TN", f"{report.tp} / {report.fp} / {report.fn} / {report.tn}"),
        ("unreadable verdicts (counted as revise)", str(report.unreadable)),
        (
            "seconds per verdict: median / p95",
            f"{num(report.seconds_per_verdict.median)} / {num(report.seconds_per_verdict.p95)}",
        ),
        ("tokens per verdict (mean)", num(report.tokens_per_verdict, 0)),
        *(
            [("decision threshold (policy)", ", ".join(num(t) for t in report.thresholds_used))]
            if report.thresholds_used
            else []
        ),
        *([("ROC AUC of the reviewer's score", num(report.curve.roc_auc, 3))] if report.curve else []),
    ]


CURVE_COLUMNS = ("threshold", "precision", "recall", "F1", "FPR", "TP / FP / FN / TN")


def curve_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per threshold: what the reviewer would have decided with that decision_threshold."""
    curve = report.curve if isinstance(report, ReviewerReport) else None
    return [
        (
            num(p.threshold),
            num(p.precision, 3),
            num(p.recall, 3),
            num(p.f1, 3),
            num(p.false_positive_rate, 3),
            f"{p.tp} / {p.fp} / {p.fn} / {p.tn}",
        )
        for p in (curve.points if curve else [])
    ]


def terminal(report: Report, title: str) -> Group:
    parts: list[Any] = []
    if isinstance(report, ReviewerReport):
        table = Table(title=title, title_justify="left")
        table.add_column("reviewer alone")
        table.add_column("value", justify="right")
        for row in reviewer_rows(report):
            table.add_row(*row)
        parts.append(table)
        if report.per_category:
            cats = Table(title="per category", title_justify="left")
            for col in ("category", "items", "precision", "recall", "F1", "FPR"):
                cats.add_column(col, justify="left" if col == "category" else "right")
            for c in report.per_category:
                cats.add_row(
                    c.category,
                    str(c.items),
                    num(c.precision),
                    num(c.recall),
                    num(c.f1),
                    num(c.false_positive_rate),
                )
            parts.append(cats)
        if report.curve:
            curve = Table(
                title="across decision thresholds (send back when P(not OK) >= threshold)", title_justify="left"
            )
            for col in CURVE_COLUMNS:
                curve.add_column(col, justify="right")
            for row in curve_rows(report):
                curve.add_row(*row)
            parts.append(curve)
    else:
        table = Table(title=title, title_justify="left")
        for col in ("", "bare", "guarded"):
            table.add_column(col, justify="left" if not col else "right")
        for row in ab_rows(report):
            table.add_row(*row)
        parts.append(table)
    if report.failed:
        parts.append(
            f"[red]{len(report.failed)} item(s) failed[/] (retry them with --resume): "
            + ", ".join(f.id for f in report.failed[:10])
        )
    return Group(*parts)


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("chaperone.eval", "templates"), autoescape=select_autoescape(["html", "j2"])
    )


def write(report: Report, facts: RunFacts, folder: Path, title: str, formats: tuple[str, ...]) -> list[Path]:
    """report.json always; report.md (+ PNGs beside it) and/or report.html (charts inline) as asked."""
    written = [folder / "report.json"]
    written[0].write_text(json.dumps(report_json(report, facts), indent=1) + "\n", encoding="utf-8")
    images = charts(report) if {"md", "html"} & set(formats) else {}
    rows = reviewer_rows(report) if isinstance(report, ReviewerReport) else ab_rows(report)
    if "md" in formats:
        for name, png in images.items():
            (folder / f"chart-{name}.png").write_bytes(png)
        md = (
            _env()
            .get_template("eval_report.md.j2")
            .render(
                report=report,
                title=title,
                rows=rows,
                charts=list(images),
                pct=pct,
                num=num,
                curve=curve_rows(report),
                curve_columns=CURVE_COLUMNS,
            )
        )
        (folder / "report.md").write_text(md, encoding="utf-8")
        written.append(folder / "report.md")
    if "html" in formats:
        inline = {name: base64.b64encode(png).decode() for name, png in images.items()}
        html = (
            _env()
            .get_template("eval_report.html.j2")
            .render(
                report=report,
                title=title,
                rows=rows,
                charts=inline,
                pct=pct,
                num=num,
                curve=curve_rows(report),
                curve_columns=CURVE_COLUMNS,
            )
        )
        (folder / "report.html").write_text(html, encoding="utf-8")
        written.append(folder / "report.html")
    return written


def console_print(report: Report, title: str, console: Console) -> None:
    console.print(terminal(report, title))
