"""``spinereg`` entry point: discovers subcommands, reports errors as one line (exit 2)."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
import warnings

import spinereg
import spinereg.cli
from spinereg.errors import SpineregError

_SKIP = {"main", "common"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinereg",
        description="Spinal cord and spine registration (SCT/ANTs-compatible files).",
    )
    parser.add_argument("--version", action="version", version=f"spinereg {spinereg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in sorted(pkgutil.iter_modules(spinereg.cli.__path__), key=lambda m: m.name):
        if mod.name in _SKIP or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"spinereg.cli.{mod.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``spinereg`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="spinereg: %(levelname)s: %(message)s")
    if not verbose:
        warnings.simplefilter("ignore", category=DeprecationWarning)
    try:
        result = args.func(args)
    except SpineregError as err:
        if verbose:
            traceback.print_exc()
        print(f"spinereg {args.command}: error: {err.one_line()}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("spinereg: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
