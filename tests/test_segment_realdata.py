"""The shipped cord model on sct_testing_data: every figure from a model that never saw the image.

The models are trained on synthetic slices drawn from the PAM50 / MNI-Poly-AMU tissue maps only
(training/segment/, provenance in spinereg/segment/models/), so every image here is unseen.
Thresholds are the figures measured with the shipped model (README, bench/segment.py) minus a
small margin, never below the issue's targets. How the references were made matters for the
boundary: t2_seg-manual and t1w_seg-manual are hand-corrected, t2s_seg / mt*_seg are SCT
segmentations on thick slices (7.5 mm, 17 mm) where a voxel is cord when most of it is cord.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from spinereg.io.image import Image, load_image
from spinereg.metrics.cordseg import (
    centerline_rms,
    dice_same_grid,
    outside_reference_mm3,
)
from spinereg.metrics.morphometry import cross_sectional_area
from spinereg.segment import segment

#: image, reference, asserted Dice (measured - margin; issue target in the comment). Measured with
#: the models 2026.1 and spinereg.segment.refine (the model's own map, refine=False, in brackets);
#: since session 17 with spinereg.segment.bites (before: t1 0.943, t2s 0.934, mt0 0.902)
DICE_CASES = {
    "t2": ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", 0.97),  # measured 0.980 (0.971), target 0.95
    "t1": ("t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz", 0.935),  # measured 0.944 (0.860), target 0.92
    "t2s": ("t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz", 0.925),  # measured 0.933 (0.932), target 0.92
    "mt1": ("mt/mt1.nii.gz", "mt/mt1_seg.nii.gz", 0.90),  # measured 0.908 (0.901), target 0.90
    "mt0": ("mt/mt0.nii.gz", "mt/mt0_seg.nii.gz", 0.90),  # measured 0.9003 (0.875), target 0.90
}
#: dwi_mean centerline RMS (mm): measured 0.475 (0.51 with the model alone), target 1.0
DWI_RMS_MM = 0.52


@functools.cache
def _segment(path: str):
    return segment(path)


@pytest.mark.parametrize("name", sorted(DICE_CASES))
def test_dice_against_reference(sct_data, name):
    img, ref, claim = DICE_CASES[name]
    res = _segment(str(sct_data / img))
    d = dice_same_grid(res.seg.data, load_image(sct_data / ref).data)
    assert d >= claim, f"{name}: Dice {d:.4f} < {claim}"


def test_t1_no_slice_missed(sct_data):
    """The model alone misses the cord on t1's slices 3-5 and 18-19 (of 77, from the inferior end)
    and finds a third to two thirds of it on 8 more: S-I gap filling and the outline from the
    image's contrast (spinereg.segment.refine) leave every slice with Dice >= 0.77 (measured lowest
    0.784; in an earlier session slices 16, 17 and 23 gave 0.79 / 0.76 / 0.75, which the model alone
    finds in part, not weakly enough to be filled)."""
    res = _segment(str(sct_data / "t1" / "t1w.nii.gz"))
    seg, ref = res.seg.data > 0, load_image(sct_data / "t1" / "t1w_seg-manual.nii.gz").data > 0
    inter = (seg & ref).sum(axis=(0, 1))
    per_slice = 2 * inter / np.maximum(seg.sum(axis=(0, 1)) + ref.sum(axis=(0, 1)), 1)
    assert ref.any(axis=(0, 1)).all()
    assert per_slice.min() >= 0.77, np.round(per_slice, 2)  # measured 0.784
    assert res.info["refined"]["gap_slices_filled"][:5] == [1, 2, 3, 4, 5]


def test_dwi_mean_centerline_within_1mm(sct_data):
    res = _segment(str(sct_data / "dmri" / "dwi_mean.nii.gz"))
    rms = centerline_rms(res.seg, load_image(sct_data / "dmri" / "dwi_mean_centerline-optic.nii.gz"))
    assert rms <= DWI_RMS_MM, rms


def test_dwi_series_with_bvals_segments_the_dwi_mean(sct_data):
    d = sct_data / "dmri"
    res = segment(d / "dmri.nii.gz", "dwi", bvals=d / "bvals.txt")
    assert "6 diffusion-weighted volumes" in res.info["segmented"]
    rms = centerline_rms(res.seg, load_image(d / "dwi_mean_centerline-optic.nii.gz"))
    assert rms <= DWI_RMS_MM, rms  # measured 0.475, as on dwi_mean.nii.gz


def test_whole_field_t2s_uncropped(sct_data):
    """320 x 320 x 11 neck slices (0.5 x 0.5 x 7.5 mm): the cord is found in the whole field and
    nothing outside the canal is kept.

    t2s.nii.gz is *not* a crop of t2s_uncropped.nii.gz in any common space: its header puts the
    anatomy about 21 mm S-I and 7 mm R-L away from the uncropped one, and voxel-wise each of its
    slices matches a differently shifted window of the uncropped slice (normalised correlation
    0.66-0.85 only: the crop was resampled slice by slice). A voxel-wise Dice against t2s_seg is
    therefore not measurable; the checks use what does share the uncropped grid: its own manual
    grey-matter segmentation (inside the cord, centreline of the canal), t2s_seg's cross-section
    per slice (same slice indices), and a true 40 mm crop of the same image.
    """
    t2s = sct_data / "t2s"
    img = load_image(t2s / "t2s_uncropped.nii.gz")
    res = _segment(str(t2s / "t2s_uncropped.nii.gz"))
    assert "whole_field" in res.info
    seg = res.seg.data > 0
    gm = load_image(t2s / "t2s_uncropped_gmseg_manual.nii.gz")
    assert (seg & (gm.data > 0)).sum() / (gm.data > 0).sum() >= 0.98  # measured 0.989 (0.993)
    assert outside_reference_mm3(res.seg, gm, max_mm=10.0) == 0.0
    # mean cross-section over the 9 slices t2s_seg covers (slice k <-> slice k): within 5 % (measured
    # -2.7 %, 2808 vs 2885 voxels; -3.3 % in an earlier session; the model alone: +0.7 %)
    ref = load_image(t2s / "t2s_seg.nii.gz").data > 0
    mine, theirs = seg[:, :, :9].sum(), ref.sum()
    assert abs((mine - theirs) / theirs + 0.027) <= 0.01, (mine, theirs)
    # the same result from a 40 mm crop of the image (no whole-field search there)
    ij = np.argwhere(seg.any(axis=2)).mean(0).astype(int)
    sl = (slice(ij[0] - 40, ij[0] + 40), slice(ij[1] - 40, ij[1] + 40), slice(None))
    aff = img.affine.copy()
    aff[:3, 3] = img.grid.voxel_to_world(np.array([[sl[0].start, sl[1].start, 0]], float))[0]
    crop = segment(Image(np.asarray(img.data)[sl], aff, img.header))
    assert "whole_field" not in crop.info
    assert dice_same_grid(crop.seg.data, seg[sl]) >= 0.955  # measured 0.965 (0.967)


def test_csa_c2_c5_within_5_percent_of_manual(sct_data):
    """CSA of the automatic t2 segmentation over the labelled file's levels 2-5 vs the manual
    segmentation's (t2_seg-manual_labeled numbers the cord one level below PAM50)."""
    t2 = sct_data / "t2"
    lev = load_image(t2 / "t2_seg-manual_labeled.nii.gz")
    auto = cross_sectional_area(_segment(str(t2 / "t2.nii.gz")).seg, lev).mean_over([2, 3, 4, 5])
    man = cross_sectional_area(load_image(t2 / "t2_seg-manual.nii.gz"), lev).mean_over([2, 3, 4, 5])
    assert man[2] >= 45 and auto[2] >= 45
    rel = (auto[0] - man[0]) / man[0]
    # measured -2.39 % (model alone +4.4 %; the issue asks 5 %)
    assert abs(rel + 0.024) <= 0.003, (rel, auto, man)


def test_fmri_mean_is_segmented(sct_data):
    """A 4D EPI series is segmented on its mean and says so."""
    res = segment(sct_data / "fmri" / "fmri.nii.gz", "epi")
    assert "mean of its 30 volumes" in res.info["segmented"]
    assert res.seg.data.shape == (68, 68, 6)
    assert np.count_nonzero(res.seg.data.sum(axis=(0, 1))) == 6  # measured: all 6 slices
