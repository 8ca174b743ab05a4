"""Scenario files: scripted user turns with expectations, run through the guarded chat."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaperone.config import yaml_files
from chaperone.config.project import Project
from chaperone.config.schema import Scenario, TurnExpectation
from chaperone.engine.choice import SessionChoice, resolve
from chaperone.engine.conversation import Conversation
from chaperone.engine.events import Sink, TurnResult
from chaperone.errors import ConfigError
from chaperone.models.pool import ModelPool


@dataclass
class LoadedScenario:
    path: Path
    spec: Scenario
    lines: dict


def find_scenario_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")])
            if not files:
                raise ConfigError(p, "folder holds no scenario files (*.yaml)")
            found.extend(files)
        elif p.is_file():
            found.append(p)
        else:
            raise ConfigError(p, "no such file or folder")
    return found


def load_scenario(path: Path, project: Project) -> LoadedScenario:
    data, lines = yaml_files.read_yaml(path)
    spec = yaml_files.validate(Scenario, data, path, lines)

    def fail(message: str, *where: Any) -> ConfigError:
        return ConfigError(path, message, where=".".join(map(str, where)), line=lines.get(tuple(where)))

    # A wrong name is reported at the scenario's own line for it (policy, agents.reviewer, models.assistant).
    where = {
        "policy": ("policy",),
        "assistant": ("agents", "assistant"),
        "reviewer": ("agents", "reviewer"),
        "assistant_model": ("models", "assistant"),
        "reviewer_model": ("models", "reviewer"),
    }
    cast = resolve(project, scenario_choice(spec), lambda field, message: fail(message, *where[field]))
    policy = cast.policy
    for i, turn in enumerate(spec.turns):
        bounds = turn.expect.revisions if turn.expect else None
        if bounds is not None and bounds.min > cast.max_revisions:
            # The schema checks a scenario's own max_revisions; this is the cap it runs under otherwise.
            raise fail(
                f"min ({bounds.min}) is more than max_revisions ({cast.max_revisions}, from config/settings.yaml: "
                "this scenario sets none), so no turn could meet it; set max_revisions in the scenario or expect "
                f"at most {cast.max_revisions}",
                "turns",
                i,
                "expect",
                "revisions",
            )
        for j, cat in enumerate(turn.expect.categories if turn.expect else []):
            if cat not in policy.categories:
                raise fail(
                    f"category '{cat}' is not in policy '{policy.name}' (known: {', '.join(policy.categories)})",
                    "turns",
                    i,
                    "expect",
                    "categories",
                    j,
                )
    return LoadedScenario(path, spec, lines)


@dataclass
class TurnCheck:
    turn: int
    user: str
    outcome: str
    revisions: int
    categories: list[str]
    delivered: str
    seconds: float
    failures: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return not self.failures


def scenario_choice(spec) -> SessionChoice:
    return SessionChoice(
        policy=spec.policy,
        assistant=spec.agents.assistant,
        reviewer=spec.agents.reviewer,
        assistant_model=spec.models.assistant,
        reviewer_model=spec.models.reviewer,
        max_revisions=spec.max_revisions,
    )


def models_used(loaded: LoadedScenario, project: Project) -> set[str]:
    """The model names a scenario's conversation will call."""
    return resolve(project, scenario_choice(loaded.spec)).models


def check_turn(expect: TurnExpectation | None, finished: TurnResult) -> list[str]:
    if expect is None:
        return []
    failures = []
    if expect.outcome and finished.outcome != expect.outcome:
        failures.append(f"expected {expect.outcome}, got {finished.outcome}")
    if expect.revisions is not None:
        lo, hi = expect.revisions.min, expect.revisions.max
        if finished.revisions < lo or (hi is not None and finished.revisions > hi):
            want = f"{lo}" if hi == lo else f"{lo}..{'' if hi is None else hi}"
            failures.append(f"expected revisions {want}, got {finished.revisions}")
    missing = [c for c in expect.categories if c not in finished.categories]
    if missing:
        failures.append(f"expected categories not raised: {', '.join(missing)}")
    return failures


@dataclass
class ScenarioResult:
    name: str
    path: str
    policy: str
    turns: list[TurnCheck]
    usage_by_agent: dict[str, dict[str, int]]
    seconds: float
    transcript: str
    roles: dict[str, str] = field(default_factory=dict)  # agent name -> assistant / reviewer

    @property
    def met(self) -> bool:
        return all(t.met for t in self.turns)

    @property
    def revisions(self) -> int:
        return sum(t.revisions for t in self.turns)

    @property
    def outcome(self) -> str:
        kinds = {t.outcome for t in self.turns}
        if kinds <= {"approved"}:
            return "approved"
        if "error" in kinds or "cancelled" in kinds:
            return "error"
        return "withheld" if kinds == {"withheld"} else "mixed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "policy": self.policy,
            "met": self.met,
            "outcome": self.outcome,
            "revisions": self.revisions,
            "seconds": round(self.seconds, 3),
            "usage_by_agent": self.usage_by_agent,
            "transcript": self.transcript,
            "turns": [
                {
                    "turn": t.turn,
                    "user": t.user,
                    "outcome": t.outcome,
                    "revisions": t.revisions,
                    "categories": t.categories,
                    "delivered": t.delivered,
                    "seconds": t.seconds,
                    "met": t.met,
                    "failures": t.failures,
                }
                for t in self.turns
            ],
        }


async def run_scenario(
    loaded: LoadedScenario,
    project: Project,
    pool: ModelPool,
    *,
    sinks: list[Sink] | None = None,
    run_id: str | None = None,
) -> ScenarioResult:
    spec = loaded.spec
    choice = scenario_choice(spec)
    conv = Conversation(
        project,
        pool,
        choice,
        kind="scenario",
        sinks=sinks,
        run_id=run_id,
        extra_header={"scenario": {"name": spec.name, "file": str(loaded.path)}},
    )
    checks: list[TurnCheck] = []
    try:
        for i, turn in enumerate(spec.turns, start=1):
            finished = await conv.send(turn.user)
            checks.append(
                TurnCheck(
                    i,
                    turn.user,
                    finished.outcome,
                    finished.revisions,
                    finished.categories,
                    finished.text,
                    finished.seconds,
                    check_turn(turn.expect, finished),
                )
            )
    finally:
        conv.close()
    return ScenarioResult(
        name=spec.name,
        path=str(loaded.path),
        policy=conv.policy.name,
        turns=checks,
        usage_by_agent={k: v.model_dump() for k, v in conv.totals.usage_by_agent.items()},
        seconds=conv.totals.seconds,
        transcript=str(conv.transcript_path),
        roles=conv.roles,
    )
