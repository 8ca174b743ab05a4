#!/usr/bin/env python3
"""Chaperone's entry point: `python run.py --help`."""

from chaperone.cli import main

if __name__ == "__main__":
    main()
