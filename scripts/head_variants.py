"""Out-of-source dev figures of head variants: which layer, C, source weighting and row normalisation carry
over to a source the head did not fit. Reads no test row: each source's dev part is scored by a fit on the
other sources' train parts (as `reviewer train --select cross-source` chooses), and the mean AUC over sources
(pooled AUC in brackets) is printed per variant. Uses the rows whose features are cached.

    .venv/bin/python scripts/head_variants.py [--layers 16 12 20 24 12,20] [--C 0.001 0.01]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaperone.models.gguf import GGUF_SHA256
from chaperone.reviewer_head import data
from chaperone.reviewer_head.features import DEFAULT_LAYERS, FeatureCache, default_root
from chaperone.reviewer_head.prompt import load_prompt


def source_label_weights(sources: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Every (source, label) cell weighs the same in total."""
    w = np.zeros(len(labels))
    for s in set(sources.tolist()):
        for lab in (0, 1):
            cell = (sources == s) & (labels == lab)
            if cell.any():
                w[cell] = 1.0 / cell.sum()
    return w * len(w) / w.sum()


def out_of_source(x, y, src, part, c, balance=False, l2=False):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    if l2:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    aucs, ys, ps = [], [], []
    for s in sorted(set(src.tolist())):
        tr = (part == "train") & (src != s)
        dv = (part == "dev") & (src == s)
        if dv.sum() < 4 or len(set(y[dv].tolist())) < 2:
            continue
        mean, scale = x[tr].mean(0), x[tr].std(0)
        scale[scale < 1e-6] = 1.0
        weights = source_label_weights(src[tr], y[tr]) if balance else None
        model = LogisticRegression(C=c, max_iter=3000, class_weight=None if balance else "balanced")
        model.fit((x[tr] - mean) / scale, y[tr], sample_weight=weights)
        p = model.predict_proba((x[dv] - mean) / scale)[:, 1]
        aucs.append(roc_auc_score(y[dv], p))
        ys.append(y[dv])
        ps.append(p)
    return float(np.mean(aucs)), float(roc_auc_score(np.concatenate(ys), np.concatenate(ps)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=data.DEFAULT_MANIFEST)
    ap.add_argument("--layers", nargs="+", default=["16", "12", "20", "24", "12,20"])
    ap.add_argument("--C", nargs="+", type=float, default=[0.001, 0.01])
    args = ap.parse_args()
    rows, _summary = data.read_manifest(args.manifest)
    cache = FeatureCache(default_root(), GGUF_SHA256, load_prompt().sha256, DEFAULT_LAYERS, readonly=True)
    rows = [r for r in rows if r.row.text_sha in cache and r.part in ("train", "dev")]
    src = np.array([r.row.source for r in rows])
    part = np.array([r.part for r in rows])
    y = np.array([int(r.row.harmful) for r in rows])
    print(f"{len(rows)} train and dev rows with features; mean out-of-source dev AUC (pooled)")
    print("layers  C       plain          balanced       l2-normalised")
    for layers in args.layers:
        x = cache.matrix([r.row.text_sha for r in rows], [int(n) for n in layers.split(",")]).astype(np.float64)
        for c in args.C:
            cells = [out_of_source(x, y, src, part, c, **kw) for kw in ({}, {"balance": True}, {"l2": True})]
            print(f"{layers:7s} {c:<7g} " + "  ".join(f"{m:.3f} ({p:.3f})" for m, p in cells), flush=True)


if __name__ == "__main__":
    main()
