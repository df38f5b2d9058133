"""Keep the cord, drop the rest: connected components of a working-grid probability map.

The main component is the one with the largest probability mass. Other components are kept only
when they continue it along S-I (they lie in slices the main component does not reach, within
``near_mm`` of its centreline): a cord interrupted by a bad slice stays whole, while vessels,
fat, nerve roots and cauda equina beside or below the conus are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinereg.segment.workgrid import WorkGrid


@dataclass
class CordComponents:
    """Result of :func:`select_cord`: the kept mask (nz, nx, ny) and a few figures."""

    keep: np.ndarray
    n_components: int
    n_kept: int
    mass: float
    slices: np.ndarray  # indices of working slices holding cord
    centre: np.ndarray  # (nz, 2) working pixel (i, j) of the cord centre per slice (NaN where none)
    area_mm2: np.ndarray  # (nz,) in-plane area per working slice


def _centres(mask: np.ndarray, prob: np.ndarray) -> np.ndarray:
    c = np.full((mask.shape[0], 2), np.nan)
    ii, jj = np.arange(mask.shape[1]), np.arange(mask.shape[2])
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        w = prob[k] * mask[k]
        s = w.sum()
        if s > 0:
            c[k] = (float((w.sum(1) * ii).sum() / s), float((w.sum(0) * jj).sum() / s))
    return c


def _fill(c: np.ndarray) -> np.ndarray:
    """Centres interpolated over empty slices, held constant beyond the ends."""
    out = c.copy()
    ok = np.isfinite(c[:, 0])
    if not ok.any():
        return out
    k = np.arange(len(c))
    for a in range(2):
        out[:, a] = np.interp(k, k[ok], c[ok, a])
    return out


def select_cord(prob: np.ndarray, wg: WorkGrid, threshold: float = 0.5, near_mm: float = 5.0) -> CordComponents | None:
    """Components of ``prob > threshold`` that make up the cord (``None`` when there are none)."""
    binary = prob > threshold
    lab, n = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return None
    mass = ndimage.sum_labels(prob, lab, index=np.arange(1, n + 1))
    order = np.argsort(mass)[::-1]
    main = int(order[0]) + 1
    keep = lab == main
    main_slices = keep.any(axis=(1, 2))
    line = _fill(_centres(keep, prob))
    kept = 1
    for idx in order[1:]:
        comp = lab == int(idx) + 1
        sl = comp.any(axis=(1, 2))
        if np.any(sl & main_slices):
            continue
        c = _centres(comp, prob)
        d = np.hypot(*(c[sl] - line[sl]).T) * wg.px
        if np.all(d <= near_mm):
            keep |= comp
            kept += 1
    centre = _centres(keep, prob)
    area = keep.sum(axis=(1, 2)) * wg.px ** 2
    return CordComponents(keep, n, kept, float(prob[keep].sum() * wg.px ** 2 * wg.dz),
                          np.flatnonzero(keep.any(axis=(1, 2))), centre, area)


def image_beyond_ends(comp: CordComponents, inside: np.ndarray, dz: float) -> tuple[float, float]:
    """How far (mm) the image continues along S-I beyond the kept cord's lower and upper ends,
    read at the cord's centre in its end slices (so an oblique field's corners do not count)."""
    out = []
    for end, step in ((int(comp.slices.min()), -1), (int(comp.slices.max()), 1)):
        i, j = np.clip(np.rint(comp.centre[end]).astype(int), 0, np.array(inside.shape[1:]) - 1)
        k = end + step
        while 0 <= k < inside.shape[0] and inside[k, i, j]:
            k += step
        out.append(abs(k - step - end) * dz)
    return out[0], out[1]


def soft_keep(prob: np.ndarray, keep: np.ndarray, margin_px: int = 2) -> np.ndarray:
    """``prob`` restricted to the kept components plus an in-plane margin (soft borders stay)."""
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndimage.generate_binary_structure(2, 1)
    zone = ndimage.binary_dilation(keep, st, iterations=margin_px)
    return np.where(zone, prob, 0.0).astype(np.float32)
