"""Vertebral labeling on 20 independent phantoms (spinereg.phantom.independent: PAM50 anatomy
under a deformation family and contrasts the labeling does not use; length 0.85-1.15x the
template, curvature, thick slices), seeds 0-2. The contrast is given as a user would (-c).
Not a blind test: while building the method these seeds were run and three choices followed from
what they showed (dark-disc prior for -c t1 after iso1mm_t1/0, the conus rule's 5 mm after
thoracolumbar/2, the PMJ/last-disc limits); the evidence window was compared on 'test' seeds
10-15 only. Not in this set and weak: the 'test' variant (1 mm, C2-C5, average T2), seeds 0-3: two
wrong (C2/C3 missed), now flagged (test_label_vertebrae_moved.py).

Measured (this commit): level identity right on 19/20; the wrong one (axial_thick seed 0,
0.5 x 0.5 x 5 mm T2*-like) is flagged ambiguous; among the right ones the per-subject mean absolute
S-I error is 0.14-1.10 mm (mean 0.58; 0.23-1.10, mean 0.57, before session 14 levelled the slab's
amplitude along the cord for the template match: test_t1 1 0.68 -> 0.93, sagittal_thick 2 0.23 ->
0.14; 0.58 before the levels were read on band tilts within
+-15 degrees: iso1mm_t1/0 1.04 -> 0.84), the largest single error 2.2 mm; conus tip within 1 mm.
The cord width's disc-to-disc change (the chain's pair term, spread 0.05 in log width) was set on
these seeds and on sct_testing_data's t2 (0.04 put axial_thick seed 2 one level off).
Session 25 (dark discs read on a smoothed response): 20 of 20 right (axial_thick 0 flagged),
per-subject MAE 0.11-0.96 mm (mean 0.45; iso1mm_t1 0-2 0.26-0.44, test_t1 0-2 0.12-0.59).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.phantom.independent import make_independent_subject
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.evaluate import compare_to_truth

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

CASES = ([("cervical", s) for s in range(3)] + [("cervicothoracic", s) for s in range(2)]
         + [("thoracolumbar", s) for s in range(3)] + [("iso1mm_t1", s) for s in range(3)]
         + [("test_t1", s) for s in range(3)] + [("axial_thick", s) for s in range(3)]
         + [("sagittal_thick", s) for s in range(3)])
CONTRAST = {"iso1mm_t1": "t1", "test_t1": "t1", "axial_thick": "t2s"}


def _run(variant: str, seed: int) -> dict:
    ph = make_independent_subject(variant, seed=seed)
    lab = label_vertebrae(ph.image, ph.seg, contrast=CONTRAST.get(variant, "t2"))
    out = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})
    out["case"] = f"{variant}/{seed}"
    c1c2 = [d for d in lab.discs if d.value == 2]
    if c1c2 and 2 in ph.disc_points:
        s_true, _ = lab.centerline.project(np.asarray(ph.disc_points[2], float)[None])
        out["c1c2_mm"] = float(c1c2[0].s - s_true[0])
        out["c1c2_csf"] = c1c2[0].from_csf
        assert c1c2[0].estimated != c1c2[0].from_csf
    return out


@pytest.fixture(scope="module")
def results() -> list[dict]:
    rows = [_run(v, s) for v, s in CASES]
    for r in rows:
        print(r["case"], r["identity_ok"], r["ambiguous"], round(r["mae_mm"], 2), round(r["max_mm"], 2),
              r["errors"].get(60), r.get("c1c2_mm"), r.get("c1c2_csf"))
    return rows


def test_identity(results):
    """Every level right on all 20 (since session 25; the issue asks >= 95 %), and no wrong labeling
    that is not flagged."""
    assert len(results) == 20
    right = [r for r in results if r["identity_ok"]]
    assert len(right) == 20, [r["case"] for r in results if not r["identity_ok"]]
    assert all(r["ambiguous"] for r in results if not r["identity_ok"])


def test_positions(results):
    """Disc positions along the cord where the identity is right: per subject MAE <= 1.0 mm
    (measured <= 0.96; 1.10 before session 25's smoothed dark-disc response), all subjects <= 0.48
    mm (0.45; 0.57 before), every disc <= 2.3 mm (2.2); the issue asks MAE <= 2 mm."""
    right = [r for r in results if r["identity_ok"]]
    maes = np.array([r["mae_mm"] for r in right])
    assert np.all(maes <= 1.0), [(r["case"], r["mae_mm"]) for r in right if r["mae_mm"] > 1.0]
    assert maes.mean() <= 0.48, maes.mean()
    assert max(r["max_mm"] for r in right) <= 2.3


def test_conus(results):
    """Thoracolumbar subjects: the conus tip (label 60) within 0.25 mm along the cord (measured
    -0.23 / +0.16 / 0.00 on seeds 0-2; 1 mm asserted before)."""
    tl = [r for r in results if r["case"].startswith("thoracolumbar")]
    assert all(60 in r["errors"] and abs(r["errors"][60]) <= 0.25 for r in tl), [r["errors"] for r in tl]


def test_c1c2_where_visible(results):
    """C1/C2 (no disc band) is reported where the field of view shows it, within 2.5 mm along the
    cord on every right subject that shows it: located from the CSF profile above C2/C3 on 7
    (cervical 0-2, cervicothoracic 1, sagittal_thick 0-2: 0.22-1.00 mm, mean 0.61; the chain's
    spacing gave 0.18-0.85, mean 0.53, on the same seven: the CSF is no better on these short
    cervical fields of view, it is on the full C1-T6 ones, docs/labeling_bare_image.md), from the
    chain's spacing (marked estimated) on the other 4 (cervicothoracic 0 2.29 mm, under 20 mm of
    CSF in view above C2/C3; iso1mm_t1 0-2 1.02-1.50, T1: no bright CSF)."""
    shown = [r for r in results if "c1c2_mm" in r and r["identity_ok"]]
    assert len(shown) >= 11, [r["case"] for r in shown]
    assert max(abs(r["c1c2_mm"]) for r in shown) <= 2.5, [(r["case"], round(r["c1c2_mm"], 2)) for r in shown]
    csf = [abs(r["c1c2_mm"]) for r in shown if r["c1c2_csf"]]
    assert len(csf) >= 7 and max(csf) <= 1.1 and np.mean(csf) <= 0.65, csf


def test_too_coarse_is_flagged():
    """7.5 mm axial slices (axial_7p5, seeds 0-2) sample the cord too coarsely to see discs: the
    labeling is wrong on all three and must say so (ambiguous, with the reason)."""
    for seed in range(3):
        ph = make_independent_subject("axial_7p5", seed=seed)
        lab = label_vertebrae(ph.image, ph.seg, contrast="t2")
        assert lab.ambiguous and lab.report["si_spacing_mm"] > 6.0 and "too coarse" in lab.report["warning"]


def dilated_inplane(seg):
    """``seg`` dilated by one voxel (face neighbours) along the axes finer than 1.5 mm: a
    segmentation biased wide, as an automatic one can be."""
    from scipy import ndimage

    from spinereg.io.image import Image

    st = ndimage.generate_binary_structure(3, 1)
    for ax in np.flatnonzero(np.asarray(seg.grid.zooms) > 1.5):
        for v in (0, 2):
            idx = [1, 1, 1]
            idx[ax] = v
            st[tuple(idx)] = False
    return Image(ndimage.binary_dilation(np.asarray(seg.data) > 0.5, st).astype(np.uint8), seg.affine)


def test_wide_segmentation_named_right_and_flagged():
    """sagittal_thick seed 0 with its true segmentation dilated one voxel in-plane. Until session
    13, with the cord width at full weight the levels were wrong (MAE 14.7 mm) and the image alone
    preferred others by 4.44; the second pass (absolute width down-weighted) named them right
    (0.37 mm), flagged. Since session 14 levels the slab's amplitude along the cord before the
    template match (spinereg.vertebrae.match.LEVEL_MM), the first pass is right (MAE 0.37 mm; the
    image alone agrees by +3.28), flagged by its identity margin (0.64). The second pass is
    asserted on full seed 3 (tests/test_label_vertebrae_bare.py)."""
    ph = make_independent_subject("sagittal_thick", seed=0)
    lab = label_vertebrae(ph.image, dilated_inplane(ph.seg), contrast="t2")
    r = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})
    assert r["identity_ok"] and lab.ambiguous and r["mae_mm"] <= 0.40, r  # measured 0.37
    assert "first_pass" not in lab.report and lab.report["image_identity"]["margin"] >= 2.9  # measured 3.28
