"""The ``imseg`` demons step keeps the cords' in-plane offset when its image term is dropped.

The image term starts from the mean in-plane offset of the two segmentations (a global shift). When
the result does not raise the images' local correlation the image term is dropped, but that offset
stays ("cord offset only"): it comes from the cords, not the images. Session 37 added it for cords
11 mm apart (cohort T2w -> T2starw); since session 50 that case raises the correlation and keeps the
image term, so no other test reaches the branch.

Truth built here: identical images (nothing for the image term to gain; the correlation is highest
at the identity) with the moving segmentation moved 2 voxels (1.6 mm) along x.
"""

from __future__ import annotations

import numpy as np

from spinereg.io.grid import Grid
from spinereg.register.demons import demons
from spinereg.register.steps import parse_step

SHIFT_VOX = 2


def _pair():
    g = Grid((40, 40, 12), np.diag([0.8, 0.8, 2.0, 1.0]))
    rng = np.random.default_rng(0)
    from scipy import ndimage

    img = ndimage.gaussian_filter(rng.normal(size=g.shape), (1.5, 1.5, 1.0)).astype(np.float32)
    ii, jj, _ = np.meshgrid(*[np.arange(n) for n in g.shape], indexing="ij")
    fseg = (np.hypot(ii - 20, jj - 20) <= 5).astype(np.float32)
    mseg = (np.hypot(ii - 20 - SHIFT_VOX, jj - 20) <= 5).astype(np.float32)
    return g, img, fseg, mseg


def test_image_term_dropped_keeps_the_cords_offset():
    g, img, fseg, mseg = _pair()
    step = parse_step("step=1,type=imseg,algo=demons,metric=CC,deformation=1x1x0,iter=5")
    f = demons(img, img.copy(), g, g, step, fixed_seg=fseg, moving_seg=mseg)
    rep = f.report
    assert rep["used"] == "cord offset only", rep
    assert "the cords' mean in-plane offset kept" in rep["reason"]
    # the offset the step starts from is the segmentations' (voxels), nothing along S-I
    assert np.allclose(rep["offset_vox"], [SHIFT_VOX, 0.0, 0.0], atol=0.05), rep["offset_vox"]
    # applied: the moving cord lands on the fixed one (pull: fixed(x) <- moving(x + d))
    centre = g.voxel_to_world(np.array([[20, 20, 6]]))
    d = f.map(centre) - centre
    assert np.allclose(d[0], [SHIFT_VOX * 0.8, 0.0, 0.0], atol=0.05), d
    assert rep["seg_dice_before"] < 0.85 and rep["seg_dice_after"] > 0.99, rep
