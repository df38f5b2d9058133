"""The Jacobian determinant computed in slabs (``max_points``, used by register-to-template to
bound its memory on full-resolution grids) gives exactly the values of the one-slab computation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.metrics.jacobian import determinant_map, jacobian
from spinereg.transforms.displacement import DisplacementField


def test_determinant_in_slabs_is_exact() -> None:
    rng = np.random.default_rng(0)
    aff = np.diag([0.8, 0.7, 1.1, 1.0])
    aff[:3, 3] = [3.0, -2.0, 5.0]
    grid = Grid((17, 13, 29), aff)
    u = ndimage.gaussian_filter(rng.normal(0, 3.0, grid.shape + (3,)), (2, 2, 2, 0)).astype(np.float32)
    u[4, 5, 10] = np.nan  # undefined voxels stay undefined, neighbours as in one slab
    field = DisplacementField(grid, u)
    ref = determinant_map(field)
    assert np.nanmin(ref) < 1.0 < np.nanmax(ref) and np.isnan(ref).any()  # non-trivial, NaN kept
    for max_points in (17 * 13, 17 * 13 * 2, 1000, 17 * 13 * 28):  # 1-, 2-, 4- and 28-slice slabs
        assert np.array_equal(determinant_map(field, max_points), ref, equal_nan=True)
    mask = Image((np.abs(u[..., 0]) < 0.5).astype(np.uint8), aff)
    a = jacobian(field, mask)
    b = jacobian(field, mask, max_points=17 * 13)
    assert (a.min, a.max, a.pct_nonpositive, a.n_voxels, a.n_undefined) == (
        b.min, b.max, b.pct_nonpositive, b.n_voxels, b.n_undefined)
