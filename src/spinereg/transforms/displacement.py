"""Dense displacement fields (RAS+ mm, pull convention), their composition and inversion.

:class:`VelocityField` is a diffeomorphism by construction: the exponential of a stationary
velocity field (scaling and squaring, every squaring step smaller than a quarter voxel), with
the exact inverse ``exp(-v)``. Registration steps are returned in that form, tapered to zero at
the edge of their grid (:func:`taper_window`) so that the identity beyond the grid continues
them without a jump: chains through them do not fold where one step's grid ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from spinereg.io.grid import Grid
from spinereg.io.orientation import positive_grid
from spinereg.transforms.base import Chain, Transform

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable, Sequence

#: Displacements larger than this (mm) are legacy "undefined" markers (1e5, FLT_MAX), not motion.
UNDEFINED_MM = 1e4
#: offsets across slices (voxels) at most this large are rounding, not motion (compose_voxel)
INPLANE_TOL = 1e-6
#: trilinear_vectors: points within this (voxels) of a node along an axis are on the node
SNAP_VOX = 1e-6


@dataclass
class InversionReport:
    """How well a numerical inverse satisfies ``u(y + v(y)) + v(y) = 0`` on its grid (mm)."""

    iterations: int
    mean_mm: float
    max_mm: float
    rms_mm: float
    history: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"iterations": self.iterations, "mean_mm": self.mean_mm, "max_mm": self.max_mm,
                "rms_mm": self.rms_mm}


def trilinear_vectors(field: np.ndarray, ijk: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Trilinear values (N, 3) of a vector field (X, Y, Z, 3) at voxel coordinates ``ijk`` (N, 3)
    within half a voxel of the grid (beyond its outer nodes: the outer node's value). The same
    numbers as ``ndimage.map_coordinates(field[..., d], ijk.T, order=1, mode="nearest")`` for
    each component ``d`` (weights and sums in float64 in the same order, rounded to the field's
    float32), 2-3x faster: the weights and corner indices are computed once for the three
    components, whose values sit side by side in memory. Along an axis where every point lies
    within ``SNAP_VOX`` of a node (points on the field's own slices) the node's value is read
    (one corner instead of two: 4 instead of 8 in-plane)."""
    shape = np.array(field.shape[:3])
    if np.any(shape < 2) or field.dtype != np.float32:
        return np.stack([ndimage.map_coordinates(field[..., d], ijk.T, order=1, mode="nearest")
                         for d in range(3)], -1).astype(np.float64)
    flat = field.reshape(-1)
    sx, sy = int(shape[1] * shape[2]) * 3, int(shape[2]) * 3
    out = np.empty((len(ijk), 3))
    for a in range(0, len(ijk), chunk):
        x = np.clip(ijk[a:a + chunk], 0, shape - 1)
        i0 = np.minimum(x.astype(np.intp), shape - 2)  # x >= 0: truncation is the floor
        f = x - i0
        # an axis along which every point lies on a node (to SNAP_VOX: the rounding of a world
        # <-> voxel round trip): one corner along it instead of two
        on_node = [bool(np.all(np.abs(f[:, k] - np.rint(f[:, k])) <= SNAP_VOX)) for k in range(3)]
        for k in np.flatnonzero(on_node):
            i0[:, k] += np.rint(f[:, k]).astype(np.intp)
        base = i0[:, 0] * sx + i0[:, 1] * sy + i0[:, 2] * 3
        fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
        acc = np.zeros((3, len(x)))
        cx = ((0, 1.0),) if on_node[0] else ((0, 1.0 - fx), (sx, fx))
        cy = ((0, 1.0),) if on_node[1] else ((0, 1.0 - fy), (sy, fy))
        cz = ((0, 1.0),) if on_node[2] else ((0, 1.0 - fz), (3, fz))
        for dx, wx in cx:
            for dy, wy in cy:
                wxy = wx * wy
                for dz, wz in cz:
                    w = wxy * wz
                    idx = base + (dx + dy + dz)
                    for d in range(3):
                        acc[d] += w * flat[idx + d]
        out[a:a + chunk] = acc.T.astype(np.float32)
    return out


