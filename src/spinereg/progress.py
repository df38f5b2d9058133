"""Progress reporting: a bar on a terminal, silent in logs and CI."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable


def progress_bar(label: str, stream=None) -> Callable[[int, int], None] | None:
    """A ``callback(done, total)`` drawing a bar on a TTY; ``None`` when not interactive or in CI."""
    stream = stream or sys.stderr
    if os.environ.get("CI") or not getattr(stream, "isatty", lambda: False)():
        return None
    start = time.monotonic()

    def update(done: int, total: int) -> None:
        frac = done / max(total, 1)
        bar = "#" * int(30 * frac)
        stream.write(f"\r{label} [{bar:<30}] {done}/{total} {time.monotonic() - start:5.1f}s")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return update
