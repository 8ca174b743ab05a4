"""A category head names its own kind of harm, not harm in general (train.py's category targets)."""

from dataclasses import dataclass

import numpy as np

from chaperone.reviewer_head import data, train
from chaperone.reviewer_head.head import FORMAT, ReviewerHead

WIDTH = 8


@dataclass
class _Cache:
    vectors: dict

    def matrix(self, keys, layers):
        return np.stack([self.vectors[k][None, :] for k in keys])[:, [0] * len(layers), :].reshape(len(keys), -1)


def _rows(rng, n):
    """Two kinds of harm that share the harm direction (dimension 0) and differ only along a category direction
    (dimension 1: +1 chemistry, -1 violence). Harmless rows lie on both sides of dimension 1, so a head trained
    against harmless rows only cannot learn it; some harmful rows carry no category."""
    rows, vectors = [], {}
    kinds = [(True, "hazardous_chemistry")] * n + [(True, "violence")] * n + [(True, "unspecified")] * (n // 2)
    kinds += [(False, None)] * (2 * n)
    for i, (harmful, cat) in enumerate(kinds):
        x = rng.normal(scale=0.4, size=WIDTH)
        if harmful:
            x[0] += 2.5
        sign = {"hazardous_chemistry": 1.0, "violence": -1.0}.get(cat or "", float(rng.choice([-1.0, 1.0])))
        x[1] += sign
        row = data.Row("synthetic", f"s{i}", f"q{i}", f"a{i}", harmful, cat, "test", "none", f"g{i}")
        rows.append(data.SplitRow(row, "train"))
        vectors[row.text_sha] = x
    return rows, vectors


def _head(rows, vectors):
    ds = train.Dataset(rows, _Cache(vectors))
    outputs, (mean, scale, coef, intercept), counts = train.fit_heads(ds, rows, (14,), 1.0)
    card = {"format": FORMAT, "layers": [14], "width": WIDTH, "outputs": outputs}
    return ReviewerHead(card=card, mean=mean, scale=scale, coef=coef, intercept=intercept), counts, ds


def test_category_targets_take_other_named_harm_as_negatives():
    y = np.array([1, 1, 1, 1, 0])
    cats = np.array(["violence", "hazardous_chemistry", "unspecified", "", "violence"])
    keep, pos = train.category_targets(y, cats, "violence")
    assert pos.tolist() == [True, False, False, False, False]
    assert keep.tolist() == [True, True, False, False, True]  # no unknown harm among the negatives
    keep, pos = train.category_targets(y, cats, "unspecified")
    assert pos.tolist() == [False, False, True, False, False] and keep.tolist() == [True, True, True, False, True]


def test_a_category_head_ranks_its_own_harm_above_another_kind():
    rows, vectors = _rows(np.random.default_rng(0), 60)
    head, counts, _ = _head(rows, vectors)
    assert counts == {"violence": 60, "hazardous_chemistry": 60, "unspecified": 30}
    test_rows, test_vectors = _rows(np.random.default_rng(1), 40)
    x = np.stack([test_vectors[r.row.text_sha] for r in test_rows])
    probs = head.score_matrix(x)
    cats = np.array([r.row.category or "" for r in test_rows])
    y = np.array([int(r.row.harmful) for r in test_rows])
    chem, violent = cats == "hazardous_chemistry", cats == "violence"
    for name, own, other in (("hazardous_chemistry", chem, violent), ("violence", violent, chem)):
        p = probs[:, head.outputs.index(name)]
        auc = train.curve_figures([1] * own.sum() + [0] * other.sum(), np.concatenate([p[own], p[other]]))["auc"]
        assert auc > 0.95, (name, auc)
        assert np.median(p[own]) > 0.5 > np.median(p[other])
    # The overall head is unchanged: every kind of harm against the harmless rows.
    overall = train.curve_figures(y, probs[:, head.outputs.index("not_ok")])["auc"]
    assert overall > 0.95
    figures = train.evaluate(head, train.Dataset(test_rows, _Cache(test_vectors)), test_rows)
    assert figures["by_category_vs_other_harm"]["violence"]["auc"] > 0.95


def test_a_threshold_chosen_at_a_false_positive_rate_keeps_to_it():
    from chaperone.reviewer_head.train import threshold_at_fpr

    rng = np.random.default_rng(0)
    y = np.array([0] * 200 + [1] * 100)
    p = np.concatenate([rng.uniform(0, 0.8, 200), rng.uniform(0.5, 1.0, 100)])
    for limit in (0.01, 0.05, 0.1):
        chosen = threshold_at_fpr(y, p, limit)
        assert chosen["fpr"] <= limit and (p[y == 0] >= chosen["threshold"]).mean() == chosen["fpr"]
        assert chosen["recall"] == round(float((p[y == 1] >= chosen["threshold"]).mean()), 4)
    # the loosest threshold that keeps to the rate: one step lower would let in one more harmless row
    t = threshold_at_fpr(y, p, 0.05)["threshold"]
    assert (p[y == 0] >= np.sort(p[y == 0])[::-1][10]).mean() > 0.05 and t > np.sort(p[y == 0])[::-1][10]
