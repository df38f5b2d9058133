"""Figures of a model folder on cords with lesions (report only; never used for selection).

    SPINEREG_DATA=... python training/segment/evaluate_lesions.py [MODELS_DIR] [--json out.json]

* Lesions painted into sct_testing_data's t2 and t1 (seeds 0-7): an ellipsoid (1.2-2.5 mm
  in-plane, 3-12 mm S-I semi-axes) centred at a random voxel of the manual cord mask away from
  the field's ends, cut by that mask, at 0.9-1.4 (t2) or 0.8-1.2 (t1) times the CSF's median
  (a ring 2-3 voxels outside the mask), blurred by 0.5 voxel. Reported: Dice against the manual
  mask and the share of lesion voxels inside the automatic mask.
* ``t2/t2_fake_lesion`` (SCT's own painted lesion): Dice against SCT's cord mask and the lesion
  voxels inside, with and without segment.refine's lesion rule (``LESION_GAP_MM``).

This painter shares no code with ``paint_lesions.py`` (which paints the training slices).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import parse_model_args  # noqa: E402

CASES = (("t2", "t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", (0.9, 1.4)),
         ("t1", "t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz", (0.8, 1.2)))


def paint_lesion(img, seg, seed: int, level: tuple[float, float]):
    """One lesion painted into ``img`` (an Image) inside its manual cord mask ``seg``: an
    ellipsoid (1.2-2.5 mm in-plane, 3-12 mm S-I semi-axes) centred at a random mask voxel at
    least 12 mm from the mask's S-I ends, cut by the mask, at ``level`` (a range) times the CSF's
    median (a ring 2-3 voxels outside the mask), blurred by 0.5 voxel. Returns the painted image
    and the lesion's voxels (bool)."""
    a_ = np.asarray(img.data, float)
    m = np.asarray(seg.data) > 0
    ring = ndimage.binary_dilation(m, iterations=3) & ~ndimage.binary_dilation(m, iterations=1)
    csf = float(np.median(a_[ring]))
    world = img.grid.voxel_to_world(np.argwhere(m).astype(float))
    allw = img.grid.voxel_to_world(np.argwhere(np.ones(a_.shape, bool)).astype(float)).reshape(a_.shape + (3,))
    ok = (world[:, 2] > world[:, 2].min() + 12) & (world[:, 2] < world[:, 2].max() - 12)
    rng = np.random.default_rng(seed)
    cen = world[ok][rng.integers(ok.sum())]
    ax = np.array([rng.uniform(1.2, 2.5), rng.uniform(1.2, 2.5), rng.uniform(3, 12)])
    les = ((((allw - cen) / ax) ** 2).sum(-1) <= 1) & m
    b = a_.copy()
    b[les] = csf * rng.uniform(*level)
    b = np.where(les, ndimage.gaussian_filter(b, 0.5), a_)
    return img.with_data(b.astype(np.float32)), les


def main() -> None:
    a = parse_model_args(argparse.ArgumentParser())
    import spinereg.segment.refine as refine
    from spinereg.io.image import load_image
    from spinereg.metrics import dice
    from spinereg.segment import segment

    root = Path(os.environ.get("SPINEREG_DATA", "/work/shared/data")) / "sct_testing_data"
    out = {}
    for name, ip, sp, lv in CASES:
        img, seg = load_image(root / ip), load_image(root / sp)
        for seed in range(8):
            painted, les = paint_lesion(img, seg, seed, lv)
            r = segment(painted, name)
            inside = float(((np.asarray(r.seg.data) > 0) & les).sum() / les.sum())
            out[f"{name}_{seed}"] = {"dice": round(dice(r.seg, seg).dice, 4), "lesion_inside": round(inside, 3)}
            print(name, seed, out[f"{name}_{seed}"], flush=True)
    img = load_image(root / "t2/t2_fake_lesion.nii.gz")
    ref = load_image(root / "t2/t2_fake_lesion_sc_seg.nii.gz")
    lm = np.asarray(load_image(root / "t2/t2_fake_lesion_lesion_seg.nii.gz").data) > 0
    keep = refine.LESION_GAP_MM
    try:
        for gap in (keep, 0.0):
            refine.LESION_GAP_MM = gap
            r = segment(img, "t2")
            out[f"t2_fake_lesion_gap{gap:g}"] = {"dice": round(dice(r.seg, ref).dice, 4),
                                                 "lesion_voxels_inside": int(((np.asarray(r.seg.data) > 0) & lm).sum()),
                                                 "lesion_voxels": int(lm.sum())}
            print("t2_fake_lesion, LESION_GAP_MM", gap, out[f"t2_fake_lesion_gap{gap:g}"], flush=True)
    finally:
        refine.LESION_GAP_MM = keep
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
