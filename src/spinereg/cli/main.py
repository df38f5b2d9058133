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
from spinereg.cli.common import add_common
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
        try:
            module = importlib.import_module(f"spinereg.cli.{mod.name}")
        except Exception as exc:  # one broken subcommand (e.g. a missing optional dependency)
            _register_unavailable(sub, mod.name, exc)  # must not break all the others
            continue
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def _register_unavailable(sub, module_name: str, exc: Exception) -> None:
    name = module_name.replace("_", "-")
    reason = f"{type(exc).__name__}: {exc}"
    p = sub.add_parser(name, help=f"(unavailable: {reason})", add_help=False)
    add_common(p)

    def run(args) -> int:
        if getattr(args, "verbose", False):
            traceback.print_exception(exc)
        raise SpineregError(f"command unavailable ({reason})", None,
                            "run with -v for details; reinstall spinereg with its dependencies")

    p.set_defaults(func=run, unavailable=True)  # its other arguments are accepted and ignored


def _warning_printer():
    """``showwarning`` replacement: each distinct warning once, as one line, no source line."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).replace("\n", " ")
        if text not in seen:
            seen.add(text)
            print(f"spinereg: warning: {text}", file=file or sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    """Run ``spinereg`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "unavailable", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="spinereg: %(levelname)s: %(message)s")
    if not verbose:
        warnings.simplefilter("ignore", category=DeprecationWarning)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer()
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