def _node_slices(transform: Transform, grid: Grid) -> tuple[slice, ...] | None:
    """Slices of ``transform``'s data holding ``grid``'s voxels when ``transform`` is a plain
    displacement field (no undefined values) and ``grid`` a voxel-aligned part of its grid
    (same axes and voxel size, whole-voxel offset, inside it); else None. Trilinear
    interpolation at a node is the node's value, so ``from_transform`` is then a slice."""
    if not isinstance(transform, DisplacementField) or transform._valid is not None:
        return None
    g = transform.grid
    if not np.allclose(g.affine[:3, :3], grid.affine[:3, :3], rtol=0, atol=1e-9):
        return None
    off = g.world_to_voxel(grid.affine[:3, 3][None])[0]
    k = np.rint(off)
    if np.abs(off - k).max() > 1e-6 or np.any(k < 0) or np.any(k + np.array(grid.shape) > np.array(g.shape)):
        return None
    return tuple(slice(int(a), int(a) + n) for a, n in zip(k, grid.shape, strict=True))


class DisplacementField(Transform):
    """Pull displacement field ``map(x) = x + u(x)`` sampled on ``grid``.

    ``data`` has shape ``grid.shape + (3,)``, RAS+ mm. Between grid nodes ``u`` is trilinear.
    Outside the grid (beyond half a voxel) the displacement is zero, as in ITK/ANTs
    (``outside="identity"``); ``outside="nan"`` marks such points undefined instead. Non-finite
    or legacy huge values (> 1e4 mm) are undefined: points there map to NaN.
    """

    def __init__(self, grid: Grid, data: np.ndarray, outside: str = "identity"):
        # C order: trilinear_vectors reads the three components side by side through a flat view
        # (a field read from a NIfTI file is stored component-last in Fortran order: without this
        # copy once, every evaluation copied the whole field, 0.4 s for PAM50's grid)
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.shape != tuple(grid.shape) + (3,):
            raise ValueError(f"field shape {data.shape} does not match grid {grid.shape} + (3,)")
        # min / max allocate nothing (a NaN anywhere makes them NaN): the voxel-wise test only when
        # some value may be undefined
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        maybe_bad = not (-UNDEFINED_MM <= lo and hi <= UNDEFINED_MM)  # also True for NaN
        bad = ~np.isfinite(data) | (np.abs(data) > UNDEFINED_MM) if maybe_bad else None
        if bad is not None and bad.any():
            data = data.copy()
            data[bad.any(axis=-1)] = np.nan
        else:
            bad = None
        self.grid = grid
        self.data = data
        self._valid = None if bad is None else (~bad.any(axis=-1)).astype(np.float32)
        self._filled = None if bad is None else np.nan_to_num(data, nan=0.0)
        self.outside = outside
        self.report: InversionReport | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def zeros(cls, grid: Grid) -> DisplacementField:
        return cls(grid, np.zeros(tuple(grid.shape) + (3,), np.float32))

    @classmethod
    def from_transform(cls, transform: Transform, grid: Grid, max_points: int = 500_000,
                       coarse_mm: float | None = None, min_size: int = 2_000_000) -> DisplacementField:
        """Sample any transform (e.g. a chain) as one field on ``grid``: ``u(x) = T(x) - x``.

        With ``coarse_mm`` and a grid of more than ``min_size`` voxels, the transform is evaluated
        on nodes about ``coarse_mm`` apart spanning the grid and interpolated trilinearly onto it
        (for smooth chains whose finest component is that coarse; much faster on large grids).
        """
        if isinstance(transform, Chain) and len(transform) == 1:
            transform = transform.transforms[0]
        sl = _node_slices(transform, grid)
        if sl is not None:  # a field read on a voxel-aligned part of its own grid: its nodes
            return cls(grid, transform.data[sl].copy())
        if coarse_mm is not None and grid.size > min_size:
            stride = np.maximum(1, np.floor(coarse_mm / grid.zooms + 1e-6)).astype(int)
            if np.any(stride > 1):
                # nodes from the same corner however the grid's voxels are flipped
                coarse = cls.from_transform(transform, positive_grid(grid).coarsened(stride), max_points)
                return cls._upsample(coarse, grid, max_points)
        out = np.empty(tuple(grid.shape) + (3,), np.float32)
        for k0, k1 in grid.chunks(max_points):
            x = grid.world_coords(k0, k1)
            u = transform.map(x) - x
            out[:, :, k0:k1] = u.reshape(grid.shape[0], grid.shape[1], k1 - k0, 3)
        return cls(grid, out)

    @classmethod
    def _upsample(cls, coarse: DisplacementField, grid: Grid, max_points: int) -> DisplacementField:
        out = np.empty(tuple(grid.shape) + (3,), np.float32)
        for k0, k1 in grid.chunks(max_points):
            u = coarse.displacement(grid.world_coords(k0, k1))
            out[:, :, k0:k1] = u.reshape(grid.shape[0], grid.shape[1], k1 - k0, 3)
        return cls(grid, out)

    # -- evaluation ------------------------------------------------------------------------
    def displacement(self, points: np.ndarray) -> np.ndarray:
        """Displacement (N, 3) at world points, trilinear; outside per ``self.outside``."""
        pts = np.asarray(points, dtype=float)
        ijk = self.grid.world_to_voxel(pts)
        shape = np.array(self.grid.shape)
        inside = np.all((ijk >= -0.5) & (ijk <= shape - 0.5), axis=1)
        src = self.data if self._filled is None else self._filled
        if self._valid is None and inside.all():  # every point on the grid: no selection
            return trilinear_vectors(src, ijk)
        out = np.zeros(pts.shape, dtype=np.float64)
        if self.outside == "nan":
            out[~inside] = np.nan
        if inside.any():
            sel = ijk[inside]
            out[inside] = trilinear_vectors(src, sel)
            if self._valid is not None:
                c = sel.T
                ok = ndimage.map_coordinates(self._valid, c, order=1, mode="nearest") > 0.999
                sub = out[inside]
                sub[~ok] = np.nan
                out[inside] = sub
        return out

    def node_displacement(self, k0: int = 0, k1: int | None = None) -> np.ndarray:
        """:meth:`displacement` at this grid's own voxel centres of slices ``k0:k1`` (the points of
        ``grid.world_coords(k0, k1)``, same order), read off the nodes without interpolating:
        trilinear interpolation at a node is the node's value."""
        src = self.data if self._filled is None else self._filled
        k1 = self.grid.shape[2] if k1 is None else k1
        out = src[:, :, k0:k1].reshape(-1, 3).astype(np.float64)
        if self._valid is not None:
            out[~(self._valid[:, :, k0:k1].reshape(-1) > 0.999)] = np.nan
        return out

    def map(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=float)
        return pts + self.displacement(pts)

    def inverse_map(self, points: np.ndarray, iterations: int = 60, tol_mm: float = 1e-3) -> np.ndarray:
        """Points ``x`` with ``x + u(x) = p`` for each ``p``: fixed-point iteration.

        Starts from the grid node whose mapped position is nearest to ``p`` (so that a point the
        field moves in from far away is found on the grid, not at the trivial solution ``x = p``
        that the identity outside the grid offers); points with no such pre-image fall back to
        starting at ``p``.
        """
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        tol = max(tol_mm, 0.05 * float(self.grid.zooms.min()))
        reach = self._may_have_preimage(p, tol)
        if not reach.all():
            # beyond the field's image and its grid the only solution is x = p, and the iteration
            # below ends there (or at NaN with outside="nan"): whatever node it starts from, its
            # first step off the grid lands on p, where u is 0 (NaN), and a point stuck on the grid
            # has a residual above tol and is restarted from p. That answer, one step from p, with
            # no nearest-node search: the KD-tree query of points far from every mapped node was
            # ~90% of 'invert warp_template2anat -d PAM50' (48 s of a 50 s slab of 2 M such points)
            x = np.empty_like(p)
            far = ~reach
            x[far] = p[far] - self.displacement(p[far])
            if reach.any():
                x[reach] = self._inverse_map_near(p[reach], iterations, tol)
            return x
        return self._inverse_map_near(p, iterations, tol)

    def _inverse_map_near(self, p: np.ndarray, iterations: int, tol: float) -> np.ndarray:
        """:meth:`inverse_map` of points ``p`` (N, 3) that may have a pre-image on the grid."""
        x = self._fixed_point(p, self._nearest_preimage(p), iterations)
        res = np.linalg.norm(self.map(x) - p, axis=1)
        bad = ~(res < tol)
        if bad.any():
            alt = self._fixed_point(p[bad], p[bad].copy(), iterations)
            alt_res = np.linalg.norm(self.map(alt) - p[bad], axis=1)
            better = ~(alt_res >= res[bad])
            sub = x[bad]
            sub[better] = alt[better]
            x[bad] = sub
        return x

    def _fixed_point(self, p: np.ndarray, x: np.ndarray, iterations: int) -> np.ndarray:
        for _ in range(iterations):
            u = self.displacement(x)
            x_new = p - u
            if np.nanmax(np.abs(x_new - x), initial=0.0) < 1e-5:
                return x_new
            x = x_new
        return x

    def _image_box(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (min, max) holding ``map(x)`` for every ``x`` on the grid (within half a voxel
        of it): the box of the nodes' mapped positions (undefined nodes at their own position, the
        value their neighbours interpolate with), widened by half a voxel's extent (beyond the
        outer nodes ``u`` is the outer node's). Between nodes ``map`` is the trilinear
        interpolation of the nodes' mapped positions, inside their box. Cached (the data does not
        change after construction)."""
        box = getattr(self, "_image_box_cache", None)
        if box is not None:
            return box
        src = self.data if self._filled is None else self._filled
        a, t = self.grid.affine[:3, :3], self.grid.affine[:3, 3]
        nz = a != 0
        lo, hi = np.empty(3), np.empty(3)
        if (nz.sum(1) == 1).all() and (nz.sum(0) == 1).all():
            # axis-aligned: world component d depends on one voxel index j; its extremes are those
            # over i_j of a[d, j] * i_j + t[d] + (extreme of u_d over the other two axes at i_j)
            for d in range(3):
                j = int(np.argmax(nz[d]))
                other = tuple(k for k in range(3) if k != j)
                comp = src[..., d]
                xd = a[d, j] * np.arange(self.grid.shape[j], dtype=float) + t[d]
                lo[d] = float(np.min(xd + comp.min(axis=other).astype(float)))
                hi[d] = float(np.max(xd + comp.max(axis=other).astype(float)))
        else:
            lo[:], hi[:] = np.inf, -np.inf
            for k0, k1 in self.grid.chunks():
                y = self.grid.world_coords(k0, k1) + src[:, :, k0:k1].reshape(-1, 3)
                lo, hi = np.minimum(lo, y.min(0)), np.maximum(hi, y.max(0))
        half = 0.5 * np.abs(a).sum(1)
        box = (lo - half, hi + half)
        self._image_box_cache = box
        return box

    def _may_have_preimage(self, p: np.ndarray, tol: float) -> np.ndarray:
        """Which points ``p`` (N, 3) may have a pre-image ``x + u(x) = p`` other than ``x = p``, or
        lie on the grid (where ``u(p)`` is not the outside value): those in the image's box
        (:meth:`_image_box`) or in the grid, each widened by a voxel (and ``tol``)."""
        lo, hi = self._image_box()
        pad = tol + float(self.grid.zooms.max())
        out = np.all((p >= lo - pad) & (p <= hi + pad), axis=1)
        ijk = self.grid.world_to_voxel(p)
        out |= np.all((ijk >= -1.5) & (ijk <= np.array(self.grid.shape) + 0.5), axis=1)
        return out

    def _nearest_preimage(self, p: np.ndarray, max_nodes: int = 1_000_000) -> np.ndarray:
        # the nodes' mapped positions and their tree, built once per field and size (a lazy
        # inverse asks chunk by chunk; the field's data is not changed after construction)
        cache = getattr(self, "_preimage_cache", None)
        if cache is None or cache[0] != max_nodes:
            stride = max(1, int(np.ceil((self.grid.size / max_nodes) ** (1 / 3))))
            sub = tuple(slice(None, None, stride) for _ in range(3))
            idx = np.stack(np.meshgrid(*[np.arange(s)[::stride] for s in self.grid.shape], indexing="ij"), -1)
            idx = idx.reshape(-1, 3).astype(float)
            x = self.grid.voxel_to_world(idx)
            y = x + self.data[sub].reshape(-1, 3)
            ok = np.all(np.isfinite(y), axis=1)
            cache = (max_nodes, x[ok], cKDTree(y[ok]))
            self._preimage_cache = cache
        _, nodes, tree = cache
        _, j = tree.query(p)
        return nodes[j]

    # -- algebra -----------------------------------------------------------------------------
    def inverse(self, grid: Grid | None = None, iterations: int = 50, tol_mm: float = 1e-3) -> DisplacementField:
        """Numerical inverse on ``grid`` (default: this field's grid) by fixed-point iteration.

        Solves ``v(y) = -u(y + v(y))``; the residual is stored in ``result.report``. On another
        grid each point is solved by :meth:`inverse_map` (started from the grid node mapped
        nearest to it): started at ``v = -u(y)``, a point the field maps in from far away stayed
        at the identity the field is continued with beyond its grid, with residual 0
        (``invert warp_anat2template -d t2`` wrote an all-zero field before session 37).
        """
        g = self.grid if grid is None else grid
        own = grid is None or grid.same_as(self.grid)
        out = np.empty(tuple(g.shape) + (3,), np.float32)
        history: list[float] = []
        it = 0
        res_all = np.empty(g.size)
        n = 0
        for k0, k1 in g.chunks():
            y = g.world_coords(k0, k1)
            if not own:
                x = self.inverse_map(y, iterations=iterations, tol_mm=tol_mm)
                v = x - y
                it = iterations
                res = np.linalg.norm(self.map(x) - y, axis=1)
                res_all[n:n + len(y)] = res
                n += len(y)
                history.append(float(np.nanmax(res, initial=0.0)))
                out[:, :, k0:k1] = v.reshape(g.shape[0], g.shape[1], k1 - k0, 3)
                continue
            v = -self.displacement(y)
            for n_it in range(1, iterations + 1):
                v_new = -self.displacement(y + v)
                change = np.abs(v_new - v).max(axis=1)
                change = change[np.isfinite(change)]
                # converged when 99% of the points moved less than tol (border points whose
                # pre-image leaves the grid never settle)
                step = float(np.percentile(change, 99)) if change.size else 0.0
                v = v_new
                it = n_it
                if step < tol_mm:
                    break
            res = np.linalg.norm(v + self.displacement(y + v), axis=1)
            res_all[n:n + len(y)] = res
            n += len(y)
            history.append(float(np.nanmax(res, initial=0.0)))
            out[:, :, k0:k1] = v.reshape(g.shape[0], g.shape[1], k1 - k0, 3)
        inv = DisplacementField(g, out, outside=self.outside)
        fin = res_all[np.isfinite(res_all)]
        inv.report = InversionReport(
            iterations=it,
            mean_mm=float(fin.mean()) if fin.size else float("nan"),
            max_mm=float(fin.max()) if fin.size else float("nan"),
            rms_mm=float(np.sqrt((fin**2).mean())) if fin.size else float("nan"),
            history=history,
        )
        return inv

    def __repr__(self) -> str:
        return f"DisplacementField({self.grid!r})"


# -- diffeomorphisms by construction ------------------------------------------------------------
def squared_norm(a: np.ndarray) -> np.ndarray:
    """``(a**2).sum(-1)`` of a (..., 3) field, the same numbers (the same additions in the same
    order) about 10x faster: three strided products instead of a reduction over the last axis."""
    out = a[..., 0] * a[..., 0]
    for k in range(1, a.shape[-1]):
        out += a[..., k] * a[..., k]
    return out


def _voxel_base(shape: tuple[int, ...]) -> list[np.ndarray]:
    return [a.astype(np.float32) for a in np.meshgrid(*[np.arange(n) for n in shape], indexing="ij", sparse=True)]


def sample_linear(arrays: list[np.ndarray], dx: np.ndarray, dy: np.ndarray,
                  dz: np.ndarray | None = None) -> list[np.ndarray]:
    """``ndimage.map_coordinates(a, [i + dx, j + dy, k + dz], order=1, mode="nearest")`` for each
    3D ``a`` of ``arrays`` (one shape; voxel offsets ``d*`` from each voxel's own index). With
    ``dz`` None (no motion across slices) each slice is sampled in its plane: bilinear, the
    weights and corner indices computed once for all ``arrays`` (float32 arithmetic on the
    offsets, so the fraction keeps the offsets' own precision; 4 corners instead of 8)."""
    if not arrays:
        return []
    nx, ny, nz = arrays[0].shape
    if dz is not None or nz == 1 or nx < 2 or ny < 2:
        i, j, k = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij", sparse=True)
        coords = np.stack([i + dx, j + dy, np.broadcast_to(k + (0 if dz is None else dz), arrays[0].shape)])
        return [ndimage.map_coordinates(a, coords, order=1, mode="nearest") for a in arrays]
    shape = arrays[0].shape
    (x0, fx), (y0, fy) = (_cell(d, n, ax, shape) for d, n, ax in ((dx, nx, 0), (dy, ny, 1)))
    base = x0.astype(np.intp)
    base *= ny * nz
    y0 *= np.int32(nz)
    base += y0
    base += np.arange(nz, dtype=np.intp)
    out = []
    for a in arrays:
        flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
        v00 = flat.take(base)
        v01 = flat[nz:].take(base)
        v10 = flat[ny * nz:].take(base)
        v11 = flat[ny * nz + nz:].take(base)
        v01 -= v00
        v01 *= fy
        v01 += v00
        v11 -= v10
        v11 *= fy
        v11 += v10
        v11 -= v01
        v11 *= fx
        v11 += v01
        out.append(v11 if a.dtype == np.float32 else v11.astype(a.dtype))
    return out


def _cell(d: np.ndarray, n: int, ax: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Lower corner (int32, in [0, n - 2]) and fraction (float32, in [0, 1]) of ``index + d``
    along axis ``ax`` of an array of ``shape``: beyond the outer nodes, the outer node's value."""
    idx = np.arange(n, dtype=np.int32).reshape([-1 if k == ax else 1 for k in range(3)])
    d = np.broadcast_to(np.asarray(d, np.float32), shape)
    x0 = np.floor(d).astype(np.int32)
    x0 += idx
    np.clip(x0, 0, n - 2, out=x0)
    f = (idx - x0).astype(np.float32)
    f += d
    np.clip(f, 0.0, 1.0, out=f)
    return x0, f


def compose_voxel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pull composition in voxel units on one grid: ``(id + a) o (id + b) - id = b + a(x + b)``
    (trilinear, edge values beyond the grid; in-plane bilinear when ``b`` has no motion across
    slices, see :func:`sample_linear`: none beyond ``INPLANE_TOL`` voxel, the rounding left by
    converting an in-plane field to world mm and back on an oblique grid)."""
    dz = b[..., 2] if np.abs(b[..., 2]).max(initial=0.0) > INPLANE_TOL else None
    out = np.array(b, np.float32)
    comps = [d for d in range(3) if np.any(a[..., d])]
    for d, vals in zip(comps, sample_linear([a[..., d] for d in comps], b[..., 0], b[..., 1], dz), strict=True):
        out[..., d] += vals
    return out


class FieldInverse(Transform):
    """The inverse of a displacement field, solved at the points asked (no grid of its own).

    ``map(x)`` is ``field.inverse_map(x)`` (fixed-point iteration from the nearest mapped node),
    so inverting a warp to apply it costs the points it is applied to, not the field's whole grid:
    ``inv:warp_anat2template`` (PAM50's 141 x 141 x 991 grid) onto a subject image needs the
    subject's voxels only. ``~FieldInverse(f)`` is ``f``; :meth:`DisplacementField.inverse` makes a
    sampled field on a grid when one is needed (writing the inverse, ``spinereg invert``)."""

    def __init__(self, field: DisplacementField):
        self.field = field

    def map(self, points: np.ndarray) -> np.ndarray:
        return self.field.inverse_map(points)

    def inverse_map(self, points: np.ndarray) -> np.ndarray:
        return self.field.map(points)

    def inverse(self, grid: Grid | None = None, iterations: int = 50, tol_mm: float = 1e-3) -> DisplacementField:
        """The field itself (sampled on ``grid`` when another grid is given)."""
        if grid is None or grid.same_as(self.field.grid):
            return self.field
        return DisplacementField.from_transform(self.field, grid)

    def __repr__(self) -> str:
        return f"FieldInverse({self.field!r})"


@dataclass(frozen=True)
class ExpPlan:
    """Where the exponential of a velocity needs its full grid: the voxel box ``[lo, hi)``; beyond
    it the velocity is smooth at the scale of ``factor`` voxels (the linear interpolation of its
    values at the nodes ``factor * k`` from voxel 0), as the coarse demons level leaves it."""

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    factor: tuple[int, int, int]


def resample_level_field(v: np.ndarray, src_fac: Sequence[float] | np.ndarray,
                         dst_fac: Sequence[float] | np.ndarray, shape: tuple[int, ...],
                         lo: Sequence[float] | np.ndarray) -> np.ndarray:
    """Field in voxel units of a level of factors ``src_fac`` (origin: the crop's voxel 0) -> the
    level of factors ``dst_fac`` whose voxel 0 is the crop's voxel ``lo`` (``shape`` voxels):
    linear interpolation, edge values beyond the outer nodes (``map_coordinates(order=1,
    mode="nearest")``), one axis at a time (the trilinear weights are separable)."""
    src_fac, dst_fac, lo = (np.asarray(a, float) for a in (src_fac, dst_fac, lo))
    out = np.asarray(v, np.float32)
    for ax in range(3):
        n_src = out.shape[ax]
        x = (lo[ax] + dst_fac[ax] * np.arange(shape[ax])) / src_fac[ax]
        if n_src == shape[ax] and np.array_equal(x, np.arange(n_src)):
            continue
        x = np.clip(x, 0, n_src - 1)
        i0 = np.minimum(np.floor(x).astype(np.intp), max(n_src - 2, 0))
        w = (x - i0).astype(np.float32).reshape([-1 if k == ax else 1 for k in range(4)])
        a0 = np.take(out, i0, axis=ax)
        out = a0 + w * (np.take(out, np.minimum(i0 + 1, n_src - 1), axis=ax) - a0) if n_src > 1 else a0
    ratio = (src_fac / dst_fac).astype(np.float32)
    return np.ascontiguousarray(out * ratio)


def _exp_two_scale(v: np.ndarray, plan: ExpPlan, max_step: float) -> tuple[np.ndarray, int] | None:
    """:func:`exp_velocity` of a velocity that is fine only in ``plan``'s box: the flow on the grid
    of the coarse nodes, its displacement interpolated onto every voxel, and the flow at full
    resolution on the box grown enough that it is exact where it is used. The coarse flow is
    wrong only where paths or node cells reach into the box: up to the largest motion in the box
    plus one coarse cell beyond it; from there the full-resolution flow blends into the coarse one
    over one more coarse cell (a cosine ramp). A point's flow reads the velocity only along its
    path (no longer than the largest motion met), so the full-resolution crop extends that far
    beyond the blend and its own edge is never read where it is used. None when that crop is most
    of the grid (the whole grid at full resolution then)."""
    # nodes every 2 voxels at most: a linear field of coarser nodes is linear between them too, and
    # the flow's interpolation error (quadratic in the node spacing) stays near the full grid's
    fac = np.minimum(np.asarray(plan.factor, int), 2)
    shape = np.array(v.shape[:3])
    if np.all(fac == 1):
        return None
    mag = np.sqrt(squared_norm(v))
    lo, hi = np.asarray(plan.lo, int), np.asarray(plan.hi, int)

    def grown(g: int) -> tuple[slice, ...]:
        return tuple(slice(int(a), int(b)) for a, b in
                     zip(np.maximum(lo - g, 0), np.minimum(hi + g, shape), strict=True))

    cell = int(fac.max())
    g_start = int(np.ceil(float(mag[grown(0)].max(initial=0.0)))) + 1 + cell
    g_end = g_start + cell
    h = g_start
    for _ in range(4):  # the largest motion met within the crop, grown until it holds
        h_new = int(np.ceil(float(mag[grown(g_end + h)].max(initial=0.0)))) + 1
        if h_new <= h:
            break
        h = h_new
    rsl = grown(g_end + h)
    r_lo = np.array([sl.start for sl in rsl])
    r_hi = np.array([sl.stop for sl in rsl])
    if np.prod(r_hi - r_lo) > 0.5 * np.prod(shape):
        return None
    # coarse: the nodes factor * k (the grid padded with edge values to a last node)
    n_nodes = -(-(shape - 1) // fac) + 1
    pad = [(0, int(n * k - k + 1 - s)) for n, k, s in zip(n_nodes, fac, shape, strict=True)] + [(0, 0)]
    vc = np.pad(v, pad, mode="edge")[::fac[0], ::fac[1], ::fac[2]] / fac.astype(np.float32)
    dc, n_c = exp_velocity(vc, max_step)
    d = resample_level_field(dc, fac, np.ones(3), tuple(int(s) for s in shape), np.zeros(3))
    # full resolution on the grown box, blended into the coarse flow between g_start and g_end
    df, n_f = exp_velocity(v[rsl], max_step)
    w = np.ones(df.shape[:3], np.float32)
    for ax in range(3):
        idx = np.arange(r_lo[ax], r_hi[ax], dtype=float)
        ramp = np.ones_like(idx)
        if r_lo[ax] > 0:  # an inner face
            ramp = np.minimum(ramp, np.clip((idx - (lo[ax] - g_end)) / cell, 0, 1))
        if r_hi[ax] < shape[ax]:
            ramp = np.minimum(ramp, np.clip(((hi[ax] - 1 + g_end) - idx) / cell, 0, 1))
        prof = (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)
        w *= prof.reshape([-1 if k == ax else 1 for k in range(3)])
    sub = d[rsl]
    df -= sub
    df *= w[..., None]
    sub += df
    return d, max(n_c, n_f)


def exp_velocity(v: np.ndarray, max_step: float = 0.25, plan: ExpPlan | None = None) -> tuple[np.ndarray, int]:
    """Displacement of the flow of the stationary velocity ``v`` (voxel units, (X, Y, Z, 3)) at
    time 1, by scaling and squaring: ``v / 2^n`` is smaller than ``max_step`` voxel everywhere
    (so each small map is invertible), then squared ``n`` times. Returns (displacement, n).
    ``plan``: the velocity is fine only in a box (see :class:`ExpPlan`, :func:`_exp_two_scale`)."""
    v = np.asarray(v, np.float32)
    if plan is not None:
        two = _exp_two_scale(v, plan, max_step)
        if two is not None:
            return two
    vmax = float(np.sqrt(squared_norm(v)).max()) if v.size else 0.0
    n = max(0, int(np.ceil(np.log2(max(vmax, 1e-12) / max_step)))) if vmax > max_step else 0
    d = v / np.float32(2**n)
    for _ in range(n):
        d = compose_voxel(d, d)
    return d, n


def taper_window(shape: tuple[int, ...], zooms: np.ndarray, axes: Iterable[int],
                 width_mm: float = 8.0,
                 keep: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Separable window, 1 inside and 0 on the outer voxels of the grid along ``axes`` (a cosine
    ramp over ``width_mm``, at most a quarter of the extent). ``keep``: voxel box (lo, hi) that
    stays at 1 where it can: the ramp is shortened to fit outside it, but not below
    ``min(4 voxels, a quarter of the extent)`` (a steeper ramp is not representable on the grid)."""
    w = np.ones(shape[:3], np.float32)
    for ax in axes:
        n = shape[ax]
        if n < 3:
            continue
        idx = np.arange(n, dtype=float)
        ramp = max(1.0, min(width_mm / float(zooms[ax]), 0.25 * (n - 1)))
        floor = max(1.0, min(4.0, 0.25 * (n - 1)))
        lo_r = hi_r = ramp
        if keep is not None:
            lo_r = max(floor, min(ramp, float(keep[0][ax])))
            hi_r = max(floor, min(ramp, float(n - 1 - keep[1][ax])))
        a = np.clip(idx / lo_r, 0.0, 1.0)
        b = np.clip((n - 1 - idx) / hi_r, 0.0, 1.0)
        prof = (0.5 - 0.5 * np.cos(np.pi * np.minimum(a, b))).astype(np.float32)
        w *= prof.reshape([-1 if k == ax else 1 for k in range(3)])
    return w


class VelocityField(DisplacementField):
    """``exp(v)`` of a stationary velocity field ``v`` (world mm, on ``grid``): a diffeomorphism
    by construction whose inverse is exactly ``exp(-v)`` (no fixed-point inversion to fail where
    the map compresses). ``velocity`` keeps ``v``; ``data`` is the displacement of ``exp(v)``."""

    def __init__(self, grid: Grid, velocity: np.ndarray, displacement: np.ndarray | None = None,
                 plan: ExpPlan | None = None):
        vel = np.asarray(velocity, np.float32)
        self.plan = plan
        if vel.shape != tuple(grid.shape) + (3,):
            raise ValueError(f"velocity shape {vel.shape} does not match grid {grid.shape} + (3,)")
        self.velocity = vel
        a = grid.affine[:3, :3]
        if displacement is None:
            v_vox = np.einsum("ij,...j->...i", np.linalg.inv(a).astype(np.float32), vel)
            d_vox, self.squarings = exp_velocity(v_vox, plan=plan)
            displacement = np.einsum("ij,...j->...i", a.astype(np.float32), d_vox)
        super().__init__(grid, displacement)

    @classmethod
    def from_voxel_velocity(cls, grid: Grid, v_vox: np.ndarray) -> VelocityField:
        """From a velocity in voxel units of ``grid``."""
        a = grid.affine[:3, :3].astype(np.float32)
        return cls(grid, np.einsum("ij,...j->...i", a, np.asarray(v_vox, np.float32)))

    def start_inverse(self) -> None:
        """Compute ``exp(-v)`` in a background thread (numpy releases the GIL: it runs beside
        the caller's next work); the next :meth:`inverse` takes it (once) instead of computing it."""
        if getattr(self, "_pending", None) is None:
            box: dict = {}

            def work() -> None:
                box["inv"] = VelocityField(self.grid, -self.velocity, plan=getattr(self, "plan", None))

            th = threading.Thread(target=work, name="exp(-v)", daemon=True)
            th.start()
            self._pending = (th, box)

    def inverse(self, grid: Grid | None = None, iterations: int = 50, tol_mm: float = 1e-3) -> DisplacementField:
        """``exp(-v)``, exact; on another ``grid`` it is sampled there (identity beyond this grid)."""
        inv = None
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is not None:  # started by start_inverse: its result (recomputed if it failed)
            pending[0].join()
            inv = pending[1].get("inv")
        if inv is None:
            inv = VelocityField(self.grid, -self.velocity, plan=getattr(self, "plan", None))
        if grid is None or grid.same_as(self.grid):
            return inv
        return DisplacementField.from_transform(inv, grid)

    def __repr__(self) -> str:
        return f"VelocityField({self.grid!r})"
