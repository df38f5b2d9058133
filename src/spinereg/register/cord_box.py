"""Where image-only registration works at its finest levels: a box around the cord.

Image-only ``register`` (no segmentation) on a large field of view spends most of its time on
the finest demons levels, almost all of it on tissue far from the spinal cord. spinereg's own
cord model (:mod:`spinereg.segment`) locates the cord on the fixed image; the finest levels then
iterate only in a box around it (all slices, in-plane ``margin_mm`` beyond the cord), the
coarse levels over the whole field of view. When no cord is found the caller works on the whole
field of view as before and says so.
"""

from __future__ import annotations

import numpy as np

from spinereg.io.box import mask_box, pad_voxels
from spinereg.io.grid import Grid

#: the box reaches this far (mm, in-plane) beyond the cord found
BOX_MARGIN_MM = 20.0


def locate_cord(fixed: np.ndarray, grid: Grid) -> tuple[np.ndarray | None, dict]:
    """The cord mask (bool, on ``grid``) that spinereg's cord model finds on ``fixed``, or None,
    and a short report (``found``, and ``reason`` when nothing was found)."""
    from spinereg.errors import SpineregError
    from spinereg.io.image import Image
    from spinereg.segment import segment

    try:
        res = segment(Image(np.asarray(fixed, np.float32), grid.affine), refine=False)
    except SpineregError as exc:  # no plausible cord (an InputError), or no model
        return None, {"found": False, "reason": f"the cord model found no cord on the fixed image ({exc})"}
    mask = np.asarray(res.seg.data) > 0
    if not mask.any():
        return None, {"found": False, "reason": "the cord model found no cord on the fixed image"}
    return mask, {"found": True, "cord_voxels": int(mask.sum()),
                  "slices_with_cord": int(mask.any(axis=(0, 1)).sum())}


def cord_box(mask: np.ndarray, zooms: np.ndarray, axes: np.ndarray, margin_mm: float = BOX_MARGIN_MM,
             multiple: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Voxel box ``[lo, hi)`` of ``mask`` grown by ``margin_mm`` along ``axes`` (bool per axis;
    the other axes span the whole array), clipped to the array; ``lo`` rounded down and the
    extent up to multiples of ``multiple`` (per axis) where the array allows."""
    shape = np.array(mask.shape)
    blo, bhi = mask_box(mask, pad_voxels(margin_mm, zooms))
    lo = np.where(axes, blo, 0)
    hi = np.where(axes, bhi, shape)
    if multiple is not None:
        m = np.asarray(multiple, int)
        lo = lo - lo % m
        ext = -(-(hi - lo) // m) * m
        hi = np.minimum(lo + ext, shape)
    return lo.astype(int), hi.astype(int)


__all__ = ["BOX_MARGIN_MM", "cord_box", "locate_cord"]
