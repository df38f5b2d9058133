"""A voxel grid in world space: shape plus voxel-to-RAS+ (mm) affine."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np


@dataclass(frozen=True, eq=False)
class Grid:
    """Sampling grid: ``shape`` (3 ints) and ``affine`` (4x4, voxel index -> RAS+ mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape[:3]))
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=float).copy())

    @property
    def zooms(self) -> np.ndarray:
        """Voxel size (mm) along each voxel axis."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def axcodes(self) -> tuple[str, ...]:
        return nib.aff2axcodes(self.affine)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def extent_along(self, direction: Sequence[float] | np.ndarray) -> float:
        """Extent (mm) of one voxel along the world ``direction`` (the voxel box projected on it):
        how finely the grid samples that direction (a 7.5 mm axial slice: 7.5 mm along S-I)."""
        d = np.asarray(direction, float)
        d = d / max(float(np.linalg.norm(d)), 1e-9)
        return float(np.abs(self.affine[:3, :3].T @ d).sum())

    def nearest_voxels(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each world point's nearest voxel (N, 3 ints) and whether that voxel is on the grid (a
        finite point at most half a voxel beyond its edge)."""
        p = np.asarray(xyz, float).reshape(-1, 3)
        fin = np.all(np.isfinite(p), axis=1)
        ijk = np.zeros(p.shape, int)
        ijk[fin] = np.rint(self.world_to_voxel(p[fin])).astype(int)
        ok = fin & np.all((ijk >= 0) & (ijk < np.array(self.shape[:3])), axis=1)
        return ijk, ok

    def same_as(self, other: Grid, atol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        return _apply_affine(self.affine, ijk)

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        return _apply_affine(np.linalg.inv(self.affine), xyz)

    def voxel_coords(self, k0: int = 0, k1: int | None = None) -> np.ndarray:
        """Voxel indices (N, 3) of slices ``k0:k1`` of the last axis, Fortran-free C order."""
        k1 = self.shape[2] if k1 is None else k1
        out = np.empty((self.shape[0], self.shape[1], k1 - k0, 3))
        out[..., 0] = np.arange(self.shape[0], dtype=float)[:, None, None]
        out[..., 1] = np.arange(self.shape[1], dtype=float)[None, :, None]
        out[..., 2] = np.arange(k0, k1, dtype=float)[None, None, :]
        return out.reshape(-1, 3)

    def world_coords(self, k0: int = 0, k1: int | None = None) -> np.ndarray:
        """World (RAS+ mm) coordinates (N, 3) of the voxels of slices ``k0:k1`` (C order)."""
        k1 = self.shape[2] if k1 is None else k1
        a = self.affine[:3, :3]
        nz = a != 0
        if not ((nz.sum(1) == 1).all() and (nz.sum(0) == 1).all()):
            return self.voxel_to_world(self.voxel_coords(k0, k1))
        # axis-aligned: each world coordinate depends on one voxel index; the same products and
        # sums as voxel_to_world(voxel_coords()), written straight into the output
        ranges = (np.arange(self.shape[0]), np.arange(self.shape[1]), np.arange(k0, k1))
        out = np.empty((self.shape[0], self.shape[1], k1 - k0, 3))
        for i in range(3):
            j = int(np.argmax(nz[i]))
            vals = ranges[j].astype(float) * a[i, j] + self.affine[i, 3]
            out[..., i] = vals.reshape([-1 if ax == j else 1 for ax in range(3)])
        return out.reshape(-1, 3)

    def chunks(self, max_points: int = 2_000_000) -> Iterator[tuple[int, int]]:
        """Slabs ``(k0, k1)`` along the last axis holding at most ``max_points`` voxels each."""
        per_slice = max(1, self.shape[0] * self.shape[1])
        step = max(1, max_points // per_slice)
        for k0 in range(0, self.shape[2], step):
            yield k0, min(self.shape[2], k0 + step)

    def coarsened(self, stride: int | Sequence[int] | np.ndarray) -> Grid:
        """A grid with every ``stride``-th node (per axis) that still spans this grid's extent."""
        st = np.broadcast_to(np.asarray(stride, dtype=int), (3,))
        shape = tuple(int(np.ceil((n - 1) / s)) + 1 for n, s in zip(self.shape, st, strict=True))
        return Grid(shape, self.affine @ np.diag([*st.astype(float), 1.0]))

    def bounding_subgrid(self, world_points: np.ndarray, margin_mm: float = 0.0) -> Grid | None:
        """Voxel-aligned sub-grid covering the finite ``world_points`` plus ``margin_mm``, clipped
        to this grid; ``None`` when they do not overlap it."""
        pts = np.asarray(world_points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if pts.size == 0:
            return None
        ijk = self.world_to_voxel(pts)
        pad = margin_mm / self.zooms
        lo = np.maximum(np.floor(ijk.min(0) - pad), 0).astype(int)
        hi = np.minimum(np.ceil(ijk.max(0) + pad), np.array(self.shape) - 1).astype(int)
        if np.any(hi < lo):
            return None
        return self.box(lo, hi + 1)

    def box(self, lo: Sequence[int] | np.ndarray, hi: Sequence[int] | np.ndarray) -> Grid:
        """The voxel-aligned sub-grid of the voxels ``[lo, hi)``."""
        lo = np.asarray(lo, int)
        aff = self.affine.copy()
        aff[:3, 3] = self.voxel_to_world(lo[None].astype(float))[0]
        return Grid(tuple(int(v) for v in np.asarray(hi, int) - lo), aff)

    def with_voxel_size(self, voxel_mm: float | Sequence[float] | np.ndarray) -> Grid:
        """Same orientation and origin corner, voxels of ``voxel_mm`` (per axis), covering at
        least this grid's extent."""
        v = np.broadcast_to(np.asarray(voxel_mm, dtype=float), (3,))
        extent = (np.array(self.shape) - 1) * self.zooms
        shape = tuple(int(np.ceil(e / vv - 1e-6)) + 1 for e, vv in zip(extent, v, strict=True))
        aff = self.affine.copy()
        aff[:3, :3] = self.affine[:3, :3] / self.zooms * v
        return Grid(shape, aff)

    def center_world(self) -> np.ndarray:
        return self.voxel_to_world((np.array(self.shape) - 1) / 2.0)

    def __repr__(self) -> str:
        return f"Grid(shape={self.shape}, zooms={np.round(self.zooms, 4).tolist()}, axcodes={''.join(self.axcodes)})"


def _apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``pts @ m[:3, :3].T + m[:3, 3]`` without BLAS: an (N, 3) x (3, 3) product through
    OpenBLAS threads is up to 70x slower on a loaded machine than this einsum. Axis-aligned
    affines (one non-zero per row and column: permuted, flipped, scaled axes, as most grids
    are) on finite points: a column gather, one product and one sum, 6-9x faster than the
    einsum and the same numbers (the einsum's other two terms are exact zeros)."""
    pts = np.asarray(pts, dtype=float)
    a = m[:3, :3]
    nz = a != 0
    if (pts.ndim == 2 and pts.shape[1] == 3 and (nz.sum(1) == 1).all() and (nz.sum(0) == 1).all()
            and np.isfinite(pts.sum())):  # a NaN or inf times the zeros: NaN in every coordinate
        j = nz.argmax(1)
        out = pts[:, j]
        out *= a[np.arange(3), j]
        out += m[:3, 3]
        return out
    return np.einsum("...j,ij->...i", pts, m[:3, :3]) + m[:3, 3]
