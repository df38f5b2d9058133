"""Sampling images at world points and resampling onto grids.

Interpolation names follow SCT: ``nn`` (nearest), ``linear``, ``spline`` (cubic B-spline) and
``label`` (point labels: every non-zero voxel value is kept as one point, moved to the nearest
target voxel, so single-voxel labels survive any change of grid). Points outside the image's
field of view (beyond half a voxel from the outer voxel centres, as ITK) get ``cval``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image

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


class VolumeSampler:
    """Sample one 3D volume at voxel coordinates, with a spline prefilter computed once."""

    def __init__(self, volume: np.ndarray, interp: str = "linear", cval: float = 0.0):
        self.interp = interp_name(interp)
        if self.interp == "label":
            raise ValueError("label interpolation is handled by place_labels")
        self.order = _ORDER[self.interp]
        vol = np.asarray(volume)
        if self.order == 3:
            vol = ndimage.spline_filter(vol.astype(np.float64), order=3, mode="mirror")
        elif vol.dtype.kind not in "f":
            vol = vol.astype(np.float32) if self.order == 1 else vol
        self.volume = vol
        self.shape = np.array(vol.shape[:3])
        self.cval = cval

    def at_voxels(self, ijk: np.ndarray) -> np.ndarray:
        """Values at continuous voxel coordinates ``ijk`` (N, 3); NaN coordinates give cval."""
        ijk = np.asarray(ijk, dtype=np.float64)
        inside = np.all((ijk >= -0.5) & (ijk <= self.shape - 0.5), axis=1)
        coords = np.where(inside[:, None], ijk, 0.0).T
        out_dtype = np.float64 if self.order else self.volume.dtype
        out = np.full(ijk.shape[0], self.cval, dtype=out_dtype)
        if inside.any():
            vals = ndimage.map_coordinates(
                self.volume,
                coords[:, inside],
                order=self.order,
                mode="nearest" if self.order < 3 else "mirror",
                prefilter=False,
            )
            out[inside] = vals
        return out


def sample_world(volume: np.ndarray, affine: np.ndarray, points: np.ndarray, interp: str = "linear",
                 cval: float = 0.0) -> np.ndarray:
    """Values of a 3D ``volume`` (voxel->world ``affine``) at world points (N, 3)."""
    ijk = Grid(volume.shape[:3], affine).world_to_voxel(points)
    return VolumeSampler(volume, interp, cval).at_voxels(ijk)


def label_points(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (N, 3) and values (N,) of every non-zero voxel of a label image."""
    idx = np.argwhere(volume != 0)
    vals = volume[tuple(idx.T)]
    return Grid(volume.shape[:3], affine).voxel_to_world(idx), vals


def place_labels(points: np.ndarray, values: np.ndarray, grid: Grid, dtype=None) -> np.ndarray:
    """Label volume on ``grid`` with each world point written at its nearest voxel.

    Points outside the grid are dropped. Points landing on the same voxel keep the last value.
    """
    out = np.zeros(grid.shape, dtype=dtype if dtype is not None else np.asarray(values).dtype)
    if len(points) == 0:
        return out
    ijk = np.rint(grid.world_to_voxel(points)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(grid.shape)), axis=1) & np.all(np.isfinite(points), axis=1)
    out[tuple(ijk[ok].T)] = np.asarray(values)[ok]
    return out



def slice_like(img: Image, sub: Grid, dtype=np.float32) -> np.ndarray:
    """Data of ``img`` on ``sub``, a voxel-aligned sub-grid of ``img``'s grid (``dtype=None``
    keeps the image's own type)."""
    off = np.rint(img.grid.world_to_voxel(sub.voxel_to_world(np.zeros((1, 3))))[0]).astype(int)
    sl = tuple(slice(o, o + s) for o, s in zip(off, sub.shape, strict=True))
    data = np.asarray(img.data)[sl]
    return data if dtype is None else np.asarray(data, dtype=dtype)
