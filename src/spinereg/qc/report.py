"""The HTML QC report: one ``index.html`` per QC root, one entry per command run and subject.

Layout of a QC root::

    qc/index.html        the report (data inlined: opens from file:// with no server)
    qc/entries.json      every entry (the report's data)
    qc/assets/           report.js, report.css (copied from the package)
    qc/entries/<id>/     the pictures of one entry

An entry holds the run's command line and spinereg version, its verdict and reasons, each score
beside its bounds and meaning (:mod:`spinereg.qc.scores`), and its panels grouped by stage
(:mod:`spinereg.qc.pages`, where new kinds of runs add their page). An entry's id is derived
from the command and the run folder, so re-running QC on a folder replaces its entry.

Updating a root is one transaction under a lock: the entry's pictures are rendered into a
hidden folder, the new entries.json, index.html and assets are written to temporary files, and
only then is everything renamed into place; a failure leaves the root as it was (a root created
by the failed call is removed). Nothing in the report refers to the network.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import html
import json
import os
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from spinereg.errors import InputError, OutputError, SpineregError
from spinereg.io.image import file_mode, make_temp
from spinereg.io.staging import dir_mode
from spinereg.io.tempdirs import make_temp_dir, release_temp_dir, remove_temp_dir, signals_held
from spinereg.qc.scores import score_table, scores_from_metrics, verdict_of

__all__ = ["add_to_report", "build_index", "check_qc_root", "load_entries", "scores_from_metrics", "verdict_of"]

ASSETS = ("report.js", "report.css")
ENTRIES = "entries.json"
INDEX = "index.html"


def subject_of(prov: dict, run_dir: Path) -> str:
    """BIDS ``sub-XX[/ses-YY]`` of the run's main input when present, else the input's file stem."""
    from spinereg.qc.page_registration import list_input

    inputs = prov.get("inputs") or {}
    main = None
    for key in ("image", "input", "src", "images"):
        if inputs.get(key):
            main = list_input(inputs[key])[0] if key == "images" else str(inputs[key])
            break
    if main is None and prov.get("images"):
        main = str(list_input(prov["images"])[0])
    if main is None:
        return run_dir.name
    parts = Path(main).parts
    bids = [p for p in parts[:-1] if p.startswith(("sub-", "ses-"))]
    if bids:
        return "/".join(dict.fromkeys(bids))
    name = Path(main).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# -- files ----------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found", path, "give the output folder of a spinereg run") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{what} is not readable JSON ({exc})", path, "re-run the command") from exc


def _write_all(files: list[tuple[Path, str]]) -> None:
    """Write every (path, text) to a temporary file first, then rename them all (no half update)."""
    done: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            tmp = make_temp(path, path.suffix)
            done.append((tmp, path))
            Path(tmp).write_text(text, encoding="utf-8")
    except BaseException:
        for tmp, _ in done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, path in done:
        os.replace(tmp, path)


@contextlib.contextmanager
def _locked(qc_root: Path) -> Iterator[None]:
    """Exclusive lock on the QC root (several runs may add entries at once)."""
    with open(qc_root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_qc_root(qc_root: str | Path) -> Path:
    """Raise :class:`OutputError` when ``qc_root`` cannot hold a QC report (a file, or in an
    unwritable place); nothing is created. Returns the resolved folder."""
    qc_root = Path(qc_root).expanduser().resolve()
    if qc_root.exists() and not qc_root.is_dir():
        raise OutputError("QC folder (--qc) is a file", qc_root, "give a folder for the QC report")
    for p in qc_root.parents:
        if p.exists():
            if not p.is_dir():
                raise OutputError("cannot create the QC folder (a file of that name exists)", p,
                                  "give another folder for the QC report")
            if not os.access(p, os.W_OK | os.X_OK) and not qc_root.exists():
                raise OutputError("QC folder is not writable", p, "give a writable folder for the QC report")
            break
    return qc_root


def load_entries(qc_root: Path) -> list[dict]:
    """The entries of a QC root (empty when it has none yet)."""
    p = Path(qc_root) / ENTRIES
    if not p.exists():
        return []
    data = _read_json(p, "QC entries file")
    return list(data.get("entries", [])) if isinstance(data, dict) else list(data)


def _entry_id(kind: str, run_dir: Path) -> str:
    return hashlib.sha1(f"{kind}\0{run_dir}".encode()).hexdigest()[:12]


def _rel(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # other drive
        return str(path)


def _version_of(prov: dict) -> str:
    v = prov.get("versions") or {}
    text = f"spinereg {v.get('spinereg', '?')}"
    if v.get("git_commit"):
        text += f" (git {str(v['git_commit'])[:10]}{', modified' if v.get('git_dirty') else ''})"
    return text


# -- public API -----------------------------------------------------------------------------------
def add_to_report(run_dir: Path, qc_root: Path | None = None, kind: str | None = None, *,
                  record_run_dir: Path | None = None, record_root: Path | None = None) -> Path:
    """Render the panels of a run folder and add (or replace) its entry in the QC report.

    ``run_dir`` is the output folder of a run (``register-to-template``, ``register``,
    ``chain``, ``moco``, ``spine-metrics`` or any kind with a page, see :mod:`spinereg.qc.pages`);
    its ``provenance.json`` (for ``moco``: ``metrics.json``) names the inputs and, unless
    ``kind`` is given, the command. The verdict and reasons come from metrics.json's ``qc``
    block ("not scored" without one). ``qc_root`` defaults to ``run_dir/qc``.
    ``record_run_dir`` / ``record_root``: where the run folder and the QC folder will be once a
    job renames them into place (the report is built from their temporary folders); they name
    the entry and the report. Returns ``qc_root/index.html``.
    """
    pending = prepare_entry(run_dir, qc_root, kind, record_run_dir=record_run_dir, record_root=record_root)
    return pending.commit()


class PendingEntry:
    """An entry rendered into a hidden folder of its QC root, not yet in the report:
    :meth:`commit` adds it (one transaction), :meth:`abort` removes every trace of it."""

    def __init__(self, qc_root: Path, entry: dict, stage: Path, shown_root: Path, created: list[Path]):
        self.qc_root, self.entry, self.stage, self.shown_root, self.created = qc_root, entry, stage, shown_root, created

    def commit(self) -> Path:
        qc_root, eid = self.qc_root, self.entry["id"]
        try:
            with _locked(qc_root):
                entries = [e for e in load_entries(qc_root) if e.get("id") != eid] + [self.entry]
                files = [(qc_root / ENTRIES, json.dumps({"version": 2, "entries": entries}, indent=1) + "\n"),
                         *_index_files(qc_root, entries, self.shown_root)]
                (qc_root / "assets").mkdir(exist_ok=True, mode=dir_mode())
                _swap_entry(self.stage, qc_root / "entries" / eid, files)
        except BaseException:
            self.abort()
            raise
        return qc_root / INDEX

    def abort(self) -> None:
        remove_temp_dir(self.stage)  # (a no-op once renamed into place, or before it was made)
        for p in self.created:  # a root this entry created goes away again
            if p == self.qc_root:
                shutil.rmtree(p, ignore_errors=True)
            else:
                _rmdir(p)


def _swap_entry(stage: Path, final: Path, files: list[tuple[Path, str]]) -> None:
    """Move the previous ``entries/ID`` (if any) into ``.ID-old-XXXX/ID``, the staged entry to
    ``entries/ID`` and write ``files``, with SIGTERM / SIGINT held back (an interruption lands
    before or after, never between the renames: before session 41 it left ``entries/ID`` gone and
    the previous one hidden). Cut short by an error, the previous entry is put back; one that cannot
    be is kept (released, never removed as a leftover) and the error says where it is."""
    old: Path | None = None
    moved_in = keep = False
    try:
        with signals_held():
            try:
                if final.exists():
                    old = make_temp_dir(f".{final.name}-old-", dir=final.parent)
                    os.replace(final, old / final.name)
                os.replace(stage, final)
                moved_in = True
                _write_all(files)
                release_temp_dir(stage)  # renamed to entries/ID: the entry now, not a work folder
            except BaseException:
                if moved_in:
                    shutil.rmtree(final, ignore_errors=True)
                aside = None if old is None else old / final.name
                if aside is not None and os.path.lexists(aside) and not os.path.lexists(final):
                    try:
                        os.replace(aside, final)
                    except OSError as exc:
                        keep = True
                        release_temp_dir(aside.parent)  # the previous entry's only copy
                        raise OutputError(
                            f"the QC entry could not be replaced and its previous entry could not be put back "
                            f"({exc.strerror or exc}); the previous entry is kept in {aside}",
                            final, f"move {aside} back to {final} (mv), then rerun the QC") from exc
                raise
    finally:
        if old is not None and not keep:
            remove_temp_dir(old)  # (empty, or the previous entry once replaced)


def _check_record(prov: dict, kind: object, path: Path) -> None:
    """A run record's shape (a hand-edited provenance.json: a number for the command, a list for
    the inputs, was an internal error (AttributeError) before session 39)."""
    if not isinstance(kind, str):
        raise InputError(f"provenance.json's command is {kind!r}, not a command name", path,
                         "restore the run's provenance.json, or pass the kind (--kind)")
    if not isinstance(prov.get("inputs", {}), dict):
        raise InputError(f"provenance.json's inputs are a {type(prov['inputs']).__name__}, not a table of files", path,
                         "restore the run's provenance.json, or re-run the command")


def prepare_entry(run_dir: Path, qc_root: Path | None = None, kind: str | None = None, *,
                  record_run_dir: Path | None = None, record_root: Path | None = None) -> PendingEntry:
    """Render a run's panels into a hidden folder of the QC root (see :func:`add_to_report`)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise SpineregError("the QC report needs matplotlib, which is not installed", None,
                            "python -m pip install 'spinereg[qc]' (or matplotlib)") from exc
    from spinereg.qc.pages import STAGES, render_run

    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise InputError("run folder not found", run_dir, "give the output folder of a spinereg run")
    mpath = run_dir / "metrics.json"
    metrics = _read_json(mpath, "metrics.json") if mpath.exists() else {}
    if (run_dir / "provenance.json").exists() or "inputs" not in metrics:
        prov = _read_json(run_dir / "provenance.json", "provenance.json")
    else:  # motion correction keeps its command and inputs in metrics.json
        prov = metrics
    kind = kind or prov.get("command")
    if not kind:
        raise InputError("provenance.json does not name the command", run_dir / "provenance.json",
                         "pass the kind (register-to-template, register, chain, moco)")
    _check_record(prov, kind, run_dir / "provenance.json")
    qc_root = check_qc_root(qc_root if qc_root is not None else run_dir / "qc")
    created = [p for p in (qc_root, *qc_root.parents) if not p.exists()]
    shown_dir = Path(record_run_dir) if record_run_dir is not None else run_dir
    shown_root = Path(record_root) if record_root is not None else qc_root
    eid = _entry_id(kind, shown_dir)
    stage = qc_root / "entries" / f".{eid}-new"
    pending = PendingEntry(qc_root, {}, stage, shown_root, created)
    try:
        (qc_root / "entries").mkdir(parents=True, exist_ok=True, mode=dir_mode())
        pending.stage = stage = make_temp_dir(f".{eid}-", dir=qc_root / "entries")
        panels = render_run(kind, run_dir, prov, stage)
        for p in stage.iterdir():
            os.chmod(p, file_mode())
        os.chmod(stage, dir_mode())
        order = {s: n for n, s in enumerate(STAGES)}
        panels = sorted(panels, key=lambda pn: order.get(pn.stage, len(order)))
        scores = scores_from_metrics(kind, metrics)
        stamp = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
        tpl = prov.get("template")
        pending.entry = {
            "id": eid,
            "command": kind,
            "subject": subject_of(prov, shown_dir),
            "run_dir": str(shown_dir),
            "run_rel": _rel(shown_dir, shown_root),
            "date": stamp.isoformat().replace("+00:00", "Z"),
            "command_line": prov.get("command_line"),
            "version": _version_of(prov),
            "scores": scores,
            "score_table": score_table(kind, scores),
            **verdict_of(metrics),
            "notes": _notes_of(metrics),
            "template": tpl.get("name") if isinstance(tpl, dict) else tpl,
            "template_image": tpl.get("image") if isinstance(tpl, dict) else None,
            "metrics": {k: v for k, v in metrics.items() if k not in ("per_volume", "versions", "rows")},
            "panels": [{**p.as_dict(), "files": {k: f"entries/{eid}/{v}" for k, v in p.files.items()}}
                       for p in panels],
        }
    except BaseException:
        pending.abort()
        raise
    return pending


