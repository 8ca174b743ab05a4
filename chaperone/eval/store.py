"""An evaluation run on disk: plan.json (what is to be done) and results.jsonl (what is done).

Results are appended one line per finished item and flushed as they finish, so an interrupted run
loses at most the items in flight, and `--resume` picks up the rest without redoing anything.
Shards of one plan write to separate folders; `merge` unites them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaperone.audit.private_files import private_dir, private_opener
from chaperone.errors import ChaperoneError
from chaperone.eval.rows import Row, parse_row, row_json

PLAN = "plan.json"
RESULTS = "results.jsonl"


@dataclass
class Plan:
    run_id: str
    mode: str  # "ab": bare vs guarded on prompts; "reviewer": the reviewer alone on recorded answers
    source: str  # a built-in set's name or a file path
    source_sha256: str
    selection: dict[str, Any]  # the filters, sample, seed and limit that chose the items
    items: list[str]  # ids of every item of the whole run (all shards), in order
    choice: dict[str, Any]  # policy, agents and models
    shard: tuple[int, int] = (1, 1)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def key(self) -> str:
        """Identifies the work independent of sharding: shards of one run share it, and merge checks it."""
        body = json.dumps([self.mode, self.source_sha256, self.selection, self.items, self.choice], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "selection": self.selection,
            "items": self.items,
            "choice": self.choice,
            "shard": list(self.shard),
            "created_at": self.created_at,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            data["run_id"],
            data["mode"],
            data["source"],
            data["source_sha256"],
            data["selection"],
            list(data["items"]),
            data["choice"],
            tuple(data.get("shard", (1, 1))),
            data.get("created_at", ""),
        )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def plan_path(self) -> Path:
        return self.path / PLAN

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def create(self, plan: Plan) -> None:
        if self.plan_path.exists():
            raise ChaperoneError(
                f"{self.path} already holds an eval run: use --resume {self.path} to finish it, or choose another --out"
            )
        private_dir(self.path)
        with open(self.plan_path, "w", encoding="utf-8", opener=private_opener) as fh:
            fh.write(json.dumps(plan.as_dict(), indent=1) + "\n")

    def plan(self) -> Plan:
        try:
            return Plan.from_dict(json.loads(self.plan_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ChaperoneError(f"{self.path}: no {PLAN} here; not an eval run folder") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ChaperoneError(f"{self.plan_path}: not a readable eval plan ({exc})") from None

    def results(self) -> dict[str, Row]:
        """The last row written for each item. A line torn by a crash (not JSON: cut off mid-write, maybe
        with a later row's line break after it) is skipped; a JSON line that is not a row is an error."""
        rows: dict[str, Row] = {}
        if not self.results_path.exists():
            return rows
        with self.results_path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.endswith("\n"):
                    break  # torn by a crash mid-write: that item was not finished
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                try:
                    row = parse_row(data)
                except ValueError as exc:
                    raise ChaperoneError(f"{self.results_path}:{number}: not a readable eval row ({exc})") from None
                rows[row.id] = row
        return rows

    def done(self) -> set[str]:
        return {i for i, row in self.results().items() if row.status == "ok"}

    def append(self, row: Row | Mapping[str, Any]) -> None:
        """Append one row and flush it to disk (a mapping is taken as a row's JSON form already)."""
        data = row if isinstance(row, Mapping) else row_json(row)
        line = (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
        with open(self.results_path, "a+b", opener=private_opener) as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = b"\n" + line  # a line torn by a crash stays unreadable alone, not glued to this one
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def merge(folders: list[Path]) -> tuple[Plan, list[Row], list[str]]:
    """Rows of every shard of one run, in plan order, and the ids no shard finished."""
    if not folders:
        raise ChaperoneError("merge: name the run folders of the shards")
    plans = [(f, RunFolder(f).plan()) for f in folders]
    first_folder, first = plans[0]
    for folder, plan in plans[1:]:
        if plan.key != first.key:
            raise ChaperoneError(
                f"merge: {folder} is not a shard of the same run as {first_folder} "
                "(different data, selection, items or agents)"
            )
    rows: dict[str, Row] = {}
    for folder, _ in plans:
        for item_id, row in RunFolder(folder).results().items():
            if row.status == "ok" or item_id not in rows:
                rows[item_id] = row
    ordered = [rows[i] for i in first.items if i in rows]
    missing = [i for i in first.items if i not in rows or rows[i].status != "ok"]
    return first, ordered, missing
