"""The inverse of a field on another grid solves only where a pre-image can be: the same field as
the full solve (every point through the nearest-node fixed point), points far from the field's
reach get what they got before (the identity, NaN with ``outside="nan"``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.io import Grid
from spinereg.transforms import DisplacementField
from spinereg.transforms.displacement import FieldInverse
from spinereg.transforms.sanity import inside


def _field(outside: str) -> DisplacementField:
    """A small oblique field (1 mm, 16 x 14 x 12) that moves its grid ~40 mm along z, with a smooth
    wobble of 1 mm: its image lies off its own grid."""
    rng = np.random.default_rng(3)
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.array([[c, -s, 0, -8.0], [s, c, 0, -7.0], [0, 0, 1, -6.0], [0, 0, 0, 1.0]])
    grid = Grid((16, 14, 12), aff)
    u = ndimage.gaussian_filter(rng.normal(0, 1, grid.shape + (3,)), (3, 3, 3, 0))
    u *= 1.0 / np.abs(u).max()
    u[..., 2] += 40.0
    return DisplacementField(grid, u.astype(np.float32), outside=outside)


def _dest() -> Grid:
    """Destination grid (2 mm) spanning the field's grid, its image and far beyond both."""
    return Grid((20, 18, 50), np.array([[2.0, 0, 0, -20], [0, 2.0, 0, -18], [0, 0, 2.0, -40], [0, 0, 0, 1]]))


def _reference(f: DisplacementField, monkeypatch: pytest.MonkeyPatch, grid: Grid) -> DisplacementField:
    """The inverse as computed before: every point solved by the nearest-node fixed point."""
    with monkeypatch.context() as m:
        m.setattr(DisplacementField, "_may_have_preimage", lambda self, p, tol: np.ones(len(p), bool))
        return f.inverse(grid)


@pytest.mark.parametrize("outside", ["identity", "nan"])
def test_inverse_on_other_grid_equals_full_solve(outside, monkeypatch):
    f = _field(outside)
    g = _dest()
    new = f.inverse(g)
    ref = _reference(f, monkeypatch, g)
    a, b = ref.data.reshape(-1, 3), new.data.reshape(-1, 3)
    fin = np.all(np.isfinite(a), 1)
    assert np.array_equal(fin, np.all(np.isfinite(b), 1))
    assert np.abs(a[fin] - b[fin]).max() < 1e-6  # measured 0 (both ways of outside)
    # the far part is real: most of the destination is out of the field's reach, and solved there
    y = g.world_coords()
    reach = f._may_have_preimage(y, 0.05)
    assert 0.07 < reach.mean() < 0.085  # measured 0.0769
    far = ~reach
    if outside == "identity":
        assert np.all(b[far] == 0) and np.all(a[far] == 0)  # the identity, as before
        assert fin.all()
    else:
        assert np.all(np.isnan(b[far])) and np.all(np.isnan(a[far]))  # undefined, as before
    # where the field's image is, a true inverse was found (sent onto the field's grid, small residual)
    # (points on the field's grid outside its image stay at the identity there)
    hit = fin & inside(f.grid, y + np.where(np.isfinite(b), b, 0)) & np.any(b != 0, axis=1)
    assert hit.sum() >= 320  # measured 340
    assert np.mean(np.linalg.norm(f.map(y[hit] + b[hit]) - y[hit], axis=1) < 0.05) > 0.99  # measured 1.0
    assert new.report.as_dict() == pytest.approx(ref.report.as_dict(), nan_ok=True, abs=1e-6)


def test_image_box_holds_every_mapped_point():
    """The box the shortcut trusts holds ``map(x)`` of random points on (and half a voxel beyond)
    the field's grid, an oblique one included, and undefined nodes do not widen it to NaN."""
    f = _field("identity")
    rng = np.random.default_rng(0)
    ijk = rng.uniform(-0.5, np.array(f.grid.shape) - 0.5, (20000, 3))
    y = f.map(f.grid.voxel_to_world(ijk))
    lo, hi = f._image_box()
    assert np.all(y >= lo - 1e-6) and np.all(y <= hi + 1e-6)
    u = f.data.copy()
    u[3, 4, 5] = np.nan
    g = DisplacementField(f.grid, u)
    lo2, hi2 = g._image_box()
    assert np.all(np.isfinite(lo2)) and np.all(np.isfinite(hi2))


def test_lazy_inverse_far_points_unchanged(monkeypatch):
    """``FieldInverse.map`` (``inv:WARP``) at points far from the field: the points themselves,
    as the full solve gives them; near ones solved as before."""
    f = _field("identity")
    y = _dest().world_coords()[::7]
    new = FieldInverse(f).map(y)
    with monkeypatch.context() as m:
        m.setattr(DisplacementField, "_may_have_preimage", lambda self, p, tol: np.ones(len(p), bool))
        ref = FieldInverse(f).map(y)
    assert np.abs(new - ref).max() < 1e-6  # measured 0
    far = ~f._may_have_preimage(y, 0.05)
    assert far.any() and np.array_equal(new[far], y[far])