def _notes_of(metrics: dict) -> list[str]:
    """The verdict's notes (metrics.json ``qc.notes``: what the verdict could not check, e.g. "levels
    not independently verified: the registration's landmarks are the automatic labeling's own
    discs ...", a pinned disc the image reads as another level, a link that lowered the images'
    mutual information). The report showed the verdict and its reasons only before session 49: a
    bare register-to-template run read "warn" with two score lines, the note that says why its
    levels are unchecked was in the entry's data but on no page."""
    qc = metrics.get("qc")
    notes = qc.get("notes") if isinstance(qc, dict) else None
    return [str(n) for n in notes] if isinstance(notes, list) else []


def _rmdir(p: Path) -> None:
    with contextlib.suppress(OSError):
        p.rmdir()


def build_index(qc_root: Path) -> Path:
    """(Re)write ``index.html`` and the assets of a QC root from its ``entries.json``."""
    qc_root = Path(qc_root).expanduser().resolve()
    if not (qc_root / ENTRIES).exists():
        raise InputError("no entries.json in the QC folder", qc_root,
                         "give a folder written by `spinereg qc RUN_DIR --root QCROOT`")
    with _locked(qc_root):
        (qc_root / "assets").mkdir(exist_ok=True, mode=dir_mode())
        _write_all(_index_files(qc_root, load_entries(qc_root)))
    return qc_root / INDEX


