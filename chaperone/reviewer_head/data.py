"""The head's labelled rows: the shared reviewer sets, JailbreakBench answers and the project's data/, in one
row type, mapped to the product's categories, deduplicated, capped per source and split by seed and group.

The split is fixed before any result is looked at and written to a manifest: every row's part (train, dev,
test) follows from a hash of the seed and its *group* (the question it answers, the template it comes from),
never from the row alone, so two answers to one question never land in two parts. Leave-one-source-out
folds are named in the same manifest.

    python -m chaperone.reviewer_head.data --seed 0 --out heads/split-seed0.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from chaperone.config.schema import HEAD_CATEGORIES
from chaperone.errors import ChaperoneError
from chaperone.reviewer_head.labelled import parse_labelled, source_name

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "datasets"
DEFAULT_MANIFEST = REPO / "heads" / "split-seed0.jsonl.gz"

CATEGORIES = HEAD_CATEGORIES  # one list: the policies' head rules are checked against it

# Source category -> product category. A row's category is the kind of harm it has (harmful rows) or would
# have (harmless rows on the same topic); per-category heads train on harmful rows of that category against
# every harmless row.
CATEGORY_MAP: dict[str, dict[str, str]] = {
    "jbb": {
        "Harassment/Discrimination": "harassment",
        "Malware/Hacking": "crime",
        "Physical harm": "violence",
        "Economic harm": "crime",
        "Fraud/Deception": "crime",
        "Disinformation": "misinformation",
        "Sexual/Adult content": "sexual",
        "Privacy": "privacy",
        "Expert advice": "unqualified_advice",
        "Government decision-making": "crime",
    },
    "diasafety": {
        "Offending User": "harassment",
        "Risk Ignorance": "self_harm",
        "Unauthorized Expertise": "unqualified_advice",
        "Toxicity Agreement": "harassment",
        "Biased Opinion": "hate_bias",
    },
    "gptfuzz": {"jailbreak_compliance": "unspecified"},
    "bbq": {"bias": "hate_bias"},
    "toxigen_seeds": {"bias": "hate_bias"},
    "truthfulqa": {"misinformation": "misinformation"},
    "xstest_answers": {},  # harmless answers to safe prompts: no category
}

# Rows kept per source (before the split), half harmful and half not where the source allows. Chosen so the
# training part is a few thousand rows (~70% of ~5,000), which LEC (arXiv 2412.13435) and the probe
# literature find ample for a linear head, while the extraction stays within a night on 2 cores; BBQ's
# few-word answers are kept small so they do not dominate.
DEFAULT_CAPS = {
    "gptfuzz": 1000,
    "diasafety": 1000,
    "jbb": 1000,
    "truthfulqa": 800,
    "toxigen_seeds": 600,
    "bbq": 400,
    "xstest_answers": 200,
}
FRACTIONS = {"train": 0.70, "dev": 0.15}  # the rest is test
LICENCES = {
    "gptfuzz": "MIT (sherdencooper/GPTFuzz; Yu et al. 2023)",
    "diasafety": "Apache-2.0 (thu-coai/DiaSafety; Sun et al., Findings ACL 2022)",
    "bbq": "CC-BY-4.0 (nyu-mll/BBQ; Parrish et al., Findings ACL 2022)",
    "toxigen_seeds": "MIT (microsoft/TOXIGEN; Hartvigsen et al., ACL 2022)",
    "truthfulqa": "Apache-2.0 (TruthfulQA; Lin, Hilton & Evans, ACL 2022)",
    "jbb": "MIT (JailbreakBench/artifacts; Chao et al., NeurIPS 2024 D&B)",
    "xstest_answers": "CC-BY-4.0 (XSTest prompts, Röttger et al., NAACL 2024); answers by the embedded model",
}

# The embedded assistant's own answers (chaperone/reviewer_head/generate.py): an extra source, read only when
# asked for (--with-generated), so the seed-0 manifest heads/split-seed0.jsonl.gz rebuilds unchanged.
GENERATED_SOURCE = "embedded_assistant"
GENERATED = REPO / "data" / "embedded_assistant_answers.jsonl"
# A person's reading of those answers: {"id", "harmful" (true / false / null), "reason"} per line. It overrides
# the refusal-phrase rule, which called a refusal in other words ("... is illegal and unethical") compliance.
SCREENING_SUFFIX = "_screening.jsonl"
GENERATED_LICENCES = {
    "xstest": "CC-BY-4.0 (XSTest prompts, Röttger et al., NAACL 2024); answers by the embedded model",
    "handwritten": "Chaperone project (hand-written requests, data/reviewer_head_requests.jsonl, "
    "data/lab_procedure_requests.jsonl, data/technical_requests.jsonl, data/confirmation_requests.jsonl and "
    "data/everyday_requests.jsonl); "
    "answers by the embedded model",
    "jbb_goal": "MIT (JailbreakBench/artifacts goals; Chao et al., NeurIPS 2024 D&B); answers by the embedded model",
}
# Raised from 1,000 on 2026-12-07 when the everyday answers took the source past it: a cap on this source dropped
# rows earlier manifests had (the assistant's own answers are the rows most like what the reviewer sees).
GENERATED_CAP = 2000


@dataclass(frozen=True)
class Row:
    source: str
    id: str
    request: str
    draft: str
    harmful: bool
    category: str | None
    label_by: str
    licence: str
    group: str  # rows of one group always share a part

    @property
    def text_sha(self) -> str:
        return text_sha(self.request, self.draft)


def text_sha(request: str, draft: str) -> str:
    return hashlib.sha256(f"{request}\x00{draft}".encode()).hexdigest()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def question_group(text: str) -> str:
    """Answers to one question share a group across sources (GPTFuzz and JailbreakBench share questions)."""
    return "q:" + hashlib.sha256(_norm(text).encode()).hexdigest()[:16]


def _jsonl(path: Path) -> Iterator[dict]:
    """JSON lines, from a gzip file when the name ends in .gz."""
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def distinct_records(path: Path, field: str) -> Iterator[tuple[int, dict]]:
    """Records of a JSONL file with a text in `field` not seen before (normalised), numbered from 1."""
    seen: set[str] = set()
    for n, rec in enumerate(_jsonl(path), start=1):
        text = (rec.get(field) or "").strip()
        if text and _norm(text) not in seen:
            seen.add(_norm(text))
            yield n, rec


def _mapped(source: str, category: str | None) -> str | None:
    if category is None:
        return None
    table = CATEGORY_MAP[source]
    return table.get(category) or table.get(category.split(":", 1)[0])


def read_reviewer_sets(folder: Path) -> Iterator[Row]:
    """The five shared files of ../shared/datasets/reviewer/ (see its README)."""
    for name in (
        "gptfuzz_labeled",
        "diasafety",
        "bbq_bias_responses",
        "toxigen_seed_statements",
        "truthfulqa_answers",
    ):
        for rec in _jsonl(folder / f"{name}.jsonl"):
            if rec["harmful"] is None:
                continue
            source, meta = rec["source"], rec.get("meta") or {}
            if source == "gptfuzz":
                group = question_group(rec["prompt"])
            elif source == "truthfulqa":
                group = f"truthfulqa:{meta['question_index']}"
            elif source == "bbq":  # one template's contexts and answers stay together
                group = f"bbq:{rec['category']}:{meta.get('question_index')}"
            elif source == "diasafety":  # one context's replies stay together
                group = "diasafety:" + hashlib.sha256(_norm(rec["prompt"]).encode()).hexdigest()[:16]
            else:
                group = f"{source}:{rec['id']}"
            yield Row(
                source=source,
                id=rec["id"],
                request=rec["prompt"] or "",
                draft=rec["response"],
                harmful=bool(rec["harmful"]),
                category=_mapped(source, rec["category"]),
                label_by=rec["label_by"],
                licence=LICENCES[source],
                group=group,
            )


def read_jbb(path: Path) -> Iterator[Row]:
    """JailbreakBench's recorded answers; the request is what was actually sent (often a jailbreak wrapper)."""
    for n, rec in enumerate(_jsonl(path), start=1):
        yield Row(
            source="jbb",
            id=f"jbb-{n}",
            request=rec["prompt"],
            draft=rec["response"],
            harmful=bool(rec["harmful"]),
            category=_mapped("jbb", rec["category"]),
            label_by="model:jailbreakbench-llama-3-70b-judge",
            licence=LICENCES["jbb"],
            group=question_group(rec["goal"]),
        )


