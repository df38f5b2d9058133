"""Automatic spinal cord segmentation: :func:`segment_cord` (mask) and :func:`segment` (mask,
probability and a report).

1. One 3D volume (4D series: their mean, or the DWI mean with b-values), refused when empty or
   constant.
2. The axial, world-aligned working grid (``workgrid``): 0.5 mm pixels, the input's S-I spacing.
3. Whole field of view (wider than ``LOCATE_ABOVE_MM``): a coarse model (2 mm pixels) finds the
   cord on every slice; the fine model then runs on a box of +-``BOX_HALF_MM`` around it.
4. The fine model predicts the cord's partial volume per working pixel; connected components
   keep the cord only (``components``); an image without a plausible cord raises
   :class:`~spinereg.errors.InputError` instead of returning noise.
4b. Inference-side corrections (``refine``, :mod:`spinereg.segment.refine`): weak slices
   between slices with cord get their neighbours' map as a prior, the outline is pulled in to
   the image's cord/CSF intensity half-way point where the model drew it beyond, and the whole
   map is moved 0.1 mm inwards along its own gradient.
5. The probability is averaged over each input voxel's footprint and thresholded at the fine
   model's ``threshold`` (models.json; 0.5 when absent, as the shipped models: the partial
   volume's half-way point).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.segment.bites import fill_bites
from spinereg.segment.components import image_beyond_ends, select_cord, soft_keep
from spinereg.segment.inputs import load_volume
from spinereg.segment.model import get_model, model_summary, normalise, predict
from spinereg.segment.refine import fill_gaps, refine_boundary, shift_inward
from spinereg.segment.workgrid import WorkGrid, sample_to_work, work_to_input, working_grid

log = logging.getLogger(__name__)

CONTRASTS = ("auto", "t1", "t2", "t2s", "mt", "dwi", "epi")
#: use the coarse localiser when the in-plane field of view is wider than this (mm)
LOCATE_ABOVE_MM = 80.0
#: half-width of the fine box around the located cord (mm)
BOX_HALF_MM = 24.0
#: plausible cord cross-section (mm2, median over the slices holding cord; adult cords are
#: 40-100 mm2, the conus tapers below 20 over its last centimetre)
AREA_RANGE_MM2 = (20.0, 400.0)
#: the kept cord must be confidently predicted: mean probability inside it
MIN_MEAN_PROB = 0.93
#: ... run along S-I: in at least this fraction of the slices that hold image (stacks of >= 6
#: slices; a lumbar view below the conus still has the cord in its upper part; shorter stacks:
#: in half of them) ...
MIN_COVERAGE = 0.25
MIN_COVERAGE_SHORT = 0.5
#: ... and hold at least this volume (mm3)
MIN_VOLUME_MM3 = 40.0
#: A cord runs through the field of view: it can end inside it at one end (the conus; the
#: brainstem above), not at both unless the field is long enough to hold a whole cord. A piece
#: with more than FREE_END_MM of image beyond both ends covering under FREE_ENDS_MAX_COVERAGE of
#: the slices is refused (smoothed noise: blobs 10-39 mm clear of both edges).
FREE_END_MM = 5.0
FREE_ENDS_MAX_COVERAGE = 0.6
#: image beyond the cord's upper end (mm) above which the segmentation is kept with a warning: a
#: spinal cord runs on up to the brainstem (real images and phantoms: 0 mm; the conus may end
#: inside the field, at the lower end; smoothed noise kept at one edge: 23-52 mm)
TOP_INSIDE_WARN_MM = 10.0
#: voxels wider than this (mm) across the working (axial) plane blur the cord's outline beyond what
#: the model and the outline-from-contrast step were made for: a warning. sct_testing_data t2
#: (1 mm, manual cord) block-averaged to 2 / 3 / 4 mm voxels along one in-plane axis (mean over
#: the block phases; with COARSE_RING_Q): 0.89 / 0.75 / 0.39 of the cord's volume kept along A-P
#: (4 mm: refused on 2 of 4 phases), 0.96 / 0.91 / 0.85 along R-L (1 mm: 0.98), exit 0.
COARSE_INPLANE_MM = 1.5
#: fill narrow concave pockets of each section (lesions at the surface; spinereg.segment.bites)
FILL_BITES = True
#: on coarse in-plane voxels (> COARSE_INPLANE_MM) the outline-from-contrast step takes the
#: surroundings' intensity from this quantile of the ring towards its far side from the cord
#: (``refine_boundary(ring_q=...)``) instead of the ring's median: the ring is blurred with the
#: cord over the voxel, and its median pulled the half-way point into the cord. Block-averaged
#: sct_testing_data t2 (chosen on it; mean over the block phases), Dice median -> 0.75:
#: 3 mm R-L 0.929 -> 0.940, 4 mm R-L 0.842 -> 0.856, 2 mm A-P 0.849 -> 0.867. Held out:
#: independent sagittal phantoms (seeds 101-103) 3 mm R-L 0.9429/0.9383/0.9519 ->
#: 0.9456/0.9419/0.9569, 3 mm A-P 0.9103/0.9055/0.9271 -> 0.9155/0.9132/0.9325, 4 mm R-L
#: 0.9283/0.9260/0.9167 -> 0.9393/0.9370/0.9335; t1 R-L 2/3/4 mm 0.942/0.945/0.936 ->
#: 0.945/0.943/0.938, t2s +-0.004. Images with finer voxels are untouched (median, as before).
COARSE_RING_Q = 0.75


@dataclass
class CordSegmentation:
    """``seg`` (uint8 mask on the input grid), ``prob`` (float32 cord partial volume on the
    input grid) and ``info`` (what was segmented, how, figures)."""

    seg: Image
    prob: Image
    info: dict = field(default_factory=dict)


def _no_cord(name: str, why: str) -> InputError:
    return InputError(f"no spinal cord found ({why})", name,
                      "give an image that shows the spinal cord (check the file and its field of view)")


def _smoothed_for(vol: np.ndarray, img: Image, px: float) -> np.ndarray:
    """Anti-aliasing before sampling on coarser pixels: Gaussian along voxel axes finer than px."""
    z = img.grid.zooms
    sig = np.where(z < px, 0.4 * np.sqrt(np.maximum((px / z) ** 2 - 1, 0)), 0.0)
    return ndimage.gaussian_filter(vol, sig) if np.any(sig > 0.3) else vol


def _locate(vol: np.ndarray, img: Image, wg_fine: WorkGrid) -> tuple[WorkGrid, dict]:
    """Fine working box around the cord found by the coarse model on the whole field of view."""
    model = get_model("locate")
    wg = wg_fine.rescaled(model.px, multiple=model.multiple)
    data, inside = sample_to_work(_smoothed_for(vol, img, model.px), img.grid, wg)
    prob = predict(model, normalise(data, inside))
    comp = select_cord(prob, wg, near_mm=8.0)
    if comp is None:
        raise _no_cord(img.name, "the whole-field search found nothing")
    k = np.flatnonzero(np.isfinite(comp.centre[:, 0]))
    world = wg.to_world(np.column_stack([comp.centre[k], k]))
    c = wg_fine.to_index(world)[:, :2]
    half = BOX_HALF_MM / wg_fine.px
    lo, hi = c.min(0) - half, c.max(0) + half
    box = wg_fine.crop(lo[0], hi[0], lo[1], hi[1], multiple=get_model("fine").multiple)
    return box, {"located_slices": int(len(k)), "box_mm": [round(float(box.nx * box.px), 1),
                                                          round(float(box.ny * box.px), 1)]}


def inplane_voxel_mm(img: Image, wg: WorkGrid) -> float:
    """The widest extent (mm) of one input voxel across the working grid's slice plane."""
    lin = img.grid.affine[:3, :3]
    return float(np.max(np.hypot(wg.frame[:, 0] @ lin, wg.frame[:, 1] @ lin)))


