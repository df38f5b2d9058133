"""Separate pieces of a cord segmentation on one slice: how many, and which one is the cord.

A slice whose mask holds two or more separate pieces (a false-positive blob beside the cord, a
syrinx cutting the cord in two, a nerve root) has no single shape: second moments, outline and
convex hull taken over all pieces describe no real object (a 13 x 8 mm elliptic section with a
disc of radius 1.5 mm centred 12 mm in front of it, binary on a 0.5 mm grid, read AP 14.86 mm, RL
12.57 mm, orientation 89.3 deg -- the major axis AP --, solidity 0.594, before session 42). SCT's ``sct_process_segmentation``
(``_properties2d``) labels the slice binarised at half its maximum (skimage ``regionprops``,
8-connected) and, with more than one region, returns nothing for that slice: every metric, the
area included, is NaN there (a log line "No properties for slice: N"), and its aggregation leaves
non-finite values out of the level means.

Here a slice's *pieces* are the 8-connected components (SCT's connectivity) of its voxels at half
the slice's maximum or more (the *cores*, SCT's binarisation; for a binary mask, its voxels), each
with the partial-volume rim (lower values) 8-connected to it; a rim voxel touching two cores goes
to the nearer (Euclidean, voxel index). Faint voxels connected to no core are no piece (SCT's
binarisation drops them; a soft or interpolated mask's specks and ringing must not split every
slice): they count in the share outside the largest piece, and in the area. ``spinereg csa`` measures the
shape of the largest piece (by area) and flags the slice (see :mod:`spinereg.metrics.morphometry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: 8-connectivity in the slice plane, as skimage's ``label`` / ``regionprops`` default in 2D
EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class SlicePieces:
    """The pieces of one slice: their number, the share of the slice's area outside the largest,
    and the largest's voxels (boolean mask on the slice)."""

    n_pieces: int
    outside_share: float
    largest: np.ndarray

    @property
    def split(self) -> bool:
        """Two or more pieces: the slice's mask is not one object."""
        return self.n_pieces > 1


def slice_pieces(weights: np.ndarray) -> SlicePieces:
    """Pieces of one slice's segmentation (2D, values in [0, 1]; see the module docstring)."""
    from scipy import ndimage

    w = np.asarray(weights, np.float64)
    support = w > 0
    lab_sup, n_sup = ndimage.label(support, EIGHT)
    top = float(w.max()) if w.size else 0.0
    lab_core, n_core = ndimage.label(w >= 0.5 * top, EIGHT) if top > 0 else (np.zeros(w.shape, np.int32), 0)
    if n_sup <= 1 and n_core <= 1:  # one piece: the whole slice (empty: no piece)
        return SlicePieces(int(n_sup), 0.0, support)
    piece = np.zeros(w.shape, np.int64)
    n = n_core
    faint = np.zeros(w.shape, bool)
    for c, box in enumerate(ndimage.find_objects(lab_sup), 1):
        comp = lab_sup[box] == c
        cores = lab_core[box] * comp
        ids = np.unique(cores[cores > 0])
        target = piece[box]
        if ids.size == 0:  # faint voxels touching no core: no piece, but area outside the largest
            faint[box] |= comp
        elif ids.size == 1:
            target[comp] = ids[0]
        else:  # several cores joined by faint voxels: each voxel to the nearest core
            _, (ii, jj) = ndimage.distance_transform_edt(cores == 0, return_indices=True)
            target[comp] = cores[ii, jj][comp]
    mass = np.bincount(piece.ravel(), weights=w.ravel(), minlength=n + 1)[1:]
    big = int(np.argmax(mass)) + 1
    total = float(mass.sum() + w[faint].sum())
    return SlicePieces(int(n), float(1.0 - mass[big - 1] / total) if total > 0 else 0.0, piece == big)
