"""Log-domain diffeomorphic demons in numpy: segmentations, images, or both (``algo=demons``).

``algo=demons`` (a spinereg extension of SCT's step language) is the nonrigid step of spinereg's
presets. The transform is the exponential of a stationary velocity field ``v`` (scaling and
squaring, :class:`~spinereg.transforms.displacement.VelocityField`), so it is a diffeomorphism
by construction and its inverse is exactly ``exp(-v)``.

What drives it (``type``):

* ``seg``: the demons force on the segmentations, ``(F - M∘φ) ∇(M∘φ) / (|∇(M∘φ)|² + (F - M∘φ)²)``;
* ``im``: the images, through local (5-voxel box) normalised cross-correlation, squared as
  ANTs' ``CC`` (insensitive to contrast inversion; ``metric=MeanSquares`` uses the demons force
  on intensities rescaled to [0, 1] instead);
* ``imseg``: both, the segmentation term acting as a constraint on the image term (a moving
  segmentation from thick slices: its force only where the two segmentations disagree at 0.5).

Each iteration: ``φ = exp(v)``, forces on the warped moving channels, fluid smoothing (1 mm),
restriction to the allowed voxel axes of the working grid (``deformation=1x1x0``: the slice
plane; axes whose voxels are more than twice the finest are never deformed along: a thick
slice carries no information there), step limited to half a voxel, ``v ← G_diff * (v + u)``
(diffusion regularisation, ``smoothWarpXY`` x 0.5 mm), and a taper that brings ``v`` to zero at
the edge of the region worked on (the segmentations or mask plus a margin), so the identity
continues the field beyond it. Multi-resolution (``shrink`` or 2 levels), deterministic.

Image terms (``im``/``imseg``) act within ``IMAGE_REGION_MM`` of the segmentations (or in the
mask, else everywhere), from 4x the finest voxel down (levels above ``MAX_IMAGE_VOXELS`` are
interpolated, not iterated on), with steps normalised to one voxel of the level; ``imseg``
starts from the mean in-plane offset of the cords (nothing along S-I: the fields of view need
not cover the same length). Where the region reaches the edge of the grid, the field lives on
a grid extended ``EDGE_PAD_MM`` beyond it and tapers to zero there (not inside the image).
Image terms are checked before and after: where the region holds fewer voxels than one local
correlation window (no image region: the moving image's field of view does not reach it) or the
two images share no structure in it (mean squared local correlation < ``MIN_LOCAL_CC``: a noise
image, an empty one) nothing is estimated from the images, and a result that does not raise the local correlation is dropped (``imseg`` keeps
the cords' mean in-plane offset it started from: it comes from the segmentations);
``field.report`` says which (the engine copies it into the step record).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.io.box import box_slices, mask_box, pad_voxels
from spinereg.io.grid import Grid
from spinereg.transforms.displacement import (
    ExpPlan,
    VelocityField,
    compose_voxel,
    exp_velocity,
    resample_level_field,
    sample_linear,
    squared_norm,
    taper_window,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Sequence

    from spinereg.register.steps import Step

#: Below this mean squared local correlation (5-voxel windows) in the region the images share no
#: structure (white noise against anything scores about 1/125 = 0.008; real pairs 0.1-0.3, of any
#: contrasts, the square ignoring inversions): nothing is estimated.
MIN_LOCAL_CC = 0.04
#: An image-driven result must raise the mean local correlation by at least this much.
MIN_GAIN = 0.002
#: image terms act within this distance (mm) of the segmentations (when no mask is given)
IMAGE_REGION_MM = 20.0
#: voxels of the moving image's field of view (its edge, on the fixed grid) left out of the image term,
#: along every axis: on mt1's 17 mm slices t2 keeps no image region (said, ``no image region``). Tried in
#: session 52, not kept: 0 or 1 voxel along axes over twice the finest voxel gives t2 -> mt1's grid an
#: image term, but through a known field (seeds 0-9) the cord error mean went 0.425 -> 0.429 / 0.434 mm
#: (in-plane 0.194 -> 0.196 / 0.205; S-I is not estimated on 3 slices of 17 mm either way)
VALID_EROSION_VOX = 2
#: image levels: coarsest voxel (mm, x the finest voxel), and the iterations per level (x iter/10)
IMAGE_COARSEST = 4
IMAGE_ITERATIONS = (100, 60, 30)
#: image steps whose region reaches the edge of the grid: the field extends this far beyond it
EDGE_PAD_MM = 8.0
#: image levels finer than this many voxels are not iterated on (large fields of view)
MAX_IMAGE_VOXELS = 600_000
#: image-only steps on a large field of view (no mask, no segmentation): levels up to this many
#: voxels work on the whole crop, the finer ones in a box around the cord the cord model finds
#: (:mod:`spinereg.register.cord_box`); the box's field is blended into the coarse one over this (mm)
BOX_WHOLE_VOXELS = 150_000
#: the cord box record also reports the images' NCC in the cord found dilated by this (mm)
CORD_NCC_DILATION_MM = 5.0
#: the box mode's coarsest level (x the finest voxel): one level coarser than ``IMAGE_COARSEST``, so
#: the whole-field level starts near its answer (bench pair seeds 0/1/2: 48 -> 35 iterations there,
#: central 40 mm residual 0.038/0.046/0.051 -> 0.036/0.044/0.050 mm)
BOX_COARSEST = 8
BOX_BLEND_MM = 8.0
#: image levels stop after 4 steps in a row that lower the energy by less than this fraction (in
#: the box mode: ``BOX_TOL``; the energy falls by less than 0.1% a step long before the iteration cap)
IMAGE_TOL = 1e-4
BOX_TOL = 1e-3
_DEBUG = bool(__import__('os').environ.get('SPINEREG_DEMONS_DEBUG'))


def _axes_weights(grid: Grid, deformation: str) -> np.ndarray:
    """Allowed voxel axes: the step's ``deformation`` minus axes with thick voxels."""
    w = np.array([float(v) for v in str(deformation).lower().split("x")][:3])
    z = grid.zooms
    w[z > 2.0 * z.min() + 1e-6] = 0.0
    return w


