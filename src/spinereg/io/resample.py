"""Sampling images at world points and resampling onto grids.

Interpolation names follow SCT: ``nn`` (nearest), ``linear``, ``spline`` (cubic B-spline) and
``label`` (point labels: every non-zero voxel value is kept as one point, moved to the nearest
target voxel, so single-voxel labels survive any change of grid). Points outside the image's
field of view (beyond half a voxel from the outer voxel centres, as ITK) get ``cval``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image

if TYPE_CHECKING:  # pragma: no cover
    from numpy.typing import DTypeLike

INTERPOLATIONS = ("nn", "linear", "spline", "label")
_ALIASES = {"nearest": "nn", "nearestneighbor": "nn", "0": "nn", "1": "linear", "3": "spline",
            "bspline": "spline", "lin": "linear"}
_ORDER = {"nn": 0, "linear": 1, "spline": 3}


def interp_name(name: str) -> str:
    """Canonical interpolation name (accepts ``nearest``, ``bspline``, 0/1/3 ...)."""
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in INTERPOLATIONS:
        raise InputError(f"unknown interpolation {name!r}", None, f"use one of {', '.join(INTERPOLATIONS)}")
    return key


#: a point whose third voxel coordinate is this close to an integer lies on that slice
SLICE_TOL = 1e-6


class VolumeSampler:
    """Sample one 3D volume at voxel coordinates, with a spline prefilter computed once."""

    def __init__(self, volume: np.ndarray, interp: str = "linear", cval: float = 0.0):
        self.interp = interp_name(interp)
        if self.interp == "label":
            raise ValueError("label interpolation is handled by place_labels")
        self.order = _ORDER[self.interp]
        vol = np.asarray(volume)
        self._raw = vol if self.order == 3 else None
        self._coef: dict[str, np.ndarray] = {}  # spline coefficients: "3d", "2d" (in-plane only)
        if self.order != 3 and vol.dtype.kind not in "f":
            vol = vol.astype(np.float32) if self.order == 1 else vol
        self._volume = None if self.order == 3 else vol
        self.shape = np.array(vol.shape[:3])
        self.cval = cval

    @property
    def volume(self) -> np.ndarray:
        """The array sampled by ``map_coordinates`` (the 3D spline coefficients for splines)."""
        if self._volume is None:
            self._volume = self._coefficients("3d")
        return self._volume

    def _coefficients(self, kind: str) -> np.ndarray:
        """Cubic B-spline coefficients (mirror boundaries): over all axes (``3d``) or in-plane only
        (``2d``: each slice's own 2D spline), computed once."""
        if kind not in self._coef:
            raw = np.asarray(self._raw, np.float64)
            if kind == "3d":
                self._coef[kind] = ndimage.spline_filter(raw, order=3, mode="mirror")
            else:
                c = raw
                for ax in range(min(2, raw.ndim)):
                    c = ndimage.spline_filter1d(c, order=3, axis=ax, mode="mirror")
                self._coef[kind] = np.ascontiguousarray(np.moveaxis(c, 2, 0))  # one slice, one block
        return self._coef[kind]

    def at_voxels(self, ijk: np.ndarray) -> np.ndarray:
        """Values at continuous voxel coordinates ``ijk`` (N, 3); NaN coordinates give cval."""
        ijk = np.asarray(ijk, dtype=np.float64)
        inside = np.all((ijk >= -0.5) & (ijk <= self.shape - 0.5), axis=1)
        out_dtype = np.float64 if self.order else self.volume.dtype
        out = np.full(ijk.shape[0], self.cval, dtype=out_dtype)
        if inside.any():
            sel = ijk if inside.all() else ijk[inside]  # one copy at most (points can be millions)
            vals = self._spline_on_slices(sel) if self.order == 3 else None
            if vals is None:
                vals = ndimage.map_coordinates(
                    self.volume,
                    sel.T,
                    order=self.order,
                    mode="nearest" if self.order < 3 else "mirror",
                    prefilter=False,
                )
            out[inside] = vals
        return out

    def _spline_on_slices(self, ijk: np.ndarray) -> np.ndarray | None:
        """Cubic spline values at points that all lie on the volume's slices (third coordinate
        within ``SLICE_TOL`` of an integer: in-plane motion): on slice ``k`` the 3D interpolating
        spline is that slice's own 2D interpolating spline (both interpolate the slice's values
        with the same mirror boundaries, and that spline is unique), evaluated from 16
        coefficients instead of 64 -- the 3D path's values to float64 rounding. None when some
        point lies between slices or the volume is not 3D."""
        if self._raw is None or np.ndim(self._raw) != 3 or self._raw.shape[2] < 2:
            return None
        k = np.rint(ijk[:, 2])
        if np.abs(ijk[:, 2] - k).max(initial=0.0) > SLICE_TOL:
            return None
        nz = self._raw.shape[2]
        coef = self._coefficients("2d")
        ks = np.clip(k, 0, nz - 1).astype(np.intp)
        order = np.argsort(ks, kind="stable")  # the points slice by slice
        bounds = np.searchsorted(ks[order], np.arange(nz + 1))
        pts = np.ascontiguousarray(ijk[order, :2].T)
        vals = np.empty(len(ijk))
        for z in range(nz):
            b0, b1 = int(bounds[z]), int(bounds[z + 1])
            if b1 > b0:
                vals[b0:b1] = ndimage.map_coordinates(coef[z], pts[:, b0:b1], order=3, mode="mirror",
                                                      prefilter=False)
        out = np.empty(len(ijk))
        out[order] = vals
        return out


def sample_world(volume: np.ndarray, affine: np.ndarray, points: np.ndarray, interp: str = "linear",
                 cval: float = 0.0) -> np.ndarray:
    """Values of a 3D ``volume`` (voxel->world ``affine``) at world points (N, 3)."""
    ijk = Grid(volume.shape[:3], affine).world_to_voxel(points)
    return VolumeSampler(volume, interp, cval).at_voxels(ijk)


def sample_image(image: Image, points: np.ndarray, interp: str = "linear", cval: float = 0.0) -> np.ndarray:
    """Values of ``image`` (its data as float64) at world points (N, 3): the same values as
    :func:`sample_world` on the whole volume, but with ``nn`` / ``linear`` only the box of voxels
    the points reach is read and converted (a float64 copy of a 0.8 mm volume costs more than
    sampling it)."""
    pts = np.asarray(points, float).reshape(-1, 3)
    data = image.data if image.ndim == 3 else image.volume(0)
    if interp_name(interp) == "spline" or not len(pts):
        return sample_world(np.asarray(data, np.float64), image.grid.affine, pts, interp, cval)
    ijk = image.grid.world_to_voxel(pts)
    fin = np.all(np.isfinite(ijk), axis=1)
    if not fin.any():
        return np.full(len(pts), cval, dtype=np.float64)
    shape = np.array(data.shape[:3])
    # two voxels beyond the points' reach, clipped to the volume: a point inside the volume keeps
    # its neighbours, one outside it stays outside (the box reaches the volume's edge on its side)
    lo = np.clip(np.floor(ijk[fin].min(0)).astype(int) - 2, 0, shape - 1)
    hi = np.clip(np.ceil(ijk[fin].max(0)).astype(int) + 3, lo + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sampler = VolumeSampler(np.asarray(data[box], np.float64), interp, cval)
    # outside the volume stays outside: the box keeps the volume's bounds where points pass them
    out = np.full(len(pts), cval, dtype=np.float64)
    inside = np.all((ijk >= -0.5) & (ijk <= shape - 0.5), axis=1)
    if inside.any():
        out[inside] = sampler.at_voxels(ijk[inside] - lo)
    return out


def label_points(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (N, 3) and values (N,) of every non-zero voxel of a label image."""
    idx = np.argwhere(volume != 0)
    vals = volume[tuple(idx.T)]
    return Grid(volume.shape[:3], affine).voxel_to_world(idx), vals


def place_labels(points: np.ndarray, values: np.ndarray, grid: Grid,
                 dtype: DTypeLike | None = None) -> np.ndarray:
    """Label volume on ``grid`` with each world point written at its nearest voxel.

    Points outside the grid are dropped. Points landing on the same voxel keep the last value.
    """
    out = np.zeros(grid.shape, dtype=dtype if dtype is not None else np.asarray(values).dtype)
    if len(points) == 0:
        return out
    ijk, ok = grid.nearest_voxels(points)
    out[tuple(ijk[ok].T)] = np.asarray(values)[ok]
    return out



def slice_like(img: Image, sub: Grid, dtype: DTypeLike | None = np.float32) -> np.ndarray:
    """Data of ``img`` on ``sub``, a voxel-aligned sub-grid of ``img``'s grid (``dtype=None``
    keeps the image's own type)."""
    off = np.rint(img.grid.world_to_voxel(sub.voxel_to_world(np.zeros((1, 3))))[0]).astype(int)
    sl = tuple(slice(o, o + s) for o, s in zip(off, sub.shape, strict=True))
    data = np.asarray(img.data)[sl]
    return data if dtype is None else np.asarray(data, dtype=dtype)
