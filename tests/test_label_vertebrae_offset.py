"""An additive intensity offset does not change the labeling (spinereg.vertebrae.intensity).

Found in session 32: sct_testing_data t2 with 1000 added to every voxel (its range 0-1257) was
labelled C2/C3-C4/C5 right by the discs and the cord width, then relabelled seven levels low
(T2/T3 ...) by the CSF profile, whose threshold (half the brightest value on a disk about the
cord) assumes a scale that starts near 0; flagged, but wrong. Scaling (x 1e-3, x 1000) and mean
subtraction changed nothing, nor did offsets of -500..+300; -1000 and -2000 put the levels one
and seven low. The labeling now takes off an offset that moves the image's floor further from 0
than a quarter of its range; every real image and phantom here has none by that rule, so their
labelings are untouched."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import Image, load_image
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.intensity import OFFSET_FRACTION, intensity_offset, zero_based

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("path", ["t2/t2.nii.gz", "t1/t1w.nii.gz", "t2s/t2s.nii.gz", "mt/mt1.nii.gz",
                                  "dmri/dwi_mean.nii.gz"])
def test_real_images_have_no_offset(sct_data, path):
    img = load_image(sct_data / path)
    assert intensity_offset(img) == 0.0
    assert zero_based(img)[0] is img


@pytest.mark.parametrize("variant", ["cervical", "thoracolumbar", "axial_thick", "sagittal_thick", "iso1mm_t1",
                                     "test", "test_t1"])
def test_phantoms_have_no_offset(variant):
    from spinereg.phantom.independent import make_independent_subject

    assert intensity_offset(make_independent_subject(variant, seed=0).image) == 0.0


def test_offset_is_a_floor_far_from_zero_against_the_range():
    rng = np.random.default_rng(0)
    data = rng.uniform(0.0, 100.0, (30, 30, 30)).astype(np.float32)
    img = Image(data, np.eye(4))
    assert intensity_offset(img) == 0.0
    shifted = Image(data + 1000.0, np.eye(4))
    off = intensity_offset(shifted)
    assert 1000.0 < off < 1001.0 and off > OFFSET_FRACTION * 100.0
    assert -1000.0 < intensity_offset(Image(data - 1000.0, np.eye(4))) < -999.0  # below 0 as well
    back, got = zero_based(shifted)
    assert got == off and float(np.asarray(back.data).min()) >= -1.0
    named = Image(data + 1000.0, np.eye(4), path="/data/sub-01_T2w.nii.gz")
    assert zero_based(named)[0].name == named.name  # errors on the shifted image still name the file
    assert intensity_offset(Image(data - 20.0, np.eye(4))) == 0.0  # a floor near 0 against the range is kept
    assert intensity_offset(Image(data[:, :, 0] + 1000.0, np.eye(4))) > 1000.0  # any number of axes: a 2D image
    # reaches the labeling's own one-line "must be 3D" error


@pytest.mark.parametrize("offset", [1000.0, -1000.0, -2000.0])
def test_t2_with_an_offset_is_labelled_as_t2(sct_data, offset):
    """Before: +1000 and -2000 seven levels low, -1000 one level low (each flagged)."""
    d = sct_data / "t2"
    img, seg = load_image(d / "t2.nii.gz"), load_image(d / "t2_seg-manual.nii.gz")
    ref = label_vertebrae(img, seg, contrast="t2")
    moved = label_vertebrae(img.with_data(np.asarray(img.data, np.float32) + offset), seg, contrast="t2")
    assert [d.value for d in moved.discs] == [d.value for d in ref.discs] == [3, 4, 5]
    assert np.allclose([d.s for d in moved.discs], [d.s for d in ref.discs], atol=0.05)
    assert abs(moved.report["intensity_offset"] - offset) < 1.0 and "intensity_offset" not in ref.report
    assert not (moved.report.get("csf_identity") or {}).get("relabelled")
