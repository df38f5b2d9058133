"""Tables of the batch: metrics per subject and level (one TSV per unit, then one for the group)
and the group summary per level. Numbers are written with ``repr`` (round-trip exact) and no
timestamps, so that the same inputs give the same bytes."""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.io.image import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from spinereg.batch.steps import Context

METRIC_COLUMNS = ("participant_id", "session_id", "contrast", "metric", "label", "method", "level", "slices",
                  "size_vox", "value", "std")
SUMMARY_COLUMNS = ("contrast", "metric", "label", "method", "level", "n", "mean", "sd", "median", "min", "max",
                   "units")


def num(v: float | None) -> str:
    if v is None:
        return "n/a"
    f = float(v)
    return "n/a" if f != f else repr(round(f, 6))


def write_tsv(path: Path, columns: Sequence[str], rows: list[dict], overwrite: bool = True) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), delimiter="\t", lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("n/a" if r.get(k) in (None, "") else r.get(k)) for k in columns})
    text = buf.getvalue()
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text), overwrite)


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _resolve_label(folders: list[Path], wanted: int | str):
    """(folder, label entry) for a label given by id or by name (exact, then prefix; case-insensitive)."""
    from spinereg.metrics.extract import read_label_folder

    for folder in folders:
        if not (folder / "info_label.txt").is_file():
            continue
        lf = read_label_folder(folder)
        for lab in lf.labels:
            if str(wanted).isdigit() and lab.id == int(wanted):
                return folder, lab
        for exact in (True, False):
            for lab in lf.labels:
                name, w = lab.name.lower(), str(wanted).lower()
                if (name == w) if exact else name.startswith(w):
                    return folder, lab
    return None, None


def extract_rows(ctx: Context, suffix: str, metric_path: Path, warp_dir: Path, ex: dict,
                 out: Path) -> Path:
    """extract-metric of ``metric_path`` within the label ``ex['labels']`` of the warped template
    (or atlas), per vertebral level; written as one TSV for the unit."""
    from spinereg.batch.steps import UnitError
    from spinereg.metrics.extract import extract_metric

    folder, lab = _resolve_label([warp_dir / "template", warp_dir / "atlas"], ex.get("labels", "spinal cord"))
    if lab is None:
        raise UnitError(f"{warp_dir}: no label {ex.get('labels')!r} in the warped template/atlas -- fix: set "
                        f"contrasts.{suffix}.extract.labels to a name or id of its info_label.txt")
    levels = sorted((warp_dir / "template").glob("*_levels.nii.gz"))
    rows = extract_metric(metric_path, folder, ids=lab.id, method=ex.get("method", "wa"), vert=ex.get("vert"),
                          vertfile=levels[0] if levels else None, perlevel=bool(ex.get("perlevel", True)))
    metric = ex.get("metric", "image")
    recs = []
    for r in rows:
        recs.append({"participant_id": f"sub-{ctx.unit.subject}", "session_id":
                     f"ses-{ctx.unit.session}" if ctx.unit.session else "n/a", "contrast": suffix,
                     "metric": metric, "label": r.label, "method": r.method,
                     "level": ",".join(map(str, r.levels)) if r.levels else "n/a",
                     "slices": ",".join(map(str, r.slices)), "size_vox": num(r.size), "value": num(r.value),
                     "std": num(r.std)})
    return write_tsv(out, METRIC_COLUMNS, recs, overwrite=False)


def summarise(rows: list[dict]) -> list[dict]:
    """Per (contrast, metric, label, method, level): n, mean, SD, median, min, max of ``value``
    across units (``n/a`` values left out)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        key = tuple(r.get(k, "n/a") for k in ("contrast", "metric", "label", "method", "level"))
        groups.setdefault(key, [])
        if r.get("value") not in (None, "", "n/a"):
            groups[key].append(float(r["value"]))

    def level_key(k: tuple[str, ...]):
        lv = k[4]
        return (k[:4], int(lv) if lv.isdigit() else 10**6, lv)

    out = []
    for key in sorted(groups, key=level_key):
        vals = groups[key]
        out.append({**dict(zip(("contrast", "metric", "label", "method", "level"), key, strict=True)),
                    "n": len(vals), "mean": num(statistics.fmean(vals)) if vals else "n/a",
                    "sd": num(statistics.stdev(vals)) if len(vals) > 1 else "n/a",
                    "median": num(statistics.median(vals)) if vals else "n/a",
                    "min": num(min(vals)) if vals else "n/a", "max": num(max(vals)) if vals else "n/a",
                    "units": "%" if key[1] == "mtr" else ("mm2" if key[1] == "csa" else "")})
    return out
