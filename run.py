#!/usr/bin/env python3
"""Chaperone's entry point: `python run.py --help`. The same commands as the installed `chaperone`, with
this checkout as the default project (from whatever folder it is started)."""

import sys
from pathlib import Path

try:
    from chaperone.cli import main
except ModuleNotFoundError as exc:  # run with a Python that lacks the project's dependencies
    sys.stderr.write(
        f"error: {exc.name} is not installed for {sys.executable}.\n"
        "Set up with `make setup` (or `bash scripts/setup.sh`), then run `.venv/bin/python run.py ...`.\n"
    )
    sys.exit(2)

if __name__ == "__main__":
    main(obj={"checkout": Path(__file__).resolve().parent})
