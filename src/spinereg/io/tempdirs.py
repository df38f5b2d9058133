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

Blocking a signal (``pthread_sigmask``) holds it back for the calling thread only: with other
threads alive (a pool's idle workers, batch units) the kernel hands it to one of them, and Python
runs the handler in the main thread, wherever it is -- inside a hold of the main thread, or while a
worker thread is between its renames (the main thread then unwound, :func:`remove_leftovers`
removed the ``.old`` folder holding the previous output and ``os._exit`` killed the worker before
its second rename). So holds are also counted, for every thread, and a handler that asks
:func:`deferred_while_held` (the ``spinereg`` command's SIGTERM handler, and its SIGINT one through
:func:`hold_aware`) records the signal and returns while any hold is open; the last hold to end
sends it again to the main thread, whose handler then runs. :func:`remove_leftovers` waits for
the holds of other threads to end (bounded) before removing anything.

A forked child forgets its parent's folders (they are the parent's to remove).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_LIVE: set[Path] = set()
_LOCK = threading.Lock()  # batch units may make folders from several threads
_HELD = {signal.SIGTERM, signal.SIGINT}
# open holds by thread, and the signals deferred meanwhile; reentrant: the handler (main thread)
# may run while the main thread itself is inside a ``with _HOLDS_COND``
_HOLDS_COND = threading.Condition(threading.RLock())
_HOLDS: dict[int, int] = {}
_DEFERRED: list[int] = []
#: how long :func:`remove_leftovers` waits for another thread's hold (a few renames) to end
HOLD_WAIT_S = 30.0


def deferred_while_held(signum: int) -> bool:
    """For a signal handler: True when some thread is inside :func:`signals_held` -- the signal is
    then recorded and sent again to the main thread when the last hold ends, and the handler
    should return without acting. False otherwise (act now)."""
    with _HOLDS_COND:
        if not _HOLDS:
            return False
        if signum not in _DEFERRED:
            _DEFERRED.append(signum)
        return True


def hold_aware(handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
    """``handler`` (a Python signal handler) deferred while a hold is open (see
    :func:`deferred_while_held`)."""
    def run(signum: int, frame: Any) -> Any:
        if deferred_while_held(signum):
            return None
        return handler(signum, frame)
    return run


def _resend(signals: list[int]) -> None:
    main = threading.main_thread().ident
    for signum in signals:
        try:
            signal.pthread_kill(main, signum)  # to the main thread: it interrupts a wait there
        except (OSError, ValueError, TypeError):  # pragma: no cover - the main thread is gone
            os.kill(os.getpid(), signum)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGTERM / SIGINT delivered after the block (POSIX); a plain block elsewhere. Holds them
    back for the calling thread, and defers a handler that asks :func:`deferred_while_held`
    whichever thread the kernel gave the signal to: keep the block to a few system calls."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    me = threading.get_ident()
    with _HOLDS_COND:
        _HOLDS[me] = _HOLDS.get(me, 0) + 1
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        with _HOLDS_COND:
            left = _HOLDS.get(me, 1) - 1
            if left:
                _HOLDS[me] = left
            else:
                del _HOLDS[me]
            resend = [] if _HOLDS else _DEFERRED[:]
            if not _HOLDS:
                _DEFERRED.clear()
                _HOLDS_COND.notify_all()
        _resend(resend)


def _wait_for_other_holds(timeout: float) -> None:
    me = threading.get_ident()
    with _HOLDS_COND:
        _HOLDS_COND.wait_for(lambda: not (_HOLDS.keys() - {me}), timeout)


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
    released yet (an interruption between its creation and its ``with``); return them. A hold of
    another thread (a swap under way, its ``.old`` folder holding the previous output) is waited
    for first, :data:`HOLD_WAIT_S` at most."""
    _wait_for_other_holds(HOLD_WAIT_S)
    with _LOCK:
        left = sorted(_LIVE)
    for path in left:
        remove_temp_dir(path)
    return left


def _forget_after_fork() -> None:
    global _LOCK, _HOLDS_COND
    _LOCK = threading.Lock()
    _LIVE.clear()
    _HOLDS_COND = threading.Condition(threading.RLock())
    mine = _HOLDS.get(threading.get_ident())
    _HOLDS.clear()  # the other threads' holds: gone with them (the child has only the forking one)
    if mine:
        _HOLDS[threading.get_ident()] = mine
    _DEFERRED.clear()


atexit.register(remove_leftovers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