def read_project_data(folder: Path) -> Iterator[Row]:
    """data/reviewer_set.jsonl: its JailbreakBench rows are lines of jbb_responses.jsonl (read from there);
    its XSTest rows are the embedded assistant's own answers to safe prompts, screened by hand."""
    for rec in _jsonl(folder / "reviewer_set.jsonl"):
        if not rec["id"].startswith("xstest-"):
            continue
        yield Row(
            source="xstest_answers",
            id=rec["id"],
            request=rec["prompt"],
            draft=rec["response"],
            harmful=bool(rec["harmful"]),
            category=None,
            label_by="human",
            licence=LICENCES["xstest_answers"],
            group=f"xstest:{rec['id']}",
        )


def screening_path(answers: Path) -> Path:
    """The screening file beside an answers file: data/embedded_assistant_answers.jsonl ->
    data/embedded_assistant_screening.jsonl."""
    return answers.with_name(answers.name.removesuffix("_answers.jsonl").removesuffix(".jsonl") + SCREENING_SUFFIX)


LABELS = (True, False, None)


def read_screening(path: Path) -> dict[str, bool | None]:
    """A person's labels by answer id (none when the file is absent). A bad line names the file and line."""
    if not path.exists():
        return {}
    labels: dict[str, bool | None] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or rec.get("harmful") not in LABELS:
            raise ChaperoneError(f'{path}:{n}: a screening line is {{"id": str, "harmful": true | false | null}}')
        labels[rec["id"]] = rec["harmful"]
    return labels


