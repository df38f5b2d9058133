"""The cord's left-right width along its length: a regional cue for level identity.

The cervical enlargement (C4-C6) is ~12-13 mm wide, the thoracic cord ~8-9 mm, the lumbar
enlargement ~9-10 mm before the conus tapers: a subject whose vertebral pattern fits both a
cervical and a thoracic reading of its discs is told apart by its cord. Widths are four standard
deviations of the segmentation's left-right offsets from the centerline, per millimetre of arc
length (vectorised over voxels).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinereg.io.image import Image


def lr_width(seg: Image, centerline, s: np.ndarray, bin_mm: float = 2.0, smooth_mm: float = 4.0) -> np.ndarray:
    """Left-right cord width (mm) at arc lengths ``s`` (NaN where the cord is not segmented)."""
    data = np.asarray(seg.data, np.float32)
    idx = np.argwhere(data > 0.5)
    if len(idx) == 0:
        return np.full(len(s), np.nan)
    a, _, sv = centerline.local_coords(seg.grid.voxel_to_world(idx)).T
    edges = np.arange(np.floor(sv.min()), np.ceil(sv.max()) + bin_mm, bin_mm)
    k = np.clip(np.digitize(sv, edges) - 1, 0, len(edges) - 2)
    n = np.bincount(k, minlength=len(edges) - 1).astype(float)
    m1 = np.bincount(k, a, len(edges) - 1)
    m2 = np.bincount(k, a * a, len(edges) - 1)
    with np.errstate(all="ignore"):
        w = 4.0 * np.sqrt(np.clip(m2 / n - (m1 / n) ** 2, 0, None))
    ok = n >= 5
    ok[[0, -1]] = False  # partial end bins
    centers = 0.5 * (edges[:-1] + edges[1:])
    if ok.sum() < 2:
        return np.full(len(s), np.nan)
    wc = ndimage.gaussian_filter1d(np.interp(centers, centers[ok], w[ok]), smooth_mm / bin_mm, mode="nearest")
    out = np.interp(s, centers, wc)
    out[(s < centers[ok][0]) | (s > centers[ok][-1])] = np.nan
    return out


def template_lr_width(cord: Image, t: np.ndarray) -> np.ndarray:
    """Left-right width of a straight template's cord (per axial slice) at template arc lengths
    ``t`` (world S-I of the straight template)."""
    data = np.asarray(cord.data) > 0.5
    idx = np.argwhere(data)
    w = cord.grid.voxel_to_world(idx)
    zs = np.round(w[:, 2], 1)
    zu, inv = np.unique(zs, return_inverse=True)
    n = np.bincount(inv).astype(float)
    m1, m2 = np.bincount(inv, w[:, 0]), np.bincount(inv, w[:, 0] ** 2)
    width = 4.0 * np.sqrt(np.clip(m2 / n - (m1 / n) ** 2, 0, None))
    width = ndimage.gaussian_filter1d(width, 4.0 / max(float(np.median(np.diff(zu))), 1e-3), mode="nearest")
    return np.interp(t, zu, width)
