"""Lesions at the cord's surface (spinereg.segment.bites): narrow concave pockets of a section are
filled, broad indentations (a compressed cord) are not.

Session 17, lesions painted into sct_testing_data's t2 and t1 with the painter of
training/segment/evaluate_lesions.py (seeds 0-7; an ellipsoid at a random voxel of the manual
mask, cut by it, at the CSF's level), automatic segmentation without -> with the fill: share of
lesion voxels inside the mask, mean t2 0.355 -> 0.642, t1 0.178 -> 0.362; Dice against the manual
mask better on all 16 (t2 mean 0.947 -> 0.954, t1 0.912 -> 0.915). Images without a lesion: t2
0.9797 -> 0.9797, t1 0.9432 -> 0.9442, t2s 0.9338 -> 0.9327, mt1 0.9084 -> 0.9084, mt0 0.9019 ->
0.9003, t2_fake_lesion 0.9086 -> 0.9087. MAX_POCKET_FRACTION (0.5) was the first value tried."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import spinereg.segment.cordseg as cordseg
from spinereg.io.image import load_image
from spinereg.metrics import dice
from spinereg.segment import segment
from spinereg.segment.bites import fill_bites, fill_section


def _ellipse(shape: tuple[int, int] = (60, 60), a: float = 12.0, b: float = 8.0) -> np.ndarray:
    i, j = np.mgrid[:shape[0], :shape[1]]
    return ((i - 30) / a) ** 2 + ((j - 30) / b) ** 2 <= 1.0


def test_a_convex_section_is_left_alone():
    sec = _ellipse()
    assert fill_section(sec).sum() <= 1  # measured 0 (a pixel of the outline's staircase allowed)


def test_a_bite_is_filled_and_a_broad_indentation_is_not():
    sec = _ellipse()
    i, j = np.mgrid[:60, :60]
    bite = ((i - 30) ** 2 + (j - 38.5) ** 2) <= 3.0 ** 2  # a lesion 6 mm across at the rim
    fill = fill_section(sec & ~bite)
    assert (fill & bite & sec).sum() >= (bite & sec).sum() - 1  # measured 8 of 9
    # a disc pressing on the front: a disk of radius 14 px bites 40 % of the depth across the width
    press = ((i - 30) ** 2 + (j - (38 - 0.4 * 16 + 14)) ** 2) <= 14 ** 2
    assert not (fill_section(sec & ~press) & press).any()


def test_fill_bites_works_per_section():
    prob = np.zeros((3, 60, 60), np.float32)
    i, j = np.mgrid[:60, :60]
    bite = ((i - 30) ** 2 + (j - 38.5) ** 2) <= 9.0
    prob[0] = _ellipse()
    prob[1] = _ellipse() & ~bite
    out, changed = fill_bites(prob)
    # measured 288 -> 296 pixels (the whole ellipse: 297)
    assert changed == 1 and (out[1] >= 0.5).sum() >= (prob[1] >= 0.5).sum() + 7 and not out[2].any()


def _painter():
    """training/segment/evaluate_lesions.py's ``paint_lesion`` (the script is not a package)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "training" / "segment" / "evaluate_lesions.py"
    spec = importlib.util.spec_from_file_location("evaluate_lesions", script)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(script.parent))  # it imports its sibling evaluate.py
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(script.parent))
    return mod.paint_lesion


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(("name", "level", "claim_off", "claim_on", "dice_off", "dice_on"),
                         [("t2", (0.9, 1.4), 0.355, 0.642, 0.947, 0.954), ("t1", (0.8, 1.2), 0.178, 0.362, 0.912, 0.915)])
def test_painted_surface_lesions_are_drawn_in(sct_data, monkeypatch, name, level, claim_off, claim_on, dice_off,
                                              dice_on):
    img = load_image(sct_data / {"t2": "t2/t2.nii.gz", "t1": "t1/t1w.nii.gz"}[name])
    ref = load_image(sct_data / {"t2": "t2/t2_seg-manual.nii.gz", "t1": "t1/t1w_seg-manual.nii.gz"}[name])
    paint = _painter()
    inside: dict[bool, list[float]] = {False: [], True: []}
    dices: dict[bool, list[float]] = {False: [], True: []}
    for seed in range(8):
        painted, les = paint(img, ref, seed, level)
        d = {}
        for on in (False, True):
            monkeypatch.setattr(cordseg, "FILL_BITES", on)
            s = segment(painted, name).seg
            inside[on].append(float(((np.asarray(s.data) > 0) & les).sum() / les.sum()))
            d[on] = dice(s, ref).dice
            dices[on].append(d[on])
        assert d[True] >= d[False] - 1e-4, (seed, d)
    # mean Dice against the manual mask, without and with the filling (README; asserted since session 36)
    assert abs(np.mean(dices[False]) - dice_off) < 0.003 and abs(np.mean(dices[True]) - dice_on) < 0.003, dices
    assert abs(np.mean(inside[False]) - claim_off) < 0.01, inside[False]
    assert abs(np.mean(inside[True]) - claim_on) < 0.01, inside[True]