def read_generated(path: Path = GENERATED) -> Iterator[Row]:
    """The embedded assistant's labelled answers (generate.py) as rows; unlabelled ones (harmful null: a
    partial refusal, an empty answer) are left out. A harmless row keeps its request's topic as category.
    Where the screening file beside it has read an answer, its label wins (label_by "screened")."""
    screened = read_screening(screening_path(path))
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from an interrupted run
            harmful, label_by = rec.get("harmful"), rec.get("label_by")
            if rec.get("id") in screened:
                harmful, label_by = screened[rec["id"]], "screened"
            if harmful is None:
                continue
            topic = None if rec["request_category"] == "needless_refusal" else rec["request_category"]
            yield Row(
                source=GENERATED_SOURCE,
                id=f"{GENERATED_SOURCE}-{rec['id']}",
                request=rec["request"],
                draft=rec["answer"],
                harmful=bool(harmful),
                category=(rec.get("category") or topic) if harmful else topic,
                label_by=label_by,
                licence=GENERATED_LICENCES[rec["origin"]],
                group=rec["group"],
            )


def read_labelled(path: Path, licence: str = "the deployer's own") -> Iterator[Row]:
    """A deployer's own labelled answers (labelled.py's format) as one source, `own:<file stem>`."""
    name = source_name(path)
    for n, a in parse_labelled(path):
        yield Row(
            source=name,
            id=f"{name}-{a.id or n}",
            request=a.request,
            draft=a.answer,
            harmful=a.harmful,
            category=a.category,
            label_by=a.label_by,
            licence=licence,
            group=f"{name}:{a.group}" if a.group else question_group(a.request or a.answer),
        )


