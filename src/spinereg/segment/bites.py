"""Bites out of the cord's section: lesions at the cord's surface, filled back in.

An intramedullary lesion that reaches the cord's surface is as bright as CSF on T2 (as dark on
T1), and the model, which was trained without lesions, leaves it out: the section then shows a
bite, a concave pocket in an outline that is otherwise convex (the cord's section is an ellipse;
its median fissure and sulcus are narrower than a working pixel). Per working slice (axial, 0.5 mm
pixels), :func:`fill_bites` takes the pockets between the section and its convex hull and fills
those narrower than ``MAX_POCKET_FRACTION`` of the section's own width. A compressed cord
(a disc or osteophyte pressing on it) is indented too, but broadly: its concave side spans most of
the section's width (the "banana" or "boomerang" section of cervical myelopathy), and the
compression measures (cross-sectional area, compression ratio) need that section as it is, so a
pocket that wide is left alone.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

#: a pocket is filled when its largest extent is at most this share of the section's
MAX_POCKET_FRACTION = 0.5
#: sections of fewer pixels are left alone (the conus tip, partial slices)
MIN_SECTION_PX = 12


def _extent(points: np.ndarray) -> float:
    """The largest distance between two of ``points`` (N, 2), in pixels."""
    if len(points) < 2:
        return 0.0
    d = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((d ** 2).sum(-1).max()))


def _hull(edge: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """Pixels (of an array of ``shape``) whose centres lie inside the convex hull of the outline
    pixels ``edge`` (N, 2): the hull of the section's pixel centres, from fewer points."""
    try:
        eq = ConvexHull(edge).equations  # (n, 3): a x + b y + c <= 0 inside
    except (QhullError, ValueError):  # collinear pixels: no area to fill
        return None
    lo, hi = edge.min(0).astype(int), edge.max(0).astype(int)
    ii, jj = np.mgrid[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1]
    inside = (eq[:, 0, None, None] * ii + eq[:, 1, None, None] * jj + eq[:, 2, None, None] <= 1e-9).all(0)
    out = np.zeros(shape, bool)
    out[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1] = inside
    return out


def fill_section(mask: np.ndarray, max_fraction: float = MAX_POCKET_FRACTION) -> np.ndarray:
    """The pockets of one section (2D bool) to fill: concave pockets between ``mask`` and its
    convex hull whose extent is at most ``max_fraction`` of the section's."""
    fill = np.zeros_like(mask)
    if mask.sum() < MIN_SECTION_PX:
        return fill
    edge = np.argwhere(mask & ~ndimage.binary_erosion(mask)).astype(float)
    hull = _hull(edge, mask.shape)
    if hull is None:
        return fill
    pockets, n = ndimage.label(hull & ~mask)
    if n == 0:
        return fill
    width = _extent(edge)
    for k in range(1, n + 1):
        pocket = pockets == k
        if _extent(np.argwhere(pocket).astype(float)) <= max_fraction * width:
            fill |= pocket
    return fill


def fill_bites(prob: np.ndarray, threshold: float = 0.5,
               max_fraction: float = MAX_POCKET_FRACTION) -> tuple[np.ndarray, int]:
    """``prob`` (nz, nx, ny working-grid cord map) with each section's narrow concave pockets
    (:func:`fill_section` on ``prob >= threshold``) set to 1; and how many sections changed by more
    than one pixel (single pixels are the outline's staircase)."""
    out = prob.copy()
    changed = 0
    for k in np.flatnonzero((prob >= threshold).any(axis=(1, 2))):
        mask = prob[k] >= threshold
        px = np.argwhere(mask)
        (i0, j0), (i1, j1) = px.min(0), px.max(0) + 1
        box = (slice(max(i0 - 1, 0), i1 + 1), slice(max(j0 - 1, 0), j1 + 1))  # the section, 1 pixel around
        fill = fill_section(mask[box], max_fraction)
        if fill.any():
            out[k][box][fill] = 1.0
            changed += int(fill.sum() > 1)
    return out, changed
