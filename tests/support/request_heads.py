"""A request head trained by the real code (chaperone.reviewer_head.requests) on synthetic cached features.

Requests whose text holds HARMFUL get vectors shifted on dims 0-3 (layer 7); the rest are noise. Sources as
the real manifest names them, so XSTest is left out of the cross-source fit exactly as in a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chaperone.models.gguf import GGUF_SHA256
from chaperone.reviewer_head import data, requests
from chaperone.reviewer_head.features import FeatureCache, extract_missing
from chaperone.reviewer_head.prompt import load_request_prompt

LAYERS = (3, 7)
WIDTH = 16


def vector(rng: np.random.Generator, harmful: bool) -> np.ndarray:
    x = rng.normal(scale=0.3, size=(len(LAYERS), WIDTH)).astype(np.float32)
    if harmful:
        x[1, 0:4] += 2.0
    return x


def fake_rows(n_per_source: int = 12) -> list[data.SplitRow]:
    """A few dozen requests of the real sources' names (both labels where the real source has them)."""
    kinds = {
        "xstest": (True, False),
        "handwritten": (True, False),
        "jbb_goals": (True,),
        "gptfuzz_questions": (True,),
        "truthfulqa_questions": (False,),
    }
    rows = []
    for source, labels in kinds.items():
        for i in range(n_per_source):
            harmful = labels[i % len(labels)]
            text = f"{'HARMFUL' if harmful else 'HARMLESS'} request {source} {i}"
            row = data.Row(source, f"{source}-{i}", text, "", harmful, None, "test", "none", f"{source}:{i}")
            # Alternate parts by hand: a few dozen rows are too few for the seeded hash to fill every part.
            rows.append(data.SplitRow(row, ("train", "train", "dev", "test")[i % 4]))
    return rows


def train_fake_head(tmp: Path, n_per_source: int = 12) -> tuple[Path, Path, FeatureCache]:
    """(the written head, the manifest, the feature cache) for synthetic rows."""
    rows = fake_rows(n_per_source)
    manifest = tmp / "requests.jsonl.gz"
    data.write_manifest(rows, {"seed": 0, "licences": {"xstest": "CC-BY-4.0"}}, manifest)
    rng = np.random.default_rng(0)
    vectors = {r.row.text_sha: vector(rng, r.row.harmful) for r in rows}
    cache = FeatureCache(tmp / "cache", GGUF_SHA256, load_request_prompt().sha256, LAYERS, WIDTH)
    extract_missing(
        cache, [(r.row.text_sha, r.row.text_sha) for r in rows], lambda k: (vectors[k], 10, 0.0), progress=False
    )
    out = tmp / "heads" / "request-head.npz"
    requests.train_request_head(manifest=manifest, layers=LAYERS, cache_root=tmp / "cache", out=out)
    return out, manifest, cache
