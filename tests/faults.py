"""Fault injection for output writing: count the files a run opens for writing under a folder,
and make the N-th such open fail as a full disk would (``OSError(ENOSPC)``).

Every way spinereg writes a file goes through ``builtins.open`` or ``io.open`` at call time
(gzip for ``.nii.gz``, ``Path.write_text``, matplotlib's ``savefig``, Pillow's ``save``), so
patching both catches NIfTI images, warps, JSON, CSV, PNG and GIF alike.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
from pathlib import Path

_WRITE_MODES = set("wax+")


class WriteFaults:
    """Context manager: ``opened`` lists the files opened for writing under ``root``; with
    ``fail_at=N`` the N-th of them raises ``OSError(ENOSPC)`` instead of opening."""

    def __init__(self, root: Path, fail_at: int | None = None):
        self.root = str(Path(root).resolve())
        self.fail_at = fail_at
        self.opened: list[str] = []
        self._saved = None

    def _wrap(self, real):
        def opener(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and _WRITE_MODES & set(str(mode)):
                path = os.path.abspath(os.fsdecode(file))
                if path.startswith(self.root + os.sep):
                    self.opened.append(path)
                    if self.fail_at is not None and len(self.opened) == self.fail_at:
                        raise OSError(errno.ENOSPC, "No space left on device (injected)", path)
            return real(file, mode, *args, **kwargs)

        return opener

    def __enter__(self) -> WriteFaults:
        self._saved = (builtins.open, io.open)
        wrapped = self._wrap(builtins.open)
        builtins.open = wrapped
        io.open = wrapped
        return self

    def __exit__(self, *exc) -> None:
        builtins.open, io.open = self._saved


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (hidden ones included) with a hash of its bytes."""
    folder = Path(folder)
    out: dict[str, str] = {}
    if not folder.exists():
        return out
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder) + "/"] = "dir"
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha1(fh.read()).hexdigest()
    return out
