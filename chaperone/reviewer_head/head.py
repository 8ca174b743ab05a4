"""A trained judgement head on disk and in use: arrays (`.npz`, loaded without pickle) and a JSON card.

The arrays are one standardisation shared by every output (`mean`, `scale`) and a logistic regression per
output (`coef` rows, `intercept`): "not_ok" (the overall score) and one per category. The card says which
GGUF (sha256) and which prompt (sha256) the head reads, at which layers, what it was trained on and how
well it did. A head is refused, with a message saying why, for any other model or prompt: its weights mean
nothing on another model's hidden states. Scoring needs numpy only (scikit-learn only trains).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chaperone.errors import ChaperoneError

FORMAT = "chaperone-reviewer-head/1"
OVERALL = "not_ok"


class HeadError(ChaperoneError):
    """A head file that cannot be used: missing, malformed, or for another model or prompt."""


@dataclass(frozen=True)
class ReviewerHead:
    card: dict
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (outputs, d)
    intercept: np.ndarray  # (outputs,)

    @property
    def outputs(self) -> list[str]:
        return list(self.card["outputs"])

    @property
    def layers(self) -> list[int]:
        return [int(n) for n in self.card["layers"]]

    @property
    def model_sha256(self) -> str:
        return self.card["model"]["sha256"]

    @property
    def prompt_sha256(self) -> str:
        return self.card["prompt"]["sha256"]

    @property
    def stack(self) -> dict | None:
        """The card's combination with the prompted reviewer's P(not OK), when it has one (`reviewer compare
        --stack-into`): {"intercept", "weights": {"head", "prompted"}, ...}."""
        stack = self.card.get("stack")
        return stack if isinstance(stack, dict) else None

    def stacked(self, head_not_ok: float, prompted_not_ok: float) -> float:
        """The overall P(not OK) from both scores: a logistic regression on their logits (fitted on dev rows
        whose head score came from a head that never saw their source)."""
        stack = self.stack
        if stack is None:
            raise HeadError("this head's card has no stack")
        w = stack["weights"]
        z = (
            float(stack["intercept"])
            + float(w["head"]) * logit(head_not_ok)
            + float(w["prompted"]) * logit(prompted_not_ok)
        )
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def check(self) -> None:
        d = self.mean.shape[0]
        ok = (
            self.card.get("format") == FORMAT
            and self.scale.shape == (d,)
            and self.coef.shape == (len(self.outputs), d)
            and self.intercept.shape == (len(self.outputs),)
            and d == len(self.layers) * int(self.card["width"])
            and OVERALL in self.outputs
            and np.all(self.scale > 0)
            and (self.stack is None or _stack_ok(self.stack))
        )
        if not ok:
            raise HeadError("the head's arrays do not match its card (format, outputs, layers × width, stack)")

    def features(
        self, states: Mapping[int, np.ndarray] | np.ndarray, layers: Sequence[int] | None = None
    ) -> np.ndarray:
        """The head's input from hidden states: a {layer: vector} mapping, or a (layers × width) array whose
        rows are `layers` (default: the head's own layers, in order)."""
        if isinstance(states, Mapping):
            missing = [n for n in self.layers if n not in states]
            if missing:
                raise HeadError(f"the head reads layers {self.layers}; layers {missing} were not given")
            return np.concatenate([np.asarray(states[n], dtype=np.float32).reshape(-1) for n in self.layers])
        arr = np.asarray(states, dtype=np.float32)
        given = list(layers) if layers is not None else self.layers
        return np.concatenate([arr[given.index(n)].reshape(-1) for n in self.layers])

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """Rows of features → rows of probabilities, one column per output."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))

    def score(self, states: Mapping[int, np.ndarray] | np.ndarray, layers: Sequence[int] | None = None) -> dict:
        """{output: probability} for one draft's hidden states ("not_ok" and one per category)."""
        probs = self.score_matrix(self.features(states, layers)[None, :])[0]
        return {name: float(p) for name, p in zip(self.outputs, probs, strict=True)}

    def save(self, npz_path: Path) -> Path:
        """Write `<name>.npz` and its card `<name>.json` beside it; returns the card's path."""
        self.check()
        npz_path = Path(npz_path)
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            npz_path,
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
            coef=self.coef.astype(np.float32),
            intercept=self.intercept.astype(np.float32),
        )
        card_path = npz_path.with_suffix(".json")
        card_path.write_text(json.dumps(self.card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return card_path


def logit(p: float) -> float:
    """log(p / (1 - p)), the probability clipped to [1e-4, 1 - 1e-4] so a certain score stays finite."""
    p = min(max(float(p), 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _stack_ok(stack: dict) -> bool:
    try:
        values = [stack["intercept"], stack["weights"]["head"], stack["weights"]["prompted"]]
        return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    except (KeyError, TypeError):
        return False


def load_head(npz_path: Path, *, model_sha256: str, prompt_sha256: str) -> ReviewerHead:
    """The head at `npz_path` (card beside it), refused unless it belongs to this model and this prompt."""
    npz_path = Path(npz_path)
    card_path = npz_path.with_suffix(".json")
    if not npz_path.is_file() or not card_path.is_file():
        raise HeadError(f"{npz_path}: the head needs both {npz_path.name} and {card_path.name}")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as arrays:
            head = ReviewerHead(
                card=card,
                mean=arrays["mean"].astype(np.float64),
                scale=arrays["scale"].astype(np.float64),
                coef=arrays["coef"].astype(np.float64),
                intercept=arrays["intercept"].astype(np.float64),
            )
    except (OSError, ValueError, KeyError) as exc:
        raise HeadError(f"{npz_path}: not a readable reviewer head ({exc})") from exc
    if head.model_sha256 != model_sha256:
        raise HeadError(
            f"{card_path.name} was trained on the model with sha256 {head.model_sha256[:12]}…, not this one "
            f"({model_sha256[:12]}…): a head only works on the hidden states of its own model. "
            "Retrain it on this model (docs/reviewer-head.md)."
        )
    if head.prompt_sha256 != prompt_sha256:
        raise HeadError(
            f"{card_path.name} was trained on another head prompt (sha256 {head.prompt_sha256[:12]}…, this "
            f"{card.get('prompt', {}).get('file', 'config/reviewer_head.yaml')} is {prompt_sha256[:12]}…): "
            "restore that prompt or retrain the head."
        )
    head.check()
    return head
