"""Which project folder a command runs on, and where its writable files go.

The rule, in order (`chaperone --help` states it too):
1. `--project DIR`, when given;
2. `python run.py` in a checkout: the checkout (run.py passes its own folder);
3. the current folder, when it is a project (has config/models.yaml and agents/);
4. the defaults shipped inside the installed package (chaperone/defaults/: agents, config, scenarios, data).

The shipped defaults sit in a read-only place (site-packages), so a project whose folder is theirs keeps
its writable files (relative transcripts_dir, log_file, model_cache_dir, the eval's out_dir) in the user's
data folder instead: $CHAPERONE_HOME, else $XDG_DATA_HOME/chaperone, else ~/.local/share/chaperone.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from chaperone.errors import ConfigError

RULE = (
    "--project DIR if given; else (python run.py) the checkout; else the current folder if it holds "
    "config/models.yaml and agents/; else the defaults shipped with the package"
)


def is_project(folder: Path) -> bool:
    return (folder / "config" / "models.yaml").is_file() and (folder / "agents").is_dir()


def shipped_defaults() -> Path | None:
    """chaperone/defaults/ of an installed wheel; None in a source tree or an editable install (no copy there)."""
    folder = Path(str(resources.files("chaperone") / "defaults"))
    return folder if is_project(folder) else None


def user_data_dir() -> Path:
    if home := os.environ.get("CHAPERONE_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "chaperone"


def find_project(explicit: Path | None = None, *, cwd: Path | None = None) -> Path:
    """The project folder by the rule above (`explicit` is --project, or run.py's checkout)."""
    if explicit is not None:
        return Path(explicit)
    here = Path.cwd() if cwd is None else cwd
    if is_project(here):
        return here
    defaults = shipped_defaults()
    if defaults is not None:
        return defaults
    raise ConfigError(
        here,
        "not a project folder (no config/models.yaml and agents/), and this chaperone has no shipped "
        "defaults: give --project DIR or run it from a project folder",
    )


def writable_root(root: Path) -> Path:
    """Where the project's relative writable paths resolve: the project folder, or for the shipped
    defaults the user's data folder."""
    defaults = shipped_defaults()
    if defaults is not None and root.resolve() == defaults.resolve():
        return user_data_dir()
    return root
