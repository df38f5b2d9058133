"""The pontomedullary junction (PMJ) when the image shows the brainstem above the cord.

The medulla continues the cord upward; the pons bulges forward above it. On a sagittal view the
brainstem's anterior surface (against the bright CSF of the premedullary and prepontine cisterns
on T2) runs close to the cord's axis up the medulla, dips into the pontomedullary sulcus and then
steps forward by a centimetre or more at the pons. The PMJ is that sulcus.

:func:`find_pmj` reads it along the cord's own axis, continued straight above the segmented cord
(the segmentation usually stops in the medulla): row by row across the axis (0.5 mm apart, in the
cord's mid-sagittal plane, averaged over +-1 mm to either side), the depth in front of the axis
where the image first turns CSF (half way from the cord's intensity to the surrounding CSF's,
both measured on the cord below; a row that leaves the image still in tissue gives the depth it
reached). The pons's foot is the row above which the front steps :data:`PONS_STEP_MM` or more
forward within :data:`JUMP_ROWS_MM` and stays that far ahead over 80 % of :data:`PONS_MIN_MM`;
the PMJ is that row, placed on the axis (SCT's ``sct_detect_pmj`` places its label, value 50,
inside the brainstem). The foot is read where the pons meets the medulla's front surface, which
puts it 0.4-5 mm below SCT's manual label on the image it was developed on (the label sits 9 mm
behind that surface).

:func:`spinereg.vertebrae.label_vertebrae` reads it first: PAM50's disc 1 (the top of its cord)
then lies below it (``label.PMJ_TO_DISC1_MM``), and the slab above it, which the template does
not model, is left out of the labeling.

Nothing is reported when the rows above the cord leave the image, show no such step, or the
image has no CSF contrast around the cord: the PMJ is then not in view (every image of
sct_testing_data, whose cords run through the field's top edge). Developed on the one real image
with a manual PMJ at hand (sct_testing_data's PAM50_small_t2, a T2 average); its accuracy on
copies of that image moved, resampled and degraded is in docs/labeling_bare_image.md. Images
with the CSF dark (T1) are read with the polarity reversed and have not been validated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinereg.cord.centerline import Centerline
from spinereg.io.image import Image
from spinereg.io.resample import sample_image

#: SCT's label value for the PMJ (``sct_detect_pmj``)
PMJ_VALUE = 50
#: the pons's front lies at least this far (mm) ahead of the medulla's at its foot ...
PONS_STEP_MM = 6.0
#: ... on 80 % of the rows this far (mm) above the foot ...
PONS_MIN_MM = 6.0
#: ... and first within this far (mm) above it
JUMP_ROWS_MM = 1.5
#: rows read from this far below the top of the segmented cord (mm) ...
BELOW_TOP_MM = 30.0
#: ... to this far above it
ABOVE_TOP_MM = 45.0
#: the cord's axis: the centerline between these depths below the segmented top (mm)
AXIS_FROM_MM, AXIS_TO_MM = 50.0, 15.0
#: rows of the cord whose intensities (cord, CSF around it) set the threshold (mm below the top)
REF_FROM_MM, REF_TO_MM = 30.0, 12.0
#: the pons's foot may lie no lower than this (mm) below the top of the segmented cord
PONS_LOWEST_MM = 15.0
#: depths read in front of the axis (mm)
MAX_DEPTH_MM = 40.0

_ROW_MM, _DEPTH_MM = 0.5, 0.25


@dataclass
class PMJ:
    """A pontomedullary junction found in an image."""

    point: np.ndarray  #: world mm, on the cord's axis continued
    above_top_mm: float  #: its distance along the axis above the top of the segmented cord
    step_mm: float  #: how far the pons's front lies ahead of the cord's (median over its rows)
    pons_mm: float  #: the length of the pons run read above it

    def as_dict(self) -> dict:
        return {"value": PMJ_VALUE, "point_mm": [round(float(x), 2) for x in self.point],
                "above_cord_top_mm": round(self.above_top_mm, 1), "pons_step_mm": round(self.step_mm, 1),
                "pons_run_mm": round(self.pons_mm, 1)}


def _main_component(seg: Image) -> np.ndarray:
    mask = np.asarray(seg.data) > 0.5
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
        mask = lab == (1 + int(np.argmax(sizes)))
    return mask


def _axis(seg: Image, cl: Centerline) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Origin (the top of the segmented cord, on the axis) and the unit vectors up the axis,
    anterior and to the side, from the centerline over the cord below its top."""
    mask = _main_component(seg)
    if not mask.any():
        return None
    s_top = float(cl.project(seg.grid.voxel_to_world(np.argwhere(mask).astype(float)))[0].max())
    ss = np.arange(max(s_top - AXIS_FROM_MM, 0.0), s_top - AXIS_TO_MM, 1.0)
    if len(ss) < 10:
        return None
    q = cl.points(ss)
    c = q.mean(0)
    up = np.linalg.svd(q - c)[2][0]
    up = up if up @ (q[-1] - q[0]) > 0 else -up
    ant = cl.frame(s_top - AXIS_TO_MM)[:, 1]
    ant = ant - (ant @ up) * up
    ant /= np.linalg.norm(ant)
    origin = c + ((cl.points(s_top) - c) @ up) * up
    return origin, up, ant, np.cross(ant, up)


