"""Can the reviewer judge inside the assistant's own context? A measurement for issue 15 (no product change).

Today the head reads a prompt of its own (config/reviewer_head.yaml: the request and the draft fenced as
data, one question): every verdict re-reads the whole draft, which is most of the reviewer's 4.2x token bill
(docs/results.md). If the hidden state were read where the assistant's own context already ends — its
system prompt, the request, the draft it just wrote — with only a short question appended, a verdict would
read ~30 tokens. This script measures whether that layout carries as much signal, on the embedded
assistant's own answers (the source the product judges), before anyone builds it:

- features of the in-context layout (system: the assistant's real system prompt; user: the request;
  assistant: the draft; user: the question), at the shipped head's layers, cached like training features
  (resumable, keyed by a sha256 of this layout);
- the same rows' features through the head's own prompt, from the training cache;
- 5-fold cross-validated ROC AUC of the same logistic regression on each, folds grouped by request;
- tokens a verdict must evaluate in each layout (the in-context one: what follows the draft).

    .venv/bin/python benchmarks/in_context_probe.py --json benchmarks/results/in_context_probe-DATE.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from chaperone.reviewer_head import data
from chaperone.reviewer_head.features import FeatureCache, default_root, extract_features
from chaperone.reviewer_head.prompt import default_path, load_prompt

MANIFEST = REPO / "heads" / "split-seed0-gen2.jsonl.gz"
SOURCE = data.GENERATED_SOURCE


def cv_auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float, folds: int = 5) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros(len(y))
    per_fold = []
    for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
        per_fold.append(round(float(roc_auc_score(y[test], scores[test])), 4))
    return {"auc": round(float(roc_auc_score(y, scores)), 4), "per_fold": per_fold}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--layers", default="16,20", help="layers to read (comma-separated)")
    ap.add_argument("--c", type=float, default=0.01, help="the logistic regression's C (the shipped head's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    layers = [int(n) for n in args.layers.split(",")]

    from chaperone.models.gguf import ensure_model
    from chaperone.models.hidden_states import chat_tokens

    # The product's in-context layout (config/reviewer_head_in_context.yaml): the same rendering and sha256 this
    # probe first defined, so its cached features are the ones a head trained on that layout reads.
    layout = load_prompt(default_path("reviewer_head_in_context.yaml"))
    rows, _ = data.read_manifest(args.manifest)
    rows = [r for r in rows if r.row.source == SOURCE]
    started = time.perf_counter()
    stats, cache, _wall = extract_features(manifest=args.manifest, layers=layers, sources=[SOURCE], prompt=layout)
    print(f"in-context features: {stats.done} rows read now, {time.perf_counter() - started:.0f} s")

    head_prompt = load_prompt()
    from chaperone.models.gguf import GGUF_SHA256
    from chaperone.reviewer_head.features import DEFAULT_LAYERS

    reviewer_cache = FeatureCache(default_root(), GGUF_SHA256, head_prompt.sha256, list(DEFAULT_LAYERS), cache.width)
    keys = [r.row.text_sha for r in rows if r.row.text_sha in cache and r.row.text_sha in reviewer_cache]
    by_sha = {r.row.text_sha: r for r in rows}
    y = np.array([int(by_sha[k].row.harmful) for k in keys])
    groups = np.array([by_sha[k].row.group for k in keys])
    figures: dict = {"rows": len(keys), "harmful": int(y.sum()), "layers": layers, "C": args.c}
    for name, store in (("in_context", cache), ("reviewer_prompt", reviewer_cache)):
        figures[name] = {"all_layers": cv_auc(store.matrix(keys, layers), y, groups, args.c)}
        for n in layers:
            figures[name][f"layer_{n}"] = cv_auc(store.matrix(keys, [n]), y, groups, args.c)

    from llama_cpp import Llama

    vocab = Llama(model_path=str(ensure_model()), vocab_only=True, verbose=False)
    in_ctx, after_draft, head = [], [], []
    for k in keys:
        r = by_sha[k].row
        full = len(chat_tokens(vocab, layout.messages(r.request, r.draft)))
        held = len(chat_tokens(vocab, layout.messages(r.request, r.draft)[:3])) - 3  # its generation prompt
        in_ctx.append(full)
        after_draft.append(full - held)
        head.append(len(chat_tokens(vocab, head_prompt.messages(r.request, r.draft))))
    figures["tokens"] = {
        "reviewer_prompt_median": statistics.median(head),
        "in_context_total_median": statistics.median(in_ctx),
        "in_context_evaluated_median": statistics.median(after_draft),
    }
    figures["environment"] = {"python": platform.python_version(), "manifest": args.manifest.name}
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
