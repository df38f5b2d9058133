"""``io.resample.sample_image`` reads only the box of voxels its points reach (nn / linear) and gives
the values :func:`sample_world` gives on the whole float64 volume, inside, at the edges, outside
the field of view and at NaN points."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import Image
from spinereg.io.resample import sample_image, sample_world


def _image() -> Image:
    rng = np.random.default_rng(1)
    data = rng.random((20, 30, 25)).astype(np.float32)
    a = np.diag([0.8, 0.8, 2.0, 1.0])
    a[:3, :3] = a[:3, :3] @ np.array([[1, 0, 0], [0, 0.96, -0.28], [0, 0.28, 0.96]])  # oblique
    a[:3, 3] = [-10.0, 5.0, 30.0]
    return Image(data, a)


@pytest.mark.parametrize("interp", ["nn", "linear", "spline"])
def test_same_values_as_the_whole_volume(interp):
    img = _image()
    rng = np.random.default_rng(2)
    ijk = np.concatenate([rng.uniform(-1.0, np.array(img.shape) + 0.0, (300, 3)),  # some outside
                          [[-0.5, 0, 0], [19.5, 29.5, 24.5], [19.6, 3, 3], [0, 0, -0.51]],  # the edges
                          rng.uniform(3, 6, (20, 3))])  # a small cluster: a small box
    pts = img.grid.voxel_to_world(ijk)
    pts[5] = np.nan
    whole = sample_world(np.asarray(img.data, np.float64), img.affine, pts, interp, cval=np.nan)
    got = sample_image(img, pts, interp, cval=np.nan)
    assert np.array_equal(np.isnan(whole), np.isnan(got))
    assert np.array_equal(whole[~np.isnan(whole)], got[~np.isnan(got)])
    assert got.dtype == np.float64 and np.isnan(got[5])
    # a cluster far from the edges reads a box, not the volume
    cluster = img.grid.voxel_to_world(rng.uniform(8, 10, (50, 3)))
    assert np.array_equal(sample_image(img, cluster, interp),
                          sample_world(np.asarray(img.data, np.float64), img.affine, cluster, interp))


def test_no_points_and_all_nan():
    img = _image()
    assert sample_image(img, np.zeros((0, 3))).shape == (0,)
    assert np.all(sample_image(img, np.full((3, 3), np.nan), cval=-1.0) == -1.0)