def front_profile(image: Image, seg: Image, cl: Centerline, csf_sign: int) -> dict | None:
    """Rows along the cord's axis (mm from the segmented top, up positive) and the depth (mm) in
    front of the axis where each row first turns CSF; NaN where the row leaves the image first.
    None without an axis or CSF contrast."""
    ax = _axis(seg, cl)
    if ax is None:
        return None
    origin, up, ant, side = ax
    rows = np.arange(-BELOW_TOP_MM, ABOVE_TOP_MM + 1e-6, _ROW_MM)
    depth = np.arange(-MAX_DEPTH_MM / 2, MAX_DEPTH_MM + 1e-6, _DEPTH_MM)
    lat = np.array([-1.0, 0.0, 1.0])
    pts = (origin + rows[:, None, None, None] * up + depth[None, :, None, None] * ant
           + lat[None, None, :, None] * side)
    v = sample_image(image, pts.reshape(-1, 3), cval=np.nan)
    v = csf_sign * v.reshape(len(rows), len(depth), len(lat)).mean(-1)
    ref = (rows >= -REF_FROM_MM) & (rows <= -REF_TO_MM)
    cord = v[ref][:, np.abs(depth) < 1.5]
    ring = v[ref][:, np.abs(depth) < 10]
    if not np.isfinite(cord).any() or not np.isfinite(ring).any():
        return None
    tissue, csf = float(np.nanmedian(cord)), float(np.nanpercentile(ring, 90))
    spread = float(np.nanpercentile(ring, 90) - np.nanpercentile(ring, 10))
    if csf - tissue < 0.25 * spread or csf <= tissue:
        return None
    thr = 0.5 * (tissue + csf)
    ahead = v[:, depth >= 0]
    dpos = depth[depth >= 0]
    over = ahead > thr
    outside = ~np.isfinite(ahead)
    first_over = np.where(over.any(1), over.argmax(1), len(dpos))
    first_out = np.where(outside.any(1), outside.argmax(1), len(dpos))
    # the first CSF in front; a row that leaves the image (or the depths read) still in tissue
    # gives the depth it reached, a lower bound (the pons on a field that ends in front of it)
    first = np.minimum(first_over, first_out)
    front = dpos[np.clip(np.where(first_over < first_out, first_over, first - 1), 0, len(dpos) - 1)]
    front = np.where(first == 0, np.nan, front)  # no tissue in front of the axis at all
    return {"rows": rows, "front": front, "ref": ref, "origin": origin, "up": up, "ant": ant,
            "tissue": tissue, "csf": csf}


def find_pmj(image: Image, seg: Image, cl: Centerline, csf_sign: int = 1) -> PMJ | None:
    """The PMJ of ``image`` above the cord of ``seg`` (``cl`` its centerline; ``csf_sign`` +1
    where the CSF is brighter than the cord, -1 where darker), or None when it is not in view."""
    prof = front_profile(image, seg, cl, csf_sign)
    if prof is None:
        return None
    rows, front = prof["rows"], prof["front"]
    n_run = int(round(PONS_MIN_MM / _ROW_MM))
    n_jump = int(round(JUMP_ROWS_MM / _ROW_MM))
    ok = np.isfinite(front)
    for k in np.flatnonzero(ok & (rows >= -PONS_LOWEST_MM)):
        # the pons's foot: the front steps forward by PONS_STEP_MM within JUMP_ROWS_MM above row
        # k, and the rows above stay that far ahead (80 % of PONS_MIN_MM)
        run = slice(k + 1, k + 1 + n_run)
        if k + 1 + n_run > len(rows) or not ok[run].all():
            continue
        ahead = front[run] - front[k] >= PONS_STEP_MM
        if not ahead[:n_jump].any() or ahead.mean() < 0.8:
            continue
        u = float(rows[k])
        pons = ok[k + 1:] & (front[k + 1:] - front[k] >= PONS_STEP_MM)
        n_pons = int(np.argmin(np.append(pons[int(np.argmax(pons)):], False)))
        return PMJ(point=prof["origin"] + u * prof["up"], above_top_mm=u,
                   step_mm=float(np.median(front[run] - front[k])), pons_mm=n_pons * _ROW_MM)
    return None
