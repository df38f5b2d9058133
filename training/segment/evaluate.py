"""Figures of a model folder (models.json + ONNX files) on the sct_testing_data images.

    SPINEREG_DATA=... python training/segment/evaluate.py [MODELS_DIR] [--json out.json]

Report only: these images are never used for training or model selection.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

CASES = [  # name, image, reference, kind
    ("t2", "t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", "dice"),
    ("t1", "t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz", "dice"),
    ("t2s", "t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz", "dice"),
    ("mt1", "mt/mt1.nii.gz", "mt/mt1_seg.nii.gz", "dice"),
    ("mt0", "mt/mt0.nii.gz", "mt/mt0_seg.nii.gz", "dice"),
    ("dwi_mean", "dmri/dwi_mean.nii.gz", "dmri/dwi_mean_centerline-optic.nii.gz", "centerline"),
    ("t2s_uncropped", "t2s/t2s_uncropped.nii.gz", "t2s/t2s_seg.nii.gz", "overlap"),
]


def parse_model_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """``[MODELS_DIR] [--json FILE]`` and the caller's own options; a models folder given is put in
    ``SPINEREG_SEGMENT_MODELS`` before the package is imported."""
    ap.add_argument("models", nargs="?")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.models:
        os.environ["SPINEREG_SEGMENT_MODELS"] = str(Path(a.models).resolve())
    return a


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only")
    a = parse_model_args(ap)
    from spinereg.io.image import load_image
    from spinereg.metrics.cordseg import centerline_rms, dice_on_overlap, outside_reference_mm3
    from spinereg.segment import segment

    root = Path(os.environ.get("SPINEREG_DATA", "/work/shared/data")) / "sct_testing_data"
    out = {}
    for name, im, ref, kind in CASES:
        if a.only and name not in a.only.split(","):
            continue
        t0 = time.perf_counter()
        try:
            res = segment(root / im)
        except Exception as exc:  # report, go on
            out[name] = {"error": str(exc)}
            print(name, "ERROR", exc, flush=True)
            continue
        r = load_image(root / ref)
        if kind == "dice":
            d = float(2 * np.sum((res.seg.data > 0) & (r.data > 0)) / (np.sum(res.seg.data > 0) + np.sum(r.data > 0)))
            out[name] = {"dice": round(d, 4)}
        elif kind == "centerline":
            out[name] = {"centerline_rms_mm": round(centerline_rms(res.seg, r), 3)}
        else:
            out[name] = {"dice_overlap": round(dice_on_overlap(res.seg, r), 4),
                         "outside_mm3": round(outside_reference_mm3(res.seg, r), 1)}
        out[name]["seconds"] = round(time.perf_counter() - t0, 2)
        print(name, out[name], flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
