"""Errors that the command line reports as one line with exit code 2, and the exit codes.

Exit codes of ``spinereg``: 0 success; 2 the command could not run (bad input or arguments, an
output that cannot be written, any other error: one line on stderr, nothing written); 3 the
command ran and wrote its outputs but the result failed its checks (QC verdict ``fail``, or an
all-zero output): one summary line on stderr (``--allow-fail`` exits 0 instead); 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_RESULT_FAILED = 3
EXIT_INTERRUPTED = 130
#: the process was sent SIGTERM (128 + 15, the shell's convention)
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster scheduler's time limit, ``kill``) raised in the main thread: handled as an
    interruption, so every ``with`` and ``finally`` runs (temporary folders removed, an output
    folder's staging copy dropped) instead of the process dying where it stood."""


_TERMINATE = {"requested": False}


def request_termination() -> None:
    """Record that SIGTERM arrived and raise :class:`Terminated`. The record stays: Python runs a
    signal handler wherever the main thread is, and an exception raised inside a ``__del__`` or a
    weakref callback is printed and dropped there ("Exception ignored in ..."), so the command
    would finish as if never signalled; :func:`check_terminated` raises again at the next stage."""
    _TERMINATE["requested"] = True
    raise Terminated()


def note_termination() -> None:
    """Record that SIGTERM arrived without raising (where an exception would be printed with its
    traceback and dropped: inside a ``__del__``); :func:`check_terminated` raises at the next stage."""
    _TERMINATE["requested"] = True


def check_terminated() -> None:
    """Raise :class:`Terminated` when SIGTERM arrived earlier (see :func:`request_termination`)."""
    if _TERMINATE["requested"]:
        raise Terminated()


class SpineregError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    ``message`` says what is wrong, ``path`` names the file concerned (if any) and ``fix`` says
    what to do about it. ``str(err)`` gives the one-line form shown by the CLI.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}: ")
        parts.append(self.message)
        if self.fix:
            parts.append(f" -- fix: {self.fix}")
        return "".join(parts).replace("\n", " ")


class InputError(SpineregError):
    """Bad input file or argument."""


class OutputError(SpineregError):
    """An output cannot be written (exists without --overwrite, unwritable folder...)."""


class DataNotFoundError(SpineregError):
    """Reference data (template, sample subject) is not available locally."""
