"""Group outputs of a batch, rebuilt from the unit folders at the end of every run (so that a
resumed run ends with the same group files as an uninterrupted one):

* ``OUT/group/subjects.tsv``: one row per unit, its status (done / failed), verdict, one-line reason
  and notes (e.g. which of several T2w images was used);
* ``OUT/group/qc_scores.csv``: every registration's verdict and scores (``spinereg qc-scores``'s table,
  ``subject`` the participant id with ``session_id`` and ``image`` beside it, ``run_id`` the run
  folder under OUT);
* ``OUT/group/metrics_per_level.tsv``: every extracted metric, per subject and level;
* ``OUT/group/summary_per_level.tsv``: per metric, label and level, n / mean / SD / median / min / max across subjects;
* ``OUT/qc/index.html``: one QC report over every unit (the pages stay in each unit's ``qc/``;
  the report's filters select by verdict, command, flag, text).

The units are every unit of the dataset, also after a run on a selection (``run._group_units``).
Each is written into a temporary file or folder and renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.batch.tables import METRIC_COLUMNS, SUMMARY_COLUMNS, read_tsv, summarise, write_tsv
from spinereg.io.staging import OutputFolder

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from spinereg.batch.bids import Unit

SUBJECT_COLUMNS = ("participant_id", "session_id", "unit", "status", "verdict", "reason", "folder", "notes")
#: qc_scores.csv's first columns (then the key scores): qc-scores' own, with the unit's session and the image
QC_COLUMNS = ("run_id", "subject", "session_id", "image", "command", "verdict", "reasons", "folder")


def unit_provenance(folder: Path) -> dict:
    try:
        return json.loads((folder / "provenance.json").read_text())
    except (OSError, ValueError):
        return {}


def subject_rows(out: Path, units: Sequence[Unit], failures: dict[str, str]) -> list[dict]:
    rows = []
    for u in units:
        folder = out / u.rel
        prov = unit_provenance(folder) if folder.is_dir() else {}
        verdict = prov.get("verdict")
        if folder.is_dir():
            reasons = [f"{s['contrast']} {s['step']}: {'; '.join(s.get('reasons', []))}"
                       for s in prov.get("steps", []) if s.get("verdict") == "fail"]
            status = "failed" if verdict == "fail" else "done"
            reason = ("QC verdict fail -- " + " | ".join(reasons)) if reasons else "n/a"
        else:
            status, reason = "failed", failures.get(u.uid, "not run")
        rows.append({"participant_id": f"sub-{u.subject}", "session_id": f"ses-{u.session}" if u.session else "n/a",
                     "unit": u.uid, "status": status, "verdict": verdict or "n/a", "reason": reason,
                     "folder": str(u.rel) if folder.is_dir() else "n/a",
                     "notes": " | ".join(prov.get("notes") or []) or "n/a"})
    return rows


def _metric_rows(out: Path, units: Sequence[Unit]) -> list[dict]:
    rows = []
    for u in units:
        folder = out / u.rel
        if folder.is_dir():
            for t in sorted(folder.glob("*/*_perlevel.tsv")):
                rows.extend(read_tsv(t))
    return rows


def _qc_rows(out: Path, units: Sequence[Unit]) -> list[dict]:
    """qc-scores' rows of every complete unit, named by the unit: ``subject`` is its participant id
    (qc-scores names a run by its image, ``sub-01_T2w``, or, a chain, by its folder, ``dwi_chain``,
    which is what this table held before session 48) and ``run_id`` its folder under OUT (relative
    to the unit folder, ``ses-01/sct/T2w_register-to-template`` was the run id of every subject's
    first session)."""
    from spinereg.errors import SpineregError
    from spinereg.metrics.cohort import aggregate, image_stem

    rows = []
    top = out.resolve()
    for u in units:
        folder = out / u.rel
        if not folder.is_dir():
            continue
        try:
            found = aggregate([folder])
        except SpineregError:  # no registration in this unit
            continue
        for r in found:
            run = Path(r["folder"])
            rows.append({**r, "run_id": run.relative_to(top).as_posix() if top in run.parents else r["run_id"],
                         "subject": f"sub-{u.subject}", "session_id": f"ses-{u.session}" if u.session else "n/a",
                         "image": image_stem(unit_provenance(run)) or r["subject"]})
    return rows


def _qc_index(out: Path, units: Sequence[Unit]) -> Path | None:
    """One report over the units' QC entries (their pictures stay in the unit folders)."""
    from spinereg.qc.report import ENTRIES, build_index, load_entries

    entries = []
    final = out / "qc"
    for u in units:
        qc = out / u.rel / "qc"
        if not (qc / ENTRIES).is_file():
            continue
        for e in load_entries(qc):
            rel = os.path.relpath(qc, final)
            e = dict(e, panels=[{**p, "files": {k: f"{rel}/{v}" for k, v in p.get("files", {}).items()}}
                                for p in e.get("panels", [])])
            e["run_rel"] = os.path.relpath(e.get("run_dir", ""), final)
            entries.append(e)
    if not entries:
        return None
    # written aside, then replacing the previous report as a whole (io.staging.OutputFolder)
    with OutputFolder(final, replace=True) as tmp:
        (tmp / ENTRIES).write_text(json.dumps({"version": 2, "entries": entries}, indent=1) + "\n")
        build_index(tmp)
    # the page names its folder: rebuild it under the final name
    (final / ".lock").unlink(missing_ok=True)
    build_index(final)
    (final / ".lock").unlink(missing_ok=True)
    return final / "index.html"


def write_group(out: Path, units: Sequence[Unit], failures: dict[str, str]) -> dict[str, Path]:
    """Write every group output (see module doc); returns them by role."""
    from spinereg.metrics.cohort import to_cohort_csv

    group = out / "group"
    files: dict[str, Path] = {}
    with OutputFolder(group, replace=True) as tmp:  # replaces the previous group folder as a whole
        subs = subject_rows(out, units, failures)
        write_tsv(tmp / "subjects.tsv", SUBJECT_COLUMNS, subs)
        if any((out / u.rel).is_dir() for u in units):
            rows = _qc_rows(out, units)
            (tmp / "qc_scores.csv").write_text(to_cohort_csv(rows, QC_COLUMNS) if rows else "")
        mrows = _metric_rows(out, units)
        write_tsv(tmp / "metrics_per_level.tsv", METRIC_COLUMNS, mrows)
        write_tsv(tmp / "summary_per_level.tsv", SUMMARY_COLUMNS, summarise(mrows))
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
    files.update({p.stem: p for p in sorted(group.iterdir())})
    index = _qc_index(out, units)
    if index is not None:
        files["qc"] = index
    return files
