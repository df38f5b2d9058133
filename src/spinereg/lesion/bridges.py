"""Tissue bridges at the midsagittal plane (SCT's ``dorsal/ventral_bridge_width [mm]``, Huber et al.
2017): the width of spared cord tissue anterior (ventral) and posterior (dorsal) to the lesion.

Here in the cord's own frame (:meth:`spinereg.cord.Centerline.local_coords`: ``a`` along the
binormal, right-ish; ``b`` along the normal, anterior-ish; ``s`` arc length). The midsagittal plane
is ``a = 0`` (through the centerline), kept one voxel thick (the voxels whose centre lies within half
a voxel's extent along the binormal). On each section perpendicular to the cord (one voxel thick
along it) that holds lesion in that plane: ventral = cord's anterior edge - lesion's anterior edge,
dorsal = lesion's posterior edge - cord's posterior edge (voxel centres on both sides, so the half
voxels cancel); the smallest over the sections is reported. The lesion counts only inside the
cord (as SCT). SCT measures on the image's sagittal slice and axial rows instead, in voxel axes.
"""

from __future__ import annotations

import numpy as np


def bridge_sections(les_abs: np.ndarray, cord_abs: np.ndarray, width_a: float,
                    step_s: float) -> list[tuple[float, float, float]]:
    """Per section holding lesion on the midsagittal plane: ``(s, dorsal, ventral)`` (mm), ``s`` the
    section's centre (arc length along the centerline), from the bottom up; empty when the lesion
    does not reach the plane (the reported bridges are the minima over the sections).
    ``les_abs`` / ``cord_abs``: local coordinates (N, 3) of the lesion voxels inside the cord and of
    the cord voxels; ``width_a``: a voxel's extent along the binormal; ``step_s``: section thickness
    along the cord."""
    lm = les_abs[np.abs(les_abs[:, 0]) <= 0.5 * width_a + 1e-9]
    if len(lm) == 0:
        return []
    lo = float(lm[:, 2].min()) - 0.5 * step_s
    cm = cord_abs[np.abs(cord_abs[:, 0]) <= 0.5 * width_a + 1e-9]
    kl = np.floor((lm[:, 2] - lo) / step_s).astype(int)
    kc = np.floor((cm[:, 2] - lo) / step_s).astype(int)
    out = []
    for k in np.unique(kl):
        bl, bc = lm[kl == k, 1], cm[kc == k, 1]
        if len(bc) == 0:
            continue
        out.append((lo + (k + 0.5) * step_s, float(bl.min() - bc.min()), float(bc.max() - bl.max())))
    return out

