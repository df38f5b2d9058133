"""Progress on a terminal: one line per stage with a bar; silent in logs and CI.

``progress_bar(label)`` gives a ``callback(done, total)`` (or ``None`` when not interactive).
:class:`StageProgress` draws one line per stage of a run (``on_stage`` plugs into
:class:`spinereg.io.provenance.RunRecord`) and a bar for the stage's inner work (``bar()``).
Output goes to stderr only when it is a terminal and ``CI`` is not set.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

_WIDTH = 24


def interactive(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stderr) is a terminal and ``CI`` is not set."""
    stream = stream or sys.stderr
    if os.environ.get("CI"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _bar(frac: float) -> str:
    n = int(round(_WIDTH * min(max(frac, 0.0), 1.0)))
    return "#" * n + "-" * (_WIDTH - n)


def progress_bar(label: str, stream: TextIO | None = None) -> Callable[[int, int], None] | None:
    """A ``callback(done, total)`` drawing a bar on a TTY; ``None`` when not interactive or in CI."""
    stream = stream or sys.stderr
    if not interactive(stream):
        return None
    start = time.monotonic()

    def update(done: int, total: int) -> None:
        stream.write(f"\r{label} [{_bar(done / max(total, 1))}] {done}/{total} {time.monotonic() - start:5.1f} s")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return update


class StageProgress:
    """One line per stage (``[2/5] registration [#####---] 3/6 1.2 s``) on a terminal.

    ``total``: number of stages expected (shown as ``[k/total]``; 0 to leave it out).
    ``enabled``: default :func:`interactive` of ``stream``.
    """

    def __init__(self, total: int = 0, stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = interactive(self.stream) if enabled is None else enabled
        self.total = total
        self.count = 0
        self.name = ""
        self._start = 0.0
        self._frac = 0.0
        self._detail = ""

    def _draw(self, end: str = "") -> None:
        if not self.enabled:
            return
        k = f"[{self.count}/{max(self.total, self.count)}] " if self.total else ""
        secs = time.monotonic() - self._start
        self.stream.write(f"\r{k}{self.name:<22} [{_bar(self._frac)}] {self._detail:>9} {secs:6.1f} s{end}")
        self.stream.flush()

    def on_stage(self, name: str, event: str, seconds: float = 0.0) -> None:
        """``RunRecord`` callback: a stage starts or ends."""
        if event == "start":
            self.count += 1
            self.name, self._frac, self._detail = name, 0.0, ""
            self._start = time.monotonic()
            self._draw()
        else:
            self._frac, self._detail = 1.0, "done"
            self._draw("\n")

    def bar(self) -> Callable[[int, int], None] | None:
        """``callback(done, total)`` for the current stage's inner work (``None`` when silent)."""
        if not self.enabled:
            return None

        def update(done: int, total: int) -> None:
            self._frac = done / max(total, 1)
            self._detail = f"{done}/{total}"
            self._draw()

        return update
