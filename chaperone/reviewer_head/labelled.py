"""A deployer's own labelled answers, as rows of the head's training data.

A JSONL file, one answer a line, each checked against `LabelledAnswer` (an error names the file, the line and
the field, and nothing is read from a file with one bad line):

    {"request": "How do I ...", "answer": "...", "harmful": true, "category": "crime"}
    {"request": "...", "answer": "...", "harmful": false, "group": "ticket-1831"}

`harmful` is whether the answer must not be delivered; `category` (one of the head's categories) says which
kind of harm, or for a harmless answer the topic it touches; `group` keeps answers that must share a part
(answers to one question, turns of one conversation) together, else the request's text is the group; `id`
and `label_by` are kept for the audit. The file's rows form one source, named `own:<file stem>`, so
leave-one-source-out folds also measure how a head trained without them does on them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chaperone.config.schema import HEAD_CATEGORIES
from chaperone.errors import ChaperoneError

OWN_PREFIX = "own:"


class LabelledDataError(ChaperoneError):
    """A labelled-answers file that cannot be read: file, line, field and what is wrong."""


class LabelledAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request: str = ""
    answer: str = Field(min_length=1)
    harmful: bool
    category: str | None = None
    group: str | None = None
    id: str | None = None
    label_by: str = "deployer"

    @field_validator("category")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value not in HEAD_CATEGORIES:
            raise ValueError(f"{value!r} is not one of the head's categories ({', '.join(HEAD_CATEGORIES)})")
        return value


def source_name(path: Path) -> str:
    return OWN_PREFIX + Path(path).stem


def parse_labelled(path: Path) -> list[tuple[int, LabelledAnswer]]:
    """The file's answers with their line numbers, validated whole: a bad line stops the read before any row
    is used. `data.read_labelled` turns them into training rows."""
    path = Path(path)
    if not path.is_file():
        raise LabelledDataError(f"{path}: no such file")
    parsed: list[tuple[int, LabelledAnswer]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelledDataError(f"{path}:{n}: not a JSON object ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise LabelledDataError(f"{path}:{n}: not a JSON object")
            try:
                parsed.append((n, LabelledAnswer.model_validate(raw)))
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"]) or "(line)"
                raise LabelledDataError(f"{path}:{n}: field '{field}': {err['msg']}") from None
    if not parsed:
        raise LabelledDataError(f"{path}: no answers in it")
    return parsed
