"""Charts of an evaluation report (matplotlib, rendered off-screen to PNG bytes)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: files only
import matplotlib.pyplot as plt

from chaperone.eval.rows import AbReport, Report, ReviewerReport

COLOURS = {"bare": "#c0392b", "guarded": "#1e7d4f"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def tradeoff(report: AbReport) -> bytes:
    """Harm against over-refusal: where bare and guarded sit; the ideal is the bottom-left corner."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    points = {}
    for arm in ("bare", "guarded"):
        a = report.arms[arm]
        x, y = (a.refusal_rate or 0.0) * 100, (a.harmful_rate or 0.0) * 100
        points[arm] = (x, y)
        ax.scatter(
            [x], [y], s=140, color=COLOURS[arm], zorder=3, label=f"{arm}  ({x:.0f} % refused, {y:.0f} % harmful)"
        )
    (x0, y0), (x1, y1) = points["bare"], points["guarded"]
    if (x0, y0) != (x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": "#555", "lw": 1.4})
    ax.scatter([0], [0], marker="*", s=160, color="#999", zorder=2, label="ideal")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("over-refusal: safe prompts refused (%)")
    ax.set_ylabel("harm: unsafe prompts fully complied with (%)")
    ax.set_title("Harm vs over-refusal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return _png(fig)


def revisions(report: AbReport) -> bytes:
    dist = report.arms["guarded"].revisions
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    keys = sorted(dist, key=int)
    ax.bar([str(k) for k in keys], [dist[k] for k in keys], color=COLOURS["guarded"])
    ax.set_xlabel("revisions in the turn")
    ax.set_ylabel("prompts")
    ax.set_title("Guarded: revisions per prompt")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def tokens(report: AbReport) -> bytes:
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    arms = ["bare", "guarded"]
    bottoms = [0, 0]
    segments = [
        ("assistant", "prompt_tokens", "#7fa7d9"),
        ("assistant", "completion_tokens", "#2c5d9e"),
        ("reviewer", "prompt_tokens", "#f0b27a"),
        ("reviewer", "completion_tokens", "#b9651b"),
    ]
    for role, kind, colour in segments:
        used = [report.arms[arm].tokens.get(role) for arm in arms]
        values = [getattr(u, kind) if u else 0 for u in used]
        if any(values):
            ax.bar(arms, values, bottom=bottoms, color=colour, label=f"{role} {kind.split('_')[0]}")
            bottoms = [b + v for b, v in zip(bottoms, values, strict=False)]
    ax.set_ylabel("tokens (all prompts)")
    ax.set_title("Tokens per agent")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def confusion_matrix(report: ReviewerReport) -> bytes:
    cells = [[report.tn, report.fp], [report.fn, report.tp]]
    fig, ax = plt.subplots(figsize=(3.8, 3.2))
    ax.imshow(cells, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cells[i][j]), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["approve", "revise"])
    ax.set_yticks([0, 1], ["fine to deliver", "must not deliver"])
    ax.set_xlabel("reviewer said")
    ax.set_ylabel("label")
    ax.set_title("Reviewer alone")
    return _png(fig)


def threshold_curve(report: ReviewerReport) -> bytes:
    """Recall against false-positive rate across decision thresholds (an ROC curve at the report's points)."""
    assert report.curve is not None
    points = report.curve.points
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    xs = [(p.false_positive_rate or 0.0) * 100 for p in points]
    ys = [(p.recall or 0.0) * 100 for p in points]
    ax.plot(xs, ys, marker="o", color=COLOURS["guarded"], lw=1.4)
    for p, x, y in zip(points, xs, ys, strict=False):
        if p.threshold in (0.05, 0.1, 0.3, 0.5, 0.7, 0.9):
            ax.annotate(f"{p.threshold:g}", (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7)
    ax.plot([0, 100], [0, 100], ls=":", color="#999")
    ax.scatter([5], [95], marker="*", s=140, color="#c0392b", zorder=3, label="target: recall 95 %, FPR 5 %")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("false-positive rate: fine answers sent back (%)")
    ax.set_ylabel("recall: must-not-deliver answers caught (%)")
    ax.set_title(f"Across decision thresholds (ROC AUC {report.curve.roc_auc or 0:.2f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _png(fig)


def charts(report: Report) -> dict[str, bytes]:
    """Name → PNG for every chart that fits the report's mode."""
    if isinstance(report, ReviewerReport):
        out = {"confusion": confusion_matrix(report)}
        if report.curve:
            out["thresholds"] = threshold_curve(report)
        return out
    return {"tradeoff": tradeoff(report), "revisions": revisions(report), "tokens": tokens(report)}
