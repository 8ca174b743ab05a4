"""Which project a command runs on (--project, run.py's checkout, the current folder, the shipped defaults),
and where the shipped defaults' writable files go."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaperone.config import discovery
from chaperone.config.discovery import find_project, user_data_dir, writable_root
from chaperone.config.project import load_project
from chaperone.errors import ConfigError
from tests.support.projects import REPO, run_cli


def copy_project(target):
    for name in ("agents", "config", "scenarios", "data"):
        shutil.copytree(REPO / name, target / name)
    return target


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of the defaults standing in for an installed wheel's chaperone/defaults/."""
    folder = copy_project(tmp_path / "site-packages" / "chaperone" / "defaults")
    monkeypatch.setattr(discovery, "shipped_defaults", lambda: folder)
    monkeypatch.setenv("CHAPERONE_HOME", str(tmp_path / "home"))
    return folder


def test_explicit_project_wins_over_a_project_in_the_current_folder(tmp_path):
    here = copy_project(tmp_path / "here")
    assert find_project(tmp_path / "elsewhere", cwd=here) == tmp_path / "elsewhere"


def test_the_current_folder_when_it_is_a_project(tmp_path, shipped):
    here = copy_project(tmp_path / "here")
    assert find_project(cwd=here) == here
    assert writable_root(here) == here


def test_the_shipped_defaults_when_the_current_folder_is_not_a_project(tmp_path, shipped):
    (tmp_path / "empty" / "agents").mkdir(parents=True)  # agents/ alone does not make a project
    assert find_project(cwd=tmp_path / "empty") == shipped


def test_a_source_tree_has_no_shipped_defaults_and_says_what_to_do(tmp_path):
    assert discovery.shipped_defaults() is None  # the defaults are copied in only when a wheel is built
    with pytest.raises(ConfigError, match="give --project DIR"):
        find_project(cwd=tmp_path)


def test_the_shipped_defaults_write_into_the_user_data_folder(tmp_path, shipped, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = load_project()
    assert project.root == shipped
    home = tmp_path / "home"
    assert project.transcripts_dir == home / "transcripts"
    assert project.writable(project.settings.log_file) == home / "logs" / "chaperone.log"
    assert project.writable("/abs/cache") == Path("/abs/cache")  # an absolute path stays as given
    assert project.resolve("data/xstest_prompts.csv") == shipped / "data" / "xstest_prompts.csv"  # reads stay


def test_an_ordinary_project_writes_into_its_own_folder(tmp_path):
    root = copy_project(tmp_path / "p")
    project = load_project(root)
    assert project.transcripts_dir == root / "transcripts"
    assert project.writable("evals") == root / "evals"


def test_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAPERONE_HOME", str(tmp_path / "c"))
    assert user_data_dir() == tmp_path / "c"
    monkeypatch.delenv("CHAPERONE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_data_dir() == tmp_path / "xdg" / "chaperone"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert user_data_dir() == tmp_path / "h" / ".local" / "share" / "chaperone"


def test_run_py_uses_its_checkout_and_the_module_the_current_folder(tmp_path):
    """run.py from a project folder still runs on the checkout; `python -m chaperone.cli` (what the
    installed `chaperone` runs) takes the current folder."""
    here = copy_project(tmp_path / "here")
    settings = here / "config" / "settings.yaml"
    settings.write_text(settings.read_text().replace("transcripts_dir: transcripts", "transcripts_dir: mine"))
    (here / "mine").mkdir()
    (here / "mine" / "marker.jsonl").write_text("not a transcript\n")

    via_run_py = run_cli("review", "list", "--json", cwd=here)
    assert via_run_py.returncode == 0, via_run_py.stderr
    assert "marker.jsonl" not in via_run_py.stdout

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    via_module = subprocess.run(
        [sys.executable, "-m", "chaperone.cli", "review", "list", "--json"],
        capture_output=True,
        text=True,
        cwd=here,
        env=env,
        timeout=120,
    )
    assert via_module.returncode == 0, via_module.stderr
    assert json.loads(via_module.stdout)["unreadable"][0]["path"] == str(here / "mine" / "marker.jsonl")
