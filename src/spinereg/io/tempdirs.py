"""Temporary work folders that an interruption cannot leave behind.

``tempfile.TemporaryDirectory`` has a window between ``mkdtemp``'s ``mkdir`` and the registration
of its clean-up: SIGTERM (handled as an exception by the ``spinereg`` command) landing there loses
the folder's name, and the command's fast exit (``os._exit``) skips ``weakref`` finalizers too.
Here the folder is made and recorded with SIGTERM / SIGINT held back, so from the moment it
exists it is either removed by its own ``with`` or, on the way out of an interrupted command, by
:func:`remove_leftovers` (which removes only the folders this process made and still holds).
"""

from __future__ import annotations

import atexit
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LIVE: set[Path] = set()
_HELD = {signal.SIGTERM, signal.SIGINT}


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGTERM / SIGINT delivered after the block (POSIX); a plain block elsewhere."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def make_temp_dir(prefix: str) -> Path:
    """A new folder ``<tmp>/<prefix>XXXXXXXX`` (``tempfile.mkdtemp``), recorded until
    :func:`remove_temp_dir` removes it."""
    with _signals_held():
        path = Path(tempfile.mkdtemp(prefix=prefix))
        _LIVE.add(path)
    return path


def remove_temp_dir(path: Path) -> None:
    """Remove a folder made by :func:`make_temp_dir` and forget it."""
    shutil.rmtree(path, ignore_errors=True)
    _LIVE.discard(path)


@contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    """``with temporary_directory("spinereg-x-") as tmp:`` a folder removed on leaving the block."""
    path = make_temp_dir(prefix)
    try:
        yield path
    finally:
        remove_temp_dir(path)


def remove_leftovers() -> list[Path]:
    """Remove every folder :func:`make_temp_dir` made in this process and nothing removed yet
    (an interruption between its creation and its ``with``); return them."""
    left = sorted(_LIVE)
    for path in left:
        remove_temp_dir(path)
    return left


atexit.register(remove_leftovers)
