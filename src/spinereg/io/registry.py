"""Reference data: where the templates and sample data are, how to download and check them.

The datasets are described in ``spinereg/data/registry.json`` (name, release, address, archive
checksum, licence). :func:`dataset_path` finds a dataset, in this order:

1. ``$SPINEREG_DATA/<folder>`` -- a folder laid out like the upstream releases unpacked side by
   side (``PAM50/``, ``MNI-Poly-AMU/``, ``sct_testing_data/``); ``SPINEREG_DATA`` may list several
   folders separated by ``os.pathsep``;
2. the user cache, ``$SPINEREG_CACHE/<folder>`` or ``pooch.os_cache("spinereg")/<folder>``, where
   :func:`fetch` installs downloads (a cached copy counts only once its download was verified);
3. otherwise :class:`~spinereg.errors.DataNotFoundError` saying to run
   ``spinereg data fetch NAME`` or to set ``SPINEREG_DATA``.

Downloads are checked twice. The archive is checked against its sha256 when the registry knows
it; where it is ``null`` (the checksum of an upstream zip cannot be computed without downloading
it), pooch only records it and the download relies on the second check: every file is compared
with a per-file manifest (``spinereg/data/manifests/<name>.json``: relative path -> sha256 and
size). Files named in the manifest that are absent or differ make the download fail; files that
the manifest does not list are reported as extra (the manifests were generated from a mirror that
lacks the largest intensity templates; those are listed under ``unhashed``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from spinereg.errors import DataNotFoundError, InputError
from spinereg.io.tempdirs import make_temp_dir, release_temp_dir, remove_temp_dir, signals_held

if TYPE_CHECKING:  # pragma: no cover
    import pooch

log = logging.getLogger(__name__)

ENV_DATA = "SPINEREG_DATA"
ENV_CACHE = "SPINEREG_CACHE"
STAMP = ".spinereg-dataset.json"
_CHUNK = 1 << 20


class DataVerificationError(DataNotFoundError):
    """Downloaded or local reference data does not match its checksums."""


# -- the registry ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """One downloadable dataset (a row of ``registry.json``)."""

    name: str
    version: str
    url: str
    sha256: str | None
    folder: str
    archive_root: str | None = None
    licence: str = ""
    description: str = ""
    manifest_file: Path | None = None

    def manifest(self) -> Manifest:
        """The per-file manifest of this dataset (raises if the package lacks it)."""
        if self.manifest_file is None or not Path(self.manifest_file).is_file():
            raise DataNotFoundError(
                f"no file manifest for dataset {self.name}", self.manifest_file,
                "reinstall spinereg (the manifests ship in spinereg/data/manifests)")
        return Manifest.load(self.manifest_file)


@dataclass(frozen=True)
class Manifest:
    """Expected files of a dataset: relative path -> (sha256, size)."""

    files: dict[str, tuple[str, int]]
    unhashed: tuple[str, ...] = ()
    version: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        try:
            raw = json.loads(Path(path).read_text())
            files = {k: (v["sha256"], int(v["size"])) for k, v in raw["files"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"unreadable file manifest ({err})", path,
                             "reinstall spinereg or regenerate it with scripts/make_manifests.py") from err
        return cls(files, tuple(raw.get("unhashed", ())), str(raw.get("version", "")))


@dataclass
class VerifyReport:
    """Result of :func:`verify`: ``ok`` is true when no manifest file is missing or different."""

    name: str
    root: Path
    checked: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unhashed: list[str] = field(default_factory=list)
    #: files the manifest names as unhashed (the full release's largest intensity templates) that this
    #: copy lacks: not an error (a mirror may leave them out), but said, so that a copy without
    #: PAM50_t2 is not reported complete
    absent_unhashed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing

    def summary(self) -> str:
        """One line: counts, and the first few offending files."""
        text = (f"{self.name}: {self.checked} files checked, {len(self.mismatched)} differ, "
                f"{len(self.missing)} missing, {len(self.extra)} not in the manifest")
        if self.absent_unhashed:
            text += f"; not in this copy (unhashed, optional): {', '.join(Path(p).name for p in self.absent_unhashed)}"
        bad = [f"differs: {p}" for p in self.mismatched[:3]] + [f"missing: {p}" for p in self.missing[:3]]
        if bad:
            text += " (" + "; ".join(bad) + (", ..." if len(self.mismatched) + len(self.missing) > len(bad) else "") + ")"
        return text


def _data_file(*parts: str) -> Path:
    return Path(str(resources.files("spinereg").joinpath("data", *parts)))


REGISTRY_FILE = _data_file("registry.json")
MANIFEST_DIR = _data_file("manifests")


def _read_registry() -> dict[str, Any]:
    try:
        return json.loads(REGISTRY_FILE.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"unreadable data registry ({err})", REGISTRY_FILE,
                         "reinstall spinereg") from err


def datasets() -> dict[str, Dataset]:
    """Every dataset of the registry, by name."""
    out = {}
    for name, row in _read_registry()["datasets"].items():
        out[name] = Dataset(
            name=name, version=row["version"], url=row["url"], sha256=row.get("sha256"),
            folder=row.get("folder") or name, archive_root=row.get("archive_root"),
            licence=row.get("licence", ""), description=row.get("description", ""),
            manifest_file=MANIFEST_DIR / f"{name}.json")
    return out


def get_dataset(name: str | Dataset) -> Dataset:
    """The dataset called ``name`` (case-insensitive); :class:`InputError` if unknown."""
    if isinstance(name, Dataset):
        return name
    table = datasets()
    if name in table:
        return table[name]
    for key, ds in table.items():
        if key.lower() == str(name).lower():
            return ds
    raise InputError(f"unknown dataset '{name}'", None, f"choose one of: {', '.join(table)}")


def templates_table() -> dict[str, dict[str, str]]:
    """Named templates: name -> {dataset, subdir, note} (see ``registry.json``)."""
    return dict(_read_registry().get("templates", {}))


# -- where the data is -----------------------------------------------------------------------
def data_dirs() -> list[Path]:
    """Folders named by ``$SPINEREG_DATA`` (``os.pathsep``-separated), in order."""
    env = os.environ.get(ENV_DATA, "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]


def cache_dir() -> Path:
    """The download cache: ``$SPINEREG_CACHE`` or the platform's user cache for spinereg."""
    env = os.environ.get(ENV_CACHE, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs  # what pooch.os_cache uses, without importing pooch (about 50 ms)

    return Path(platformdirs.user_cache_dir("spinereg"))


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The record :func:`fetch` left in a cached dataset folder, or None."""
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def locate(name: str | Dataset) -> tuple[Path, str] | None:
    """``(path, source)`` of a dataset, ``source`` being ``"SPINEREG_DATA"`` or ``"cache"``."""
    ds = get_dataset(name)
    for root in data_dirs():
        cand = root / ds.folder
        if cand.is_dir():
            return cand, ENV_DATA
    cand = cache_dir() / ds.folder
    stamp = read_stamp(cand) if cand.is_dir() else None
    if stamp is not None:
        if stamp.get("version") != ds.version:
            log.warning("cached %s is release %s, the registry names %s: run `spinereg data fetch "
                        "%s --force` to update", ds.name, stamp.get("version"), ds.version, ds.name)
        return cand, "cache"
    return None


def data_env_hint(name: str | Dataset) -> str:
    """Why ``$SPINEREG_DATA`` does not provide dataset ``name`` ('' when it is unset or does): a
    folder that does not exist, a folder that is the dataset itself (its parent is wanted), or
    what the folder holds instead."""
    ds = get_dataset(name)
    notes = []
    for root in data_dirs():
        if (root / ds.folder).is_dir():
            return ""
        if not root.is_dir():
            notes.append(f"{ENV_DATA} folder {root} does not exist")
        elif root.name == ds.folder or (root / "template").is_dir() or (root / "t2").is_dir():
            notes.append(f"{ENV_DATA} names the dataset folder {root} itself: set it to the folder "
                         f"that holds {ds.folder}/ ({root.parent})")
        else:
            held = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))[:6]
            notes.append(f"{ENV_DATA} folder {root} holds no {ds.folder}/ (it holds: {', '.join(held) or 'no folders'})")
    return "; ".join(notes)


def dataset_path(name: str | Dataset) -> Path:
    """Folder holding dataset ``name``; :class:`DataNotFoundError` with the fix if absent."""
    ds = get_dataset(name)
    found = locate(ds)
    if found is None:
        looked = [str(r / ds.folder) for r in data_dirs()] + [str(cache_dir() / ds.folder)]
        hint = data_env_hint(ds)
        raise DataNotFoundError(
            f"dataset {ds.name} not found (looked in {', '.join(looked)})" + (f"; {hint}" if hint else ""), None,
            f"run `spinereg data fetch {ds.name}` or set {ENV_DATA} to a folder holding {ds.folder}/")
    return found[0]


def ensure_dataset(name: str | Dataset, progress: bool = False) -> Path:
    """Like :func:`dataset_path`, but downloads (with checksum verification) into the cache when the
    dataset is neither under ``SPINEREG_DATA`` nor cached. ``SPINEREG_OFFLINE=1`` disables the
    download (the error then says how to get the data)."""
    ds = get_dataset(name)
    found = locate(ds)
    if found is not None:
        return found[0]
    if os.environ.get("SPINEREG_OFFLINE"):
        return dataset_path(ds)
    hint = data_env_hint(ds)
    log.warning("dataset %s not found locally%s: downloading release %s (checksummed)", ds.name,
                f" ({hint})" if hint else "", ds.version)
    try:
        return fetch(ds, progress=progress)
    except DataNotFoundError:
        raise
    except Exception as exc:  # network errors: say how to get the data instead
        raise DataNotFoundError(
            f"dataset {ds.name} not found locally" + (f" ({hint})" if hint else "")
            + f" and the download failed ({exc.__class__.__name__})", None,
            f"run `spinereg data fetch {ds.name}` when online, or set {ENV_DATA} to a folder holding "
            f"{ds.folder}/") from exc


# -- checksums -------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _list_files(root: Path) -> list[str]:
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def build_manifest(root: str | Path, name: str = "", version: str = "",
                   unhashed: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Manifest dict (as stored in ``data/manifests``) of every file under ``root``.

    Hidden files (names starting with a dot) are left out.
    """
    root = Path(root)
    files = {rel: {"sha256": file_sha256(root / rel), "size": (root / rel).stat().st_size}
             for rel in _list_files(root)}
    return {"dataset": name, "version": version, "unhashed": sorted(unhashed), "files": files}


def verify(name: str | Dataset, root: str | Path | None = None,
           manifest: Manifest | None = None) -> VerifyReport:
    """Compare the files under ``root`` (default: :func:`dataset_path`) with the manifest.

    Sizes are compared first and the sha256 computed only where sizes agree. Files missing
    from ``root`` and files that differ make ``report.ok`` false; files the manifest does not
    list are reported in ``extra`` (and those it names as ``unhashed`` in ``unhashed``).
    """
    ds = get_dataset(name)
    root = dataset_path(ds) if root is None else Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"dataset folder for {ds.name} does not exist", root,
                                f"run `spinereg data fetch {ds.name}` or give an existing folder")
    man = ds.manifest() if manifest is None else manifest
    report = VerifyReport(ds.name, root)
    for rel, (sha, size) in sorted(man.files.items()):
        path = root / rel
        if not path.is_file():
            report.missing.append(rel)
            continue
        report.checked += 1
        if path.stat().st_size != size or file_sha256(path) != sha:
            report.mismatched.append(rel)
    present = set(_list_files(root))
    unhashed = set(man.unhashed)
    for rel in sorted(present - set(man.files)):
        (report.unhashed if rel in unhashed else report.extra).append(rel)
    report.absent_unhashed = sorted(unhashed - present)
    return report


