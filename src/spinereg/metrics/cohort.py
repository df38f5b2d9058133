"""Cohort table of QC verdicts: one row per output folder (metrics.json + provenance.json).

:func:`aggregate` finds every output folder under the given roots (the roots themselves included),
takes each folder's ``qc`` block from metrics.json (or judges it now when absent or ``rescore``)
and returns one row per run: run id, subject, command, verdict, reasons and the key scores.
:func:`write_cohort_csv` writes the rows as one CSV, atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from spinereg.errors import InputError, SpineregError
from spinereg.io.image import atomic_write
from spinereg.metrics.verdict import command_kind, judge, score_output_folder

KEY_SCORES = ("cord_dice", "hausdorff95_mm", "hausdorff95_vox", "centerline_rms_mm", "landmark_max_residual_mm",
              "label_si_scale", "label_si_scale_deviation", "level_offset_vertebrae", "label_si_uncertainty_mm",
              "jacobian_min", "pct_folding", "inverse_consistency_vox", "similarity_before", "similarity_after",
              "similarity_shift_gain", "image_structure")
FIXED_COLUMNS = ("run_id", "subject", "command", "verdict", "reasons", "folder")
#: provenance inputs naming a run's image (the first present wins)
IMAGE_INPUTS = ("image", "input", "dest")


def find_output_folders(roots: list[str | Path]) -> list[Path]:
    """Folders holding both metrics.json and provenance.json under (or equal to) each root, sorted.

    A folder below a hidden one (a name starting with '.', relative to the root) is left out: the
    staging copies of unfinished work (a batch unit's ``.sub-01.<pid>.<random>.part/``, an output
    folder's temporary copy) were counted as runs before session 48, twice when the unit then
    completed."""
    found: set[Path] = set()
    for root in roots:
        r = Path(root)
        if not r.is_dir():
            raise InputError("not a folder", r, "give spinereg output folders or folders that contain them")
        for m in r.rglob("metrics.json"):
            if _hidden(m.parent.relative_to(r)):
                continue
            if (m.parent / "provenance.json").is_file():
                found.add(m.parent.resolve())
    return sorted(found)


def unjudged_folders(roots: list[str | Path], listed: set[Path] | None = None) -> dict[str, list[Path]]:
    """Output folders under ``roots`` that :func:`aggregate` lists no row for, by command: those with
    provenance.json whose command has no QC thresholds (segment, label-vertebrae, extract-metric,
    ...) or that hold no metrics.json. Hidden folders and batch unit folders (whose runs lie below
    them) are left out as in
    :func:`find_output_folders`. ``listed``: the folders :func:`aggregate` gave rows (resolved),
    whose provenance.json is not read again. ``spinereg qc-scores`` says how many it left out and
    why; before session 50 they were left out silently."""
    from spinereg.metrics.verdict import KINDS

    out: dict[str, set[Path]] = {}
    for root in roots:
        r = Path(root)
        if not r.is_dir():
            continue
        for p in r.rglob("provenance.json"):
            if _hidden(p.parent.relative_to(r)) or (listed and p.parent.resolve() in listed):
                continue
            try:
                prov = json.loads(p.read_text())
                cmd = str(prov.get("command", "")) if isinstance(prov, dict) else ""
            except (ValueError, OSError):
                continue  # aggregate lists an unreadable one as a failed run when metrics.json is there
            if cmd == "batch":
                continue  # a batch unit's folder: its runs lie below it, each listed or counted
            if not ((cmd in KINDS or "moco" in cmd) and (p.parent / "metrics.json").is_file()):
                out.setdefault(cmd or "unknown", set()).add(p.parent.resolve())
    return {k: sorted(v) for k, v in sorted(out.items())}


def _hidden(rel: Path) -> bool:
    """Whether a path (relative to a scanned root) passes through a hidden folder."""
    return any(part.startswith(".") for part in rel.parts)


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _subject(prov: dict, folder: Path) -> str:
    inputs = prov.get("inputs") or {}
    path = next((inputs[k] for k in IMAGE_INPUTS if inputs.get(k)), None)
    return _stem(path) if path else folder.name


def image_stem(prov: dict) -> str | None:
    """The run's image without .nii[.gz] (``image`` / ``input`` / ``dest`` of its inputs, else a
    chain's first image, its target), None when its provenance names none."""
    inputs = prov.get("inputs") or {}
    path = next((inputs[k] for k in IMAGE_INPUTS if inputs.get(k)), None)
    images = inputs.get("images")
    if not path and isinstance(images, list) and images and isinstance(images[0], str):
        path = images[0]
    return _stem(path) if path else None


def _run_id(folder: Path, roots: list[Path]) -> str:
    for r in roots:
        try:
            rel = folder.relative_to(r)
        except ValueError:
            continue
        return str(Path(r.name) / rel) if str(rel) != "." else r.name
    return folder.name


def aggregate(roots: list[str | Path], rescore: bool = False, thresholds: dict | None = None) -> list[dict]:
    """One row per output folder found under ``roots`` (see the module docstring).

    ``rescore``: recompute each folder's verdict (image scores included) and write it into its
    metrics.json; otherwise a folder without a ``qc`` block is judged from its metrics only.
    """
    rroots = [Path(r).resolve() for r in roots]
    folders = find_output_folders(roots)
    if not folders:
        raise InputError("no output folder (metrics.json + provenance.json) found", ", ".join(map(str, roots)),
                         "give the folders that spinereg register-to-template / register wrote")
    rows = []
    for folder in folders:
        try:
            prov = json.loads((folder / "provenance.json").read_text())
            mets = json.loads((folder / "metrics.json").read_text())
        except (ValueError, OSError) as exc:
            # one damaged folder is a failed run of the cohort, not the end of the scan (before
            # session 37 it stopped the whole table, exit 2)
            rows.append({"run_id": _run_id(folder, rroots), "subject": folder.name, "command": "unknown",
                         "verdict": "fail", "reasons": f"fail: unreadable provenance.json / metrics.json ({exc}); "
                                                       "rerun the command with --overwrite",
                         "folder": str(folder)})
            continue
        try:
            kind = command_kind(prov)
        except SpineregError:
            continue  # not a registration folder (e.g. extract-metric)
        if rescore:
            block = score_output_folder(folder, thresholds).as_block()
        elif isinstance(mets.get("qc"), dict) and "verdict" in mets["qc"]:
            block = mets["qc"]
        else:
            block = judge(mets, kind, thresholds).as_block()
        row = {"run_id": _run_id(folder, rroots), "subject": _subject(prov, folder), "command": kind,
               "verdict": block.get("verdict"), "reasons": "; ".join(block.get("reasons", [])),
               "folder": str(folder)}
        scores = block.get("scores", {})
        row.update({k: scores.get(k) for k in KEY_SCORES})
        row.update({k: v for k, v in scores.items() if k not in row})
        rows.append(row)
    return rows


def to_cohort_csv(rows: list[dict], fixed: Sequence[str] = FIXED_COLUMNS) -> str:
    """CSV text: the ``fixed`` columns, the key scores, then any other score (blank where absent)."""
    cols = list(fixed) + [k for k in KEY_SCORES if k not in fixed]
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def write_cohort_csv(rows: list[dict], path: str | Path, overwrite: bool = False) -> Path:
    """Write :func:`to_cohort_csv` to ``path`` atomically."""
    text = to_cohort_csv(rows)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite)
