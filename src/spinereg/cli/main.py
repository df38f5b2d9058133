"""``spinereg`` entry point: discovers subcommands, reports every failure as one line (exit 2).

Exit codes: see :mod:`spinereg.errors` (0 success, 2 could not run, 3 result failed its checks,
130 interrupted). Tracebacks only with ``-v``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
import traceback
import warnings
from typing import TYPE_CHECKING, Any, TextIO

import spinereg.cli
from spinereg.cli.common import Parser, add_common
from spinereg.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    SpineregError,
    Terminated,
    note_termination,
    request_termination,
)
from spinereg.io.tempdirs import deferred_while_held, hold_aware, remove_leftovers

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

_SKIP = {"main", "common"}


class _VersionAction(argparse.Action):
    """``--version``: the version string (with the git commit) is found only when asked for, so
    that building the parser runs no ``git`` and imports no library module."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: object = argparse.SUPPRESS,
                 help: str | None = "show program's version number and exit"):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        from spinereg.io.provenance import version_string

        parser._print_message(version_string() + "\n", sys.stdout)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="spinereg",
        description="Spinal cord and spine registration (SCT/ANTs-compatible files).",
        epilog="Every command: -v for details and tracebacks, --overwrite to replace outputs. "
               "Exit codes: 0 success; 2 the command could not run (one line on stderr, nothing "
               "written); 3 outputs written but the result failed its checks (QC verdict fail, "
               "empty output; --allow-fail exits 0); 130 interrupted; 143 terminated (SIGTERM).",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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


def _register_unavailable(sub: argparse._SubParsersAction, module_name: str,
                          exc: Exception) -> None:
    name = module_name.replace("_", "-")
    reason = f"{type(exc).__name__}: {exc}"
    p = sub.add_parser(name, help=f"(unavailable: {reason})", add_help=False)
    add_common(p)

    def run(args: argparse.Namespace) -> int:
        if getattr(args, "verbose", False):
            traceback.print_exception(exc)
        raise SpineregError(f"command unavailable ({reason})", None,
                            "run with -v for details; reinstall spinereg with its dependencies")

    p.set_defaults(func=run, unavailable=True)  # its other arguments are accepted and ignored


def _warning_printer():
    """``showwarning`` replacement: each distinct warning once, as one line, no source line."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        text = str(message).replace("\n", " ")
        if text not in seen:
            seen.add(text)
            print(f"spinereg: warning: {text}", file=file or sys.stderr)

    return show


def _error_line(command: str, err: BaseException) -> str:
    """The one line shown for a failure that is not a :class:`SpineregError`."""
    if isinstance(err, OSError):
        from spinereg.io.image import output_os_error

        conv = output_os_error(err, getattr(err, "filename", None) or "")
        if isinstance(conv, SpineregError):
            return conv.one_line()
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        return f"{where}{err.strerror or err} -- fix: check the file and the disk, then run again"
    text = " ".join(str(err).split()) or "no message"
    return (f"internal error ({type(err).__name__}: {text}) -- fix: run again with -v and report the "
            "traceback")


def main(argv: list[str] | None = None) -> int:
    """Run ``spinereg`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "unavailable", False):
            sub = parser._subparsers._group_actions[0].choices.get(args.command, parser)
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help / --version (0) or a usage error (one line printed, 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    args._argv = argv
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
    except KeyboardInterrupt as err:
        if isinstance(err, Terminated):
            print("spinereg: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        print("spinereg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - every failure is one line (traceback with -v)
        if verbose:
            traceback.print_exc()
        print(f"spinereg {args.command}: error: {_error_line(args.command, err)}", file=sys.stderr)
        return EXIT_ERROR
    return int(result or 0)


def _in_finaliser(frame: object) -> bool:
    """Whether the signalled frame runs inside an object's ``__del__`` (its own or a caller's)."""
    f = frame
    while f is not None:
        if getattr(getattr(f, "f_code", None), "co_name", "") == "__del__":
            return True
        f = getattr(f, "f_back", None)
    return False


def _terminate(signum: int, frame: object) -> None:
    if deferred_while_held(signum):  # a swap of renames under way in some thread: sent again after it
        return
    if _in_finaliser(frame):
        # an exception raised here would be printed with a traceback ("Exception ignored in ...
        # __del__", seen in CI: nibabel's OrderedSet) and dropped: recorded, raised at the next stage
        note_termination()
        return
    request_termination()  # raises Terminated (spinereg.errors), and again at the next stage if dropped


def console_main() -> None:  # pragma: no cover - ends the process
    """The ``spinereg`` command (and ``python -m spinereg.cli.main``): :func:`main`, then the process
    ends at once, stdout, stderr and logging flushed. Every output is written and closed before
    :func:`main` returns (background writes are waited for), so nothing is lost; what is skipped
    is the interpreter's teardown (collecting every module's objects and large arrays: 0.2-0.3 s
    of a 2-4 s command)."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, hold_aware(signal.default_int_handler))
    code = main()
    try:
        remove_leftovers()  # work folders an interruption caught before their ``with`` (atexit is skipped)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
        pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