# -- download --------------------------------------------------------------------------------
def _file_downloader(url: str, output_file: str | Path | IO[bytes],
                     pooch_obj: pooch.Pooch | None = None,
                     check_only: bool = False) -> bool | None:
    """pooch downloader for ``file://`` addresses (a local copy or mirror of an archive)."""
    src = Path(unquote(urlparse(url).path))
    if check_only:
        return src.is_file()
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist")
    if hasattr(output_file, "write"):
        with open(src, "rb") as fh:
            shutil.copyfileobj(fh, output_file)
    else:
        shutil.copyfile(src, output_file)
    return None


def _download(ds: Dataset, url: str, dest: Path, progress: bool) -> Path:
    """Download ``url`` into ``dest`` with pooch, checking the archive sha256 when known."""
    import pooch

    known = f"sha256:{ds.sha256}" if ds.sha256 else None
    downloader = _file_downloader if url.startswith("file://") else None
    if downloader is None:
        downloader = pooch.HTTPDownloader(progressbar=progress)
    fname = Path(urlparse(url).path).name or f"{ds.name}.zip"
    log.info("downloading %s %s from %s", ds.name, ds.version, url)
    plog = pooch.get_logger()
    level = plog.level
    plog.setLevel(logging.WARNING)  # its advice about 'known_hash' is for pooch users, not ours
    try:
        out = pooch.retrieve(url, known_hash=known, fname=fname, path=dest, downloader=downloader)
    except ValueError as err:  # pooch: hash mismatch
        raise DataVerificationError(
            f"download of {ds.name} does not match its archive sha256 ({err})".replace("\n", " "),
            url, f"retry `spinereg data fetch {ds.name} --force`; if it persists, report it") from err
    except Exception as err:  # network, HTTP status, missing local file...
        raise DataNotFoundError(
            f"download of {ds.name} failed: {type(err).__name__}: {err}", url,
            f"check the network, or download the zip yourself and run `spinereg data fetch "
            f"{ds.name} --url file:///path/to/zip`, or set {ENV_DATA}") from err
    finally:
        plog.setLevel(level)
    return Path(out)


