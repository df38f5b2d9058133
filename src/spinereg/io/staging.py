"""Output folders written all at once: a run writes into a hidden temporary folder next to the
destination, and its files get their final names only when the whole run succeeded.

``with OutputFolder(dest, names, overwrite) as tmp:`` yields the temporary folder; on success
its content is moved into ``dest`` (a rename of the whole folder when ``dest`` does not exist,
else one rename per file), on any failure it is deleted and ``dest`` is left exactly as it was.
Folders the check had to create for ``dest`` are removed again after a failure.

The temporary folder (``.NAME.XXXXXXXX.part``) is made through :mod:`spinereg.io.tempdirs`, so
an interrupted ``spinereg`` command removes it on its way out even where no ``with`` ran; once
renamed to ``dest`` it is released (an output, never removed). With ``replace`` the previous
``dest`` is moved aside into ``.NAME.XXXXXXXX.old`` and the new folder renamed in with SIGTERM /
SIGINT held back, so no interruption falls between the two renames; a failed second rename moves
the previous output back (see :func:`_replace`).

:meth:`OutputFolder.check` runs the checks alone (``dest`` not a file, writable, the named
outputs absent unless ``overwrite``) so that commands can fail before their long work.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.errors import OutputError
from spinereg.io.image import output_os_error, require_writable_folder
from spinereg.io.tempdirs import make_temp_dir, release_temp_dir, remove_temp_dir, signals_held

if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType


def umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def dir_mode() -> int:
    return 0o777 & ~umask()


class OutputFolder:
    """One output folder written atomically (see module doc).

    ``names``: files (relative paths) the run will write; without ``overwrite`` any of them
    already in ``dest`` is an error (no names: any non-empty ``dest`` is). ``replace``: on success the previous ``dest`` is replaced as
    a whole (used when ``dest`` holds only a previous run of the same command); otherwise files
    are moved in one by one and files the run did not write are kept.
    """

    def __init__(self, dest: str | Path, names: Iterable[str] = (), overwrite: bool = False,
                 replace: bool = False):
        self.dest = Path(dest)
        self.names = [str(n) for n in names]
        self.overwrite = overwrite
        self.replace = replace
        self.tmp: Path | None = None
        self._created: list[Path] = []

    # -- checks before the work ---------------------------------------------------------------
    def check(self) -> OutputFolder:
        """Raise :class:`OutputError` if the outputs cannot or may not be written."""
        d = self.dest
        if d.exists() and not d.is_dir():
            raise OutputError("output folder is a file", d, "give a folder name for -o")
        if d.is_dir() and not self.overwrite and not self.replace:
            if not self.names and any(d.iterdir()):
                raise OutputError("output folder exists and is not empty", d,
                                  "pass --overwrite or choose another folder")
            existing = [n for n in self.names if (d / n).exists()]
            if existing:
                shown = ", ".join(existing[:4]) + (" ..." if len(existing) > 4 else "")
                raise OutputError(f"outputs exist ({shown})", d, "pass --overwrite or choose another folder")
        if d.is_dir():  # files are moved into it (or, with replace, it is renamed: that writes in it too)
            require_writable_folder(d)
        parent = d.parent if str(d.parent) else Path(".")
        for p in [parent, *parent.parents]:
            if p.exists():
                if not p.is_dir():
                    raise OutputError("cannot create the output folder (a file of that name exists)", p,
                                      "choose another output folder")
                require_writable_folder(p)
                break
        return self

    def _make_parents(self) -> None:
        missing = []
        p = self.dest.parent if str(self.dest.parent) else Path(".")
        while not p.exists():
            missing.append(p)
            p = p.parent
        for p in reversed(missing):
            try:
                p.mkdir(mode=0o777)
            except FileExistsError:
                continue
            except OSError as exc:
                raise output_os_error(exc, p) from exc
            self._created.append(p)

    # -- the transaction ------------------------------------------------------------------------
    def __enter__(self) -> Path:
        self.check()
        self._make_parents()
        try:
            self.tmp = make_temp_dir(f".{self.dest.name}.", ".part", self.dest.parent)
            os.chmod(self.tmp, dir_mode())
        except BaseException as exc:
            self.abort()  # (an interruption right after the mkdir: tempdirs.remove_leftovers has it)
            if isinstance(exc, OSError):
                raise output_os_error(exc, self.dest) from exc
            raise
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Delete the temporary folder (and the folders made for it); ``dest`` is untouched."""
        if self.tmp is not None:
            remove_temp_dir(self.tmp)
            self.tmp = None
        self._remove_created()

    def _remove_created(self) -> None:
        for p in reversed(self._created):
            try:
                p.rmdir()
            except OSError:
                pass
        self._created = []

    def commit(self) -> None:
        """Move the temporary folder's content to ``dest``."""
        tmp, dest = self.tmp, self.dest
        if tmp is None:
            raise RuntimeError("commit outside the with-block")
        try:
            if not dest.exists():
                with signals_held():
                    os.rename(tmp, dest)
                    release_temp_dir(tmp)  # the output now: never removed as a leftover
            elif self.replace:
                _replace(tmp, dest)
            else:
                _merge(tmp, dest)
                remove_temp_dir(tmp)
        except OSError as exc:
            raise output_os_error(exc, dest) from exc
        self.tmp = None
        self._created = []


