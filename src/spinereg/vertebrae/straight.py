"""The subject in its cord frame: a mid-sagittal slab sampled along the cord.

Rows are arc lengths ``s`` along the cord centerline (mm, superior increasing; the centerline
continues straight beyond the segmentation so the image above and below it is used too), columns
depths ``b`` (mm, anterior positive, the centerline's rotation-minimising normal). Values are the
mean of the image over ``|a| <= slab_mm`` (left-right), NaN outside the field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinereg.io.image import Image
from spinereg.io.resample import sample_world


@dataclass
class Straightened:
    """Image values ``values[j, i]`` at arc length ``s[j]`` and depth ``b[i]`` (NaN outside)."""

    s: np.ndarray
    b: np.ndarray
    values: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.values)


def straighten_slab(image: Image, centerline, b: np.ndarray, ds: float = 0.5, slab_mm: float = 3.0,
                    margin_mm: float = 40.0, min_valid: float = 0.3) -> Straightened:
    """Sample ``image`` in the cord frame of ``centerline`` (rows: arc length every ``ds`` mm from
    ``margin_mm`` below to ``margin_mm`` above the centerline's ends, kept where at least
    ``min_valid`` of the depths are inside the field of view)."""
    s = np.arange(-margin_mm, centerline.length + margin_mm + 1e-6, ds)
    a = np.arange(-slab_mm, slab_mm + 1e-6, 1.0)
    aa, bb, ss = np.meshgrid(a, b, s, indexing="ij")
    local = np.stack([aa.ravel(), bb.ravel(), ss.ravel()], -1)
    pts = centerline.from_local(local)
    vol = np.asarray(image.data, np.float32)
    vals = sample_world(vol, image.affine, pts, "linear", cval=np.nan).reshape(aa.shape)
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