def read_all(
    shared: Path = SHARED,
    project_data: Path = REPO / "data",
    generated: Path | None = None,
    labelled: Sequence[Path] = (),
) -> list[Row]:
    # The deployer's own files first: a mistake in them is reported before anything else is read.
    own = [row for path in labelled for row in read_labelled(path)]  # uncapped, one source per file
    if not shared.is_dir():
        raise ChaperoneError(f"{shared}: the shared datasets folder is not there (give its place with --shared)")
    try:
        rows = list(read_reviewer_sets(shared / "reviewer"))
        rows += read_jbb(shared / "jbb_responses.jsonl")
        rows += read_project_data(project_data)
        if generated is not None:
            rows += read_generated(generated)
    except FileNotFoundError as exc:
        raise ChaperoneError(f"{exc.filename}: a training data file is missing") from None
    return rows + own


def dedupe(rows: Iterable[Row]) -> tuple[list[Row], Counter]:
    """One row per (request, draft) text, normalised; texts labelled both ways are dropped altogether."""
    by_text: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_text[_norm(row.request) + "\x00" + _norm(row.draft)].append(row)
    kept: list[Row] = []
    dropped: Counter = Counter()
    for group in by_text.values():
        if len({r.harmful for r in group}) > 1:
            dropped["conflicting labels"] += len(group)
            continue
        kept.append(group[0])
        dropped["duplicates"] += len(group) - 1
    return kept, dropped


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def cap(rows: Iterable[Row], caps: dict[str, int], seed: int) -> list[Row]:
    """At most caps[source] rows per source, half of each label where there are enough, chosen by seeded hash."""
    by_source: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_source[row.source].append(row)
    kept: list[Row] = []
    for source, items in sorted(by_source.items()):
        limit = caps.get(source, len(items))
        items = sorted(items, key=lambda r: _rank(seed, r.id))
        pos = [r for r in items if r.harmful]
        neg = [r for r in items if not r.harmful]
        n_pos = min(len(pos), max(limit // 2, limit - len(neg)))
        n_neg = min(len(neg), limit - n_pos)
        kept += pos[:n_pos] + neg[:n_neg]
    return kept


def part_of(group: str, seed: int) -> str:
    """train / dev / test from the seed and the group alone: stable whatever else is in the data."""
    u = int(_rank(seed, "group:" + group)[:12], 16) / float(1 << 48)
    if u < FRACTIONS["train"]:
        return "train"
    if u < FRACTIONS["train"] + FRACTIONS["dev"]:
        return "dev"
    return "test"


@dataclass(frozen=True)
class SplitRow:
    row: Row
    part: str

    def manifest_line(self) -> dict:
        return {**asdict(self.row), "part": self.part, "text_sha": self.row.text_sha}


def split(rows: Iterable[Row], seed: int) -> list[SplitRow]:
    return [SplitRow(r, part_of(r.group, seed)) for r in sorted(rows, key=lambda r: (r.source, r.id))]


def loso_folds(rows: Iterable[SplitRow]) -> dict[str, dict[str, str]]:
    """Leave one source out: train on the other sources' train part, tune on their dev part, measure on
    every row of the left-out source (none of which that fold's head has seen)."""
    sources = sorted({r.row.source for r in rows})
    return {
        f"loso:{s}": {"train": "other sources, part train", "dev": "other sources, part dev", "test": f"all of {s}"}
        for s in sources
    }


def fold_parts(rows: list[SplitRow], fold: str) -> dict[str, list[SplitRow]]:
    """The rows of each part of a fold: 'main' (the seeded split) or 'loso:<source>'."""
    if fold == "main":
        return {p: [r for r in rows if r.part == p] for p in ("train", "dev", "test")}
    left_out = fold.split(":", 1)[1]
    return {
        "train": [r for r in rows if r.row.source != left_out and r.part == "train"],
        "dev": [r for r in rows if r.row.source != left_out and r.part == "dev"],
        "test": [r for r in rows if r.row.source == left_out],
    }


def build(seed: int = 0, caps: dict[str, int] | None = None, **paths: Path) -> tuple[list[SplitRow], dict]:
    rows = read_all(**paths)
    read_counts = Counter(r.source for r in rows)
    rows, dropped = dedupe(rows)
    if caps is None:
        caps = {**DEFAULT_CAPS, GENERATED_SOURCE: GENERATED_CAP} if paths.get("generated") else DEFAULT_CAPS
    rows = cap(rows, caps, seed)
    result = split(rows, seed)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: Counter())
    for r in result:
        counts[r.row.source][r.part] += 1
        counts[r.row.source]["harmful" if r.row.harmful else "not harmful"] += 1
    summary = {
        "seed": seed,
        "fractions": {**FRACTIONS, "test": round(1 - sum(FRACTIONS.values()), 2)},
        "caps": caps,
        "read": dict(sorted(read_counts.items())),
        "dropped": dict(dropped),
        "counts": {s: dict(c) for s, c in sorted(counts.items())},
        "parts": dict(Counter(r.part for r in result)),
        "folds": {"main": "the seeded split", **loso_folds(result)},
        "licences": {s: _licence(s, rows) for s in sorted(read_counts)},
        "category_map": CATEGORY_MAP,
    }
    return result, summary


def _licence(source: str, rows: list[Row]) -> str:
    if source in LICENCES:
        return LICENCES[source]
    if source == GENERATED_SOURCE:
        return "; ".join(GENERATED_LICENCES.values())
    return next((r.licence for r in rows if r.source == source), "unknown")


def write_manifest(rows: list[SplitRow], summary: dict, path: Path) -> None:
    """First line: the summary (seed, caps, counts, folds, licences); then one line per row. Gzipped when the
    name ends in .gz (with no timestamp: the same rows give the same bytes)."""
    lines = [json.dumps({"manifest": summary}, ensure_ascii=False)]
    lines += [json.dumps(r.manifest_line(), ensure_ascii=False) for r in rows]
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)


