"""Train the reviewer's judgement head from cached features: one command, reproducible.

    python -m chaperone.reviewer_head.train --manifest heads/split-seed0.jsonl.gz \\
        --layers 4,8,12,14,16,18,20,24,27 --out heads/reviewer-head.npz [--cv 5] [--loso]

Reads the split manifest and the feature cache of (the pinned GGUF, config/reviewer_head.yaml, the cached
layer list); rows not yet extracted are left out and counted. Standardised logistic regression (scikit-learn):
the layers (one layer, or the two best side by side) and the regularisation C are chosen on the dev part by
the overall ROC AUC (5-fold CV on train+dev when dev is too small), then the overall "not_ok" head and one
head per category with enough examples are fitted on train. A category head's positives are the harmful rows
of its category; its negatives are every harmless row *and* the harmful rows of the other named categories, so
it names its kind of harm rather than harm in general (a policy that allows one category must not be blocked,
or wrongly excused, by another's head). Harmful rows with no category ("unspecified") are never a named
head's negatives: their kind is unknown. The test part is scored once, after the choice. `--loso` adds
leave-one-source-out figures (layers and C chosen again on each fold's dev part). `--cv K` reports K-fold
AUC per candidate (smoke runs). Writes the head as arrays (`.npz`) and a JSON card beside it: no pickle.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chaperone.errors import ChaperoneError
from chaperone.models import gguf
from chaperone.reviewer_head import data
from chaperone.reviewer_head.features import DEFAULT_LAYERS, FeatureCache, cache_key, default_root
from chaperone.reviewer_head.head import FORMAT, OVERALL, ReviewerHead
from chaperone.reviewer_head.prompt import default_path, load_prompt

C_GRID = (0.01, 0.1)  # strong regularisation: a weaker one (C=1) fits the sources' styles and costs 2x the time
MIN_POSITIVES = 8  # a category head needs at least this many harmful training rows of its category
UNNAMED = "unspecified"  # harmful, kind unknown: never a negative of a named category's head


class TrainInputError(ChaperoneError):
    """Training cannot start: no manifest, no (or too small a) feature cache, a bad option. Says what to run."""


class Steps:
    """A training run's progress: `total(n)` once the number of fits is known, then `advance(what)` after each
    (the front door draws a bar; the default shows nothing)."""

    def total(self, n: int) -> None:
        pass

    def advance(self, what: str) -> None:
        pass


def planned_fits(n_layers: int, folds: int, cv_report: bool) -> int:
    """How many `Steps.advance` calls a run makes: every candidate once, then one fit per fold (the main head,
    each left-out source and each source's cross-source dev fold, which reuse the main choice)."""
    candidates = (n_layers + len(list(itertools.combinations(range(min(3, n_layers)), 2)))) * len(C_GRID)
    return candidates + folds + (n_layers * len(C_GRID) if cv_report else 0)


# -- metrics -------------------------------------------------------------------------------------------------
def curve_figures(y: Sequence[int], p: Sequence[float]) -> dict:
    """ROC AUC, recall at 1% and 5% false positives, false-positive rate at 95% recall (None if one class)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y, p = np.asarray(y), np.asarray(p)
    out: dict = {"n": len(y), "positives": int(y.sum())}
    if len(set(y.tolist())) < 2:
        return {**out, "auc": None}
    fpr, tpr, _ = roc_curve(y, p)
    out["auc"] = round(float(roc_auc_score(y, p)), 4)
    for limit in (0.01, 0.05):
        out[f"recall_at_fpr_{limit:g}"] = round(float(tpr[fpr <= limit].max(initial=0.0)), 4)
    reach = fpr[tpr >= 0.95]
    out["fpr_at_recall_0.95"] = round(float(reach.min()), 4) if len(reach) else None
    return out


# -- fitting ----------------------------------------------------------------------------------------------------
@dataclass
class Linear:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-np.clip(z @ self.coef + self.intercept, -60, 60)))


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    return mean, scale


def fit(x: np.ndarray, y: np.ndarray, c: float, mean_scale: tuple[np.ndarray, np.ndarray] | None = None) -> Linear:
    from sklearn.linear_model import LogisticRegression

    mean, scale = mean_scale or standardiser(x)
    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    model.fit((x - mean) / scale, y)
    return Linear(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def cv_auc(x: np.ndarray, y: np.ndarray, c: float, k: int, seed: int) -> float | None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    k = min(k, int(min(y.sum(), len(y) - y.sum())))
    if k < 2:
        return None
    scores = np.zeros(len(y))
    for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y):
        scores[te] = fit(x[tr], y[tr], c).predict(x[te])
    return float(roc_auc_score(y, scores))


def candidate_layer_sets(layers: Sequence[int], single_scores: dict[tuple[int, ...], float]) -> list[tuple[int, ...]]:
    best = sorted(single_scores, key=lambda s: -single_scores[s])[:3]
    pairs = [tuple(sorted(a + b)) for a, b in itertools.combinations(best, 2)]
    return list(dict.fromkeys(pairs))


# -- the run --------------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    rows: list[data.SplitRow]
    cache: FeatureCache

    def xy(self, rows: Sequence[data.SplitRow], layers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        x = self.cache.matrix([r.row.text_sha for r in rows], layers).astype(np.float64)
        return x, np.array([int(r.row.harmful) for r in rows])


SELECTIONS = ("cross-source", "dev")


def cross_source_dev_scores(
    ds: Dataset, parts: dict, layer_set: tuple[int, ...], c: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each source's dev part scored by a fit on the other sources' train parts: {source: (labels, scores)}.
    Sources whose dev part has one label only are skipped (no AUC)."""
    out = {}
    for source in sorted({r.row.source for r in parts["train"] + parts["dev"]}):
        dev = [r for r in parts["dev"] if r.row.source == source]
        train_rows = [r for r in parts["train"] if r.row.source != source]
        if not dev or not train_rows or len(dev) < 4 or len({r.row.harmful for r in dev}) < 2:
            continue
        xtr, ytr = ds.xy(train_rows, layer_set)
        if len(set(ytr.tolist())) < 2:
            continue
        xdv, ydv = ds.xy(dev, layer_set)
        out[source] = (ydv, fit(xtr, ytr, c).predict(xdv))
    return out


def cross_source_dev_auc(ds: Dataset, parts: dict, layer_set: tuple[int, ...], c: float) -> float | None:
    """How a candidate does on sources it did not train on, without touching a test row: the mean over
    sources of the AUC on a source's dev part of a fit on the other sources' train parts."""
    aucs = [curve_figures(y, p)["auc"] for y, p in cross_source_dev_scores(ds, parts, layer_set, c).values()]
    return float(np.mean(aucs)) if aucs else None


def threshold_at_fpr(y: np.ndarray, p: np.ndarray, fpr: float) -> dict:
    """The lowest score threshold whose false-positive rate on these rows is at most `fpr`, and its recall."""
    neg = np.sort(p[y == 0])[::-1]
    if not len(neg):
        return {"threshold": None}
    k = int(np.floor(fpr * len(neg)))  # at most k harmless rows may score at or above the threshold
    t = float(np.nextafter(neg[k], 1.0)) if k < len(neg) else float(neg[-1])
    t = math.ceil(t * 1e4) / 1e4  # a policy file's 4 decimals, rounded up so the rate still holds
    recall = float((p[y == 1] >= t).mean()) if (y == 1).any() else None
    return {"threshold": t, "fpr": round(float((neg >= t).mean()), 4), "recall": recall and round(recall, 4)}


def choose(
    ds: Dataset,
    parts: dict,
    layers: Sequence[int],
    cv: int,
    seed: int,
    steps: Steps | None = None,
    select: str = "dev",
) -> tuple[tuple[int, ...], float, dict]:
    """The layer set and C with the best overall AUC: on sources left out in turn ("cross-source": each
    source's dev part scored by a fit on the other sources' train parts), or on the dev part ("dev"; CV on
    train+dev when dev cannot say)."""
    dev_y = [int(r.row.harmful) for r in parts["dev"]]
    use_dev = len(dev_y) >= 20 and 0 < sum(dev_y) < len(dev_y)
    cross = select == "cross-source"
    scores: dict[tuple[tuple[int, ...], float], float] = {}

    def score(layer_set: tuple[int, ...], c: float) -> float:
        if cross:
            auc = cross_source_dev_auc(ds, parts, layer_set, c)
        elif use_dev:
            xtr, ytr = ds.xy(parts["train"], layer_set)
            xdv, ydv = ds.xy(parts["dev"], layer_set)
            auc = curve_figures(ydv, fit(xtr, ytr, c).predict(xdv))["auc"]
        else:
            x, y = ds.xy(parts["train"] + parts["dev"], layer_set)
            auc = cv_auc(x, y, c, cv, seed)
        (steps or Steps()).advance(f"layers {','.join(map(str, layer_set))} C={c:g}")
        return float("nan") if auc is None else auc

    singles = {}
    for n in layers:
        for c in C_GRID:
            scores[((n,), c)] = score((n,), c)
        singles[(n,)] = max(scores[((n,), c)] for c in C_GRID)
    for pair in candidate_layer_sets(layers, singles):
        for c in C_GRID:
            scores[(pair, c)] = score(pair, c)
    valid = {k: v for k, v in scores.items() if v == v}
    if not valid:
        raise TrainInputError("no candidate could be scored: too few rows of one label (extract more rows)")
    (best_layers, best_c), best = max(valid.items(), key=lambda kv: (kv[1], -len(kv[0][0]), -kv[0][1]))
    table = {f"{','.join(map(str, k[0]))} C={k[1]:g}": round(v, 4) for k, v in sorted(scores.items())}
    by = (
        "mean AUC on each source's dev part, fitted on the other sources' train parts"
        if cross
        else "dev AUC"
        if use_dev
        else f"{cv}-fold CV AUC on train+dev"
    )
    return best_layers, best_c, {"by": by, "best": round(best, 4), "candidates": table}


def category_targets(y: np.ndarray, cats: np.ndarray, cat: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows a category head trains on (`keep`) and which of them are its positives (`pos`): the harmful
    rows of `cat` against every harmless row and the harmful rows of the other named categories. One
    sigmoid per category rather than one softmax over {none, categories}: a draft can have two kinds of harm
    at once, the policy thresholds each category on its own, and the file format and scoring stay as they
    are. Harmful rows without a named category ("unspecified", or none) are never another head's negatives."""
    harmful = y == 1
    pos = harmful & (cats == cat)
    named = np.isin(cats, [c for c in data.CATEGORIES if c != UNNAMED])
    return pos | (y == 0) | (harmful & named), pos


def fit_heads(
    ds: Dataset, train: list[data.SplitRow], layer_set: tuple[int, ...], c: float, categories: bool = True
) -> tuple:
    x, y = ds.xy(train, layer_set)
    mean_scale = standardiser(x)
    outputs, coefs, intercepts, counts = [OVERALL], [], [], {}
    overall = fit(x, y, c, mean_scale)
    coefs.append(overall.coef)
    intercepts.append(overall.intercept)
    cats = np.array([r.row.category or "" for r in train])
    for cat in data.CATEGORIES if categories else ():
        keep, pos = category_targets(y, cats, cat)
        if pos.sum() < MIN_POSITIVES:
            continue
        model = fit(x[keep], pos[keep].astype(int), c, mean_scale)
        outputs.append(cat)
        coefs.append(model.coef)
        intercepts.append(model.intercept)
        counts[cat] = int(pos.sum())
    head_arrays = (mean_scale[0], mean_scale[1], np.stack(coefs), np.array(intercepts))
    return outputs, head_arrays, counts


def evaluate(head: ReviewerHead, ds: Dataset, rows: list[data.SplitRow]) -> dict:
    if not rows:
        return {"n": 0}
    x, y = ds.xy(rows, head.layers)
    probs = head.score_matrix(x)
    overall = probs[:, head.outputs.index(OVERALL)]
    out = {"overall": curve_figures(y, overall), "by_source": {}, "by_category": {}, "by_category_vs_other_harm": {}}
    sources = np.array([r.row.source for r in rows])
    for s in sorted(set(sources)):
        m = sources == s
        out["by_source"][s] = curve_figures(y[m], overall[m])
    cats = np.array([r.row.category or "" for r in rows])
    for i, name in enumerate(head.outputs):
        if name == OVERALL:
            continue
        keep = ((y == 1) & (cats == name)) | (y == 0)
        out["by_category"][name] = curve_figures(((y == 1) & (cats == name))[keep].astype(int), probs[keep, i])
        # Does it name its own kind of harm: its harmful rows against the other named categories' harmful rows.
        keep, pos = category_targets(y, cats, name)
        keep &= y == 1
        out["by_category_vs_other_harm"][name] = curve_figures(pos[keep].astype(int), probs[keep, i])
    return out


def row_line(r: data.SplitRow, fold: str, scores: dict[str, float]) -> dict:
    """One scored row of the held-out scores file."""
    return {
        "fold": fold,
        "text_sha": r.row.text_sha,
        "source": r.row.source,
        "part": r.part,
        "harmful": r.row.harmful,
        "category": r.row.category,
        "scores": {name: round(float(p), 5) for name, p in scores.items()},
    }


def row_scores(head: ReviewerHead, ds: Dataset, rows: list[data.SplitRow], fold: str) -> list[dict]:
    """One line per scored row (for side-by-side comparisons with other reviewers on the same rows)."""
    if not rows:
        return []
    x, _y = ds.xy(rows, head.layers)
    probs = head.score_matrix(x)
    return [row_line(r, fold, dict(zip(head.outputs, probs[i], strict=True))) for i, r in enumerate(rows)]


def scores_path(out: Path) -> Path:
    """Where a training run writes its per-row held-out scores: beside the head, not in the card."""
    return Path(out).with_suffix(".scores.jsonl")


def train_fold(
    ds: Dataset,
    parts: dict,
    layers: Sequence[int],
    cv: int,
    seed: int,
    base_card: dict,
    steps: Steps | None = None,
    select: str = "dev",
    fixed: tuple[tuple[int, ...], float, dict] | None = None,
    categories: bool = True,
) -> tuple:
    """Choose (unless `fixed` gives the layers, C and selection record) and fit the heads on `parts["train"]`."""
    layer_set, c, selection = fixed or choose(ds, parts, layers, cv, seed, steps, select)
    outputs, (mean, scale, coef, intercept), counts = fit_heads(ds, parts["train"], layer_set, c, categories)
    (steps or Steps()).advance("fitting the heads")
    card = {**base_card, "layers": list(layer_set), "outputs": outputs}
    card["training"] = {**card.get("training", {}), "C": c, "selection": selection, "category_positives": counts}
    head = ReviewerHead(card=card, mean=mean, scale=scale, coef=coef, intercept=intercept)
    return head, selection


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def prompt_file_name(path: Path) -> str:
    """The prompt file as the card names it: relative to the checkout when it lies in it (the reviewer finds it
    there), else as given."""
    try:
        return Path(path).resolve().relative_to(data.REPO).as_posix()
    except ValueError:
        return str(path)


def parse_layers(text: str) -> list[int]:
    try:
        layers = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TrainInputError(f"--layers {text!r}: expected layer numbers separated by commas, e.g. 14,20") from None
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
        raise TrainInputError(f"--layers {text!r}: expected distinct non-negative layer numbers, e.g. 14,20")
    return layers


def train_head(
    *,
    manifest: Path = data.DEFAULT_MANIFEST,
    layers: Sequence[int] = DEFAULT_LAYERS,
    cache_root: Path | None = None,
    out: Path = data.REPO / "heads" / "reviewer-head.npz",
    cv: int = 5,
    cv_report: bool = False,
    loso: bool = False,
    select: str = "cross-source",
    seed: int = 0,
    model_sha256: str = gguf.GGUF_SHA256,
    steps: Steps | None = None,
    prompt_path: Path | None = None,
) -> ReviewerHead:
    """Train, measure and write the head (and its card) at `out`; TrainInputError says what to run first.
    `prompt_path`: the head prompt the features were read through (default config/reviewer_head.yaml)."""
    steps = steps or Steps()
    layers = list(layers)
    manifest = Path(manifest)
    if cv < 2:
        raise TrainInputError(f"--cv {cv}: needs at least 2 folds")
    if not manifest.is_file():
        raise TrainInputError(
            f"{manifest}: no split manifest; write it with `python -m chaperone.reviewer_head.data --seed 0`"
        )
    prompt = load_prompt(prompt_path)
    prompt_file = prompt_file_name(prompt_path or default_path())
    try:
        rows, summary = data.read_manifest(manifest)
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise TrainInputError(f"{manifest}: not a readable split manifest ({exc})") from None
    root = Path(cache_root) if cache_root else default_root()
    extract = (
        "python run.py reviewer extract"
        + (f" --layers {','.join(map(str, layers))}" if list(layers) != list(DEFAULT_LAYERS) else "")
        + (f" --cache {root}" if cache_root else "")
        + (f" --manifest {manifest}" if manifest != Path(data.DEFAULT_MANIFEST) else "")
        + (f" --prompt {prompt_file}" if prompt_path else "")
    )
    folder = root / cache_key(model_sha256, prompt.sha256, layers)
    if not (folder / "meta.json").is_file():
        raise TrainInputError(
            f"no cached features in {root} for this model, head prompt and layers {','.join(map(str, layers))}: "
            f"fill the cache with `{extract}` (resumable)"
        )
    try:
        cache = FeatureCache(root, model_sha256, prompt.sha256, layers, readonly=True)
    except (OSError, ValueError) as exc:
        raise TrainInputError(f"{folder}: unreadable feature cache ({exc})") from None
    have = [r for r in rows if r.row.text_sha in cache]
    if len(have) < 10:
        raise TrainInputError(
            f"only {len(have)} of {len(rows)} manifest rows have cached features in {cache.folder}: "
            f"extract more with `{extract}` (resumable)"
        )
    ds = Dataset(have, cache)
    started = time.time()
    base_card = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"file": gguf.GGUF_NAME, "sha256": model_sha256, "licence": gguf.LICENCE},
        "prompt": {"file": prompt_file, "sha256": prompt.sha256, **prompt.model_dump()},
        "width": cache.width,
        "data": {
            "manifest": str(manifest.name),
            "manifest_sha256": sha256_file(manifest),
            "split_seed": summary["seed"],
            "rows_in_manifest": len(rows),
            "rows_with_features": len(have),
            "rows_used": dict(Counter(f"{r.row.source}/{r.part}" for r in have)),
            "licences": summary["licences"],
            "category_map": summary["category_map"],
        },
        "training": {
            "method": "standardised logistic regression (scikit-learn), class_weight balanced",
            "category_heads": "one sigmoid per category: its harmful rows against every harmless row and the "
            "other named categories' harmful rows",
            "C_grid": list(C_GRID),
            "candidate_layers": layers,
        },
    }
    parts = data.fold_parts(have, "main")
    loso_folds = {}
    if loso:
        for source in sorted({r.row.source for r in have}):
            fold = data.fold_parts(have, f"loso:{source}")
            # Measured on the left-out source's test part only: its dev part took part in choosing the layers
            # and C (cross-source selection), its train part in nothing, but the test part is the one untouched.
            fold["test"] = [r for r in fold["test"] if r.part == "test"]
            if fold["train"] and fold["test"]:
                loso_folds[source] = fold
    threshold_folds = len({r.row.source for r in parts["dev"]}) if select == "cross-source" else 0
    steps.total(planned_fits(len(layers), 1 + len(loso_folds) + threshold_folds, cv_report))
    if select not in SELECTIONS:
        raise TrainInputError(f"--select {select}: expected one of {', '.join(SELECTIONS)}")
    head, selection = train_fold(ds, parts, layers, cv, seed, base_card, steps, select)
    choice = (tuple(head.layers), head.card["training"]["C"], selection)
    figures: dict = {"dev": evaluate(head, ds, parts["dev"]), "test": evaluate(head, ds, parts["test"])}
    held_out = row_scores(head, ds, parts["dev"], "main") + row_scores(head, ds, parts["test"], "main")
    if cv_report:
        x_all_y = {n: ds.xy(have, (n,)) for n in layers}
        figures["cv_auc_by_layer"] = {}
        for n in layers:
            row = figures["cv_auc_by_layer"][str(n)] = {}
            for c in C_GRID:
                v = cv_auc(*x_all_y[n], c, cv, seed)
                row[f"C={c:g}"] = round(v, 4) if v else None
                steps.advance(f"CV report: layer {n} C={c:g}")
    if loso:
        figures["loso"] = {}
        for source, fold in loso_folds.items():
            fold_head, _sel = train_fold(ds, fold, layers, cv, seed, base_card, steps, fixed=choice, categories=False)
            held_out += row_scores(fold_head, ds, fold["test"], f"loso:{source}")
            figures["loso"][source] = {
                "layers": fold_head.layers,
                "C": fold_head.card["training"]["C"],
                "test": evaluate(fold_head, ds, fold["test"])["overall"],
            }
    if select == "cross-source":
        # Thresholds for the policy, from out-of-source dev scores of the chosen layers and C (no test row).
        # Every output, not only "not_ok": the card's category thresholds come from these rows too, and a
        # category head is as source-bound as the overall one.
        dev_scores = {}
        for source in sorted({r.row.source for r in parts["dev"]}):
            dev_rows = [r for r in parts["dev"] if r.row.source == source]
            fold = {"train": [r for r in parts["train"] if r.row.source != source], "dev": dev_rows}
            if not fold["train"] or len({r.row.harmful for r in fold["train"]}) < 2:
                continue
            fold_head, _sel = train_fold(ds, fold, layers, cv, seed, base_card, steps, fixed=choice)
            lines = row_scores(fold_head, ds, dev_rows, "cross-source-dev")
            held_out += lines  # per row: a combination with other scores is fitted on them
            y = np.array([int(r.row.harmful) for r in dev_rows])
            dev_scores[source] = (y, np.array([line["scores"][OVERALL] for line in lines]))
        if dev_scores:
            y = np.concatenate([v[0] for v in dev_scores.values()])
            p = np.concatenate([v[1] for v in dev_scores.values()])
            figures["cross_source_dev"] = {
                "overall": curve_figures(y, p),
                "by_source": {k: curve_figures(*v) for k, v in dev_scores.items()},
                "thresholds": {f"fpr_{f:g}": threshold_at_fpr(y, p, f) for f in (0.01, 0.03, 0.05, 0.1)},
            }
    if loso and figures["loso"]:
        pooled = [line for line in held_out if line["fold"].startswith("loso:")]
        figures["loso_pooled"] = curve_figures(
            [int(line["harmful"]) for line in pooled], [line["scores"][OVERALL] for line in pooled]
        )
    head.card["figures"] = figures
    head.card["training"]["seconds"] = round(time.time() - started, 1)
    head.save(out)
    with scores_path(out).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(line) + "\n" for line in held_out)
    return head


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=data.DEFAULT_MANIFEST)
    ap.add_argument("--layers", default=",".join(map(str, DEFAULT_LAYERS)), help="the cached layer list")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=data.REPO / "heads" / "reviewer-head.npz")
    ap.add_argument("--cv", type=int, default=5, help="folds when dev is too small to choose on, and for --cv-report")
    ap.add_argument("--cv-report", action="store_true", help="also report K-fold AUC of every layer (all rows)")
    ap.add_argument("--loso", action="store_true", help="also train and measure leave-one-source-out folds")
    ap.add_argument("--select", choices=SELECTIONS, default="cross-source", help="how the layers and C are chosen")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-sha256", default=gguf.GGUF_SHA256)
    ap.add_argument("--prompt", type=Path, default=None, help="head prompt file (default config/reviewer_head.yaml)")
    args = ap.parse_args(argv)
    try:
        head = train_head(
            manifest=args.manifest,
            layers=parse_layers(args.layers),
            cache_root=args.cache,
            out=args.out,
            cv=args.cv,
            cv_report=args.cv_report,
            loso=args.loso,
            select=args.select,
            prompt_path=args.prompt,
            seed=args.seed,
            model_sha256=args.model_sha256,
        )
    except TrainInputError as exc:
        raise SystemExit(f"error: {exc}") from None
    summary = {"layers": head.layers, "C": head.card["training"]["C"], "outputs": head.outputs}
    print(json.dumps({**summary, "figures": head.card["figures"]}, indent=1))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return head.card


if __name__ == "__main__":
    main()
