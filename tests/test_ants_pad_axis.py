"""The ANTs ``pad`` step key pads along S-I, whichever voxel axis that is (SCT's ``-z``)."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.grid import Grid
from spinereg.register.ants_steps import _padded_slices, _si_axis


@pytest.mark.parametrize("perm", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_pad_grows_the_si_axis_and_keeps_the_voxels_in_place(perm):
    zooms = np.array([0.5, 0.6, 3.0])  # R-L, A-P, S-I
    lin = np.diag(zooms)[:, list(perm)]  # voxel axis k runs along world axis perm[k]
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = [-10.0, 5.0, 30.0]
    shape = tuple(int(n) for n in np.array([20, 22, 8])[list(perm)])
    g = Grid(shape, aff)
    ax = _si_axis(g)
    assert ax == perm.index(2)
    p = _padded_slices(g, 5, ax)
    assert p.shape[ax] == g.shape[ax] + 10
    assert all(p.shape[a] == g.shape[a] for a in range(3) if a != ax)
    # voxel i of the original grid is voxel i + 5 along the S-I axis of the padded one
    ijk = np.array([[0, 0, 0], [3, 4, 5]])
    shifted = ijk.copy()
    shifted[:, ax] += 5
    assert np.allclose(g.voxel_to_world(ijk), p.voxel_to_world(shifted))
    # the padding spans 15 mm of S-I at each end
    assert np.isclose(np.ptp(p.voxel_to_world(np.array([[0, 0, 0], shifted[0]]))[:, 2]), 15.0)
