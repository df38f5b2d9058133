"""Comparisons of cord segmentations on different grids (automatic segmentation vs references).

* :func:`dice_same_grid` -- Dice of two masks on one grid.
* :func:`dice_on_overlap` -- Dice where two fields of view overlap: the segmentation is resampled
  (linear, threshold 0.5) onto the reference grid, and only reference voxels inside the
  segmentation's field of view count (a whole-field segmentation vs a cropped reference).
* :func:`outside_reference_mm3` -- volume of segmentation voxels farther than ``max_mm`` in-plane
  from the reference cord's centreline (continued straight beyond its ends): "nothing outside
  the canal".
* :func:`centerline_rms` -- RMS in-plane distance between the centres of mass per slice of a
  segmentation and of a reference centerline mask (``metrics.centerline``).
"""

from __future__ import annotations

import numpy as np

from spinereg.io.image import Image
from spinereg.io.resample import VolumeSampler
from spinereg.metrics.centerline import centerline_distance, slice_centers


def dice_same_grid(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    den = a.sum() + b.sum()
    return float(2 * (a & b).sum() / den) if den else 1.0


def _on_grid(seg: Image, ref: Image) -> tuple[np.ndarray, np.ndarray]:
    """``seg`` resampled onto ``ref``'s grid (linear) and the mask of ``ref`` voxels inside its FOV."""
    ijk = seg.grid.world_to_voxel(ref.grid.world_coords())
    vals = VolumeSampler(np.asarray(seg.data, np.float32), "linear", cval=np.nan).at_voxels(ijk)
    vals = vals.reshape(ref.shape[:3])
    inside = np.isfinite(vals)
    return np.where(inside, vals, 0.0), inside


def dice_on_overlap(seg: Image, ref: Image) -> float:
    """Dice between ``seg`` (any grid) and ``ref`` over the reference voxels inside ``seg``'s FOV."""
    vals, inside = _on_grid(seg, ref)
    return dice_same_grid((vals >= 0.5) & inside, (np.asarray(ref.data) > 0) & inside)


def _reference_line(ref: Image) -> tuple[np.ndarray, np.ndarray]:
    c = slice_centers(ref)
    order = np.argsort(c[:, 2])
    return c[order, 2], c[order, :2]


def outside_reference_mm3(seg: Image, ref: Image, max_mm: float = 10.0) -> float:
    """Volume (mm3) of ``seg`` voxels more than ``max_mm`` in-plane from ``ref``'s centreline."""
    z, xy = _reference_line(ref)
    idx = np.argwhere(np.asarray(seg.data) > 0)
    if idx.size == 0:
        return 0.0
    p = seg.grid.voxel_to_world(idx)
    cx = np.interp(p[:, 2], z, xy[:, 0])
    cy = np.interp(p[:, 2], z, xy[:, 1])
    d = np.hypot(p[:, 0] - cx, p[:, 1] - cy)
    return float((d > max_mm).sum() * abs(np.linalg.det(seg.affine[:3, :3])))


def centerline_rms(seg: Image, ref_centerline: Image) -> float:
    """RMS distance (mm) between the centerline of ``seg`` and a reference centerline mask."""
    return float(centerline_distance(ref_centerline, seg).rms_mm)