def _file_kind(path: Path) -> str:
    """What a file that is not a zip is, from its first bytes (for the message)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return "an unreadable file"
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):
        return "a damaged zip (truncated?)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file (a .tar.gz?)"
    if head.startswith(b"BZh"):
        return "a bzip2 file (a .tar.bz2?)"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "an xz file (a .tar.xz?)"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "a 7-Zip archive"
    if head[257:262] == b"ustar":
        return "a tar archive"
    low = head.lstrip().lower()
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low:
        return "an HTML page (an error or sign-in page?)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file"
    return "a file of another kind"


def _source_name(url: str) -> str:
    """The file a user gave (the local path of a ``file://`` address), else the address."""
    return unquote(urlparse(url).path) if url.startswith("file://") else url


def _extract(archive: Path, dest: Path, ds: Dataset, source: str | None = None) -> Path:
    """Unzip ``archive`` (downloaded from ``source``, named in errors) into ``dest``; return the
    dataset's root folder inside it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise DataVerificationError(f"archive member escapes the folder: {info.filename}",
                                                archive, "do not use this archive")
            zf.extractall(dest)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        # before session 38: the deleted cache copy named, and 'retry --force', which fails the
        # same way when --url gave a .tar.gz or a page
        kind = _file_kind(archive)
        name = _source_name(source) if source else archive
        zip_name = Path(urlparse(ds.url).path).name or f"{ds.name}.zip"
        fix = (f"retry `spinereg data fetch {ds.name} --force`" if source in (None, ds.url) else
               f"give --url the release zip {zip_name} ({ds.url}, or file:///path/to/{zip_name} downloaded "
               "from there)")
        detail = f" ({err})" if kind.startswith("a damaged zip") else ""
        raise DataVerificationError(f"not a readable zip archive of {ds.name}: {kind}{detail}; "
                                    f"`spinereg data fetch` expects the dataset's release .zip", name, fix) from err
    if ds.archive_root:
        root = dest / ds.archive_root
        if not root.is_dir():
            raise DataVerificationError(f"archive of {ds.name} lacks its folder {ds.archive_root}/",
                                        archive, "the registry entry or the archive is wrong")
        return root
    entries = [p for p in dest.iterdir() if p.name != "__MACOSX" and not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def _install(ds: Dataset, root: Path, final: Path, trash: Path) -> None:
    """Rename the verified ``root`` to ``final``, a previous copy there moved to ``trash`` first
    (removed with the work folder), with no interruption between the two. Should the new copy not
    go in, the previous one goes back and the error says it is in place; one that cannot go back
    stays in ``trash`` (:func:`fetch` keeps it) and the error names it and the ``mv`` to do (before
    session 41 the work folder, and the cached copy in it, were removed: an offline user lost the
    data set, with a bare OSError)."""
    with signals_held():  # the previous copy aside and the new one in: no interruption between
        try:
            if final.exists():
                final.rename(trash)
            root.rename(final)
        except BaseException as exc:
            if os.path.lexists(trash) and not os.path.lexists(final):  # the previous copy back
                try:
                    trash.rename(final)
                except OSError as err:
                    raise DataNotFoundError(
                        f"the new download of {ds.name} could not be installed ({_why(exc)}) and the previous "
                        f"copy could not be put back ({_why(err)}): it is kept in {trash}", final,
                        f"move it back (mv {trash} {final}), then retry `spinereg data fetch {ds.name} --force` "
                        "when there is room") from exc
            if isinstance(exc, OSError):
                kept = "the previous copy is still in place" if os.path.lexists(final) else "nothing was installed"
                raise DataNotFoundError(
                    f"the download of {ds.name} could not be installed in the cache ({_why(exc)}); {kept}", final,
                    f"free space or make the cache folder writable (or set {ENV_CACHE}), then retry "
                    f"`spinereg data fetch {ds.name} --force`") from exc
            raise


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def fetch(name: str | Dataset, *, force: bool = False, url: str | None = None,
          cache: str | Path | None = None, progress: bool = False) -> Path:
    """Download dataset ``name`` into the cache, unzip and verify it; return its folder.

    An already verified copy in the cache is returned as is unless ``force``. ``url`` replaces
    the registry's address (a mirror, or ``file:///path/to/release.zip`` for a zip downloaded by
    hand). Nothing is installed unless every file of the manifest is present and matches; the
    archive is deleted afterwards. Raises :class:`DataVerificationError` (a
    :class:`DataNotFoundError`) when the archive or its files do not match their checksums.
    """
    ds = get_dataset(name)
    cache = cache_dir() if cache is None else Path(cache)
    final = cache / ds.folder
    if final.is_dir() and read_stamp(final) is not None and not force:
        log.info("%s already in the cache at %s", ds.name, final)
        return final
    manifest = ds.manifest()
    cache.mkdir(parents=True, exist_ok=True)
    downloads = cache / "downloads"
    src_url = url or ds.url
    fname = Path(urlparse(src_url).path).name or f"{ds.name}.zip"
    (downloads / fname).unlink(missing_ok=True)  # never reuse an unverified archive
    archive = _download(ds, src_url, downloads, progress)
    work = make_temp_dir(f".tmp-{ds.folder}-", dir=cache)  # removed by an interrupted command too
    try:
        root = _extract(archive, work / "unzipped", ds, src_url)
        report = verify(ds, root, manifest)
        if not report.ok:
            raise DataVerificationError(
                f"download failed verification: {report.summary()}", src_url,
                f"retry `spinereg data fetch {ds.name} --force`; if it persists the release "
                "changed upstream: report it")
        if report.extra:
            log.info("%s: %d files not in the manifest: %s", ds.name, len(report.extra),
                     ", ".join(report.extra[:5]))
        stamp = {"name": ds.name, "version": ds.version, "url": src_url,
                 "archive_sha256": file_sha256(archive), "archive_sha256_known": ds.sha256,
                 "files_verified": report.checked, "extra": report.extra}
        (root / STAMP).write_text(json.dumps(stamp, indent=1))
        _install(ds, root, final, work / "old")
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    finally:
        if os.path.lexists(work / "old") and not os.path.lexists(final):
            # the previous copy's only place (the error named it): kept; the download's copy goes
            release_temp_dir(work)
            shutil.rmtree(work / "unzipped", ignore_errors=True)
        else:
            remove_temp_dir(work)  # with the previous copy, once replaced
    archive.unlink(missing_ok=True)
    log.info("%s %s installed in %s", ds.name, ds.version, final)
    return final
