"""``spinereg segment`` on coarse in-plane voxels (thick sagittal slices): the outline-from-contrast
step takes the surroundings from the ring's far quantile (cordseg.COARSE_RING_Q) there.

Truth outside the method: sct_testing_data t2 (1 mm, hand-corrected cord) block-averaged along one
in-plane axis (each coarse voxel the mean of the fine ones: an independent forward model), its
manual mask averaged the same way (Dice against that partial volume >= 0.5; volume ratio against
its sum); and the independent sagittal phantom (spinereg.phantom.independent, seed 101) at 4 mm
R-L, its own cord mask. Block phase 0 (the figures over all phases are in cordseg's comment).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.metrics.cordseg import dice_same_grid
from spinereg.phantom.independent import make_independent_subject
from spinereg.segment import cordseg as cs
from spinereg.segment import segment
from test_segment_sweep import _block, _coarse

pytestmark = pytest.mark.realdata


def _scores(res, pv: np.ndarray) -> tuple[float, float]:
    seg, hard = res.seg.data > 0, pv >= 0.5
    return 2 * (seg & hard).sum() / (seg.sum() + hard.sum()), seg.sum() / pv.sum()


@pytest.mark.parametrize("f, dice, vol", [
    ((1, 1, 3), 0.9188, 0.881),  # 3 mm R-L (t2 is PSR): with the ring's median 0.9094 / 0.857
    ((1, 1, 4), 0.8970, 0.919),  # 4 mm R-L: median 0.8904 / 0.900
    ((3, 1, 1), 0.8043, 0.733),  # 3 mm A-P: median 0.7925 / 0.717 (still too small: the model's map)
])
def test_t2_block_averaged(sct_data, f, dice, vol):
    t2 = load_image(sct_data / "t2" / "t2.nii.gz")
    manual = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz").data > 0
    d, v = _scores(segment(_coarse(t2, f)), _block(manual, f))
    assert d == pytest.approx(dice, abs=0.005)
    assert v == pytest.approx(vol, abs=0.01)


def test_sagittal_phantom_4mm():
    """Held out (not tuned on): independent phantom, 4 x 0.8 x 0.8 mm sagittal, seed 101: Dice
    0.9393 (ring median: 0.9283); seeds 102 / 103: 0.9370 / 0.9335 (0.9260 / 0.9167)."""
    ph = make_independent_subject("sagittal_thick", seed=101, voxel_mm=[4.0, 0.8, 0.8])
    assert dice_same_grid(segment(ph.image).seg.data, ph.seg.data) >= 0.934
    assert cs.COARSE_RING_Q == 0.75


def test_fine_voxels_keep_the_median(sct_data, monkeypatch):
    """Images with voxels <= COARSE_INPLANE_MM never take the quantile: t2 (1 mm) identical
    whatever COARSE_RING_Q is."""
    a = segment(sct_data / "t2" / "t2.nii.gz").seg.data
    monkeypatch.setattr(cs, "COARSE_RING_Q", 0.99)
    assert np.array_equal(segment(sct_data / "t2" / "t2.nii.gz").seg.data, a)