def _index_files(qc_root: Path, entries: list[dict], shown_root: Path | None = None) -> list[tuple[Path, str]]:
    """The page and its assets as (path, text)."""
    from spinereg.io.provenance import version_string

    shown_root = shown_root or qc_root
    report_id = hashlib.sha1(str(shown_root).encode()).hexdigest()[:10]
    data = json.dumps({"report_id": report_id, "root": str(shown_root), "entries": entries,
                       "generator": version_string()}, default=str)
    data = data.replace("</", "<\\/")  # no closing tag inside the script element
    page = _TEMPLATE.format(title=html.escape(f"spinereg QC — {shown_root.name}"), count=len(entries), data=data,
                            generator=html.escape(version_string()))
    pkg = resources.files("spinereg.qc").joinpath("assets")
    return [(qc_root / "assets" / name, pkg.joinpath(name).read_text(encoding="utf-8")) for name in ASSETS] + \
        [(qc_root / INDEX, page)]


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="assets/report.css">
</head>
<body>
<header>
  <div class="title"><h1>spinereg QC</h1> <span id="count">{count} entries</span>
    <span class="generator">{generator}</span></div>
  <div class="controls">
    <label>verdict <select id="filter-verdict">
      <option value="">all</option><option>pass</option><option>warn</option><option>fail</option>
      <option>not scored</option></select></label>
    <label>command <select id="filter-command"><option value="">all</option></select></label>
    <label>flag <select id="filter-flag">
      <option value="">all</option><option>pass</option><option>fail</option><option>artifact</option>
      <option value="none">unflagged</option></select></label>
    <input id="filter-text" type="search" placeholder="filter subject, folder, reason" aria-label="filter">
    <button id="export-flags" type="button" title="download every flag as qc_flags.json">export flags</button>
    <label class="file-button" title="merge flags from a qc_flags.json file">import flags
      <input id="import-flags" type="file" accept=".json,application/json"></label>
    <button id="export-failures" type="button" title="download the entries flagged fail">export failures</button>
  </div>
  <p class="help">Click a row (or move with <kbd>&uarr;</kbd>/<kbd>&darr;</kbd>); with an entry selected press
    <kbd>p</kbd> pass, <kbd>f</kbd> fail, <kbd>a</kbd> artifact, <kbd>x</kbd> clear, <kbd>t</kbd> before/after,
    <kbd>space</kbd> animate. Click a picture to zoom. Flags are kept in this browser (localStorage) and can be
    exported to a file and imported back.</p>
  <p id="flag-status" class="status" role="status"></p>
</header>
<main>
  <table id="entries"><thead></thead><tbody></tbody></table>
  <section id="export-box" hidden>
    <h2 id="export-title">Export</h2>
    <textarea id="failures" rows="6" readonly aria-labelledby="export-title"></textarea>
  </section>
  <section id="detail"><p class="empty">Select an entry.</p></section>
</main>
<script type="application/json" id="qc-data">{data}</script>
<script src="assets/report.js"></script>
</body>
</html>
"""
