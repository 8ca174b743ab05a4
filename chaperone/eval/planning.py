"""Planning an evaluation run: which items (source, columns, split, filters, sample, shard), under which
choice of agents and models, in which run folder. A new run writes its plan; a resumed one reads it back
and checks the data did not change."""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ValidationError

from chaperone.config.project import Project
from chaperone.engine.choice import SessionChoice, flag_blame, resolve
from chaperone.errors import ChaperoneError
from chaperone.eval.config import Columns, EvalConfig
from chaperone.eval.data import EvalItem, load_items, parse_shard, select, split
from chaperone.eval.store import Plan, RunFolder, file_sha256

# A run id names its folder and its manifest file.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def parse_columns(base: Columns, text: str | None) -> Columns:
    if not text:
        return base
    values = base.model_dump()
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in values:
            raise ChaperoneError(
                f"--columns: expected NAME=COLUMN pairs with NAME one of {', '.join(values)}; got {part!r}"
            )
        values[key] = value.strip() or None
    return Columns(**values)


def dataset_source(cfg: EvalConfig, project, source: str) -> tuple[Path, Columns, str]:
    """A built-in set's file and columns, or a file path with default columns."""
    if source in cfg.datasets:
        spec = cfg.datasets[source]
        return project.resolve(spec.path), spec.columns, spec.title or source
    path = Path(source)
    if not path.exists():
        known = ", ".join(sorted(cfg.datasets)) or "none"
        raise ChaperoneError(f"{source}: no such file, and not a built-in set (built-in: {known})")
    return path, Columns(), path.name


class Split(BaseModel):
    part: Literal["dev", "test"]
    seed: int
    test_fraction: float


class Selection(BaseModel):
    """What chooses a run's items from its data: plan.json's "selection" (the plan's key hashes it)."""

    types: list[str]
    labels: list[str]
    categories: list[str]
    sample: int | None
    seed: int
    limit: int | None
    columns: Columns
    split: Split | None = None  # absent from the plan when the run uses the whole data

    def as_plan(self) -> dict[str, Any]:
        return self.model_dump(exclude={"split"} if self.split is None else None)

    @classmethod
    def of_plan(cls, folder: RunFolder, plan: Plan) -> Selection:
        try:
            return cls.model_validate(plan.selection)
        except ValidationError as exc:
            raise ChaperoneError(f"{folder.plan_path}: not a readable eval plan ({exc.errors()[0]['msg']})") from None

    def choose(self, path: Path, mode: str) -> list[EvalItem]:
        """The items of the data file this selection picks, in order; none is an error."""
        need = mode == "reviewer"
        items = load_items(path, self.columns, need_label=need, need_answer=need)
        if self.split:  # before the filters and the sample, so both parts are fixed by the data alone
            items = split(items, self.split.part, test_fraction=self.split.test_fraction, seed=self.split.seed)
        chosen = select(
            items,
            types=tuple(self.types),
            labels=tuple(self.labels),
            categories=tuple(self.categories),
            sample=self.sample,
            seed=self.seed,
            limit=self.limit,
        )
        if not chosen:
            raise ChaperoneError(f"{path}: no item matches the filters")
        return chosen


@dataclass(frozen=True)
class NewRun:
    """The options that plan a new run; a resumed run takes all of this from its plan.json."""

    source: str | None
    reviewer_only: bool
    columns: str | None
    limit: int | None
    sample: int | None
    seed: int
    types: tuple[str, ...]
    labels: tuple[str, ...]
    categories: tuple[str, ...]
    split_part: str | None
    split_seed: int
    test_fraction: float
    shard_text: str | None
    out: Path | None
    run_id: str | None
    policy: str | None
    assistant_model: str | None
    reviewer_model: str | None
    no_head: bool = False

    @property
    def mode(self) -> str:
        return "reviewer" if self.reviewer_only else "ab"

    def selection(self, columns: Columns) -> Selection:
        chosen_split = None
        if self.split_part:
            chosen_split = Split(part=self.split_part, seed=self.split_seed, test_fraction=self.test_fraction)
        return Selection(
            types=list(self.types),
            labels=list(self.labels),
            categories=list(self.categories),
            sample=self.sample,
            seed=self.seed,
            limit=self.limit,
            columns=columns,
            split=chosen_split,
        )

    def choice(self, cfg: EvalConfig) -> SessionChoice:
        return SessionChoice(
            policy=self.policy,
            assistant_model=self.assistant_model,
            reviewer_model=self.reviewer_model,
            assistant_max_tokens=cfg.assistant_max_tokens,
            reviewer_head=not self.no_head,
        )


class Planned(NamedTuple):
    folder: RunFolder
    plan: Plan
    title: str
    chosen: list[EvalItem]  # the items of the whole run (all shards)


def run_id_for(given: str | None) -> str:
    if given is not None and not RUN_ID.fullmatch(given):
        raise ChaperoneError(
            f"--run-id: {given!r} must be 1-64 letters, digits, '-' or '_' (it names the run's folder and manifest)"
        )
    return given or uuid.uuid4().hex[:12]


def plan_new(project: Project, cfg: EvalConfig, new: NewRun) -> Planned:
    """Choose the items, check the flags, and create the run folder with its plan."""
    if not new.source:
        raise ChaperoneError(
            "name a prompt set (built-in: " + ", ".join(cfg.datasets) + ") or a file, or --resume a run folder"
        )
    path, base_columns, title = dataset_source(cfg, project, new.source)
    selection = new.selection(parse_columns(base_columns, new.columns))
    chosen = selection.choose(path, new.mode)
    i, n = parse_shard(new.shard_text) if new.shard_text else (1, 1)
    choice = new.choice(cfg)
    resolve(project, choice, flag_blame)  # a wrong flag fails before the run folder exists
    run_id = run_id_for(new.run_id)
    items = [it.id for it in chosen]
    plan = Plan(run_id, new.mode, new.source, file_sha256(path), selection.as_plan(), items, asdict(choice), (i, n))
    suffix = f"-shard{i}of{n}" if n > 1 else ""
    folder = RunFolder(new.out or project.writable(cfg.out_dir) / f"{run_id}{suffix}")
    folder.create(plan)
    return Planned(folder, plan, title, chosen)


def plan_resumed(project: Project, cfg: EvalConfig, path: Path) -> Planned:
    """The plan of an existing run folder, and its items again from the same, unchanged data."""
    folder = RunFolder(path)
    plan = folder.plan()
    data, _, title = dataset_source(cfg, project, plan.source)
    if file_sha256(data) != plan.source_sha256:
        raise ChaperoneError(f"{data} changed since run {plan.run_id} started: resuming would mix data")
    return Planned(folder, plan, title, Selection.of_plan(folder, plan).choose(data, plan.mode))
