"""A tiny fake of ../shared/datasets (the layout the data module reads), so tests need no shared folder."""

import json

import pytest


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _rec(source, id_, prompt, response, harmful, category, meta=None):
    return {
        "source": source,
        "id": id_,
        "prompt": prompt,
        "response": response,
        "harmful": harmful,
        "category": category,
        "label_by": "human",
        "licence": "x",
        "split": None,
        "over_refusal": None,
        "gen_model": None,
        "meta": meta or {},
    }


@pytest.fixture(scope="module")
def fake_shared(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fake")
    shared = tmp_path / "shared"
    rev = shared / "reviewer"
    gptfuzz = [
        _rec(
            "gptfuzz",
            f"gptfuzz-{q}-{a}",
            f"Question number {q}?",
            f"answer {a} to {q}",
            a % 2 == 0,
            "jailbreak_compliance",
            {"question_index": q},
        )
        for q in range(30)
        for a in range(4)
    ]
    truthful = [
        _rec(
            "truthfulqa",
            f"tqa-{q}-{a}",
            f"Why {q}?",
            f"because {a} ({q})",
            a >= 2,
            "misinformation:Misconceptions",
            {"question_index": q},
        )
        for q in range(30)
        for a in range(4)
    ]
    dia = [
        _rec("diasafety", f"dia-{i}", f"context {i // 2}", f"reply {i}", i % 3 == 0, "Biased Opinion")
        for i in range(60)
    ]
    dia.append(_rec("diasafety", "dia-null", "c", "r", None, "Biased Opinion"))
    dia.append(_rec("diasafety", "dia-dup", "context 0", "reply  0", True, "Biased Opinion"))  # same text, spaces
    bbq = [
        _rec(
            "bbq",
            f"bbq-Age-{i}-ans{a}",
            f"ctx {i}",
            f"The person {a}.",
            a == 0,
            "bias:Age",
            {"question_index": str(i % 5)},
        )
        for i in range(20)
        for a in range(3)
    ]
    tox = [_rec("toxigen_seeds", f"tox-{i}", "", f"statement {i}", i % 2 == 0, "bias:asian") for i in range(40)]
    _write(rev / "gptfuzz_labeled.jsonl", gptfuzz)
    _write(rev / "truthfulqa_answers.jsonl", truthful)
    _write(rev / "diasafety.jsonl", dia)
    _write(rev / "bbq_bias_responses.jsonl", bbq)
    _write(rev / "toxigen_seed_statements.jsonl", tox)
    jbb = [
        {
            "source": "PAIR/gpt-4",
            "category": "Privacy",
            "behavior": "b",
            "goal": f"Question number {q}?",
            "prompt": f"wrapped question {q} v{v}",
            "response": f"jbb answer {q} {v}",
            "harmful": v == 0,
        }
        for q in range(25)
        for v in range(2)
    ]
    _write(shared / "jbb_responses.jsonl", jbb)
    project = tmp_path / "project_data"
    xs = [{"id": f"xstest-{i}", "prompt": f"safe {i}", "response": f"fine {i}", "harmful": False} for i in range(10)]
    xs.append({"id": "jbb-1", "prompt": "p", "response": "r", "harmful": True})  # read from jbb_responses instead
    _write(project / "reviewer_set.jsonl", xs)
    return {"shared": shared, "project_data": project}


# A split and fake hidden states in a real feature cache, for the commands that read both (test_cli,
# test_decisions).
FAKE_LAYERS = (2, 5)
FAKE_WIDTH = 16


@pytest.fixture(scope="module")
def manifest(fake_shared, tmp_path_factory):
    from chaperone.reviewer_head import data

    caps = {"gptfuzz": 24, "truthfulqa": 24, "diasafety": 24, "bbq": 12, "toxigen_seeds": 12, "jbb": 12}
    rows, summary = data.build(0, caps={**caps, "xstest_answers": 6}, **fake_shared)
    path = tmp_path_factory.mktemp("cli") / "split.jsonl"
    data.write_manifest(rows, summary, path)
    return path, rows


def cache_features(root, rows):
    """Fake hidden states in a real cache: noise, with the label written into a few dimensions of layer 5."""
    import numpy as np

    from chaperone.models.gguf import GGUF_SHA256
    from chaperone.reviewer_head.features import FeatureCache, extract_missing
    from chaperone.reviewer_head.prompt import load_prompt

    cache = FeatureCache(root, GGUF_SHA256, load_prompt().sha256, FAKE_LAYERS, FAKE_WIDTH)
    label = {r.row.text_sha: r.row.harmful for r in rows}

    def fake(key):
        x = np.random.default_rng(int(key[:8], 16)).normal(size=(len(FAKE_LAYERS), FAKE_WIDTH)).astype(np.float32)
        x[1, :4] += 1.5 if label[key] else -1.5
        return x, 20, 0.01

    extract_missing(cache, [(r.row.text_sha, r.row.text_sha) for r in rows], fake, progress=False)
    return cache
