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
