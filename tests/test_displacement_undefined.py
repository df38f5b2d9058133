"""``DisplacementField`` marks undefined values (NaN, Inf, legacy > 1e4 mm) voxel by voxel, and
skips that test when the field's min and max show none (no whole-field temporaries)."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.grid import Grid
from spinereg.transforms.displacement import UNDEFINED_MM, DisplacementField


def _grid() -> Grid:
    return Grid((6, 7, 8), np.diag([2.0, 2.0, 3.0, 1.0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 2 * UNDEFINED_MM, -2 * UNDEFINED_MM])
def test_an_undefined_voxel_maps_to_nan(bad):
    g = _grid()
    data = np.random.default_rng(0).normal(0, 1, g.shape + (3,)).astype(np.float32)
    data[2, 3, 4, 1] = bad
    f = DisplacementField(g, data)
    assert np.isnan(f.data[2, 3, 4]).all() and np.isfinite(np.delete(f.data.reshape(-1, 3), 2 * 56 + 3 * 8 + 4, 0)).all()
    p = g.voxel_to_world(np.array([[2.0, 3.0, 4.0], [0.0, 0.0, 0.0]]))
    out = f.map(p)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    assert data[2, 3, 4, 1] == bad or np.isnan(bad)  # the caller's array is not changed


def test_a_defined_field_keeps_its_array_and_no_mask():
    g = _grid()
    data = np.full(g.shape + (3,), UNDEFINED_MM, np.float32)  # at the bound: still defined
    data[0, 0, 0] = -UNDEFINED_MM
    f = DisplacementField(g, data)
    assert f.data is data and f._valid is None and f._filled is None
    assert DisplacementField(Grid((1, 1, 1), np.eye(4)), np.zeros((1, 1, 1, 3)))._valid is None
