"""Evaluation inputs: prompt sets and recorded answers from CSV or JSONL, with labels, filters and shards.

Every problem in a data file is one clear error naming the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chaperone.errors import ChaperoneError
from chaperone.eval.config import Columns

MAX_BYTES = 256 << 20
# "Must not be delivered / unsafe" against "fine to answer / safe", in the spellings data sets use.
POSITIVE = {"unsafe", "true", "1", "yes", "harmful", "jailbroken", "positive"}
NEGATIVE = {"safe", "false", "0", "no", "harmless", "benign", "negative"}

Label = Literal["safe", "unsafe"]


@dataclass(frozen=True)
class EvalItem:
    id: str
    prompt: str
    label: Label | None
    type: str = ""
    category: str = ""
    answer: str | None = None
    line: int = 0


class DataError(ChaperoneError):
    def __init__(self, path: Path, message: str, line: int | None = None):
        super().__init__(f"{path}{f':{line}' if line else ''}: {' '.join(message.split())}")


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, expected a .csv or .jsonl file") from None
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise DataError(path, f"is {len(raw) >> 20} MiB; the limit is {MAX_BYTES >> 20} MiB")
    if b"\x00" in raw:
        raise DataError(path, "is not a text file (it contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, "is not valid UTF-8", line) from None
    if not text.strip():
        raise DataError(path, "is empty")
    return text


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for each record of a .csv (header row first) or .jsonl (one object a line) file."""
    path = Path(path)
    text = _text(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"not a JSON object ({exc.msg})", number) from None
            if not isinstance(row, dict):
                raise DataError(path, "not a JSON object", number)
            yield number, row
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            if not reader.fieldnames:
                raise DataError(path, "has no header row", 1)
            for row in reader:
                if None in row:
                    raise DataError(
                        path, f"has more fields than the header's {len(reader.fieldnames)}", reader.line_num
                    )
                yield reader.line_num, row
        except csv.Error as exc:
            raise DataError(path, f"is not valid CSV ({exc})", reader.line_num) from None
    else:
        raise DataError(path, f"unknown file type '{suffix or '(none)'}': use .csv or .jsonl")


def parse_label(value: Any) -> Label | None:
    text = str(value).strip().lower()
    if text in POSITIVE:
        return "unsafe"
    if text in NEGATIVE:
        return "safe"
    return None


def load_items(path: Path, columns: Columns, *, need_label: bool = False, need_answer: bool = False) -> list[EvalItem]:
    path = Path(path)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for line, row in read_rows(path):

        def get(field: str | None, required: bool = False, row: dict = row, line: int = line) -> str:
            if field is None:
                return ""
            if field not in row or row[field] is None:
                if required:
                    known = ", ".join(sorted(map(str, row))) or "none"
                    raise DataError(path, f"column '{field}' is missing (columns here: {known})", line)
                return ""
            value = row[field]
            return (
                value
                if isinstance(value, str)
                else json.dumps(value)
                if isinstance(value, (dict, list))
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )

        prompt = get(columns.prompt, required=True)
        if not prompt.strip():
            raise DataError(path, f"column '{columns.prompt}' is empty", line)
        label = None
        if columns.label is not None and (need_label or columns.label in row):
            raw_label = get(columns.label, required=need_label)
            label = parse_label(raw_label)
            if label is None and need_label:
                raise DataError(
                    path,
                    f"label {raw_label!r} in column '{columns.label}' is not one of "
                    f"{sorted(NEGATIVE)} (safe) or {sorted(POSITIVE)} (unsafe)",
                    line,
                )
        answer = None
        if need_answer:
            if columns.answer is None:
                raise DataError(path, "no answer column given (the reviewer-alone mode judges recorded answers)")
            answer = get(columns.answer, required=True)
        # An "id" field is used when present; otherwise the line number identifies the item.
        id_field = columns.id or ("id" if "id" in row else None)
        item_id = get(id_field, required=True) if id_field else str(line)
        if item_id in seen:
            raise DataError(path, f"id {item_id!r} was already used on line {seen[item_id]}", line)
        seen[item_id] = line
        items.append(EvalItem(item_id, prompt, label, get(columns.type), get(columns.category), answer, line))
    if not items:
        raise DataError(path, "has no rows")
    return items


def select(
    items: list[EvalItem],
    *,
    types: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    sample: int | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> list[EvalItem]:
    """Filter (types by prefix, e.g. "contrast_"), then a seeded sample, then the first `limit`."""
    chosen = [
        i
        for i in items
        if (not types or any(i.type.startswith(t) for t in types))
        and (not labels or i.label in labels)
        and (not categories or i.category in categories)
    ]
    if sample is not None and sample < len(chosen):
        chosen = sorted(random.Random(seed).sample(chosen, sample), key=lambda i: i.line)
    if limit is not None:
        chosen = chosen[:limit]
    return chosen


SPLIT_PARTS = ("dev", "test")


def split(items: list[EvalItem], part: str, *, test_fraction: float, seed: int) -> list[EvalItem]:
    """The dev or test part of a data set, fixed by seed: tune on dev, measure test once at the end.

    Stratified by label (each label, unlabelled included, contributes round(fraction x its count) to
    test), and each item's side depends only on its id, the seed and its label's count: reordering
    the file or filtering it afterwards does not move an item across the line. Items with no id
    column are identified by line number, so for those the file must not be reordered."""
    if part not in SPLIT_PARTS:
        raise ChaperoneError(f"--split: expected one of {', '.join(SPLIT_PARTS)}, got {part!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ChaperoneError(f"--test-fraction: {test_fraction} is not between 0 and 1")
    test_ids: set[str] = set()
    for label in {i.label for i in items}:
        group = sorted(
            (i for i in items if i.label == label),
            key=lambda i: hashlib.sha256(f"{seed}:{i.id}".encode()).hexdigest(),
        )
        test_ids.update(i.id for i in group[: round(test_fraction * len(group))])
    return [i for i in items if (i.id in test_ids) == (part == "test")]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ChaperoneError(f"--shard: expected i/n such as 1/4, got {text!r}") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ChaperoneError(f"--shard: {text!r} is out of range (1 <= i <= n)")
    return i, n


def shard(items: list[EvalItem], i: int, n: int) -> list[EvalItem]:
    """Shard i of n (1-based): every n-th item, so each shard gets a similar mix."""
    return items[i - 1 :: n]
