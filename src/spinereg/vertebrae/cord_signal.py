"""Does the image show the cord where the segmentation marks it?

The labeling reads discs on the image along the cord of a segmentation. Given an image of noise
(or one that does not belong with the segmentation), the chain still places discs at the
template's spacing on whatever peaks the noise has, and the cord width (from the segmentation)
names their levels: on sct_testing_data t2 and t1's segmentations with their images replaced by
noise (white, and smoothed by 1 and 3 voxels; seeds 0-5) 4 of 36 labelings came out confident and
unflagged. A real image always shows its cord against the CSF around it (bright on T2, dark on
T1); noise does not.

:func:`cord_signal` compares the segmentation's core (more than ``CORE_MM`` inside its edge) with
a ring ``RING_MM`` outside it, per ``PIECE_MM`` of world S-I: (ring median - core median) over
their pooled robust spread, and takes the median over the pieces. Real images with their manual
segmentations: t2 +3.22, t1 -2.88 (automatic segmentations +3.11 / -3.09, t2_fake_lesion +2.33);
independent phantoms (28 with true segmentations, 20 full ones with automatic segmentations)
+2.75..+16.7 (T2-like), -31..-38 (T1-like), the same sign on 92-100 % of the pieces. Thick axial
T2* shows less: t2s +1.08 (89 %), t2s_uncropped +0.88 (77 %), mt1 +2.35. The manual
segmentations over noise: |value| <= 0.50 (36 noise images). Where the automatic segmentation
finds a "cord" in noise (t1's grid, smoothed by 3 voxels, seed 0) the value is +1.98 but its sign
holds on 62 % of the pieces; smoothed by 5 voxels, blobs 13-27 mm long pass as a cord with
+2.2..+2.5 (the labeling flags those: one to three discs, margins under 2).

:func:`require_cord_signal` refuses below :data:`MIN_CONTRAST` (0.6); :func:`faint_reason` flags
the labeling under :data:`FAINT_CONTRAST` (1.5) or :data:`MIN_AGREEMENT` (75 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.box import box_slices, mask_box, pad_voxels
from spinereg.io.image import Image
from spinereg.robust import robust_sd

#: the core of the cord: voxels more than this far (mm) inside the segmentation's edge
CORE_MM = 0.5
#: the ring around it: voxels this far (mm) outside the edge (the CSF on 0.5-1 mm images)
RING_MM = (0.5, 2.0)
#: pieces of world S-I (mm) compared one by one
PIECE_MM = 3.0
#: under this |contrast| (pooled robust SDs) the image does not show the cord: refused
MIN_CONTRAST = 0.6
#: under this |contrast|, or with the sign held on fewer than MIN_AGREEMENT of the pieces, the
#: cord shows only faintly: the labeling is flagged (its discs may be read on noise)
FAINT_CONTRAST = 1.5
MIN_AGREEMENT = 0.75


@dataclass(frozen=True)
class CordSignal:
    """Median over pieces of (ring - core) / pooled robust SD; ``agreement``: the fraction of
    pieces with that sign; ``pieces``: how many were compared."""

    contrast: float
    agreement: float
    pieces: int

    @property
    def csf(self) -> str | None:
        """``"bright"`` where the CSF around the cord is clearly brighter than the cord (T2, T2*:
        contrast >= FAINT_CONTRAST), ``"dark"`` where clearly darker (T1), else None."""
        c = float(self.contrast) if self.pieces else 0.0
        return "bright" if c >= FAINT_CONTRAST else "dark" if c <= -FAINT_CONTRAST else None

    def as_dict(self) -> dict:
        return {"contrast": round(self.contrast, 2), "agreement": round(self.agreement, 2), "pieces": self.pieces}


def cord_signal(image: Image, seg: Image) -> CordSignal:
    """How the image's cord stands out from its surroundings where ``seg`` (same grid) marks it."""
    mask = np.asarray(seg.data) > 0.5
    zooms = np.asarray(image.grid.zooms, float)[:3]
    found = mask_box(mask, pad_voxels(RING_MM[1], zooms, 1))
    if found is None:
        return CordSignal(0.0, 0.0, 0)
    lo, box = found[0], box_slices(*found)
    m = mask[box]
    data = np.asarray(image.data[box], float)  # the box only: a whole float copy costs more
    inside = ndimage.distance_transform_edt(m, sampling=zooms)
    outside = ndimage.distance_transform_edt(~m, sampling=zooms)
    core = m & (inside > CORE_MM)
    if core.sum() < 20:  # a thin cord on coarse voxels: the whole segmentation
        core = m
    ring = ~m & (outside >= RING_MM[0]) & (outside <= RING_MM[1])
    ijk = np.argwhere(core | ring)
    z = image.grid.voxel_to_world((ijk + lo).astype(float))[:, 2]
    piece = np.floor((z - z.min()) / PIECE_MM).astype(int)
    is_core = core[tuple(ijk.T)]
    vals = data[tuple(ijk.T)]
    d = []
    for k in np.unique(piece):
        sel = piece == k
        a, b = vals[sel & is_core], vals[sel & ~is_core]
        if len(a) < 5 or len(b) < 10:
            continue
        sd = np.sqrt((robust_sd(a) ** 2 + robust_sd(b) ** 2) / 2.0)
        if sd <= 0.0:
            continue
        d.append((np.median(b) - np.median(a)) / sd)
    if not d:
        return CordSignal(0.0, 0.0, 0)
    med = float(np.median(d))
    return CordSignal(med, float(np.mean(np.sign(d) == np.sign(med))), len(d))


def faint_reason(sig: CordSignal) -> str | None:
    """Why the labeling of an image whose cord shows as ``sig`` is flagged, or None."""
    if sig.pieces and (abs(sig.contrast) < FAINT_CONTRAST or sig.agreement < MIN_AGREEMENT):
        return (f"the image shows the cord only faintly where the segmentation marks it (cord against its "
                f"surroundings {sig.contrast:+.2f} robust SDs, the same sign on {sig.agreement:.0%} of {sig.pieces} "
                f"pieces; under {FAINT_CONTRAST:g} or {MIN_AGREEMENT:.0%}): the discs may be read on noise")
    return None


def require_cord_signal(image: Image, seg: Image) -> CordSignal:
    """:func:`cord_signal`, or :class:`~spinereg.errors.InputError` when the image does not show
    the cord where the segmentation marks it at all (noise, an empty image, or a segmentation of
    another image)."""
    sig = cord_signal(image, seg)
    if sig.pieces and abs(sig.contrast) < MIN_CONTRAST:
        raise InputError(f"the image does not show a cord where the segmentation marks it (cord against its "
                         f"surroundings: {sig.contrast:+.2f} robust SDs, under {MIN_CONTRAST:g}; sct_testing_data's "
                         "images show 0.9-3.4, noise under 0.5)", image.name,
                         "check that the image is not noise or empty and that the segmentation was made on it")
    return sig
