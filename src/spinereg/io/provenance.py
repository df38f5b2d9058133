"""Provenance of a command run, written as ``provenance.json`` into every output folder.

A :class:`RunRecord` follows one run: the command line, UTC start and end times, the sha256 of
every input file, the code version (package version, and the git commit when spinereg is
imported from a checkout) and one timed record per stage. Stages run one after the other, so
their seconds plus ``other`` (what ran between stages) add up to ``wall_seconds``.

:func:`write_json` writes JSON atomically (numpy values converted); :func:`versions` lists the
versions of the libraries that shape the numbers.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

# numpy, nibabel and scipy are imported where they are used: the command line imports this
# module to build its parsers (``--version``) and must start without them.


def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds and a ``Z``."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- JSON -----------------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def write_json(path: str | Path, obj: Mapping, overwrite: bool = False) -> Path:
    """Write ``obj`` as indented JSON, atomically (numpy values converted)."""
    from spinereg.io.image import atomic_write

    text = json.dumps(obj, indent=2, default=_plain) + "\n"
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text), overwrite)


# -- code version ---------------------------------------------------------------------------------
def _checkout_root() -> Path | None:
    """The git checkout spinereg is imported from (an editable install), else None."""
    import spinereg

    here = Path(spinereg.__file__).resolve().parent
    for parent in list(here.parents)[:3]:
        if (parent / ".git").exists() and (parent / "pyproject.toml").is_file():
            return parent
    return None


def _read_git_head(root: Path) -> str | None:
    """Commit of HEAD read from the .git folder (no git executable needed)."""
    git = root / ".git"
    if git.is_file():  # worktree: "gitdir: PATH"
        text = git.read_text().strip()
        if not text.startswith("gitdir:"):
            return None
        git = (root / text.split(":", 1)[1].strip()).resolve()
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    common = git
    if (git / "commondir").is_file():
        common = (git / (git / "commondir").read_text().strip()).resolve()
    for base in (git, common):
        p = base / ref
        if p.is_file():
            return p.read_text().strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None


@cache
def code_version() -> dict[str, Any]:
    """``{"spinereg": version, "git_commit": sha or None, "git_dirty": bool or None}``.

    The commit is given when the package is imported from a git checkout; ``git_dirty`` tells
    whether tracked files differ from it (None when git itself is not available).
    """
    import spinereg

    out: dict[str, Any] = {"spinereg": spinereg.__version__, "git_commit": None, "git_dirty": None}
    root = _checkout_root()
    if root is None:
        return out
    out["git_commit"] = _read_git_head(root)
    try:
        res = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, timeout=5)
        if res.returncode == 0:
            out["git_dirty"] = bool(res.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def version_string() -> str:
    """``spinereg 0.1.0 (git 1a2b3c4d, modified)`` for ``--version`` and reports."""
    v = code_version()
    text = f"spinereg {v['spinereg']}"
    if v["git_commit"]:
        text += f" (git {v['git_commit'][:10]}{', modified' if v['git_dirty'] else ''})"
    return text


def versions() -> dict[str, Any]:
    """Versions of spinereg (and its git commit) and of the libraries that shape its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    import nibabel
    import numpy as np
    import scipy

    try:
        ants_version = version("antspyx")
    except PackageNotFoundError:  # pragma: no cover
        ants_version = "absent"
    code = code_version()
    return {"spinereg": code["spinereg"], "git_commit": code["git_commit"], "git_dirty": code["git_dirty"],
            "python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__,
            "nibabel": nibabel.__version__, "antspyx": ants_version, "platform": platform.platform()}


