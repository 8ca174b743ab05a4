"""The root command: `python run.py` (or `chaperone`) and its sub-commands.

It only registers the front doors' commands; nothing imports this module. Exit codes: 0 done (every
expectation held), 1 an expectation or check failed, 2 bad input. Which project a command runs on:
chaperone/config/discovery.py (run.py passes its checkout as the default).
"""

from __future__ import annotations

from pathlib import Path

import click

from chaperone.config.discovery import user_data_dir
from chaperone.eval.cli import eval_group
from chaperone.review.cli import review
from chaperone.reviewer_head.cli import reviewer
from chaperone.serve.cli import serve
from chaperone.terminal.cli import chat, scenario

PROJECT_HELP = (
    "Project folder holding agents/ and config/. Default: with `python run.py`, its checkout; with the "
    "`chaperone` command, the current folder if it holds config/models.yaml and agents/, else the defaults "
    f"shipped with the package, whose transcripts, logs and eval results then go to {user_data_dir()} "
    "(set $CHAPERONE_HOME to change it)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=PROJECT_HELP,
)
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging on stderr.")
@click.pass_context
def main(ctx: click.Context, project_root: Path | None, verbose: bool) -> None:
    """Chaperone: an unaligned model behind an adversarial moral reviewer."""
    ctx.ensure_object(dict)
    # None: load_project() discovers it (the current folder, else the shipped defaults).
    ctx.obj.update(project_root=project_root or ctx.obj.get("checkout"), verbose=verbose)


main.add_command(scenario)  # python run.py scenario ...: chaperone/terminal/cli.py
main.add_command(chat)  # python run.py chat: chaperone/terminal/cli.py
main.add_command(review)  # python run.py review ...: chaperone/review/cli.py
main.add_command(eval_group, name="eval")  # python run.py eval ...: chaperone/eval/cli.py
main.add_command(serve)  # python run.py serve: chaperone/serve/cli.py
main.add_command(reviewer)  # python run.py reviewer extract|train: chaperone/reviewer_head/cli.py

if __name__ == "__main__":
    main()
