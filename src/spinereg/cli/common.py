"""Options shared by subcommands."""

from __future__ import annotations

import argparse


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log details; show tracebacks on errors")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def new_parser(sub, name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description or help_)
    add_common(p)
    return p
