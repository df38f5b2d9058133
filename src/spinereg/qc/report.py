"""The HTML QC report: one ``index.html`` per QC root, one entry per command run and subject.

Layout of a QC root::

    qc/index.html        the report (data inlined: opens from file:// with no server)
    qc/entries.json      every entry (the report's data; rewritten atomically under a lock)
    qc/assets/           report.js, report.css (copied from the package)
    qc/entries/<id>/     the figures of one entry

An entry's id is derived from the command and the run folder, so re-running QC on a folder
replaces its entry. Nothing in the report refers to the network.
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
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from spinereg.errors import InputError, OutputError, SpineregError

ASSETS = ("report.js", "report.css")
ENTRIES = "entries.json"
INDEX = "index.html"


# -- scores ---------------------------------------------------------------------------------------
def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif _num(v) is not None:
            out[key] = _num(v)
    return out


def scores_from_metrics(kind: str, metrics: dict) -> dict[str, float]:
    """The headline scores of a run from metrics.json, named as the verdict's ``qc.scores`` (whose
    values, and extra scores, win where the block is present)."""
    s: dict[str, float | None] = {}
    if kind == "register-to-template":
        s["cord_dice"] = _num(metrics.get("cord_dice_subject_space_zb"))
        s["landmark_max_residual_mm"] = _num((metrics.get("landmarks") or {}).get("max_residual_mm"))
        jacs = [metrics.get(k) or {} for k in ("jacobian_template2anat_in_cord", "jacobian_anat2template_in_cord")]
        mins = [_num(j.get("min")) for j in jacs if _num(j.get("min")) is not None]
        fold = [_num(j.get("pct_folding")) for j in jacs if _num(j.get("pct_folding")) is not None]
        s["jacobian_min"] = min(mins) if mins else None
        s["pct_folding"] = max(fold) if fold else None
        s["inverse_consistency_p95_mm"] = _num((metrics.get("inverse_consistency_mm") or {}).get("p95"))
    elif kind == "register":
        s["cord_dice"] = _num(metrics.get("cord_dice_dest_zb"))
        j = metrics.get("jacobian_src2dest") or {}
        s["jacobian_min"] = _num(j.get("min"))
        s["pct_folding"] = _num(j.get("pct_folding"))
        s["inverse_consistency_p95_mm"] = _num((metrics.get("inverse_consistency_mm") or {}).get("p95"))
    elif kind == "chain":
        dices = [_num(m.get("cord_dice_zb")) for m in metrics.values() if isinstance(m, dict)]
        dices = [d for d in dices if d is not None]
        s["cord_dice"] = min(dices) if dices else None
    elif kind == "moco":
        summary = metrics.get("summary") or {}
        for k in ("max_abs_shift_mm", "tsnr_before", "tsnr_after"):
            s[k] = _num(summary.get(k))
    else:
        s.update(_flatten({k: v for k, v in metrics.items() if k not in ("qc", "versions")}))
    qc = metrics.get("qc")
    if isinstance(qc, dict) and isinstance(qc.get("scores"), dict):
        s.update(_flatten(qc["scores"]))
    return {k: round(v, 4) for k, v in s.items() if v is not None}


def verdict_of(metrics: dict) -> dict:
    """``{"verdict": "pass|warn|fail", "reasons": [...]}`` from metrics' ``qc`` block, else not scored."""
    qc = metrics.get("qc")
    if isinstance(qc, dict) and qc.get("verdict") in ("pass", "warn", "fail"):
        reasons = qc.get("reasons") or []
        return {"verdict": qc["verdict"], "reasons": [str(r) for r in reasons]}
    return {"verdict": "not scored", "reasons": []}


def subject_of(prov: dict, run_dir: Path) -> str:
    """BIDS ``sub-XX[/ses-YY]`` of the run's main input when present, else the input's file stem."""
    from spinereg.qc.figures import _list_input

    inputs = prov.get("inputs") or {}
    main = None
    for key in ("image", "input", "src", "images"):
        if inputs.get(key):
            main = _list_input(inputs[key])[0] if key == "images" else str(inputs[key])
            break
    if main is None and prov.get("images"):
        main = str(_list_input(prov["images"])[0])
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


