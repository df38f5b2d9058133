"""label-vertebrae on fields that show the brainstem above the cord.

The automatic segmentation runs on into the medulla (and on some grids the pons), so the top of
the segmented cord is not the top of PAM50's cord. Before session 22 two things then broke the
labeling (commit 0392c8d):
- PAM50's disc 1 (the top of its cord) was held within 5 mm of the top of the segmented cord;
  SCT's PAM50_small_t2 (a real T2 average, pons to T12) from its automatic segmentation was
  named with every disc 17-65 mm off (MAE 31 mm; flagged);
- the slab above the cord (medulla, pons, skull base) took part in the global template match,
  which must cover 70 % of the slab: on copies of that image cut 95 mm below the PMJ
  (spinereg.phantom.moved_copies) the match put the template's top on the brainstem. Seeds 0-5
  were all wrong, three named T9/T10-T12/L1 (388 mm off) without a flag.
Now the pontomedullary junction is read first (spinereg.vertebrae.pmj): disc 1 lies 9-33 mm
below it and the slab above it is left out. Measured: PAM50_small_t2 right, MAE 0.50 mm,
unflagged; copies seeds 0-11 (seen while the fix was made) right on 12 of 12, MAE 0.28-0.61 mm;
seeds 12-23 (run once after) right on 12 of 12, MAE 0.25-0.73 mm (8 flagged: two discs in
view, fewer than three fix no sequence). One anatomy: the copies differ in motion, grid, noise
and intensity ramp, not in the subject."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.evaluate import compare_to_truth

pytestmark = pytest.mark.realdata

#: held-out copies (seeds 12-17): disc MAE (mm) measured, each asserted within 0.15 mm. Seed 14 (3 mm
#: sagittal slices) 0.60 before session 42's segmentation of coarse in-plane voxels
#: (segment.cordseg.COARSE_RING_Q), 0.353 since (seeds 18 / 22, also 3 mm sagittal: 0.59 -> 0.346,
#: 0.465 -> 0.471; the other grids unchanged)
HELD_OUT = {12: 0.52, 13: 0.73, 14: 0.35, 15: 0.47, 16: 0.25, 17: 0.34}


def test_pam50_small_t2_from_its_automatic_segmentation(sct_data):
    from spinereg.phantom.moved_copies import source
    from spinereg.segment import segment

    image = load_image(sct_data / "template" / "template" / "PAM50_small_t2.nii.gz")
    seg = segment(image, "t2").seg
    lab = label_vertebrae(image, seg, "t2")
    _, _, _, discs = source()
    r = compare_to_truth(lab, discs)
    assert r["identity_ok"] and not lab.ambiguous, (r, lab.report.get("ambiguous_reasons"))
    assert r["mae_mm"] <= 0.55 and r["max_mm"] <= 1.2, r
    assert lab.pmj is not None and [d.name for d in lab.measured][:2] == ["C2/C3", "C3/C4"]


@pytest.mark.parametrize("seed", sorted(HELD_OUT))
def test_short_fields_with_the_brainstem(seed):
    from spinereg.phantom.moved_copies import moved_copy
    from spinereg.segment import segment

    c = moved_copy(seed)
    seg = segment(c.image, "t2").seg
    lab = label_vertebrae(c.image, seg, "t2")
    r = compare_to_truth(lab, c.discs)
    assert r["identity_ok"], (seed, c.grid, r)
    assert abs(r["mae_mm"] - HELD_OUT[seed]) <= 0.15, (seed, r)
    assert all(d.value <= 6 for d in lab.discs), [d.name for d in lab.discs]


@pytest.mark.slow
def test_bare_registration_of_pam50_small_t2(sct_data):
    """The bare job's steps on PAM50_small_t2 (segment, label, register with the measured discs).
    PAM50_small is PAM50 of an older release, moved in space: the true mapping is the translation
    ``SMALL_TO_PAM50_MM`` (its 18 disc labels agree with PAM50's within 1.3 mm S-I, RMS 0.6).
    Measured on PAM50_small_cord's voxels (not used by the job): mean 0.415, p95 0.800 (0.40 / 0.67,
    max 1.36 mm before session 43 placed the positions of a labeling with 8 or more bands without
    the global match's vote)."""
    from spinereg.phantom.tissue_contrast import SMALL_TO_PAM50_MM
    from spinereg.register.template import auto_labeling, register_to_template
    from spinereg.segment import segment
    from spinereg.vertebrae.outputs import registration_discs

    folder = sct_data / "template" / "template"
    image = load_image(folder / "PAM50_small_t2.nii.gz")
    cord = load_image(folder / "PAM50_small_cord.nii.gz")
    seg = segment(image, "t2").seg
    lab = auto_labeling(image, seg, "t2")
    discs, _ = registration_discs(lab, image.grid, "auto", "PAM50")
    reg = register_to_template(image, seg, ldisc=discs, template="PAM50", contrast="t2")
    pts = cord.grid.voxel_to_world(np.argwhere(np.asarray(cord.data) > 0.5).astype(float))
    err = np.linalg.norm(reg.template2anat.map(pts) - (pts + SMALL_TO_PAM50_MM), axis=1)
    assert np.isfinite(err).all()
    assert err.mean() <= 0.45 and np.percentile(err, 95) <= 0.85, (err.mean(), np.percentile(err, 95))
