"""Files of ``spinereg analyze-lesion``: ``<lesion>_analysis.csv`` (one row per lesion),
``<lesion>_label.nii.gz`` (each lesion its own integer label, on the lesion mask's grid, as SCT
writes it), ``<lesion>_analysis.json`` (totals, per-lesion details, provenance) and
``<lesion>_bridges.csv`` (the tissue bridges of every section with lesion on the midsagittal
plane, one row per lesion and section: what the JSON's ``bridge_sections`` hold, for a
spreadsheet). All appear together or none."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.image import Image
    from spinereg.lesion.analyze import LesionReport


def output_names(lesion_path: str | Path) -> dict[str, str]:
    from spinereg.io.image import path_stem

    stem = path_stem(lesion_path)
    return {"csv": f"{stem}_analysis.csv", "labels": f"{stem}_label.nii.gz", "json": f"{stem}_analysis.json",
            "bridges": f"{stem}_bridges.csv"}


def csv_text(report: LesionReport) -> str:
    from spinereg.lesion.analyze import CSV_COLUMNS

    rows = report.csv_rows()
    cols = list(CSV_COLUMNS)
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


#: columns of the per-section bridges table
BRIDGE_COLUMNS = ("label", "s [mm]", "dorsal_bridge [mm]", "ventral_bridge [mm]")


def bridges_csv_text(report: LesionReport) -> str:
    """One row per lesion and section (``s``: the section centre's arc length along the
    centerline, mm), lesions in their numbering, sections from inferior to superior."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BRIDGE_COLUMNS)
    for r in report.lesions:
        for s, dorsal, ventral in sorted(r.bridge_sections):
            w.writerow([r.label, *(round(float(v), 4) for v in (s, dorsal, ventral))])
    return buf.getvalue()


def _clean(v: object) -> object:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def write_report(report: LesionReport, lesion: Image, outdir: str | Path, *, overwrite: bool = False,
                 inputs: dict | None = None, stem_from: str | Path | None = None) -> dict[str, Path]:
    """Write the four files into ``outdir`` (see module doc); returns them by role."""
    from spinereg.io.image import save_image
    from spinereg.io.provenance import describe_inputs, utc_now, versions
    from spinereg.io.staging import OutputFolder

    outdir = Path(outdir)
    names = output_names(stem_from or lesion.path or "lesion.nii.gz")
    folder = OutputFolder(outdir, list(names.values()), overwrite=overwrite).check()
    inputs = dict(inputs or {})
    doc = {"command": "analyze-lesion", "created": utc_now(), "versions": versions(),
           "inputs": {**inputs, "files": describe_inputs({k: v for k, v in inputs.items() if k != "params"})},
           "totals": report.totals(), "centerline_length_mm": round(report.centerline_length_mm, 3),
           "definitions": {
               "connectivity": "18 (face or edge neighbours), as SCT's skimage label(connectivity=2)",
               "numbering": "superior to inferior along the centerline",
               "length": "extent along the centerline (arc length), plus one voxel's extent along it",
               "sections": "perpendicular to the centerline, one voxel thick",
               "max_axial_damage_ratio": "lesion area inside the cord / cord area, largest over the sections",
               "bridge_sections": "per section with lesion on the midsagittal plane: [s (mm along the centerline, "
                                  "section centre), dorsal, ventral bridge width (mm)]; the smallest are the midsagittal_* columns",
               "outside_cord": "under half of the lesion's voxels inside the cord segmentation"},
           "lesions": [_clean(r.as_dict()) for r in report.lesions]}
    text = csv_text(report)
    dtype = np.uint8 if report.n_lesions < 256 else np.int32
    with folder as tmp:
        (tmp / names["csv"]).write_text(text)
        save_image(lesion.with_data(report.labels.astype(dtype)), tmp / names["labels"], overwrite=True, dtype=dtype)
        (tmp / names["json"]).write_text(json.dumps(_clean(doc), indent=1, default=str) + "\n")
        (tmp / names["bridges"]).write_text(bridges_csv_text(report))
    return {k: outdir / v for k, v in names.items()}
