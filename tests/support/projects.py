"""A throwaway copy of the project whose models are scripted (replay) ones, and running the CLI on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def make_project(
    tmp_path: Path,
    models: dict,
    *,
    assistant_model: str = "assistant-script",
    reviewer_model: str = "reviewer-script",
    settings: dict | None = None,
) -> Path:
    """Copy agents/ and config/ from the repo, point the agents at the given models (plus the shipped scripted ones)."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "agents", root / "agents")
    shutil.copytree(REPO / "config", root / "config")
    # The shipped scripted stand-ins stay: they need no weights, and config/serve.yaml serves them.
    shipped = yaml.safe_load((REPO / "config" / "models.yaml").read_text())["models"]
    scripted = {name: spec for name, spec in shipped.items() if spec.get("kind") == "scripted" and name not in models}
    (root / "config" / "models.yaml").write_text(
        yaml.safe_dump({"default": next(iter(models)), "models": {**models, **scripted}})
    )
    for name, model in (("unaligned_assistant", assistant_model), ("moral_reviewer", reviewer_model)):
        path = root / "agents" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        data["model"] = model
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    base = yaml.safe_load((root / "config" / "settings.yaml").read_text())
    base.update({"transcripts_dir": str(tmp_path / "transcripts"), "log_file": str(tmp_path / "logs" / "app.log")})
    base.update(settings or {})
    (root / "config" / "settings.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    (root / "scenarios").mkdir()
    return root


def replay(*replies: str) -> dict:
    return {"kind": "replay", "replies": list(replies)}


APPROVE = '{"decision": "approve", "categories": [], "critique": ""}'


def revise(critique: str = "Fix it.", *categories: str) -> str:
    return json.dumps({"decision": "revise", "categories": list(categories) or ["harassment"], "critique": critique})


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout
    )
