"""Temporary work folders that an interruption cannot leave behind.

``tempfile.TemporaryDirectory`` has a window between ``mkdtemp``'s ``mkdir`` and the registration
of its clean-up: SIGTERM (handled as an exception by the ``spinereg`` command) landing there loses
the folder's name, and the command's fast exit (``os._exit``) skips ``weakref`` finalizers too.
Here the folder is made and recorded with SIGTERM / SIGINT held back, so from the moment it
exists it is either removed by its own ``with`` or, on the way out of an interrupted command, by
:func:`remove_leftovers` (which removes only the folders this process made and still holds).

A folder that becomes an output by a rename (a ``.part`` staging folder renamed to its final
name) is handed over with :func:`release_temp_dir`: forgotten, never removed. (Its recorded name
no longer exists after the rename, so removing it would be a no-op anyway; releasing it says so
and keeps the record short.) :func:`signals_held` lets a caller make a pair of renames (move the
previous output aside, move the new one in) that SIGTERM cannot split.

A forked child forgets its parent's folders (they are the parent's to remove).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LIVE: set[Path] = set()
_LOCK = threading.Lock()  # batch units may make folders from several threads
_HELD = {signal.SIGTERM, signal.SIGINT}


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGTERM / SIGINT delivered after the block (POSIX); a plain block elsewhere. Holds them
    back for the calling thread: keep the block to a few system calls."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)



def _key(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))


def make_temp_dir(prefix: str | None = None, suffix: str | None = None,
                  dir: str | os.PathLike | None = None) -> Path:  # noqa: A002 - tempfile's name
    """A new folder ``<dir>/<prefix>XXXXXXXX<suffix>`` (``tempfile.mkdtemp``'s arguments and
    defaults: ``dir`` None is the system's temporary folder), recorded until
    :func:`remove_temp_dir` removes it or :func:`release_temp_dir` hands it over."""
    with signals_held():
        path = Path(tempfile.mkdtemp(suffix=suffix, prefix=prefix, dir=dir))
        with _LOCK:
            _LIVE.add(_key(path))
    return path


def remove_temp_dir(path: str | os.PathLike) -> None:
    """Remove a folder made by :func:`make_temp_dir` and forget it."""
    shutil.rmtree(path, ignore_errors=True)
    release_temp_dir(path)


def release_temp_dir(path: str | os.PathLike) -> None:
    """Forget a folder made by :func:`make_temp_dir` without removing it (it was renamed into
    place as an output, or holds what must be kept); :func:`remove_leftovers` leaves it alone."""
    with _LOCK:
        _LIVE.discard(_key(path))


@contextmanager
def temporary_directory(prefix: str | None = None, suffix: str | None = None,
                        dir: str | os.PathLike | None = None) -> Iterator[Path]:  # noqa: A002
    """``with temporary_directory("spinereg-x-") as tmp:`` a folder removed on leaving the block
    (``suffix`` / ``dir`` as for :func:`make_temp_dir`)."""
    path = make_temp_dir(prefix, suffix, dir)
    try:
        yield path
    finally:
        remove_temp_dir(path)


def remove_leftovers() -> list[Path]:
    """Remove every folder :func:`make_temp_dir` made in this process and nothing removed or
    released yet (an interruption between its creation and its ``with``); return them."""
    with _LOCK:
        left = sorted(_LIVE)
    for path in left:
        remove_temp_dir(path)
    return left


def _forget_after_fork() -> None:
    global _LOCK
    _LOCK = threading.Lock()
    _LIVE.clear()


atexit.register(remove_leftovers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
