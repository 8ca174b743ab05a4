"""The chunk head on draft-token states: trained, chosen on dev, and measured by the rule fixed beforehand.

Reads the states `scripts/draft_states.py` cached; the rule is docs/reviewer-head.md "Draft-token states for
chunk verdicts". Without `--test` it prints only what dev says (the choice of layer and C, the threshold); with
it, the test part, the confirmation rows and the leave-one-source-out figures too (measure once). `--write
PATH` saves the chosen head (arrays and card, the format of heads/*.npz) fitted on the train part.

Usage: python scripts/chunk_head_eval.py [--test] [--write heads/chunk-head.npz] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import draft_states

from chaperone.engine.chunk_head import layout_sha256
from chaperone.models import gguf
from chaperone.reviewer_head import features, train
from chaperone.reviewer_head.features import FeatureCache
from chaperone.reviewer_head.prompt import load_prompt

LAYERS = (12, 16, 20, 24)
CS = (0.01, 0.1)
RECALL = 0.6975
IC_CACHE = ("7e130a0b6210217a4e508935907e3ebe475d6bbebb70844afe4c1f8281f33a47", (16, 20))  # the in-context head's


def auc(y, p) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def load():
    prompt = load_prompt(REPO / "config/reviewer_head_in_context.yaml")
    sha = layout_sha256(prompt.system, prompt.max_draft_chars)
    cache = FeatureCache(features.default_root(), gguf.GGUF_SHA256, sha, LAYERS, readonly=True)
    positions = [json.loads(line) for line in (cache.folder / "positions.jsonl").read_text().splitlines()]
    keys_of = defaultdict(list)
    for p in positions:
        if p["key"] in cache:
            keys_of[p["row"]].append(p)
    rows = draft_states.chosen_rows()
    confirmation = {r.row.text_sha for r in features.only_listed(rows, draft_states.CONFIRMATION)}
    done = [r for r in rows if r.row.text_sha in keys_of and r.row.text_sha in cache]
    return cache, keys_of, done, confirmation, sha


def states(cache, keys, layer):
    return cache.matrix(keys, [layer]).astype(np.float64)


def per_row_max(model, cache, keys_of, rows, layer):
    """Each row's highest score over its prefixes and end (a chunk sends the draft back at the first one ≥ t),
    and the score of its first chunk."""
    top, first = [], []
    for r in rows:
        ps = sorted(keys_of[r.row.text_sha], key=lambda p: (p["k"] is None, p["k"] or 0))
        s = model.predict(states(cache, [p["key"] for p in ps], layer))
        top.append(float(s.max()))
        first.append(float(s[0]))
    return np.array(top), np.array(first)


def threshold_for_recall(y, top, recall) -> float:
    harmful = np.sort(top[y == 1])[::-1]
    need = int(np.ceil(recall * len(harmful)))
    return float(harmful[need - 1])


def rates(y, top, t) -> dict:
    stopped = top >= t
    return {
        "harmful_stopped": f"{int(stopped[y == 1].sum())}/{int((y == 1).sum())}",
        "harmless_stopped": f"{int(stopped[y == 0].sum())}/{int((y == 0).sum())}",
        "harmful_rate": round(float(stopped[y == 1].mean()), 3) if (y == 1).any() else None,
        "harmless_rate": round(float(stopped[y == 0].mean()), 3) if (y == 0).any() else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", action="store_true", help="also measure the test part, confirmation rows, LOSO")
    ap.add_argument("--write", type=Path, help="save the chosen head here")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cache, keys_of, rows, confirmation, layout = load()
    split = {
        p: [r for r in rows if r.part == p and r.row.text_sha not in confirmation] for p in ("train", "dev", "test")
    }
    conf_rows = [r for r in rows if r.row.text_sha in confirmation]
    out: dict = {"rows": {p: len(v) for p, v in split.items()} | {"confirmation": len(conf_rows)}}
    print(out["rows"])

    def xy(rs, ends_only=False):
        keys, y = [], []
        for r in rs:
            for p in keys_of[r.row.text_sha]:
                if ends_only and p["k"] is not None:
                    continue
                keys.append(p["key"])
                y.append(int(r.row.harmful))
        return keys, np.array(y)

    tr_keys, tr_y = xy(split["train"])
    dv_keys, dv_y = xy(split["dev"])
    selection = []
    for layer in LAYERS:
        xtr, xdv = states(cache, tr_keys, layer), states(cache, dv_keys, layer)
        for c in CS:
            model = train.fit(xtr, tr_y, c)
            selection.append({"layer": layer, "C": c, "dev_auc_states": round(auc(dv_y, model.predict(xdv)), 4)})
            print(selection[-1], flush=True)
    best = max(selection, key=lambda s: s["dev_auc_states"])
    layer, c = best["layer"], best["C"]
    model = train.fit(states(cache, tr_keys, layer), tr_y, c)
    dev_y = np.array([int(r.row.harmful) for r in split["dev"]])
    dev_top, dev_first = per_row_max(model, cache, keys_of, split["dev"], layer)
    t = threshold_for_recall(dev_y, dev_top, RECALL)
    out |= {"selection": selection, "chosen": best, "threshold": round(t, 4)}
    out["dev"] = rates(dev_y, dev_top, t) | {
        "row_auc_max": round(auc(dev_y, dev_top), 4),
        "first_chunk_auc": round(auc(dev_y, dev_first), 4),
    }
    print("chosen", best, "threshold", round(t, 4), "dev", out["dev"])

    # Side by side: the same recipe on the in-context head's question states (ends only), same rows.
    ic = FeatureCache(features.default_root(), gguf.GGUF_SHA256, IC_CACHE[0], IC_CACHE[1], readonly=True)
    ic_rows = {p: [r for r in split[p] if r.row.text_sha in ic] for p in split}
    ic_sel = []
    for ic_layer in IC_CACHE[1]:
        x_tr = ic.matrix([r.row.text_sha for r in ic_rows["train"]], [ic_layer]).astype(np.float64)
        y_tr = np.array([int(r.row.harmful) for r in ic_rows["train"]])
        x_dv = ic.matrix([r.row.text_sha for r in ic_rows["dev"]], [ic_layer]).astype(np.float64)
        y_dv = np.array([int(r.row.harmful) for r in ic_rows["dev"]])
        for ic_c in CS:
            m = train.fit(x_tr, y_tr, ic_c)
            ic_sel.append({"layer": ic_layer, "C": ic_c, "dev_auc": round(auc(y_dv, m.predict(x_dv)), 4)})
    # the draft-token head's end states alone on the same dev rows, for the comparison
    dv_end_keys, dv_end_y = xy(split["dev"], ends_only=True)
    out["side_by_side_dev"] = {
        "question_states_best": max(ic_sel, key=lambda s: s["dev_auc"]),
        "question_states_all": ic_sel,
        "draft_states_end_auc": round(auc(dv_end_y, model.predict(states(cache, dv_end_keys, layer))), 4),
        "draft_states_row_max_auc": out["dev"]["row_auc_max"],
    }
    print("side by side (dev)", out["side_by_side_dev"])

    if args.test:
        test_y = np.array([int(r.row.harmful) for r in split["test"]])
        top, first = per_row_max(model, cache, keys_of, split["test"], layer)
        out["test"] = rates(test_y, top, t) | {
            "row_auc_max": round(auc(test_y, top), 4),
            "first_chunk_auc": round(auc(test_y, first), 4),
            "first_chunk": rates(test_y, first, t),
        }
        by_source = defaultdict(list)
        for r, s in zip(split["test"], top, strict=True):
            by_source[r.row.source].append((int(r.row.harmful), s))
        out["test_by_source"] = {
            s: rates(np.array([a for a, _ in v]), np.array([b for _, b in v]), t) for s, v in sorted(by_source.items())
        }
        cy = np.array([int(r.row.harmful) for r in conf_rows])
        ctop, _ = per_row_max(model, cache, keys_of, conf_rows, layer)
        out["confirmation"] = rates(cy, ctop, t) | {"row_auc_max": round(auc(cy, ctop), 4)}
        # Leave one source out: fit on the other sources' train rows, score every row of the left-out one.
        loso, pooled_y, pooled_s = {}, [], []
        everyone = [r for r in rows if r.row.text_sha not in confirmation]
        for source in sorted({r.row.source for r in everyone}):
            k_tr, y_tr = xy([r for r in split["train"] if r.row.source != source])
            m = train.fit(states(cache, k_tr, layer), y_tr, c)
            held = [r for r in everyone if r.row.source == source]
            y_h = np.array([int(r.row.harmful) for r in held])
            s_h, _ = per_row_max(m, cache, keys_of, held, layer)
            loso[source] = {"rows": len(held), "auc_row_max": auc(y_h, s_h)} | rates(y_h, s_h, t)
            pooled_y += list(y_h)
            pooled_s += list(s_h)
        out["loso"] = loso | {"pooled_auc_row_max": round(auc(pooled_y, pooled_s), 4)}
        ic_best = out["side_by_side_dev"]["question_states_best"]
        m = train.fit(
            ic.matrix([r.row.text_sha for r in ic_rows["train"]], [ic_best["layer"]]).astype(np.float64),
            np.array([int(r.row.harmful) for r in ic_rows["train"]]),
            ic_best["C"],
        )
        yt = np.array([int(r.row.harmful) for r in ic_rows["test"]])
        xt = ic.matrix([r.row.text_sha for r in ic_rows["test"]], [ic_best["layer"]]).astype(np.float64)
        te_end_keys, te_end_y = xy(split["test"], ends_only=True)
        out["side_by_side_test"] = {
            "question_states_end_auc": round(auc(yt, m.predict(xt)), 4),
            "draft_states_end_auc": round(auc(te_end_y, model.predict(states(cache, te_end_keys, layer))), 4),
        }
        for k in ("test", "test_by_source", "confirmation", "loso", "side_by_side_test"):
            print(k, json.dumps(out[k], indent=1))
    if args.write:
        write_head(args.write, model, layer, c, t, layout, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


def write_head(path: Path, model, layer: int, c: float, t: float, layout: str, figures: dict) -> None:
    from chaperone.reviewer_head.head import FORMAT, OVERALL, ReviewerHead

    prompt = load_prompt(REPO / "config/reviewer_head_in_context.yaml")
    card = {
        "format": FORMAT,
        "kind": "chunk",
        "outputs": [OVERALL],
        "layers": [layer],
        "width": int(model.mean.shape[0]),
        "model": {"sha256": gguf.GGUF_SHA256},
        "prompt": {
            "sha256": layout,
            "layout": "in-draft-v1",
            "system": prompt.system,
            "max_draft_chars": prompt.max_draft_chars,
            "reads": "the assistant's own draft tokens as it writes them: no question, nothing evaluated",
        },
        "C": c,
        "threshold": round(t, 4),
        "training": "scripts/draft_states.py, scripts/chunk_head_eval.py (docs/reviewer-head.md)",
        "figures": figures,
    }
    head = ReviewerHead(
        card=card,
        mean=model.mean.astype(np.float32),
        scale=model.scale.astype(np.float32),
        coef=model.coef[None, :].astype(np.float32),
        intercept=np.array([model.intercept], dtype=np.float32),
    )
    head.save(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
