"""Outputs of ``spinereg moco``: the corrected series (streamed), its mean, tSNR maps, the motion
table (CSV + JSON) and the ``metrics.json`` document."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spinereg.epi.artifacts import object_mask
from spinereg.epi.moco_result import MocoResult
from spinereg.epi.moco_series import _as_image, _read_volume
from spinereg.errors import InputError, OutputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, check_writable, load_image
from spinereg.io.tempdirs import make_temp_dir, remove_temp_dir

METRICS_SCHEMA = "spinereg.moco.metrics/1"


def series_stem(img: Image) -> str:
    """File name of a series without ``.nii``/``.nii.gz`` (prefix of the outputs)."""
    if img.path is None:
        return "series"
    name = img.path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_names(stem: str) -> dict[str, str]:
    """Output file names of :func:`write_moco_outputs` by role."""
    return {"series": f"{stem}_moco.nii.gz", "mean": f"{stem}_moco_mean.nii.gz",
            "tsnr_before": f"{stem}_tsnr_before.nii.gz", "tsnr_after": f"{stem}_tsnr_after.nii.gz",
            "params_csv": "moco_params.csv", "params_json": "moco_params.json", "metrics": "metrics.json"}


def _tsnr(s: np.ndarray, ss: np.ndarray, n: int) -> np.ndarray:
    mean = s / n
    var = np.maximum(ss - n * mean**2, 0.0) / max(n - 1, 1)
    std = np.sqrt(var)
    return np.where(std > 1e-9 * np.maximum(np.abs(mean), 1e-12), mean / np.where(std > 0, std, 1.0), 0.0)


def cord_region(mask: Image | str | Path, grid: Grid) -> np.ndarray | None:
    """The region a ``-m`` mask gives the tSNR summary: the mask on the series grid (resampled
    linearly by header when on another grid) at half its maximum or more, as 0/1; None when it
    leaves no voxel (a mask outside the series). Relative to the maximum, so that a soft mask
    whose weights stay under 0.5 (or a thin mask resampled onto coarser voxels) still gives its
    region: at an absolute 0.5 it gave none and tSNR was reported as 0.0."""
    if isinstance(mask, str | Path):
        mask = load_image(mask, ndim=3, what="mask")
    if mask.grid.same_as(grid, atol=1e-3):
        data = np.asarray(mask.data, float)
    else:
        from spinereg.transforms.apply import resample

        data = np.asarray(resample(mask, grid, "linear").data, float)
    top = float(data.max()) if data.size else 0.0
    if top <= 0:
        return None
    return (data >= 0.5 * top).astype(float)


def tsnr_in_mask(tsnr: np.ndarray, mask: np.ndarray) -> float:
    """Mean tSNR in a mask (weights)."""
    w = np.clip(np.asarray(mask, float), 0, None)
    return float((tsnr * w).sum() / max(w.sum(), 1e-12))


def write_moco_outputs(result: MocoResult, series: Image | str | Path, outdir: str | Path, *,
                       overwrite: bool = False, interp: str = "spline", inputs: dict | None = None,
                       cord_mask: np.ndarray | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       judge: Callable[[dict], dict] | None = None) -> dict[str, Path]:
    """Write the corrected series (streamed, one interpolation per volume through
    :meth:`MocoResult.volume_transform`), its mean, tSNR before/after (over the b>0 volumes for
    DWI, else all volumes), ``moco_params.csv``/``.json`` and ``metrics.json``.

    ``judge``: the metrics document -> its ``qc`` block (the command passes
    :func:`spinereg.metrics.verdict.moco_verdict`'s; the verdict lives above this layer).

    Everything is written into a hidden staging folder in ``outdir`` and moved into place at the
    end; a failure leaves ``outdir`` as it was.
    """
    from spinereg.io.image import save_image
    from spinereg.io.provenance import write_json
    from spinereg.io.resample import VolumeSampler, interp_name
    from spinereg.io.stream import StreamingNiftiWriter
    from spinereg.transforms.apply import source_voxels
    from spinereg.transforms.base import Chain

    t0 = time.perf_counter()
    img = _as_image(series)
    interp = interp_name(interp)
    if interp == "label":
        raise InputError("label interpolation is not meaningful for a series", None, "use -x spline/linear/nn")
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise OutputError("output folder is a file", out, "give a folder name")
    names = output_names(series_stem(img))
    for n in names.values():
        check_writable(out / n, overwrite)
    grid = result.grid
    missing = result.no_signal if result.no_signal is not None else np.zeros(result.n_volumes, bool)
    classes = np.where(missing, -1, result.classes)
    tsnr_sel = classes == (1 if (classes == 1).sum() >= 2 else classes[~missing][0] if (~missing).any() else -1)
    n_ts = int(tsnr_sel.sum())
    n_mean = max(int((~missing).sum()), 1)
    acc = {k: np.zeros(grid.shape) for k in ("s0", "ss0", "s1", "ss1", "mean")}
    stage = make_temp_dir(".moco.", dir=out)
    try:
        with StreamingNiftiWriter(stage / names["series"], tuple(grid.shape) + (result.n_volumes,), grid.affine,
                                  np.float32, template_header=img.header, overwrite=True) as writer:
            for t in range(result.n_volumes):
                vol = _read_volume(img, t)
                if missing[t]:  # no signal: written as read (NaN stays NaN), out of the mean and tSNR
                    writer.write_volume(vol)
                    if progress:
                        progress(t + 1, result.n_volumes)
                    continue
                if not np.isfinite(vol).all():
                    raise InputError(f"series has {int((~np.isfinite(vol)).sum())} NaN/Inf voxels (volume {t})",
                                     img.name, "replace them by finite values (e.g. `fslmaths IN -nan OUT`)")
                ijk = source_voxels(Chain([result.volume_transform(t)]), grid, grid)
                corr = VolumeSampler(vol, interp).at_voxels(ijk).reshape(grid.shape).astype(np.float32)
                writer.write_volume(corr)
                acc["mean"] += corr
                if tsnr_sel[t]:
                    acc["s0"] += vol
                    acc["ss0"] += vol.astype(np.float64) ** 2
                    acc["s1"] += corr
                    acc["ss1"] += corr.astype(np.float64) ** 2
                if progress:
                    progress(t + 1, result.n_volumes)
        result.mean = (acc["mean"] / n_mean).astype(np.float32)
        result.tsnr_before = _tsnr(acc["s0"], acc["ss0"], n_ts).astype(np.float32)
        result.tsnr_after = _tsnr(acc["s1"], acc["ss1"], n_ts).astype(np.float32)
        hdr3 = Image(np.zeros(grid.shape, np.float32), grid.affine, img.header)
        hdr3.header.set_data_shape(grid.shape)
        for key, arr in (("mean", result.mean), ("tsnr_before", result.tsnr_before),
                         ("tsnr_after", result.tsnr_after)):
            save_image(hdr3.with_data(arr), stage / names[key], overwrite=True, dtype=np.float32)
        rows = result.motion_table()
        buf = io.StringIO()
        wr = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
        (stage / names["params_csv"]).write_text(buf.getvalue())
        write_json(stage / names["params_json"], result.params_json(), overwrite=True)
        doc = moco_metrics(result, cord_mask, inputs, time.perf_counter() - t0)
        if judge is not None:
            doc["qc"] = judge(doc)
        write_json(stage / names["metrics"], doc, overwrite=True)
        files = {}
        for key, n in names.items():
            os.replace(stage / n, out / n)
            files[key] = out / n
    finally:
        remove_temp_dir(stage)
    return files


def moco_metrics(result: MocoResult, cord_mask: np.ndarray | None = None, inputs: dict | None = None,
                 seconds_write: float | None = None) -> dict:
    """The ``metrics.json`` document: ``per_volume`` list (motion and artifact scores) + summary."""
    from spinereg.io.provenance import versions

    sc = result.scores
    mm = result.shifts_mm()
    missing = result.no_signal if result.no_signal is not None else np.zeros(result.n_volumes, bool)
    per_volume = sc.per_volume()
    for t, row in enumerate(per_volume):
        row["class"] = "b0" if (result.classes == 1).any() and result.classes[t] == 0 else (
            "dwi" if result.classes[t] == 1 else "volume")
        row["unit"] = int(result.volume_units[t])
        row["excluded_from_reference"] = bool(result.excluded[t])
        row["no_signal"] = bool(missing[t])
        row["mean_tx_mm"] = round(float(mm[t, :, 0].mean()), 5)
        row["mean_ty_mm"] = round(float(mm[t, :, 1].mean()), 5)
        row["max_abs_shift_mm"] = round(float(np.linalg.norm(mm[t], axis=1).max()), 5)
    summary = {"n_volumes": result.n_volumes, "n_slices": int(result.grid.shape[2]),
               "n_slice_groups": int(result.slice_groups.max()) + 1,
               "slice_groups": result.slice_groups.tolist(),
               "max_abs_shift_mm": round(float(np.linalg.norm(mm, axis=2).max()), 5),
               **sc.summary(),
               "n_no_signal_volumes": int(missing.sum()), "no_signal_volumes": np.flatnonzero(missing).tolist()}
    if result.warnings:
        summary["warnings"] = list(result.warnings)
    # verdict inputs (spinereg/data/qc_thresholds.json, kind "moco"): flagged or signal-less
    # volumes, and whether the series' mean is an image at all (noise 0.03, SCT's fmri 0.48)
    summary["pct_outlier_volumes"] = round(100.0 * float((sc.volume_flags | missing).mean()), 3)
    if result.image_scores:
        summary["image_structure"] = result.image_scores["structure"]
        summary["image_empty"] = result.image_scores["empty"]
    if result.tsnr_before is not None and result.tsnr_after is not None:
        region = cord_mask
        if region is None:
            region = object_mask(result.mean if result.mean is not None else result.reference)
        summary["tsnr_region"] = "cord mask" if cord_mask is not None else "object mask"
        if np.clip(np.asarray(region, float), 0, None).sum() > 0:
            summary["tsnr_before"] = round(tsnr_in_mask(result.tsnr_before, region), 4)
            summary["tsnr_after"] = round(tsnr_in_mask(result.tsnr_after, region), 4)
        else:  # no voxel to average over: not measured (it read 0.0, as if the series had no signal)
            summary["tsnr_region"] += " (empty: tSNR not measured)"
            summary["tsnr_before"] = summary["tsnr_after"] = None
    timings = dict(result.info)
    if seconds_write is not None:
        timings["seconds_write"] = round(seconds_write, 3)
    doc = {"schema": METRICS_SCHEMA, "command": "moco", "per_volume": per_volume, "summary": summary,
           "settings": timings, "inputs": {k: str(v) for k, v in (inputs or {}).items() if v is not None},
           "versions": versions()}
    return doc
