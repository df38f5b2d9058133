"""Errors that the command line reports as one line with exit code 2."""

from __future__ import annotations

from pathlib import Path


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
