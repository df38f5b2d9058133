"""Benchmark ``spinereg segment``: time and peak memory per image (whole command, child process),
model sizes, and the accuracy table on sct_testing_data and on independent phantoms.

Timing: each command runs ``--repeats`` times (median reported) in a child process whose own
peak RSS (VmHWM at exit) is recorded, beside a baseline in the same run (``spinereg --version``:
interpreter start-up and imports). Targets (issue 9): <= 3 s and <= 1 GB on 2 CPU cores for t2
and for a 256 x 256 x 22 full-field axial image (``t2s_uncropped`` resampled to 0.625 x 0.625 x
3.75 mm, built here).

Accuracy (library calls, same model): Dice vs the references of sct_testing_data (each with the
mask threshold calibrated on the other four images, leave-one-image-out), dwi_mean
centerline RMS, t2s_uncropped overlap Dice and volume outside the canal, CSA C2-C5 on t2, and
Dice on independent phantoms (spinereg.phantom.independent: a generator the model was not
trained with) with thick slices, noise and bias. Each Dice is also given for the model's own map
(``segment(..., refine=False)``: no S-I gap filling, no outline from the image's contrast, no
inward move), the figures before the inference-side corrections of spinereg.segment.refine.

Usage: ``SPINEREG_DATA=... python bench/segment.py [--repeats 3] [--no-accuracy] [--no-phantoms]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apply_4d import run_measured, spinereg_cmd  # noqa: E402

TIME_TARGET_S = 3.0
MEM_TARGET_MB = 1024.0
PHANTOMS = [("test", {}), ("test_t1", {}), ("axial_thick", {}), ("axial_7p5", {}), ("sagittal_thick", {}),
            ("thoracolumbar", {}), ("test", {"noise": 0.08, "bias": 0.35}), ("axial_7p5", {"noise": 0.08, "bias": 0.35})]
PHANTOM_SEEDS = (101, 102, 103)


def sct_root() -> Path:
    return Path(os.environ.get("SPINEREG_DATA", "../shared/data")) / "sct_testing_data"


def full_fov_image(path: Path) -> Path:
    """t2s_uncropped (320 x 320 x 11, 0.5 x 0.5 x 7.5 mm) resampled onto 256 x 256 x 22 voxels of
    0.625 x 0.625 x 3.75 mm covering the same field of view (a full-field axial stack)."""
    from spinereg.io.grid import Grid
    from spinereg.io.image import load_image, save_image
    from spinereg.transforms.apply import resample

    img = load_image(sct_root() / "t2s" / "t2s_uncropped.nii.gz")
    lin = img.affine[:3, :3] / img.grid.zooms * np.array([0.625, 0.625, 3.75])
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = img.grid.center_world() - lin @ ((np.array([256, 256, 22]) - 1) / 2)
    out = resample(img, Grid((256, 256, 22), aff), interp="linear")
    return save_image(out, path, overwrite=True, dtype=np.float32)


def timing(repeats: int, tmp: Path) -> list[dict]:
    cases = [("baseline: spinereg --version", ["--version"]),
             ("t2 (60x55x52, 1 mm)", ["segment", "-i", str(sct_root() / "t2" / "t2.nii.gz")]),
             ("full-FOV axial 256x256x22", ["segment", "-i", str(full_fov_image(tmp / "fullfov.nii.gz"))]),
             ("t2s_uncropped 320x320x11", ["segment", "-i", str(sct_root() / "t2s" / "t2s_uncropped.nii.gz")]),
             ("mt1 (40x40x5)", ["segment", "-i", str(sct_root() / "mt" / "mt1.nii.gz")])]
    rows = []
    for name, args in cases:
        if args[0] == "segment":
            args = args + ["-o", str(tmp / "seg.nii.gz"), "--overwrite"]
        runs = [run_measured(spinereg_cmd() + args) for _ in range(repeats)]
        bad = [r for r in runs if r["rc"] != 0]
        if bad:
            raise SystemExit(f"{name}: failed: {bad[0]['output'][-500:]}")
        secs = statistics.median(r["wall_s"] for r in runs)
        mem = max(r["peak_mb"] for r in runs)
        ok = "" if args[0] != "segment" else ("ok" if secs <= TIME_TARGET_S and mem <= MEM_TARGET_MB else "OVER")
        rows.append({"case": name, "median_s": round(secs, 2), "peak_mb": round(mem), "target": ok})
    return rows


def accuracy() -> dict:
    from spinereg.io.image import load_image
    from spinereg.metrics.cordseg import (
        centerline_rms,
        dice_same_grid,
        outside_reference_mm3,
    )
    from spinereg.metrics.morphometry import cross_sectional_area
    from spinereg.segment import model_summary, segment
    from spinereg.segment.model import get_model

    fine = get_model("fine")
    loio = fine.info.get("threshold_calibration", {}).get("loio_threshold", {})
    r = sct_root()
    version = model_summary()["fine"]["version"]
    out = {"model": f"version {version or '?'}, threshold {fine.threshold}"
                    + (f" (each Dice below with the threshold chosen on the other four images: {loio})" if loio else "")}
    for name, im, ref in [("t2", "t2/t2", "t2/t2_seg-manual"), ("t1", "t1/t1w", "t1/t1w_seg-manual"),
                          ("t2s", "t2s/t2s", "t2s/t2s_seg"), ("mt1", "mt/mt1", "mt/mt1_seg"),
                          ("mt0", "mt/mt0", "mt/mt0_seg")]:
        refd = load_image(r / f"{ref}.nii.gz").data
        res = segment(r / f"{im}.nii.gz", threshold=loio.get(name))
        raw = segment(r / f"{im}.nii.gz", threshold=loio.get(name), refine=False)
        out[f"dice {name} (threshold {loio.get(name, fine.threshold)})"] = (
            f"{dice_same_grid(res.seg.data, refd):.4f}  (model only, refine=False: "
            f"{dice_same_grid(raw.seg.data, refd):.4f})")
    res = segment(r / "dmri" / "dwi_mean.nii.gz")
    out["dwi_mean centerline RMS mm"] = round(centerline_rms(res.seg, load_image(r / "dmri" / "dwi_mean_centerline-optic.nii.gz")), 3)
    # t2s.nii.gz is not a crop of t2s_uncropped in any common space (tests/test_segment_realdata.py):
    # judged with the uncropped image's own GM segmentation and t2s_seg's cross-section per slice
    res = segment(r / "t2s" / "t2s_uncropped.nii.gz")
    seg = np.asarray(res.seg.data) > 0
    gm = load_image(r / "t2s" / "t2s_uncropped_gmseg_manual.nii.gz")
    ref = np.asarray(load_image(r / "t2s" / "t2s_seg.nii.gz").data) > 0
    out["t2s_uncropped: manual GM inside the mask"] = round(float((seg & (gm.data > 0)).sum() / (gm.data > 0).sum()), 4)
    out["t2s_uncropped: mm3 > 10 mm from the GM centreline"] = outside_reference_mm3(res.seg, gm, 10.0)
    out["t2s_uncropped: cross-section vs t2s_seg (9 slices)"] = f"{100 * (seg[:, :, :9].sum() / ref.sum() - 1):+.1f} %"
    lev = load_image(r / "t2" / "t2_seg-manual_labeled.nii.gz")
    auto = cross_sectional_area(segment(r / "t2" / "t2.nii.gz", threshold=loio.get("t2")).seg,
                                lev).mean_over([2, 3, 4, 5])[0]
    man = cross_sectional_area(load_image(r / "t2" / "t2_seg-manual.nii.gz"), lev).mean_over([2, 3, 4, 5])[0]
    out["CSA t2 levels 2-5 auto / manual mm2"] = f"{auto:.2f} / {man:.2f} ({100 * (auto - man) / man:+.1f} %)"
    return out


def phantoms() -> list[dict]:
    from spinereg.metrics.cordseg import dice_same_grid
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.segment import segment

    rows = []
    for variant, kw in PHANTOMS:
        ds, raw = [], []
        for seed in PHANTOM_SEEDS:
            ph = make_independent_subject(variant, seed=seed, **kw)
            ds.append(dice_same_grid(segment(ph.image).seg.data, ph.seg.data))
            raw.append(dice_same_grid(segment(ph.image, refine=False).seg.data, ph.seg.data))
        rows.append({"variant": variant + ("" if not kw else " " + json.dumps(kw)),
                     "dice": [round(d, 4) for d in ds], "min": round(min(ds), 4),
                     "model_only": [round(d, 4) for d in raw]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--no-phantoms", action="store_true")
    a = ap.parse_args()
    from spinereg.segment import model_summary

    print("models:", json.dumps({k: {"file": v["file"], "bytes": v["bytes"]} for k, v in model_summary().items()}))
    if not a.no_timing:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"\n{'case':36s} {'median s':>9s} {'peak MB':>8s}  target (<= {TIME_TARGET_S} s, <= {MEM_TARGET_MB:.0f} MB)")
            for row in timing(a.repeats, Path(tmp)):
                print(f"{row['case']:36s} {row['median_s']:9.2f} {row['peak_mb']:8d}  {row['target']}")
    if not a.no_accuracy:
        print()
        for k, v in accuracy().items():
            print(f"{k:44s} {v}")
    if not a.no_phantoms:
        print("\nindependent phantoms (seeds " + ", ".join(map(str, PHANTOM_SEEDS)) + "): Dice vs the true seg"
              " (in brackets: the model only, refine=False)")
        rows = phantoms()
        for row in rows:
            print(f"{row['variant']:44s} {row['dice']}  min {row['min']}  ({row['model_only']})")
        for key, name in (("dice", "default"), ("model_only", "model only")):
            v = [d for row in rows for d in row[key]]
            print(f"all {len(v)} phantoms, {name}: mean {np.mean(v):.4f}, worst {min(v):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