def _warp(img: np.ndarray, d: np.ndarray) -> np.ndarray:
    return sample_linear([img], d[..., 0], d[..., 1], d[..., 2] if np.any(d[..., 2]) else None)[0]


def _smooth(u: np.ndarray, sigma_vox: np.ndarray) -> np.ndarray:
    """Each component Gaussian-smoothed (components that are zero everywhere stay so, unfiltered)."""
    if not np.any(sigma_vox > 0):
        return u
    out = np.zeros_like(u)
    for k in range(3):
        if np.any(u[..., k]):
            out[..., k] = ndimage.gaussian_filter(u[..., k], sigma_vox, mode="nearest")
    return out


def _grad(a: np.ndarray) -> np.ndarray:
    return np.stack([np.gradient(a, axis=k) if a.shape[k] > 1 else np.zeros_like(a) for k in range(3)], -1)


class _LNCC:
    """Local normalised cross-correlation (box window) between a fixed image and warped ones."""

    def __init__(self, f: np.ndarray, radius: int = 2):
        self.size = self.window(f.shape, radius)
        self.f = f
        self.mf = self._box(f)
        self.sff = np.maximum(self._box(f * f) - self.mf**2, 0.0)

    @staticmethod
    def window(shape: Sequence[int], radius: int = 2) -> list[int]:
        """The box window (voxels per axis) on an array of ``shape``."""
        return [2 * radius + 1 if n > 2 * radius else 1 for n in shape]

    def _box(self, a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, self.size, mode="nearest")

    def terms(self, m: np.ndarray):
        mm = self._box(m)
        smm = np.maximum(self._box(m * m) - mm**2, 0.0)
        sfm = self._box(self.f * m) - self.mf * mm
        eps = 1e-5 * (float(self.sff.mean()) * float(smm.mean()) + 1e-12)
        cc = sfm**2 / (self.sff * smm + eps)
        return cc, mm, smm, sfm, eps

    def cc(self, m: np.ndarray) -> np.ndarray:
        return self.terms(m)[0]

    def force(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ascent direction of the squared local correlation (ANTs' CC derivative), and the cc map."""
        cc, mm, smm, sfm, eps = self.terms(m)
        g = 2.0 * sfm / (self.sff * smm + eps) * ((self.f - self.mf) - sfm / (smm + eps) * (m - mm))
        return g[..., None] * _grad(m), cc


def _ncc(a: np.ndarray, b: np.ndarray, roi: np.ndarray) -> float:
    x, y = a[roi], b[roi]
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def _roi_box(shape: tuple[int, ...], masks: Sequence[np.ndarray | None], margin_vox: np.ndarray):
    """Bounding box (lo, hi inclusive) of the union of ``masks`` grown by ``margin_vox``."""
    union = np.zeros(shape, bool)
    for m in masks:
        if m is not None:
            union |= np.asarray(m) > 0.5
    if not union.any():
        return np.zeros(3, int), np.array(shape) - 1, union
    lo, hi = mask_box(union, margin_vox)
    return lo, hi - 1, union


def _rescale(a: np.ndarray, sel: np.ndarray) -> np.ndarray:
    vals = a[sel] if sel.any() else a.ravel()
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return ((a - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(a, np.float32)


def demons(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid, step: Step,
           fixed_mask: np.ndarray | None = None, *, fixed_seg: np.ndarray | None = None,
           moving_seg: np.ndarray | None = None, check_only: bool = False,
           moving_valid: np.ndarray | None = None, moving_zooms: Sequence[float] | None = None,
           **_: object) -> VelocityField:
    """Demons registration of ``moving`` (already on ``fixed_grid``) to ``fixed`` (see module doc).

    Step keys used: ``type``, ``metric`` (images: CC or MeanSquares), ``iter`` (iterations per
    level x10, at most), ``smooth`` (mm, pre-smoothing of the inputs), ``smoothWarpXY`` (diffusion
    regularisation, x 0.5 mm), ``deformation``, ``shrink`` (coarsest level factor, 2 by default).
    ``fixed_mask`` restricts the image term. ``check_only``: only check (and report) whether the
    images share structure, estimate nothing (the fixed image is not a real image of the moving
    one's contrast). ``moving_valid`` (``imseg``): the fixed-grid voxels the moving image covers;
    the image term leaves out the rest (and ``VALID_EROSION_VOX`` voxels inside it). ``moving_zooms``
    (``imseg``): the voxel size (mm) of the moving segmentation before it was resampled onto
    ``fixed_grid``; where it is more than twice the fixed grid's finest voxel (thick slices), the
    segmentation force acts only where the segmentations disagree at 0.5 (:func:`_level`).
    Returns the pull diffeomorphism on ``fixed_grid``.
    """
    grid = fixed_grid
    zooms = grid.zooms
    kind = getattr(step, "type", "seg")
    chans: list[tuple[str, np.ndarray, np.ndarray]] = []
    f = np.asarray(fixed, np.float32)
    m = np.asarray(moving, np.float32)
    seg_f = seg_m = None
    dead_zone = None  # a thick-slice moving segmentation: where its force may act (see :func:`_level`)
    if kind == "imseg" and fixed_seg is not None and moving_seg is not None:
        seg_f, seg_m = np.asarray(fixed_seg, np.float32), np.asarray(moving_seg, np.float32)
    elif kind == "seg":
        seg_f, seg_m = f, m
    image = kind in ("im", "imseg")
    margin = pad_voxels((IMAGE_REGION_MM + 5.0) if image else 8.0, zooms)
    lo, hi, roi_union = _roi_box(f.shape, [seg_f, seg_m, fixed_mask], margin)
    sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    report: dict = {"type": kind, "crop": [int(v) for v in (hi - lo + 1)]}
    w_axes = _axes_weights(grid, getattr(step, "deformation", "1x1x0"))
    smooth_mm = float(getattr(step, "smooth", 0.0) or 0.0)
    # image steps: where the crop reaches the edge of the grid, the field lives on a grid
    # extended beyond it (edge values) and tapers to zero there, not inside the image
    pad_lo = pad_hi = np.zeros(3, int)
    if image and not getattr(step, "rigidity", 0):
        pv = pad_voxels(EDGE_PAD_MM, zooms) * (w_axes > 0)
        pad_lo = np.where(lo == 0, pv, 0)
        pad_hi = np.where(hi == np.array(f.shape) - 1, pv, 0)
    padded = bool(pad_lo.any() or pad_hi.any())
    pads = [(int(a), int(b)) for a, b in zip(pad_lo, pad_hi, strict=True)]

    def crop(a: np.ndarray, edge: bool = True) -> np.ndarray:
        a = np.asarray(a)[sl]
        return np.pad(a, pads, mode="edge" if edge else "constant") if padded else a

    def prep(a: np.ndarray) -> np.ndarray:
        a = crop(a)
        return ndimage.gaussian_filter(a, smooth_mm / zooms) if smooth_mm > 0 else a

    if seg_f is not None:
        chans.append(("seg", prep(np.clip(seg_f, 0, 1)), prep(np.clip(seg_m, 0, 1))))
    inside = crop(np.ones(f.shape, bool), edge=False)
    roi_c = crop(roi_union, edge=False)
    region = roi_c if roi_union.any() else inside
    if fixed_mask is not None and np.any(fixed_mask):
        region = crop(np.asarray(fixed_mask) > 0.5, edge=False)
    elif seg_f is not None:
        region = _dilate_mm(region, zooms, IMAGE_REGION_MM if image else 5.0)
    if image and padded:
        # the image term not in the extension beyond the grid (edge values, constant along the padded
        # axes): the region grown from the segmentations reached into it, and the local correlation
        # there aligned where each image stops varying (t2s onto a 1 mm grid through a known field,
        # seeds 0 / 1 / 2: cord S-I error 0.61 / 0.35 / 0.13 mm before, 0.16 / 0.24 / 0.11 with the
        # segmentation force's dead zone in :func:`_level`, 0.16 / 0.24 / 0.12 without the
        # segmentations; tests/test_register_thick_slice_segs.py)
        region = region & inside
    # a moving segmentation resampled from thick slices: where the two agree at 0.5, what is left is
    # partial volume (a staircase along the thick axis, resampled twice), not where the cord is
    if (image and seg_f is not None and moving_zooms is not None
            and float(np.max(moving_zooms)) > 2.0 * float(zooms.min()) + 1e-6):
        dead_zone = np.ones(inside.shape, bool)
    if image and moving_valid is not None and not np.all(moving_valid):
        # the image term only where the moving image has data: beyond its field of view it is 0,
        # an edge the fixed image does not have, and the local correlation pulled the moving image
        # along S-I toward it (before session 50: t2 onto a 10-degree rotated 1 mm grid reaching
        # beyond t2's field of view, known smooth field: S-I error 0.64 mm in the cord, 1.9 mm
        # near the ends, where the same step without segmentations left 0.07 mm)
        valid = ndimage.binary_erosion(crop(np.asarray(moving_valid, bool)), iterations=VALID_EROSION_VOX,
                                       border_value=1)
        region = region & valid
        if dead_zone is not None:
            # nor its segmentation force: beyond the moving image's field of view its segmentation is 0
            # for want of data, not of cord (t2s onto a 10-degree rotated 1 mm grid reaching beyond it,
            # known field, seeds 0 / 1 / 2: cord S-I error 0.97 / 0.96 / 1.21 mm -> 0.24 / 0.43 / 0.26,
            # image-only 0.15 / 0.42 / 0.21)
            dead_zone = valid
    sub = grid_crop(grid, lo - pad_lo, hi + pad_hi)  # the crop's grid, extended by the pads
    n_region, n_window = int(np.count_nonzero(region)), int(np.prod(_LNCC.window(region.shape)))
    if image and n_region < n_window:
        # no region to correlate the images in (before session 52 the image term ran its whole solve on
        # a NaN correlation, then was dropped): t2 onto mt1's 17 mm slices covers 3 of its 5 slices,
        # and the moving image's field of view eroded by VALID_EROSION_VOX voxels leaves none
        report.update(used=False, image_information=False,
                      reason=f"no image region: {n_region} voxels where the image term may act (within "
                             f"{IMAGE_REGION_MM:g} mm of the segmentations or in the mask, where the moving image "
                             f"has data), fewer than one local correlation window ({n_window}): nothing "
                             "estimated from the images")
        return _offset_only(chans, grid, sub, sl, padded, _keep_box(roi_c, pad_lo, pad_hi), w_axes, report, check_only)
    if image:
        fi, mi = prep(_rescale(f, roi_union)), prep(_rescale(m, roi_union))
        lcc0 = float(_LNCC(fi).cc(mi)[region].mean())
        report["ncc_before"] = round(_ncc(fi, mi, region), 4)
        report["local_cc_before"] = round(lcc0, 4)
        if lcc0 < MIN_LOCAL_CC:
            report.update(used=False, image_information=False,
                          reason=f"the images share no structure in the region (local correlation "
                                             f"{lcc0:.3f} < {MIN_LOCAL_CC}): no image information, nothing "
                                             "estimated from the image")
            return _identity(grid, report)
        if check_only:
            report.update(used=False, image_information=True,
                          reason="the fixed image is synthesised (no real image of this contrast): it is "
                                 "checked against the moving image, not used to deform it")
            return _identity(grid, report)
        chans.insert(0, ("im" if getattr(step, "metric", "CC") != "MeanSquares" else "im_ssd", fi, mi))
    if not np.any(w_axes):
        report.update(used=False, reason="no axis may deform")
        return _identity(grid, report)

    cord_c = None
    init = None
    if image and seg_f is not None:
        # start from the translation that superposes the segmentations (a global shift, so no
        # slice-to-slice jitter for the smooth image term to undo)
        init = _inplane_shift(chans[-1][1], chans[-1][2]) * w_axes
    if image and seg_f is None and not roi_union.any() and inside.size > MAX_IMAGE_VOXELS:
        # a large field of view and nothing to say where the cord is: the cord model finds it
        # (in a thread, while the coarse levels run: they do not depend on where it is), the
        # finest levels work around it (else on the whole field of view, coarser)
        from spinereg.register.cord_box import cord_box, locate_cord

        with ThreadPoolExecutor(1, thread_name_prefix="cord-model") as pool:
            job = pool.submit(locate_cord, f, grid)

            def find_box() -> tuple[np.ndarray, np.ndarray] | None:
                nonlocal cord_c
                cord, info = job.result()
                found = None
                if cord is not None:
                    cord_c = crop(cord, edge=False)
                    found = cord_box(cord_c, sub.zooms, w_axes > 0)
                    cord_c = _dilate_mm(cord_c, sub.zooms, CORD_NCC_DILATION_MM)
                    info["box_mm"] = [round(float(v), 1) for v in (found[1] - found[0]) * sub.zooms]
                else:
                    info["reason"] += ": the finest levels are not worked on, the field of view is too large"
                report["cord_box"] = info
                return found

            fine: list = []
            v = _solve_log(chans, sub.zooms, w_axes, step, region, init, find_box, fine)
    else:
        fine = []
        v = _solve_log(chans, sub.zooms, w_axes, step, region, init, None, fine, dead_zone)
    v *= w_axes.astype(np.float32)
    # beyond the cord box the velocity is the coarse level's: its exponential is taken there on
    # that level's nodes (the grid of ``v``'s voxel 0 is the crop's, so the nodes line up)
    plan = ExpPlan(*fine) if fine and (padded or not np.any(lo)) else None
    keep = _keep_box(roi_c, pad_lo, pad_hi)
    if seg_f is not None:
        if image:
            # beyond the slices where both segmentations exist (along the axes that do not
            # deform) the nearest such slice's in-plane field continues
            v = _extend_covered(v, chans[-1][1], chans[-1][2], w_axes)
        else:
            # beyond the slices where both segmentations exist there is nothing to match: fade out
            v *= _coverage_window(chans[-1][1], chans[-1][2], sub.zooms, w_axes)[..., None]
    v *= taper_window(v.shape[:3], sub.zooms, np.flatnonzero(w_axes > 0), keep=keep)[..., None]
    d, _ = exp_velocity(v, plan=plan)
    if image:
        before = lcc0  # the same images and region as the check above
        moved = _warp(chans[0][2], d)
        after = float(_LNCC(chans[0][1]).cc(moved)[region].mean())
        report.update(local_cc_before=round(before, 4), local_cc_after=round(after, 4),
                      ncc_after=round(_ncc(chans[0][1], moved, region), 4))
        if cord_c is not None:  # the images' correlation around the cord the model found
            report["cord_box"].update(ncc_before=round(_ncc(chans[0][1], chans[0][2], cord_c), 4),
                                      ncc_after=round(_ncc(chans[0][1], moved, cord_c), 4),
                                      ncc_region=f"the cord found, dilated {CORD_NCC_DILATION_MM:g} mm")
        if not after > before + MIN_GAIN:
            report.update(used=False, reason=f"the local correlation did not rise ({before:.3f} -> {after:.3f}): "
                                             "the step is dropped")
            if init is None or not np.any(init):
                return _identity(grid, report)
            # the segmentations' own offset (where the image term started) is kept: it comes from the
            # cords, not from the images. Dropping it left cords 11 mm apart to the stiff in-plane seg
            # step (synthetic cohort T2w -> T2starw, sub-01 ses-01: Dice 0.0016 -> 0.137 -> 0.24,
            # centerline 8.3 mm, before session 37)
            v, d = _offset_field(init, v.shape[:3], sub.zooms, w_axes, keep)
            plan = None
            report.update(used="cord offset only",
                          reason=report["reason"].replace("the step is dropped", "the image term is dropped, the "
                                                          "cords' mean in-plane offset kept"),
                          offset_vox=[round(float(x), 3) for x in init])
    if seg_f is not None:
        _seg_dice(report, chans[-1][1], chans[-1][2], d)
    if "used" not in report:  # (else "cord offset only", set above)
        report["used"] = True
        if image:
            report["image_information"] = True
    return _field(grid, sub, sl, padded, v, d, plan, report)


def _keep_box(roi_c: np.ndarray, pad_lo: np.ndarray, pad_hi: np.ndarray) -> tuple | None:
    """Where the taper keeps 1 (voxel box, inclusive, of the padded crop): the segmentations / mask
    (``roi_c``), and along the padded axes the grid (the ramp lies in the extension); None: nowhere."""
    keep = None
    if roi_c.any():
        idx = np.argwhere(roi_c)
        keep = (idx.min(0), idx.max(0))
    if pad_lo.any() or pad_hi.any():
        n = np.array(roi_c.shape)
        box = (np.where(pad_lo > 0, pad_lo, 0), np.where(pad_hi > 0, n - 1 - pad_hi, n - 1))
        keep = box if keep is None else (np.where(pad_lo > 0, np.minimum(keep[0], box[0]), keep[0]),
                                         np.where(pad_hi > 0, np.maximum(keep[1], box[1]), keep[1]))
    return keep


def _offset_field(init: np.ndarray, shape: tuple[int, ...], zooms: np.ndarray, w_axes: np.ndarray,
                  keep: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """The constant ``init`` (voxels) tapered to zero at the edge of the crop: velocity, displacement."""
    v = np.broadcast_to(np.asarray(init, np.float32), tuple(shape) + (3,)).copy()
    v *= taper_window(v.shape[:3], zooms, np.flatnonzero(w_axes > 0), keep=keep)[..., None]
    d, _ = exp_velocity(v, plan=None)
    return v, d


def _offset_only(chans: list, grid: Grid, sub: Grid, sl: tuple, padded: bool, keep: tuple | None,
                 w_axes: np.ndarray, report: dict, check_only: bool) -> VelocityField:
    """An ``imseg`` step with no image term: the cords' mean in-plane offset (``chans``: the
    segmentations, cropped to ``sl`` and padded onto ``sub``; ``keep``: :func:`_keep_box`), as where
    an image term that did not raise the local correlation is dropped; the identity without
    segmentations, in ``check_only``, or with no offset."""
    if check_only or not chans or not np.any(w_axes):
        return _identity(grid, report)
    fs, ms = chans[-1][1], chans[-1][2]
    init = _inplane_shift(fs, ms) * w_axes
    if not np.any(init):
        return _identity(grid, report)
    v, d = _offset_field(init, fs.shape, sub.zooms, w_axes, keep)
    report.update(used="cord offset only", reason=report["reason"] + ", the cords' mean in-plane offset kept",
                  offset_vox=[round(float(x), 3) for x in init])
    _seg_dice(report, fs, ms, d)
    return _field(grid, sub, sl, padded, v, d, None, report)


def _seg_dice(report: dict, fs: np.ndarray, ms: np.ndarray, d: np.ndarray) -> None:
    """The segmentations' Dice before and after the displacement ``d`` (voxels), into ``report``."""
    report["seg_dice_before"] = round(_dice(fs > 0.5, ms > 0.5), 4)
    report["seg_dice_after"] = round(_dice(fs > 0.5, _warp(ms, d) > 0.5), 4)


def _field(grid: Grid, sub: Grid, sl: tuple, padded: bool, v: np.ndarray, d: np.ndarray, plan: ExpPlan | None,
           report: dict) -> VelocityField:
    """The velocity and displacement (voxels of the crop ``sl``, or of the extended crop grid ``sub``
    when ``padded``) as the pull diffeomorphism in world units, ``report`` attached."""
    a = grid.affine[:3, :3].astype(np.float32)
    if padded:  # the field on its extended crop grid (the identity beyond it)
        out = VelocityField(sub, np.einsum("ij,...j->...i", a, v), np.einsum("ij,...j->...i", a, d), plan=plan)
        out.report = report
        return out
    vel = np.zeros(tuple(grid.shape) + (3,), np.float32)
    disp = np.zeros_like(vel)
    vel[sl] = np.einsum("ij,...j->...i", a, v)
    disp[sl] = np.einsum("ij,...j->...i", a, d)
    out = VelocityField(grid, vel, disp, plan=plan)
    out.report = report
    return out


def _coverage_window(fs: np.ndarray, ms: np.ndarray, zooms: np.ndarray, w_axes: np.ndarray,
                     ramp_mm: float = 5.0) -> np.ndarray:
    """1 on the slices (along each axis that does not deform) holding both segmentations, a
    cosine ramp to 0 over ``ramp_mm`` beyond them."""
    out = np.ones(fs.shape, np.float32)
    for ax in np.flatnonzero(w_axes == 0):
        other = tuple(a for a in range(3) if a != ax)
        both = (fs > 0.5).any(axis=other) & (ms > 0.5).any(axis=other)
        if not both.any() or both.all():
            continue
        idx = np.arange(fs.shape[ax], dtype=float)
        k = np.flatnonzero(both)
        dist = np.maximum(k[0] - idx, idx - k[-1]).clip(0) * float(zooms[ax])
        prof = np.where(dist <= 0, 1.0, 0.5 + 0.5 * np.cos(np.pi * np.clip(dist / ramp_mm, 0, 1)))
        out *= prof.astype(np.float32).reshape([-1 if a == ax else 1 for a in range(3)])
    return out


def _extend_covered(v: np.ndarray, fs: np.ndarray, ms: np.ndarray, w_axes: np.ndarray) -> np.ndarray:
    """``v`` with the slices (along each axis that does not deform) beyond those holding both
    segmentations replaced by the nearest slice that holds both."""
    for ax in np.flatnonzero(w_axes == 0):
        other = tuple(a for a in range(3) if a != ax)
        both = (fs > 0.5).any(axis=other) & (ms > 0.5).any(axis=other)
        if not both.any() or both.all():
            continue
        k = np.flatnonzero(both)
        idx = np.clip(np.arange(v.shape[ax]), k[0], k[-1])
        v = np.take(v, idx, axis=ax)
    return v


def _dilate_mm(mask: np.ndarray, zooms: np.ndarray, mm: float) -> np.ndarray:
    """``mask`` grown by ``mm`` (ellipsoidal distance in voxels of ``zooms``)."""
    if not mask.any():
        return mask
    sl = box_slices(*mask_box(mask, pad_voxels(mm, zooms, 1)))  # the distance map on the box grown by ``mm``
    out = np.zeros(mask.shape, bool)
    out[sl] = ndimage.distance_transform_edt(~mask[sl], sampling=zooms) <= mm
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def _identity(grid: Grid, report: dict) -> VelocityField:
    z = np.zeros(tuple(grid.shape) + (3,), np.float32)
    out = VelocityField(grid, z, z)
    out.report = report
    return out


def grid_crop(grid: Grid, lo: np.ndarray, hi: np.ndarray) -> Grid:
    aff = grid.affine.copy()
    aff[:3, 3] = grid.voxel_to_world(np.asarray(lo, float)[None])[0]
    return Grid(tuple(int(v) for v in (np.asarray(hi) - lo + 1)), aff)


def _levels(shape: tuple[int, ...], zooms: np.ndarray, coarsest: int) -> list[np.ndarray]:
    """Per-level integer subsampling factors per axis, coarsest first (axes kept >= 8 samples)."""
    out = []
    f = coarsest
    while f >= 1:
        target = float(zooms.min()) * f
        fac = np.maximum(1, np.round(target / zooms)).astype(int)
        fac = np.where(np.asarray(shape) >= 8 * fac, fac, 1)
        if not out or not np.array_equal(fac, out[-1]):
            out.append(fac)
        f //= 2
    if not np.all(out[-1] == 1):
        out.append(np.ones(3, int))
    return out


def _inplane_shift(fs: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """Mean in-plane offset (voxels) of the moving segmentation's slice centres from the fixed
    one's, over the slices (last axis) both hold; nothing along the slices (the two fields of
    view need not cover the same cord length)."""
    a, b = fs > 0.5, ms > 0.5
    both = a.any((0, 1)) & b.any((0, 1))
    if not both.any():
        return np.zeros(3)
    ij = np.indices(a.shape[:2]).reshape(2, -1).astype(float)
    za = a[..., both].reshape(-1, both.sum())
    zb = b[..., both].reshape(-1, both.sum())
    ca = (ij @ za) / za.sum(0)
    cb = (ij @ zb) / zb.sum(0)
    return np.array([*(cb - ca).mean(1), 0.0])


def _plan(shape: tuple[int, ...], zooms: np.ndarray, step: Step, image: bool,
          box_shape: tuple[int, ...] | None = None) -> tuple[list, list[int], int]:
    """Levels (subsampling factors, coarsest first), iterations per level, and how many of the
    levels work on the whole crop (the rest in the box of ``box_shape`` voxels, when given)."""
    shrink = max(1, int(getattr(step, "shrink", 1)))
    coarsest = (IMAGE_COARSEST if box_shape is None else BOX_COARSEST) if image else 2
    levels = _levels(shape, zooms, coarsest if shrink == 1 else shrink)
    scale = max(int(getattr(step, "iter", 10)), 1) / 10.0
    if not image:
        return levels, [max(5, int(getattr(step, "iter", 10)) * 10)] * len(levels), len(levels)
    its = (IMAGE_ITERATIONS[0],) * max(0, len(levels) - len(IMAGE_ITERATIONS)) + IMAGE_ITERATIONS
    iters = [max(5, int(round(n * scale))) for n in its[-len(levels):]]
    # large fields of view: the finest levels beyond MAX_IMAGE_VOXELS (in the box, with one) are
    # not worked on (the smooth field is interpolated onto them)
    top = np.array(shape if box_shape is None else box_shape)
    while len(levels) > 1 and np.prod(np.ceil(top / levels[-1])) > MAX_IMAGE_VOXELS:
        levels.pop()
    iters = iters[:len(levels)]
    n_whole = len(levels)
    if box_shape is not None:
        n_whole = 1
        while n_whole < len(levels) and np.prod(np.ceil(np.array(shape) / levels[n_whole])) <= BOX_WHOLE_VOXELS:
            n_whole += 1
    return levels, iters, n_whole


def _run_levels(chans: list[tuple[str, np.ndarray, np.ndarray]], zooms: np.ndarray,
                w_axes: np.ndarray, step: Step, region: np.ndarray, levels: Sequence[np.ndarray],
                iters: Sequence[int], s: np.ndarray | None = None, prev: np.ndarray | None = None,
                init: np.ndarray | None = None, tol: float = IMAGE_TOL,
                dead_zone: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Demons levels ``levels`` (factors) on ``chans``: the displacement (voxel units of the last
    level) and that level's factors. Starts from ``s`` (on a level of factors ``prev``, same
    origin) or from the constant ``init`` (voxels). ``tol``: see :func:`_level` (image terms)."""
    image = any(name.startswith("im") for name, _, _ in chans)
    diff_mm = float(getattr(step, "smoothWarpXY", 2.0) or 2.0) * 0.5
    for fac, n_it in zip(levels, iters, strict=True):
        sub = tuple(slice(None, None, int(k)) for k in fac)
        lvl = []
        for name, fa, ma in chans:
            if np.any(fac > 1):
                fa = ndimage.gaussian_filter(fa, 0.5 * fac)[sub]
                ma = ndimage.gaussian_filter(ma, 0.5 * fac)[sub]
            lvl.append((name, fa, ma))
        if s is None:
            s = np.zeros(lvl[0][1].shape + (3,), np.float32)
            if init is not None:
                s += (np.asarray(init, np.float32) / fac).astype(np.float32)
        else:
            s = _upsample(s, lvl[0][1].shape, prev / fac)
        z = zooms * fac
        # images: ANTs-like normalised steps (one voxel of the level), fluid 2 voxels; segmentations:
        # demons steps of at most half a voxel, fluid 1 mm
        fluid = np.full(3, 2.0) if image else 1.0 / z
        s = _level(lvl, s, w_axes, n_it, fluid, diff_mm / z, region[sub], max_step=1.0 if image else 0.5,
                   tol=tol if image else 1e-4, image_region=region[sub] if image else None,
                   dead_zone=None if dead_zone is None else dead_zone[sub])
        prev = fac
    return s, prev


def _solve(chans: list[tuple[str, np.ndarray, np.ndarray]], zooms: np.ndarray, w_axes: np.ndarray,
           step: Step, region: np.ndarray, init: np.ndarray | None = None,
           keep_level: list | None = None, dead_zone: np.ndarray | None = None) -> np.ndarray:
    """Displacement (voxel units of the crop) from coarse to fine levels, from the constant
    ``init`` (voxels) when given. ``keep_level`` (a list): the displacement stays on the finest
    level worked on (voxel units of that level) and that level's factors are appended to it."""
    shape = chans[0][1].shape
    image = any(name.startswith("im") for name, _, _ in chans)
    levels, iters, _ = _plan(shape, zooms, step, image)
    s, prev = _run_levels(chans, zooms, w_axes, step, region, levels, iters, init=init, dead_zone=dead_zone)
    if keep_level is not None:
        keep_level.append(prev.astype(float))
        return s
    if np.any(prev > 1):
        s = _upsample(s, shape, prev.astype(float))
    return s


def _solve_log(chans: list[tuple[str, np.ndarray, np.ndarray]], zooms: np.ndarray,
               w_axes: np.ndarray, step: Step, region: np.ndarray, init: np.ndarray | None = None,
               box: tuple[np.ndarray, np.ndarray]
               | Callable[[], tuple[np.ndarray, np.ndarray] | None] | None = None,
               fine: list | None = None, dead_zone: np.ndarray | None = None) -> np.ndarray:
    """The stationary velocity (voxel units of the crop) of :func:`_solve`'s displacement: its
    logarithm taken on the finest level worked on, then interpolated onto the crop (the field
    is smooth at that level's scale; the fixed point costs a fraction of its cost on the crop).

    ``box`` (voxel box ``[lo, hi)`` of the crop, or a callable that returns it or None once the
    coarse levels are done): the coarse levels work on the whole crop, the
    finer ones in the box only, from the coarse field there; the box's velocity replaces the
    coarse one inside it, blended over ``BOX_BLEND_MM`` at its edges (a smooth velocity: its
    exponential is a diffeomorphism). ``fine`` (a list): with a box, the box's ``lo``, ``hi`` and the
    coarse level's factors are appended to it (beyond the box the velocity is that level's)."""
    shape = tuple(chans[0][1].shape)
    image = any(name.startswith("im") for name, _, _ in chans)
    early = None
    if callable(box):
        # the box is being found: the coarse levels (the same for any box that leaves finer
        # levels to work on) run meanwhile; used below only if the box's own plan has them
        lv, it, nw = _plan(shape, zooms, step, image, (1, 1, 1))
        early = (lv[:nw], it[:nw], _run_levels(chans, zooms, w_axes, step, region, lv[:nw], it[:nw],
                                                init=init, tol=BOX_TOL))
        box = box()
    if box is not None:
        lo, hi = (np.asarray(b, int) for b in box)
        levels, iters, n_whole = _plan(shape, zooms, step, image, tuple(hi - lo))
        if n_whole < len(levels):
            if (early is not None and len(early[0]) == n_whole and iters[:n_whole] == early[1]
                    and all(np.array_equal(a, b) for a, b in zip(levels[:n_whole], early[0], strict=True))):
                s_c, fac_c = early[2]
            else:
                s_c, fac_c = _run_levels(chans, zooms, w_axes, step, region, levels[:n_whole], iters[:n_whole],
                                         init=init, tol=BOX_TOL)
            v = log_displacement(s_c)
            v = _upsample(v, shape, fac_c.astype(float)) if np.any(fac_c > 1) else v
            bsl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
            bchans = [(name, fa[bsl], ma[bsl]) for name, fa, ma in chans]
            fac_b = levels[n_whole]
            bshape = tuple(int(np.ceil(n / k)) for n, k in zip(hi - lo, fac_b, strict=True))
            s_b = resample_level_field(s_c, fac_c, fac_b, bshape, lo)
            s_b, fac_b = _run_levels(bchans, zooms, w_axes, step, region[bsl], levels[n_whole:], iters[n_whole:],
                                     s=s_b, prev=fac_b, tol=BOX_TOL)
            v_b = log_displacement(s_b)
            v_b = _upsample(v_b, tuple(hi - lo), fac_b.astype(float)) if np.any(fac_b > 1) else v_b
            win = _box_window(tuple(hi - lo), zooms, lo, hi, np.array(shape), w_axes)
            v[bsl] += win[..., None] * (v_b - v[bsl])
            if fine is not None:
                fine.extend([tuple(int(a) for a in lo), tuple(int(b) for b in hi),
                             tuple(int(k) for k in fac_c)])
            return v
    fac = []
    s = _solve(chans, zooms, w_axes, step, region, init, keep_level=fac, dead_zone=dead_zone)
    v = log_displacement(s)
    return _upsample(v, shape, fac[0]) if fac and np.any(fac[0] > 1) else v


def _box_window(bshape: tuple[int, ...], zooms: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                shape: np.ndarray, w_axes: np.ndarray) -> np.ndarray:
    """1 inside the box, a cosine ramp over ``BOX_BLEND_MM`` to 0 at its faces that lie inside the
    crop (along the axes that deform; faces on the crop's edge keep 1)."""
    w = np.ones(bshape, np.float32)
    for ax in np.flatnonzero(w_axes > 0):
        n = bshape[ax]
        ramp = max(1.0, min(BOX_BLEND_MM / float(zooms[ax]), 0.25 * (n - 1)))
        idx = np.arange(n, dtype=float)
        a = np.clip(idx / ramp, 0, 1) if lo[ax] > 0 else np.ones(n)
        b = np.clip((n - 1 - idx) / ramp, 0, 1) if hi[ax] < shape[ax] else np.ones(n)
        prof = (0.5 - 0.5 * np.cos(np.pi * np.minimum(a, b))).astype(np.float32)
        w *= prof.reshape([-1 if k == ax else 1 for k in range(3)])
    return w


def _level(chans: list[tuple[str, np.ndarray, np.ndarray]], s: np.ndarray, w_axes: np.ndarray,
           iterations: int, sigma_fluid: np.ndarray, sigma_diff: np.ndarray, region: np.ndarray,
           max_step: float = 0.5, tol: float = 1e-4,
           image_region: np.ndarray | None = None, dead_zone: np.ndarray | None = None) -> np.ndarray:
    """Compositive demons iterations ``s <- G_diff * (u + s o (id + u))`` (Vercauteren et al. 2009)
    on one level; ``s`` in voxel units. Segmentations only: stops when the energy no longer
    falls. With an image term: each step is normalised to ``max_step`` voxel (99th percentile
    of the force in the region), shrunk when the energy rises; stops after 4 stalled steps.
    ``dead_zone`` (a mask, all True for everywhere; None: no dead zone): the segmentation force
    only in the mask and where the segmentations disagree at 0.5."""
    lncc = {name: _LNCC(fa) for name, fa, _ in chans if name == "im"}
    norm = {name: max(float(np.abs(fa).max()), float(np.abs(ma).max()), 1e-6) for name, fa, ma in chans}
    w = w_axes.astype(np.float32)
    image = image_region is not None
    step = max_step
    prev = np.inf
    stall = 0
    best = (np.inf, s)
    for _it in range(iterations):
        u = np.zeros_like(s)
        energy = 0.0
        for name, fa, ma in chans:
            mw = _warp(ma, s)
            if name == "im":
                g, cc = lncc[name].force(mw)
                energy += 1.0 - float(cc[region].mean())
                mag = np.sqrt(squared_norm(g))[region]
                p = float(np.percentile(mag, 99)) if mag.size else 0.0
                u += (step / p if p > 0 else 0.0) * g * image_region[..., None]
            else:
                diff = (fa - mw) / norm[name]
                grad = _grad(mw / norm[name])
                den = squared_norm(grad) + diff**2
                force = np.where(den[..., None] > 1e-9, diff[..., None] * grad / np.maximum(den, 1e-9)[..., None], 0.0)
                if dead_zone is not None:
                    # next to an image term, a segmentation resampled from thick slices constrains, it
                    # does not refine: its force acts only where the two disagree at 0.5 (where they
                    # agree, the force, as large at the true field as at the identity on t2s, held the
                    # image term off the truth: tests/test_register_thick_slice_segs.py)
                    act = (fa > 0.5) != (mw > 0.5)
                    force *= (act & dead_zone)[..., None]
                u += force
                energy += float((diff**2).mean())
        if _DEBUG:
            print(f"  level {s.shape[:3]} it {_it} energy {energy:.5f}")
        if image:
            if energy < best[0]:
                best = (energy, s)
            if energy > prev:
                step *= 0.7
            stall = stall + 1 if prev - energy < tol * prev else 0
            if stall >= 4:
                break
        u = _smooth(u * w, sigma_fluid) * w
        mag = float(np.sqrt(squared_norm(u)).max())
        if mag > max_step:
            u *= max_step / mag
        s = _smooth(compose_voxel(s, u.astype(np.float32)), sigma_diff) * w
        if not image and prev - energy < tol * prev:
            break
        prev = energy
    return best[1] if image and best[0] < np.inf else s


def log_displacement(d: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Stationary velocity whose exponential is the displacement ``d`` (voxel units): fixed
    point ``v <- v + (d - exp(v))`` from ``v = d`` (converges to a hundredth of a voxel in 3-4
    iterations for demons fields; where ``d`` itself would fold, ``exp(v)`` is the nearest
    diffeomorphism the iteration reaches)."""
    v = np.array(d, np.float32)
    for _ in range(iterations):
        e, _ = exp_velocity(v)
        v += d - e
    return v


def _upsample(v: np.ndarray, shape: tuple[int, ...], ratio: np.ndarray) -> np.ndarray:
    """Field in voxel units of a coarse grid -> the finer grid (same origin, ``ratio`` = coarse/fine)."""
    return resample_level_field(v, np.asarray(ratio, float), np.ones(3), shape, np.zeros(3))


__all__ = ["demons"]