def _replace(tmp: Path, dest: Path) -> None:
    """Replace the folder ``dest`` by ``tmp`` (a folder of :mod:`spinereg.io.tempdirs`).

    The previous ``dest`` is moved into a hidden ``.NAME.XXXXXXXX.old`` folder beside it and
    ``tmp`` renamed to ``dest``, both with SIGTERM / SIGINT held back, so an interruption lands
    before the first rename or after the second. Should anything still end the pair early (an
    error of the second rename, or the exception of a signal another thread took), the previous
    output is moved back. The ``.old`` folder is recorded for removal (by this function, or by
    :func:`~spinereg.io.tempdirs.remove_leftovers` when an interruption cuts its removal short)
    only while it is empty or the new output is in place; when the previous output could not be
    moved back it is released instead (kept: the only copy) and the error says where it is.
    """
    old: Path | None = None
    keep = False
    try:
        with signals_held():
            old = make_temp_dir(f".{dest.name}.", ".old", dest.parent)
            aside = old / dest.name
            try:
                os.rename(dest, aside)
                os.rename(tmp, dest)
            except BaseException:
                if os.path.lexists(aside) and not os.path.lexists(dest):  # moved aside, new not in
                    try:
                        os.rename(aside, dest)
                    except OSError as exc:
                        keep = True
                        release_temp_dir(old)
                        raise OutputError("could not put the previous output back after a failed replace",
                                          dest, f"the previous output is in {aside}: move it back to {dest}"
                                          ) from exc
                raise
            release_temp_dir(tmp)  # the output now: never removed as a leftover
    finally:
        if old is not None and not keep:
            remove_temp_dir(old)  # empty, or the replaced output once the new one is in place


def _merge(src: Path, dest: Path) -> None:
    """Move every file of ``src`` to the same relative path in ``dest`` (renames)."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        target = dest / rel
        if not target.is_dir():
            if target.exists():
                target.unlink()
            target.mkdir(mode=dir_mode())
        for name in files:
            t = target / name
            if t.is_dir():
                shutil.rmtree(t)
            os.replace(Path(root) / name, t)
        for name in dirs:
            t = target / name
            if t.exists() and not t.is_dir():
                t.unlink()


def folder_is_own_run(folder: Path, marker: str, names: Iterable[str] = ()) -> bool:
    """True when ``folder`` is empty, or holds only a previous run of ``marker`` (its
    provenance.json says ``invoked_as`` == ``marker``, and the folder holds nothing but ``names``,
    the ``outputs`` that provenance.json lists, and ``qc/``): such a folder may be replaced as a
    whole."""
    import json

    folder = Path(folder)
    if not folder.is_dir():
        return False
    present = {p.name for p in folder.iterdir()}
    if not present:
        return True
    try:
        prov = json.loads((folder / "provenance.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(prov, dict) or prov.get("invoked_as") != marker:
        return False
    return present <= {*names, *(prov.get("outputs") or []), "qc", "provenance.json"}