def _write_text(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@contextlib.contextmanager
def _locked(qc_root: Path) -> Iterator[None]:
    """Exclusive lock on the QC root (several runs may add entries at once)."""
    with open(qc_root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prepare_root(qc_root: Path) -> Path:
    qc_root = Path(qc_root).expanduser().resolve()
    if qc_root.exists() and not qc_root.is_dir():
        raise OutputError("QC root is a file", qc_root, "choose a folder for the QC report")
    try:
        (qc_root / "entries").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the QC folder ({exc.strerror})", qc_root, "choose a writable folder") from exc
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


# -- public API -----------------------------------------------------------------------------------
def add_to_report(run_dir: Path, qc_root: Path | None = None, kind: str | None = None) -> Path:
    """Render the figures of a run folder and add (or replace) its entry in the QC report.

    ``run_dir`` is the output folder of ``register-to-template``, ``register``, ``chain`` or a
    motion correction (``moco``); its ``provenance.json`` (for ``moco``: ``metrics.json``) names
    the inputs and, unless ``kind`` is given, the command. The verdict and reasons come from
    metrics.json's ``qc`` block ("not scored" without one). ``qc_root`` defaults to ``run_dir/qc``. Returns ``qc_root/index.html``.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise SpineregError("the QC report needs matplotlib, which is not installed", None,
                            "python -m pip install 'spinereg[qc]' (or matplotlib)") from exc
    from spinereg.qc.figures import render_run

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
    qc_root = _prepare_root(qc_root if qc_root is not None else run_dir / "qc")
    eid = _entry_id(kind, run_dir)
    stage = Path(tempfile.mkdtemp(dir=qc_root / "entries", prefix=f".{eid}-"))
    try:
        figures = render_run(kind, run_dir, prov, stage)
        for p in stage.iterdir():
            os.chmod(p, 0o644)
        os.chmod(stage, 0o755)
        stamp = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
        entry = {
            "id": eid,
            "command": kind,
            "subject": subject_of(prov, run_dir),
            "run_dir": str(run_dir),
            "run_rel": _rel(run_dir, qc_root),
            "date": stamp.isoformat().replace("+00:00", "Z"),
            "scores": scores_from_metrics(kind, metrics),
            **verdict_of(metrics),
            "template": (prov.get("template") or {}).get("name") if isinstance(prov.get("template"), dict)
            else prov.get("template"),
            "metrics": {k: v for k, v in metrics.items() if k not in ("per_volume", "versions")},
            "figures": [_with_folder(f.as_dict(), f"entries/{eid}") for f in figures],
        }
        with _locked(qc_root):
            final = qc_root / "entries" / eid
            old = None
            if final.exists():
                old = final.with_name(f".{eid}-old-{os.getpid()}")
                os.replace(final, old)
            os.replace(stage, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            entries = [e for e in load_entries(qc_root) if e.get("id") != eid] + [entry]
            _write_text(qc_root / ENTRIES, json.dumps({"version": 1, "entries": entries}, indent=1) + "\n")
            index = _write_index(qc_root, entries)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return index


def _with_folder(fig: dict, folder: str) -> dict:
    return {**fig, "files": {k: f"{folder}/{v}" for k, v in fig["files"].items()}}


def build_index(qc_root: Path) -> Path:
    """(Re)write ``index.html`` and the assets of a QC root from its ``entries.json``."""
    qc_root = Path(qc_root).expanduser().resolve()
    if not (qc_root / ENTRIES).exists():
        raise InputError("no entries.json in the QC folder", qc_root,
                         "give a folder written by `spinereg qc RUN_DIR --root QCROOT`")
    with _locked(qc_root):
        return _write_index(qc_root, load_entries(qc_root))


def _copy_assets(qc_root: Path) -> None:
    dest = qc_root / "assets"
    dest.mkdir(exist_ok=True)
    pkg = resources.files("spinereg.qc").joinpath("assets")
    for name in ASSETS:
        _write_text(dest / name, pkg.joinpath(name).read_text(encoding="utf-8"))


def _write_index(qc_root: Path, entries: list[dict]) -> Path:
    _copy_assets(qc_root)
    report_id = hashlib.sha1(str(qc_root).encode()).hexdigest()[:10]
    data = json.dumps({"report_id": report_id, "root": str(qc_root), "entries": entries}, default=str)
    data = data.replace("</", "<\\/")  # no closing tag inside the script element
    page = _TEMPLATE.format(title=html.escape(f"spinereg QC — {qc_root.name}"), count=len(entries), data=data)
    return _write_text(qc_root / INDEX, page)


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
  <h1>spinereg QC</h1>
  <span id="count">{count} entries</span>
  <div class="controls">
    <label>verdict <select id="filter-verdict">
      <option value="">all</option><option>pass</option><option>warn</option><option>fail</option>
      <option>not scored</option></select></label>
    <label>command <select id="filter-command"><option value="">all</option></select></label>
    <label>flag <select id="filter-flag">
      <option value="">all</option><option>pass</option><option>fail</option><option>artifact</option>
      <option value="none">unflagged</option></select></label>
    <input id="filter-text" type="search" placeholder="filter subject, folder, reason">
    <button id="export-failures" type="button">export failures</button>
  </div>
  <p class="help">Click a row (or move with &uarr;/&darr;); with an entry focused press
    <kbd>p</kbd> pass, <kbd>f</kbd> fail, <kbd>a</kbd> artifact, <kbd>x</kbd> clear,
    <kbd>t</kbd> before/after. Flags are kept in this browser (localStorage).</p>
</header>
<main>
  <table id="entries"><thead></thead><tbody></tbody></table>
  <section id="export-box" hidden>
    <h2>Entries flagged fail</h2>
    <textarea id="failures" rows="6" readonly></textarea>
  </section>
  <section id="detail"><p class="empty">Select an entry.</p></section>
</main>
<script type="application/json" id="qc-data">{data}</script>
<script src="assets/report.js"></script>
</body>
</html>
"""