def segment(image: Image | str | Path, contrast: str = "auto", *, bvals: str | Path | np.ndarray | None = None,
            progress: Callable[[str], None] | None = None, threshold: float | None = None,
            refine: bool = True) -> CordSegmentation:
    """Segment the spinal cord of ``image`` (a file or an :class:`Image`, 3D or 4D).

    ``contrast`` is recorded (the models are contrast-agnostic); with ``bvals`` a 4D diffusion
    series is segmented on its DWI mean. Raises :class:`InputError` for empty, constant, 2D or
    5D images and for images where no plausible cord is found. ``threshold`` (on the partial
    volume of each input voxel) overrides the model's (models.json ``threshold``, else 0.5).
    ``refine=False`` skips the inference-side corrections of :mod:`spinereg.segment.refine`
    (S-I gap filling, outline from the image's contrast, 0.1 mm inward move) and gives the
    model's own map.
    """
    if contrast not in CONTRASTS:
        raise InputError(f"unknown contrast {contrast!r}", None, f"use one of {', '.join(CONTRASTS)}")
    t0 = time.perf_counter()
    notes: list[str] = []
    img, what = load_volume(image, bvals, notes)
    vol = np.asarray(img.data, np.float32)
    fine = get_model("fine")
    wg = working_grid(img.grid, fine.px, multiple=fine.multiple)
    info: dict = {"input": img.name, "segmented": what, "contrast": contrast}
    if notes:
        info["warnings"] = notes
    if max(wg.nx, wg.ny) * wg.px > LOCATE_ABOVE_MM:
        if progress:
            progress("locating the cord")
        wg, loc = _locate(vol, img, wg)
        info["whole_field"] = loc
    if progress:
        progress("segmenting")
    data, inside = sample_to_work(_smoothed_for(vol, img, fine.px), img.grid, wg)
    prob = predict(fine, normalise(data, inside))
    comp = select_cord(prob, wg)
    if comp is None:
        raise _no_cord(img.name, "the model found no cord voxel")
    area = comp.area_mm2[comp.slices]
    med = float(np.median(area))
    mean_p = float(prob[comp.keep].mean())
    n_content = int(inside.any(axis=(1, 2)).sum())
    coverage = len(comp.slices) / max(n_content, 1)
    volume = float(area.sum() * wg.dz)
    few = (coverage < MIN_COVERAGE or len(comp.slices) < 3) if n_content >= 6 else coverage < MIN_COVERAGE_SHORT
    if not (AREA_RANGE_MM2[0] <= med <= AREA_RANGE_MM2[1]) or mean_p < MIN_MEAN_PROB or few \
            or volume < MIN_VOLUME_MM3:
        raise _no_cord(img.name, f"what was found does not look like a cord: median cross-section "
                                 f"{med:.0f} mm2 in {len(comp.slices)} of {n_content} slices, "
                                 f"mean probability {mean_p:.2f}")
    below, above = image_beyond_ends(comp, inside, wg.dz)
    if min(below, above) > FREE_END_MM and coverage < FREE_ENDS_MAX_COVERAGE:
        raise _no_cord(img.name, f"what was found ends inside the field of view at both ends ({below:.0f} mm "
                                 f"of image below it, {above:.0f} mm above, in {len(comp.slices)} of "
                                 f"{n_content} slices): a cord runs through the field")
    prob = soft_keep(prob, comp.keep)
    coarse = inplane_voxel_mm(img, wg)
    if refine:
        prob, filled = fill_gaps(prob, wg, data)
        prob, n_refined = refine_boundary(prob, data, inside, wg,
                                          ring_q=COARSE_RING_Q if coarse > COARSE_INPLANE_MM else None)
        info["refined"] = {"gap_slices_filled": filled, "slices_outline_from_contrast": n_refined}
        if FILL_BITES:
            prob, n_bites = fill_bites(prob)
            info["refined"]["sections_with_bites_filled"] = n_bites
        prob = shift_inward(prob, wg)
        if not np.any(prob > 0):
            raise _no_cord(img.name, "the cord found is smaller than one voxel of the image")
    bbox = np.argwhere(prob > 0)
    lo, hi = bbox.min(0), bbox.max(0)
    pts = wg.to_world(np.array([[i, j, k] for k in (lo[0], hi[0]) for i in (lo[1], hi[1])
                                for j in (lo[2], hi[2])], float))
    margin = max(2 * float(np.max(img.grid.zooms)), wg.dz)
    sub = img.grid.bounding_subgrid(pts, margin_mm=margin)
    pin = work_to_input(prob, wg, img.grid, sub) if sub is not None else np.zeros(img.shape[:3], np.float32)
    thr = fine.threshold if threshold is None else float(threshold)
    seg = (pin >= thr).astype(np.uint8)
    if not seg.any():
        raise _no_cord(img.name, "the cord found is smaller than one voxel of the image")
    seg_img = img.with_data(seg)
    seg_img.header.set_data_dtype(np.uint8)
    seg_img.header.set_slope_inter(1.0, 0.0)
    prob_img = img.with_data(np.clip(pin, 0, 1).astype(np.float32))
    prob_img.header.set_data_dtype(np.float32)
    prob_img.header.set_slope_inter(1.0, 0.0)
    if coarse > COARSE_INPLANE_MM:
        info.setdefault("warnings", []).append(
            f"voxels {coarse:.1f} mm wide across the cord's cross-section: its outline is blurred over them and the "
            "segmentation may be too small, most where the wide axis is A-P (sct_testing_data t2 averaged to 3 mm "
            "voxels kept 91 % of the cord's volume across R-L, 75 % across A-P); use areas and volumes from it with "
            f"care, or an image with in-plane voxels <= {COARSE_INPLANE_MM:g} mm")
    if above > TOP_INSIDE_WARN_MM:
        info.setdefault("warnings", []).append(
            f"the segmented cord ends {above:.0f} mm below the top of the image: a spinal cord runs on up to "
            "the brainstem; check that the image shows a cord (what was found may be something else)")
    info.update({
        "voxels": int(seg.sum()),
        "volume_mm3": round(float(seg.sum() * np.prod(img.grid.zooms)), 1),
        "working_slices_with_cord": int(len(comp.slices)),
        "image_beyond_ends_mm": [round(below, 1), round(above, 1)],
        "median_axial_area_mm2": round(med, 1),
        "threshold": thr,
        "mean_probability": round(mean_p, 3),
        "components": {"found": comp.n_components, "kept": comp.n_kept},
        "models": model_summary(),
        "seconds": round(time.perf_counter() - t0, 2),
    })
    return CordSegmentation(seg_img, prob_img, info)


def segment_cord(image: Image | str | Path, contrast: str = "auto", *,
                 bvals: str | Path | np.ndarray | None = None) -> Image:
    """Binary spinal cord mask (uint8, 1 = cord) of ``image`` on its own grid. See :func:`segment`."""
    return segment(image, contrast, bvals=bvals).seg
