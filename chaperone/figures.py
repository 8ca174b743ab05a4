"""Small statistics shared by the review stats and the evaluation metrics."""

from __future__ import annotations

import math


def nearest_rank(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(pct / 100 * len(ordered)), 1) - 1]


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None