# -- input checksums ------------------------------------------------------------------------------
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes (cached per path, size and modification time)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def _file_record(value: Any) -> dict[str, Any] | None:
    if isinstance(value, (str, Path)) and str(value) and Path(value).is_file():
        p = Path(value).resolve()
        return {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return None


def describe_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: {"path", "bytes", "sha256"}}`` for every input that is a file (lists: one record
    per file); other values (template names, parameters) are left out."""
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, (list, tuple)):
            recs = [_file_record(v) for v in value]
            if any(recs):
                out[key] = recs
        else:
            rec = _file_record(value)
            if rec:
                out[key] = rec
    return out


# -- the run --------------------------------------------------------------------------------------
class RunRecord:
    """What one run did, stage by stage (see module doc).

    ``argv``: the command line after ``spinereg`` (None when called from Python).
    ``on_stage``: ``callback(name, event, seconds)`` with event ``"start"`` or ``"end"`` (the
    CLI's progress display). Use :meth:`stage` around each part of the work, :meth:`add_parts`
    for timings a library call measured inside a stage, then :meth:`as_dict`.
    """

    def __init__(self, command: str, argv: list[str] | None = None,
                 on_stage: Callable[[str, str, float], None] | None = None):
        self.command = command
        self.argv = None if argv is None else [str(a) for a in argv]
        self.on_stage = on_stage
        self.started_utc = utc_now()
        self._t0 = time.perf_counter()
        self.stages: list[dict[str, Any]] = []
        self.finished_utc: str | None = None
        self._t1: float | None = None

    @property
    def command_line(self) -> str | None:
        if self.argv is None:
            return None
        return shlex.join(["spinereg", *self.argv])

    def elapsed(self) -> float:
        return (self._t1 if self._t1 is not None else time.perf_counter()) - self._t0

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time the enclosed work as stage ``name`` (the record is yielded for extra fields)."""
        from spinereg.errors import check_terminated

        check_terminated()  # a SIGTERM whose exception was dropped (errors.request_termination)
        rec: dict[str, Any] = {"name": name, "started_utc": utc_now()}
        if self.on_stage:
            self.on_stage(name, "start", 0.0)
        t = time.perf_counter()
        try:
            yield rec
        finally:
            rec["seconds"] = round(time.perf_counter() - t, 3)
            self.stages.append(rec)
            if self.on_stage:
                self.on_stage(name, "end", rec["seconds"])
        check_terminated()

    def add_parts(self, stage: str, parts: Mapping[str, float]) -> None:
        """Attach timings measured inside stage ``stage`` (e.g. a registration's own timings)."""
        for rec in reversed(self.stages):
            if rec["name"] == stage:
                rec["parts"] = {k: round(float(v), 3) for k, v in parts.items()}
                return
        raise KeyError(stage)

    def finish(self) -> None:
        """Stop the clock (optional: :meth:`as_dict` otherwise reports the time so far)."""
        if self._t1 is None:
            self._t1 = time.perf_counter()
            self.finished_utc = utc_now()

    def timings(self) -> dict[str, float]:
        """Seconds per stage plus ``other``; they add up to the wall time. A stage with parts
        (:meth:`add_parts`) is listed by its parts, plus ``"<stage>: other"`` for the rest."""
        wall = round(self.elapsed(), 3)
        out: dict[str, float] = {}

        def add(key: str, secs: float) -> None:
            out[key] = round(out.get(key, 0.0) + secs, 3)

        for rec in self.stages:
            parts = rec.get("parts") or {}
            for k, v in parts.items():
                add(k, v)
            rest = rec["seconds"] - sum(parts.values())
            if not parts:
                add(rec["name"], rec["seconds"])
            elif rest > 0.0005:
                add(f"{rec['name']}: other", rest)
        out["other"] = round(max(wall - sum(out.values()), 0.0), 3)
        return out

    def as_dict(self, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The run's record so far: command line, times, stages, input checksums, versions.

        Written last, it covers the whole run: ``finished_utc`` is now unless :meth:`finish` was
        called, and ``timings_s`` (stages plus ``other``) adds up to ``wall_seconds``."""
        return {
            "command": self.command,
            "command_line": self.command_line,
            "cwd": os.getcwd(),
            "started_utc": self.started_utc,
            "finished_utc": self.finished_utc or utc_now(),
            "wall_seconds": round(self.elapsed(), 3),
            "timings_s": self.timings(),
            "stages": list(self.stages),
            "input_files": describe_inputs(inputs or {}),
            "versions": versions(),
        }
