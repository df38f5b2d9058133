"""Does the image show the cord going on below the lower end of its segmentation?

A segmentation that ends inside the field of view ends at the conus medullaris (T12-L2), or it was
cut short (a mask drawn over part of the cord, a tool that stopped early). The labeling read every
such end as the conus: SCT's PAM50_small_t2 given PAM50_small_cord (which stops about 40 mm above
the cord's end in that image) was labelled with a conus of confidence 0.98 at the mask's end and
its last discs pulled 9-14 mm down, unflagged.

:func:`cord_below_end` compares, row by row along the centerline continued straight below the
mask's end, the image's cord-against-CSF contrast across the cord's axis (the mean over a ring
4.5-6.5 mm from the axis less the mean within 1 mm of it, CSF's sign) with the same contrast over
the mask's last :data:`REF_MM` mm: the cord goes on over the rows where it holds at least
:data:`KEEP_FRACTION` of it. Below a conus the core is CSF and nerve roots, and the contrast falls.
"""

from __future__ import annotations

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.io.image import Image
from spinereg.io.resample import sample_image

#: the mask's last mm (from its lower end up) whose contrast is the cord's
REF_MM = 20.0
#: a row below the end shows cord when its contrast is this share of the cord's or more
KEEP_FRACTION = 0.5
#: rows read below the end (mm)
BELOW_MM = 45.0
#: the cord shown this far (mm) or more below the mask's end: the segmentation stops short. Measured
#: (session 22): true and automatic segmentations of the thoracolumbar phantoms (seeds 0-2) and
#: PAM50_small_t2's automatic one 0-2.5 mm; true masks cut 25 / 40 mm above the conus tip
#: 12.5-14 / 20.5-27.5 mm; PAM50_small_cord on PAM50_small_t2 23 mm
SHORT_MM = 8.0
#: a run of cord rows may be broken by this many mm of weaker rows (noise, a thin slice)
GAP_MM = 2.0

_ROW_MM = 0.5


def _contrast(image: Image, cl: Centerline, s: np.ndarray, csf_sign: int) -> np.ndarray:
    """Per row: CSF-signed mean over the ring less the mean over the core (NaN off the image)."""
    f = cl.frame(np.clip(s, 0.0, cl.length))  # (n, 3, 3): columns binormal, normal, tangent
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    dirs = np.cos(ang)[None, :, None] * f[:, None, :, 0] + np.sin(ang)[None, :, None] * f[:, None, :, 1]
    centre = cl.points(s)[:, None, None, :]
    core_r = np.array([0.0, 1.0])
    ring_r = np.array([4.5, 5.5, 6.5])

    def mean_at(radii: np.ndarray) -> np.ndarray:
        pts = centre + radii[None, None, :, None] * dirs[:, :, None, :]
        return sample_image(image, pts.reshape(-1, 3), cval=np.nan).reshape(len(s), -1).mean(1)  # NaN off the image

    return csf_sign * (mean_at(ring_r) - mean_at(core_r))


def cord_below_end(image: Image, cl: Centerline, csf_sign: int = 1) -> dict | None:
    """How far (mm) below the lower end of the segmented cord (``cl``: its centerline, ``s = 0``
    at that end) the image still shows a cord like the mask's last :data:`REF_MM` mm, with the
    contrasts read; None when the image does not go on below the end or shows no cord contrast
    above it."""
    ref_s = np.arange(3.0, REF_MM + 3.0, _ROW_MM)
    ref = _contrast(image, cl, ref_s, csf_sign)
    if not np.isfinite(ref).any() or np.nanmedian(ref) <= 0:
        return None
    c_ref = float(np.nanmedian(ref))
    below_s = -np.arange(_ROW_MM, BELOW_MM + 1e-6, _ROW_MM)
    c = _contrast(image, cl, below_s, csf_sign)
    if not np.isfinite(c[: int(5.0 / _ROW_MM)]).all():  # the image stops within 5 mm of the end
        return None
    cord = np.isfinite(c) & (c >= KEEP_FRACTION * c_ref)
    run, gap = 0.0, 0.0
    for i, is_cord in enumerate(cord):
        if is_cord:
            run, gap = float(-below_s[i]), 0.0
        else:
            gap += _ROW_MM
            if gap > GAP_MM or not np.isfinite(c[i]):
                break
    return {"cord_below_end_mm": round(run, 1), "contrast_above": round(c_ref, 3),
            "contrast_below_10mm": round(float(np.nanmedian(c[: int(10.0 / _ROW_MM)])), 3)}
