"""Evaluation inputs: prompt sets and recorded answers from CSV or JSONL, with labels, filters and shards.

Every problem in a data file is one clear error naming the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from chaperone.errors import ChaperoneError
from chaperone.eval.config import Columns

MAX_BYTES = 256 << 20
# "Must not be delivered / unsafe" against "fine to answer / safe", in the spellings data sets use.
POSITIVE = {"unsafe", "true", "1", "yes", "harmful", "jailbroken", "positive"}
NEGATIVE = {"safe", "false", "0", "no", "harmless", "benign", "negative"}

_NOT_A_LABEL = (
    f"is not one of the accepted values (in any letter case) — safe: {', '.join(sorted(NEGATIVE))}; "
    f"unsafe: {', '.join(sorted(POSITIVE))}"
)

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


class Record(NamedTuple):
    line: int  # where the record starts: the line errors name
    row: dict[str, Any]
    last_line: int  # where it ends (a quoted CSV field can span lines): a record without an id is known by it


def read_rows(path: Path, label_field: str | None = None) -> Iterator[Record]:
    """Each record of a .csv (header row first) or .jsonl (one object a line) file.

    A CSV file must be well formed: every quote closed, every row as wide as the header. `label_field`
    names the label column, whose accepted values tell a row swallowed by an unclosed quote (see
    _swallowed_row)."""
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
            yield Record(number, row, number)
    elif suffix == ".csv":
        yield from _csv_records(path, text, label_field)
    else:
        raise DataError(path, f"unknown file type '{suffix or '(none)'}': use .csv or .jsonl")


def _csv_records(path: Path, text: str, label_field: str | None) -> Iterator[Record]:
    # strict: a quote left open at the end of the file, or closed and then followed by more text, is an
    # error (the lenient default would take the rest of the file into one field).
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        header = next(reader, [])
        if not header:
            raise DataError(path, "has no header row", 1)
        width = len(header)
        label_at = max((i for i, name in enumerate(header) if name == label_field), default=None)
        while True:
            start = reader.line_num + 1
            fields = next(reader, None)
            if fields is None:
                return
            if not fields:  # a blank line
                continue
            if len(fields) != width:
                raise DataError(
                    path,
                    f"has {len(fields)} field{'s' if len(fields) != 1 else ''}; the header (line 1) has {width}",
                    start,
                )
            swallowed = _swallowed_row(fields, width, label_at)
            if swallowed is not None:
                offset, inner = swallowed
                shown = inner if len(inner) <= 60 else inner[:57] + "..."
                raise DataError(
                    path,
                    f"a quoted field in the row on this line runs on to line {start + offset}, which reads as a "
                    f"row of its own ({shown!r}): an unclosed quote? (a field that must hold such a line can "
                    "be written in a .jsonl file)",
                    start,
                )
            # A later duplicate column name wins, as with csv.DictReader.
            yield Record(start, dict(zip(header, fields, strict=True)), reader.line_num)
    except csv.Error as exc:
        raise DataError(path, _csv_problem(str(exc), start, reader.line_num), start) from None


def _csv_problem(error: str, start: int, at: int) -> str:
    if error == "unexpected end of data":
        return "a quote opened in the row on this line is never closed (the rest of the file would be one field)"
    if error.endswith("expected after '\"'"):
        where = f"ends on line {at}" if at != start else "ends"
        return (
            f"a quoted field in the row on this line {where} with a quote followed by text: an unclosed quote, "
            'or a quote inside a quoted field not doubled ("")'
        )
    return f"is not valid CSV in the row on this line ({error})"


_NEWLINE = re.compile(r"\r\n|\r|\n")


def _swallowed_row(fields: list[str], width: int, label_at: int | None) -> tuple[int, str] | None:
    """A line inside a multi-line field that reads as a whole row of the file — as wide as the header, with
    an accepted label in the label column — as (lines after the row's first, the line); else None.

    An unclosed quote takes the following lines into its field until some later quote closes it; when that
    quote happens to be followed by a comma or the end of a line (`27",`), the CSV is well formed and only
    the rows inside the field show what happened. A multi-line prompt (code, a list) rarely has a line of
    exactly the header's fields with a label word in the label's place. Without a label column there is
    no such tell, and only the quoting errors above catch an unclosed quote."""
    if label_at is None:
        return None
    offset = 0
    for value in fields:
        lines = _NEWLINE.split(value)
        for k, inner in enumerate(lines[1:-1], start=1):  # whole lines: not the field's first or last part
            try:
                cells = next(csv.reader([inner]), [])
            except csv.Error:
                continue
            if len(cells) == width and cells[label_at].strip().lower() in POSITIVE | NEGATIVE:
                return offset + k, inner
        offset += len(lines) - 1
    return None


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
    for line, row, last_line in read_rows(path, columns.label):

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
            # An empty label is "no label" where the mode needs none; any other value must be a known spelling.
            if need_label or raw_label.strip():
                label = parse_label(raw_label)
                if label is None:
                    raise DataError(
                        path,
                        f"label {raw_label!r} in column '{columns.label}' {_NOT_A_LABEL}"
                        + ("; the reviewer-alone mode: every row needs one" if need_label else "; or empty: no label"),
                        line,
                    )
        answer = None
        if need_answer:
            if columns.answer is None:
                raise DataError(path, "no answer column given (the reviewer-alone mode judges recorded answers)")
            answer = get(columns.answer, required=True)
        # An "id" field is used when present; otherwise the line number identifies the item.
        id_field = columns.id or ("id" if "id" in row else None)
        item_id = get(id_field, required=True) if id_field else str(last_line)
        if item_id in seen:
            raise DataError(path, f"id {item_id!r} was already used on line {seen[item_id]}", line)
        seen[item_id] = line
        items.append(EvalItem(item_id, prompt, label, get(columns.type), get(columns.category), answer, last_line))
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
