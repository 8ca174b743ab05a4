"""What every command does before its own work: load the project, set up logging, check the models.

Shared by the sub-commands (terminal, review, eval, serve), which import it and never each other, and
never the root CLI. Errors become one red line and exit 2 (bad input), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console

from chaperone.audit import logging_setup
from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.config.project import Project, load_project
from chaperone.errors import EXIT_BAD_INPUT

if TYPE_CHECKING:
    from chaperone.models.pool import ModelPool


def fail(message: str) -> NoReturn:
    """One line on stderr (secrets redacted), exit 2."""
    Console(stderr=True, highlight=False).print(
        f"[bold red]error:[/] {GLOBAL_REDACTOR.text(message)}", markup=True, soft_wrap=True
    )
    sys.exit(EXIT_BAD_INPUT)


def open_project(ctx: click.Context, *, terminal_level: str | None = None) -> Project:
    """The project named by the root group's --project, with logging configured from its settings."""
    project = load_project(ctx.obj["project_root"])
    log_file = project.writable(project.settings.log_file) if project.settings.log_file else None
    extra = {"terminal_level": terminal_level} if terminal_level else {}
    logging_setup.configure(log_file, verbose=ctx.obj["verbose"], **extra)
    return project


def model_pool(project: Project) -> ModelPool:
    from chaperone.models.pool import ModelPool  # deferred: model clients are heavy to import

    cache = project.writable(project.settings.model_cache_dir) if project.settings.model_cache_dir else None
    return ModelPool(project.models, project.root / "config/models.yaml", cache)


def ready_pool(project: Project, model_names: Iterable[str], *, load: bool = False) -> ModelPool:
    """A pool whose every named model is defined and ready (key set, weights present); `load` loads them now.
    The audit signing key, when one is configured, is checked here too: before any conversation starts."""
    from chaperone.audit.signing import signer_for

    signer_for(project)
    pool = model_pool(project)
    names = sorted(set(model_names))
    for name in names:
        project.check_model(name, project.root / "config/models.yaml", "model")
        pool.check_ready(name)
    if load:
        for name in names:
            pool.get(name)
    return pool