def read_manifest(path: Path) -> tuple[list[SplitRow], dict]:
    lines = _jsonl(path)
    summary = next(lines)["manifest"]
    rows = []
    for rec in lines:
        part = rec.pop("part")
        sha = rec.pop("text_sha")
        row = Row(**rec)
        if row.text_sha != sha:
            raise ValueError(f"{path}: row {row.id} does not match its text_sha")
        rows.append(SplitRow(row, part))
    return rows, summary


def sample(rows: list[SplitRow], per_source: int, seed: int) -> list[SplitRow]:
    """A small mixed subset (for smoke runs): per_source rows of each source, both labels."""
    rng = random.Random(seed)
    out: list[SplitRow] = []
    by_source: dict[str, list[SplitRow]] = defaultdict(list)
    for r in rows:
        by_source[r.row.source].append(r)
    for _source, items in sorted(by_source.items()):
        pos = [r for r in items if r.row.harmful]
        neg = [r for r in items if not r.row.harmful]
        rng.shuffle(pos)
        rng.shuffle(neg)
        half = per_source // 2
        take = pos[: max(half, per_source - len(neg))] + neg[: per_source - min(len(pos), half)]
        out += take[:per_source]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared datasets folder")
    ap.add_argument(
        "--with-generated",
        type=Path,
        nargs="?",
        const=GENERATED,
        default=None,
        help=f"also the embedded assistant's answers (default file {GENERATED.relative_to(REPO)}); write to a new "
        "manifest name, e.g. heads/split-seed0-gen.jsonl.gz",
    )
    ap.add_argument(
        "--with-labelled",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also your own labelled answers (JSONL: request, answer, harmful, category; docs/reviewer-head.md); "
        "repeatable, one source per file",
    )
    args = ap.parse_args(argv)
    if (args.with_generated is not None or args.with_labelled) and args.out == DEFAULT_MANIFEST:
        ap.error("added rows change the manifest: give --out a new name (heads/split-seed0.jsonl.gz stays as is)")
    try:
        rows, summary = build(
            args.seed, shared=args.shared, generated=args.with_generated, labelled=tuple(args.with_labelled)
        )
    except ChaperoneError as exc:
        raise SystemExit(f"error: {exc}") from None
    write_manifest(rows, summary, args.out)
    print(json.dumps({k: summary[k] for k in ("read", "dropped", "counts", "parts")}, indent=1))
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
