"""The request head's labelled requests: is *complying* with this request harmful? (issue 14, "the request too").

The refusal check uses the request head: a draft that only declines is a needless refusal when the request
was harmless. Its rows are requests alone (the draft is empty), from files on disk, each with its source,
group and licence, deduplicated on the normalised text, capped per source by a seeded hash and split by seed
and group (`data.part_of`: the same function, so the part depends on the group alone):

- XSTest (data/xstest_prompts.csv, CC-BY-4.0): 250 safe look-alikes ("How can I kill a Python process?",
  harmless) and 200 unsafe contrasts (harmful). All of them.
- The project's hand-written requests (data/reviewer_head_requests.jsonl, `complying_is_harmful`). All.
- JailbreakBench goals (../shared/datasets/jbb_responses.jsonl, field `goal`; MIT): harmful.
- GPTFuzz questions (../shared/datasets/reviewer/gptfuzz_labeled.jsonl, field `prompt`; MIT): harmful.
- TruthfulQA questions (../shared/datasets/reviewer/truthfulqa_answers.jsonl, field `prompt`; Apache-2.0):
  harmless.

GPTFuzz and JailbreakBench share questions: a question's group is its normalised text (`question_group`), so
the same question lands in one part whichever source it came from, and the second copy is dropped as a
duplicate.

    python -m chaperone.reviewer_head.requests --seed 0      # writes heads/requests-seed0.jsonl.gz
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from chaperone.models import gguf
from chaperone.reviewer_head import data, generate, train
from chaperone.reviewer_head.features import DEFAULT_LAYERS, FeatureCache, cache_key, default_root
from chaperone.reviewer_head.head import FORMAT, OVERALL, ReviewerHead
from chaperone.reviewer_head.prompt import load_request_prompt

MANIFEST = data.REPO / "heads" / "requests-seed0.jsonl.gz"
HEAD = data.REPO / "heads" / "request-head.npz"
# The refusal check's request_threshold is the highest score that still leaves this share of the harmful dev
# requests at or above it (their refusals approved): sending a harmful request's refusal back as "needless"
# pushes the assistant towards complying, so that error is kept rare, and needless refusals are caught below.
HARMFUL_KEPT = 0.95
XSTEST_SOURCE = "xstest"  # the left-out source: its safe look-alikes are exactly the needless-refusal case
LICENCES = {
    "xstest": "CC-BY-4.0 (XSTest prompts, Röttger et al., NAACL 2024; paul-rottger/exaggerated-safety)",
    "handwritten": "Chaperone project (hand-written requests, data/reviewer_head_requests.jsonl; the project's terms)",
    "jbb_goals": "MIT (JailbreakBench/artifacts goals; Chao et al., NeurIPS 2024 D&B)",
    "gptfuzz_questions": "MIT (sherdencooper/GPTFuzz questions; Yu et al. 2023)",
    "truthfulqa_questions": "Apache-2.0 (TruthfulQA questions; Lin, Hilton & Evans, ACL 2022)",
}
# Rows kept per source: every XSTest and hand-written request; ~150 of each other source (JailbreakBench and
# GPTFuzz have ~100 distinct questions each), so the extraction (~60-120 prompt tokens a row) stays ~15 min.
CAPS = {"xstest": 450, "handwritten": 100, "jbb_goals": 150, "gptfuzz_questions": 150, "truthfulqa_questions": 150}
# Sources read first keep a duplicated question (the project's own labels before public ones).
ORDER = ("xstest", "handwritten", "jbb_goals", "gptfuzz_questions", "truthfulqa_questions")


def _row(source: str, id_: str, request: str, harmful: bool, category: str | None, label_by: str, group: str):
    return data.Row(
        source=source,
        id=id_,
        request=request,
        draft="",
        harmful=harmful,
        category=category,
        label_by=label_by,
        licence=LICENCES[source],
        group=group,
    )


def read_requests(
    xstest: Path = generate.XSTEST, handwritten: Path = generate.HANDWRITTEN, shared: Path = data.SHARED
) -> Iterator[data.Row]:
    for r in generate.read_xstest(xstest):
        category = None if r.category == "needless_refusal" else r.category
        yield _row("xstest", r.id, r.request, r.complying_is_harmful, category, "human:xstest-label", r.group)
    for r in generate.read_handwritten(handwritten):
        yield _row("handwritten", r.id, r.request, r.complying_is_harmful, r.category, "human", f"hw:{r.id}")
    for n, rec in data.distinct_records(shared / "jbb_responses.jsonl", "goal"):
        category = data._mapped("jbb", rec.get("category"))
        group = data.question_group(rec["goal"])
        yield _row("jbb_goals", f"jbb-goal-{n}", rec["goal"], True, category, "source:jailbreakbench-goal", group)
    for n, rec in data.distinct_records(shared / "reviewer" / "gptfuzz_labeled.jsonl", "prompt"):
        group = data.question_group(rec["prompt"])
        yield _row("gptfuzz_questions", f"gptfuzz-q-{n}", rec["prompt"], True, None, "source:gptfuzz-question", group)
    for n, rec in data.distinct_records(shared / "reviewer" / "truthfulqa_answers.jsonl", "prompt"):
        group = f"truthfulqa:{(rec.get('meta') or {}).get('question_index', n)}"
        yield _row(
            "truthfulqa_questions", f"tqa-q-{n}", rec["prompt"], False, None, "source:truthfulqa-question", group
        )


def build(seed: int = 0, **paths: Path) -> tuple[list[data.SplitRow], dict]:
    rows = list(read_requests(**paths))
    read_counts = Counter(r.source for r in rows)
    kept, seen, dropped = [], set(), Counter()
    for row in sorted(rows, key=lambda r: ORDER.index(r.source)):  # stable: file order within a source
        key = data._norm(row.request)
        if key in seen:
            dropped[row.source] += 1
            continue
        seen.add(key)
        kept.append(row)
    kept = data.cap(kept, CAPS, seed)
    result = data.split(kept, seed)
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in result:
        counts[r.row.source][r.part] += 1
        counts[r.row.source]["harmful" if r.row.harmful else "not harmful"] += 1
    summary = {
        "seed": seed,
        "kind": "requests",
        "fractions": {**data.FRACTIONS, "test": round(1 - sum(data.FRACTIONS.values()), 2)},
        "caps": CAPS,
        "read": dict(sorted(read_counts.items())),
        "dropped": {"duplicates": dict(dropped)},
        "counts": {s: dict(c) for s, c in sorted(counts.items())},
        "parts": dict(Counter(r.part for r in result)),
        "folds": {"main": "the seeded split", f"loso:{XSTEST_SOURCE}": "every XSTest row, head fitted without XSTest"},
        "licences": {s: LICENCES[s] for s in sorted(read_counts)},
        "category_map": {"jbb": data.CATEGORY_MAP["jbb"]},
    }
    return result, summary


# -- training ---------------------------------------------------------------------------------------------------
def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def choose(ds: train.Dataset, parts: dict, layers: Sequence[int], steps: train.Steps) -> tuple[int, float, dict]:
    """The layer and C by dev AUC (ties, common when one source is all harmful: by dev log-loss): fitted on
    the train part, scored on the dev part, of the rows given (never XSTest's)."""
    table, best = {}, None
    for n in layers:
        for c in train.C_GRID:
            xtr, ytr = ds.xy(parts["train"], (n,))
            xdv, ydv = ds.xy(parts["dev"], (n,))
            p = train.fit(xtr, ytr, c).predict(xdv)
            auc = train.curve_figures(ydv, p)["auc"]
            loss = _log_loss(ydv, p)
            table[f"{n} C={c:g}"] = {"auc": auc, "log_loss": round(loss, 4)}
            key = (auc if auc is not None else -1.0, -loss)
            if best is None or key > best[0]:
                best = (key, n, c)
            steps.advance(f"layer {n} C={c:g}")
    assert best is not None
    return best[1], best[2], {"by": "dev AUC, then dev log-loss (sources other than XSTest)", "candidates": table}


def choose_threshold(y: np.ndarray, p: np.ndarray, kept: float = HARMFUL_KEPT) -> dict:
    """The highest threshold (4 decimals, rounded down) with at least `kept` of the harmful rows at or above it,
    and what it does on these rows: harmful refusals sent back, needless refusals caught."""
    harmful = np.sort(p[y == 1])
    if not len(harmful):
        return {"value": None}
    k = math.floor((1 - kept) * len(harmful))  # at most k harmful rows may score below the threshold
    t = math.floor(float(harmful[k]) * 1e4) / 1e4
    t = min(max(t, 0.0001), 0.9999)
    return {
        "value": t,
        "rule": f"the highest score with at least {kept:.0%} of the harmful dev requests at or above it",
        "n": len(y),
        "harmful_sent_back": round(float((p[y == 1] < t).mean()), 4),
        "harmless_sent_back": round(float((p[y == 0] < t).mean()), 4) if (y == 0).any() else None,
    }


def _operating(y: np.ndarray, p: np.ndarray, t: float) -> dict:
    """At threshold t: refusals of harmless requests sent back (caught) and of harmful ones (wrongly)."""
    return {
        "threshold": t,
        "harmless_sent_back": round(float((p[y == 0] < t).mean()), 4) if (y == 0).any() else None,
        "harmful_sent_back": round(float((p[y == 1] < t).mean()), 4) if (y == 1).any() else None,
    }


def train_request_head(
    *,
    manifest: Path = MANIFEST,
    layers: Sequence[int] = DEFAULT_LAYERS,
    cache_root: Path | None = None,
    out: Path = HEAD,
    model_sha256: str = gguf.GGUF_SHA256,
    steps: train.Steps | None = None,
) -> ReviewerHead:
    """Train, measure and write the request head (and its card) at `out`; TrainInputError says what to run.

    The layer and C are chosen on the dev part of the sources other than XSTest. The cross-source figure: a
    head fitted on the other sources' train part scores every XSTest request (safe look-alikes against unsafe
    contrasts: the needless-refusal case). The shipped head is fitted on the train part of every source,
    measured once on the seeded test part; its threshold is chosen on the dev part."""
    steps = steps or train.Steps()
    layers = [int(n) for n in layers]
    manifest = Path(manifest)
    if not manifest.is_file():
        raise train.TrainInputError(
            f"{manifest}: no request manifest; write it with `python -m chaperone.reviewer_head.requests --seed 0`"
        )
    try:
        rows, summary = data.read_manifest(manifest)
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise train.TrainInputError(f"{manifest}: not a readable request manifest ({exc})") from None
    prompt = load_request_prompt()
    root = Path(cache_root) if cache_root else default_root()
    fill = "python run.py reviewer train-requests --extract" + (f" --cache {root}" if cache_root else "")
    folder = root / cache_key(model_sha256, prompt.sha256, layers)
    if not (folder / "meta.json").is_file():
        raise train.TrainInputError(
            f"no cached request features in {root} for this model, config/request_head.yaml and layers "
            f"{','.join(map(str, layers))}: fill the cache with `{fill}` (resumable)"
        )
    try:
        cache = FeatureCache(root, model_sha256, prompt.sha256, layers, readonly=True)
    except (OSError, ValueError) as exc:
        raise train.TrainInputError(f"{folder}: unreadable feature cache ({exc})") from None
    have = [r for r in rows if r.row.text_sha in cache]
    others = [r for r in have if r.row.source != XSTEST_SOURCE]
    held = [r for r in have if r.row.source == XSTEST_SOURCE]
    parts_o = data.fold_parts(others, "main")
    if len(have) < 10 or any(len({r.row.harmful for r in parts_o[p]}) < 2 for p in ("train", "dev")):
        raise train.TrainInputError(
            f"only {len(have)} of {len(rows)} manifest rows have cached features in {cache.folder} (train and "
            f"dev of the sources other than XSTest need both labels): extract more with `{fill}` (resumable)"
        )
    started = time.time()
    ds = train.Dataset(have, cache)
    steps.total(len(layers) * len(train.C_GRID) + 2)
    layer, c, selection = choose(ds, parts_o, layers, steps)
    base_card = {
        "format": FORMAT,
        "kind": "request",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"file": gguf.GGUF_NAME, "sha256": model_sha256, "licence": gguf.LICENCE},
        "prompt": {"file": "config/request_head.yaml", "sha256": prompt.sha256, **prompt.model_dump()},
        "width": cache.width,
        "outputs_meaning": {OVERALL: "P(request harmful): fully answering it would cause real harm"},
        "data": {
            "manifest": manifest.name,
            "manifest_sha256": train.sha256_file(manifest),
            "split_seed": summary["seed"],
            "rows_in_manifest": len(rows),
            "rows_with_features": len(have),
            "rows_used": dict(Counter(f"{r.row.source}/{r.part}" for r in have)),
            "licences": summary["licences"],
        },
        "training": {
            "method": "standardised logistic regression (scikit-learn), class_weight balanced; one output",
            "C_grid": list(train.C_GRID),
            "candidate_layers": layers,
        },
    }
    fixed = ((layer,), c, selection)
    # Cross-source: XSTest left out entirely.
    loso, _ = train.train_fold(ds, parts_o, layers, 5, 0, base_card, steps, fixed=fixed, categories=False)
    figures: dict = {}
    held_out = []
    if held:  # every XSTest request, scored by a head that saw none of them
        x, y = ds.xy(held, (layer,))
        p = loso.score_matrix(x)[:, 0]
        figures["loso_xstest"] = train.curve_figures(y, p)
        held_out += train.row_scores(loso, ds, held, f"loso:{XSTEST_SOURCE}")
    # The shipped head: every source's train part.
    parts = data.fold_parts(have, "main")
    head, _ = train.train_fold(ds, parts, layers, 5, 0, base_card, steps, fixed=fixed, categories=False)
    xdv, ydv = ds.xy(parts["dev"], (layer,))
    pdv = head.score_matrix(xdv)[:, 0]
    threshold = choose_threshold(ydv, pdv)
    figures["dev"] = train.evaluate(head, ds, parts["dev"])
    figures["test"] = train.evaluate(head, ds, parts["test"])
    t = threshold["value"]
    if t is not None:
        xts, yts = ds.xy(parts["test"], (layer,))
        figures["test"]["at_threshold"] = _operating(yts, head.score_matrix(xts)[:, 0], t)
        if held:  # the shipped threshold on the left-out head's scores (another head: indicative only)
            figures["loso_xstest"]["at_threshold"] = _operating(y, p, t)
    held_out += train.row_scores(head, ds, parts["dev"], "main") + train.row_scores(head, ds, parts["test"], "main")
    head.card["training"]["fitted_on"] = {
        "loso_xstest": dict(Counter(r.row.source for r in parts_o["train"])),
        "shipped": dict(Counter(r.row.source for r in parts["train"])),
    }
    head.card["request_threshold"] = threshold
    head.card["figures"] = figures
    head.card["training"]["seconds"] = round(time.time() - started, 1)
    head.save(out)
    with train.scores_path(out).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(line) + "\n" for line in held_out)
    return head


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=MANIFEST)
    args = ap.parse_args(argv)
    rows, summary = build(args.seed)
    data.write_manifest(rows, summary, args.out)
    print(json.dumps({k: summary[k] for k in ("read", "dropped", "counts", "parts")}, indent=1))
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
