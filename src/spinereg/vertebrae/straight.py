"""The subject in its cord frame: a mid-sagittal slab sampled along the cord.

Rows are arc lengths ``s`` along the cord centerline (mm, superior increasing; the centerline
continues straight beyond the segmentation so the image above and below it is used too), columns
depths ``b`` (mm, anterior positive, the centerline's rotation-minimising normal). Values are the
mean of the image over ``|a| <= slab_mm`` (left-right), NaN outside the field of view. Padding
(a constant fill touching the volume's border, left by resampling or rotating an image) counts as
outside the field of view: its sharp edge is not anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.io.image import Image
from spinereg.io.resample import sample_world

if TYPE_CHECKING:
    from spinereg.cord.centerline import Centerline


@dataclass
class Straightened:
    """Image values ``values[j, i]`` at arc length ``s[j]`` and depth ``b[i]`` (NaN outside)."""

    s: np.ndarray
    b: np.ndarray
    values: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.values)


def padding_mask(volume: np.ndarray, min_fraction: float = 0.002) -> np.ndarray:
    """Voxels of a constant fill at the volume's minimum connected to its border (6-connected
    regions of at least ``min_fraction`` of the volume): what resampling outside a field of view
    writes (exact zeros), never measured tissue (noise never repeats one value over a region)."""
    v = np.asarray(volume)
    flat = v == v.min()
    if flat.mean() < min_fraction:
        return np.zeros(v.shape, bool)
    lab, n = ndimage.label(flat)
    border = np.unique(np.concatenate([np.take(lab, i, axis=a).ravel() for a in range(3) for i in (0, -1)]))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, bool)
    keep[border] = True
    keep[0] = False
    keep &= sizes >= min_fraction * v.size
    return keep[lab]


def slab_points(centerline: Centerline, b: np.ndarray, ds: float = 0.5, slab_mm: float = 3.0,
                margin_mm: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Arc lengths ``s`` (every ``ds`` mm from ``margin_mm`` below to ``margin_mm`` above the
    centerline's ends) and the world points (a, b, s, 3) of the slab ``|a| <= slab_mm`` (1 mm
    steps) at depths ``b``: ``c(s) + a binormal(s) + b normal(s)``, the curve and its frame
    evaluated once per row (what :meth:`Centerline.from_local` gives point by point)."""
    s = np.arange(-margin_mm, centerline.length + margin_mm + 1e-6, ds)
    a = np.arange(-slab_mm, slab_mm + 1e-6, 1.0)
    b = np.asarray(b, float)
    c = centerline.points(s)  # (ns, 3)
    f = centerline.frame(s)  # (ns, 3, 3): columns binormal, normal, tangent
    pts = c[None, None] + a[:, None, None, None] * f[None, None, :, :, 0]
    pts = pts + b[None, :, None, None] * f[None, None, :, :, 1]
    return s, pts


def straighten_slab(image: Image, centerline: Centerline, b: np.ndarray, ds: float = 0.5,
                    slab_mm: float = 3.0, margin_mm: float = 40.0, min_valid: float = 0.3,
                    mask_padding: bool = True,
                    points: tuple[np.ndarray, np.ndarray] | None = None) -> Straightened:
    """Sample ``image`` in the cord frame of ``centerline`` (rows: arc length every ``ds`` mm from
    ``margin_mm`` below to ``margin_mm`` above the centerline's ends, kept where at least
    ``min_valid`` of the depths are inside the field of view; ``mask_padding``: constant fill at the
    border read as outside, see :func:`padding_mask`). ``points``: :func:`slab_points` of the same
    arguments, when several images on one centerline are straightened."""
    s, pts = points if points is not None else slab_points(centerline, b, ds, slab_mm, margin_mm)
    vol = np.asarray(image.data, np.float32)
    pad = padding_mask(vol) if mask_padding else None
    if pad is not None and pad.any():
        vol = np.where(pad, np.float32(np.nan), vol)
    vals = sample_world(vol, image.affine, pts.reshape(-1, 3), "linear", cval=np.nan).reshape(pts.shape[:3])
    with np.errstate(all="ignore"):
        n = np.isfinite(vals).sum(0)
        mean = np.where(n > 0, np.nansum(vals, 0) / np.maximum(n, 1), np.nan)  # (b, s)
    mean = mean.T  # (s, b)
    keep = np.isfinite(mean).mean(1) >= min_valid
    if keep.any():
        lo, hi = np.flatnonzero(keep)[[0, -1]]
        s, mean = s[lo:hi + 1], mean[lo:hi + 1]
    else:
        s, mean = s[:0], mean[:0]
    return Straightened(s, np.asarray(b, float), mean)
