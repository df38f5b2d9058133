"""Inverse consistency of a forward/inverse transform pair (mm).

For every voxel centre ``x`` of the forward transform's grid, the residual is
``|inv.map(fwd.map(x)) - x|`` (world mm); the backward direction uses the inverse's grid and
``|fwd.map(inv.map(y)) - y|``. Points where either map is undefined (NaN), or whose intermediate
point falls outside the second field's grid (where the field is not defined, only extended by
the identity convention), are left out and counted in ``n_undefined``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.metrics.report import MetricResult
from spinereg.transforms.base import Transform

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.transforms.displacement import DisplacementField


@dataclass
class Residual:
    """Residual statistics over the points where the round trip is defined (mm)."""

    mean_mm: float
    rms_mm: float
    p95_mm: float
    max_mm: float
    n_points: int
    n_undefined: int


def _grid_of(t: Transform) -> Grid | None:
    return getattr(t, "grid", None)


def _subgrid(grid: Grid, stride: int) -> Grid:
    """Every ``stride``-th voxel of ``grid`` as a grid of its own (same world positions)."""
    if stride <= 1:
        return grid
    aff = grid.affine.copy()
    aff[:3, :3] *= stride
    shape = tuple(-(-s // stride) for s in grid.shape)
    return Grid(shape, aff)


def _inside(grid: Grid, pts: np.ndarray) -> np.ndarray:
    ijk = grid.world_to_voxel(pts)
    shape = np.array(grid.shape)
    return np.all((ijk >= -0.5) & (ijk <= shape - 0.5), axis=1)


def _on_own_grid(t: Transform, grid: Grid) -> bool:
    """``t`` is a displacement field defined everywhere on exactly ``grid``."""
    from spinereg.transforms.displacement import DisplacementField

    return (isinstance(t, DisplacementField) and t._valid is None and t.outside == "identity"
            and t.grid.shape == grid.shape and np.array_equal(t.grid.affine, grid.affine))


def _round_trip_voxels(first: DisplacementField, second: DisplacementField, grid: Grid) -> Residual:
    """:func:`round_trip_residual` of two fields on ``grid`` itself, in voxel units: ``first``'s
    displacement at each voxel centre, ``second``'s bilinear/trilinear value where it lands (edge
    values beyond the outer nodes, as ``DisplacementField.map`` reads them; points landing beyond
    half a voxel of the grid left out), summed; the residual its length in mm."""
    from spinereg.transforms.displacement import sample_linear

    d1 = first.data
    minv = np.linalg.inv(grid.affine[:3, :3]).astype(np.float32)
    off = [np.einsum("j,...j->...", minv[c], d1, optimize=False) for c in range(3)]
    shape = grid.shape
    ok = np.ones(shape, bool)
    for ax in range(3):
        pos = off[ax] + np.arange(shape[ax], dtype=np.float32).reshape([-1 if k == ax else 1 for k in range(3)])
        ok &= (pos >= -0.5) & (pos <= shape[ax] - 0.5)
    dz = off[2] if np.abs(off[2]).max(initial=0.0) > 1e-6 else None
    d2 = sample_linear([np.ascontiguousarray(second.data[..., c]) for c in range(3)], off[0], off[1], dz)
    r2 = np.zeros(shape, np.float32)
    for c in range(3):
        t = d1[..., c] + d2[c]
        r2 += t * t
    res = np.sqrt(r2[ok]).astype(np.float64)
    n_total = int(np.prod(shape))
    if res.size == 0:
        return Residual(float("nan"), float("nan"), float("nan"), float("nan"), 0, n_total)
    return Residual(mean_mm=float(res.mean()), rms_mm=float(np.sqrt(np.mean(res**2))),
                    p95_mm=float(np.percentile(res, 95)), max_mm=float(res.max()),
                    n_points=int(res.size), n_undefined=int(n_total - res.size))


def round_trip_residual(first: Transform, second: Transform, grid: Grid, *, stride: int = 1,
                        max_points: int = 500_000) -> Residual:
    """Statistics of ``|second.map(first.map(x)) - x|`` for the voxel centres ``x`` of ``grid``
    (a displacement field ``first`` sampled on ``grid`` itself is read off its nodes there, as
    :func:`spinereg.transforms.apply.map_grid` does: its trilinear value at a node). Whole slices of
    about ``max_points`` voxels at a time (each point's residual alone: the same statistics)."""
    from spinereg.transforms.apply import map_grid, on_grid
    from spinereg.transforms.base import Chain

    if stride <= 1 and _on_own_grid(first, grid) and _on_own_grid(second, grid):
        return _round_trip_voxels(first, second, grid)
    g = _subgrid(grid, stride)
    first_on_nodes = on_grid(first, g)
    second_grid = _grid_of(second)
    parts = []
    n_total = 0
    for k0, k1 in g.chunks(max_points):
        x = g.world_coords(k0, k1)
        n_total += len(x)
        y = map_grid(Chain([first]), g, k0, k1) if first_on_nodes else first.map(x)
        ok = np.all(np.isfinite(y), axis=1)
        if second_grid is not None:
            ok &= _inside(second_grid, np.where(ok[:, None], y, 0.0))
        z = second.map(y[ok])
        r = np.linalg.norm(z - x[ok], axis=1)
        parts.append(r[np.isfinite(r)].astype(np.float32))
    res = np.concatenate(parts) if parts else np.empty(0, np.float32)
    if res.size == 0:
        return Residual(float("nan"), float("nan"), float("nan"), float("nan"), 0, n_total)
    res64 = res.astype(np.float64)
    return Residual(
        mean_mm=float(res64.mean()),
        rms_mm=float(np.sqrt(np.mean(res64**2))),
        p95_mm=float(np.percentile(res64, 95)),
        max_mm=float(res64.max()),
        n_points=int(res.size),
        n_undefined=int(n_total - res.size),
    )


@dataclass
class ConsistencyResult(MetricResult):
    """Round-trip residuals: ``forward`` on the forward grid, ``backward`` on the inverse's."""

    metric = "inverse_consistency"
    forward: Residual
    backward: Residual | None
    stride: int
    warp: str
    inverse: str


def inverse_consistency(fwd: Transform, inv: Transform, *, grid: Grid | None = None,
                        inverse_grid: Grid | None = None, both: bool = True, stride: int = 1,
                        names: tuple[str, str] = ("<warp>", "<inverse>")) -> ConsistencyResult:
    """Inverse-consistency residuals of ``fwd``/``inv`` (displacement fields or any transforms).

    ``grid`` / ``inverse_grid`` default to the fields' own grids (required for affines).
    ``stride`` evaluates every ``stride``-th voxel only (faster on large grids).
    """
    g = grid or _grid_of(fwd)
    if g is None:
        raise InputError("no grid to evaluate the forward transform on", names[0],
                         "give a reference image (-r) or a displacement field")
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}", None, "use --stride 1 or more")
    forward = round_trip_residual(fwd, inv, g, stride=stride)
    if forward.n_points == 0:
        raise InputError(f"{names[0]} and {names[1]} have no point where the round trip is defined",
                         names[1], "check that the inverse belongs to this warp (swap -w and -winv?)")
    backward = None
    if both:
        gi = inverse_grid or _grid_of(inv) or g
        backward = round_trip_residual(inv, fwd, gi, stride=stride)
    return ConsistencyResult(forward=forward, backward=backward, stride=stride,
                             warp=names[0], inverse=names[1])
