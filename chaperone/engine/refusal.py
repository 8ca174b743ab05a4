"""The refusal phrase check, now in chaperone/refusal.py (shared with chaperone.reviewer_head); kept here so
the engine's and the eval's imports read as before."""

from chaperone.refusal import HEAD_CHARS, is_short_full_refusal, refusal_shape

__all__ = ["HEAD_CHARS", "is_short_full_refusal", "refusal_shape"]
