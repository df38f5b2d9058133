"""Slice-wise motion correction of fMRI and DWI series (``spinereg moco``).

Model: each volume ``t`` is the reference moved in-plane, slice by slice: the corrected volume is
``V_t(p + s_t[k])`` for a reference point ``p`` of slice ``k`` (pull convention), with ``s_t[k]``
an in-plane translation. Slices excited together (one multiband group, or equal ``SliceTiming``)
share one estimate, so a multiband series has no even/odd zig-zag. Per volume (or per group of
``group`` consecutive b>0 volumes for DWI, estimated on their mean) the group translations are
found by weighted Gauss-Newton on the sum of squared differences to the reference after a linear
intensity fit per slice (cubic B-spline sampling, coarse-to-fine; in the first pass the whole
volume's phase-correlation shift is a second start when it lies over ``FAR_START_VOX`` from the
previous volume's estimate, the better fit kept), then regularised along z by a
smoothing spline (GCV) through the group estimates
(:func:`spinereg.register.slicewise.regularise_spline`), taken in acquisition order when
``SliceTiming`` is known (motion is smooth in time; an interleaved acquisition makes the true
motion zig-zag along z, which a fit in slice order would flatten) and in slice order otherwise. Slices flagged by the artifact scores
(:mod:`spinereg.epi.artifacts`) take no part in the estimate or the fit and receive the
regularised value; flagged volumes/slices are left out of the reference mean.

Reference: mean (or median) of the volumes (the first ``n_ref`` if given; when they lie several
voxels apart, taken after a whole-volume pre-alignment, :func:`~spinereg.epi.moco_estimate.prealign_shifts`), then ``iterations``
passes: register to the reference, recompute it from the corrected, unflagged volumes. DWI: b=0
and b>0 volumes have their own reference. With ``align_classes`` the b>0 reference is registered
onto the b=0 one and that translation is added to every b>0 volume (off by default: across the
b=0/b>0 contrast change the image-based estimate is unreliable without a tight cord mask; on
SCT's dmri it gave erratic per-slice shifts of up to 4.7 mm where the within-class motion is
below 0.1 voxel).

The result, :class:`MocoResult`, gives per-volume pull transforms on the series grid
(:meth:`MocoResult.volume_transforms`) for the 4D apply of a registration chain, a motion table,
and :func:`write_moco_outputs` writes the corrected series (streamed, one interpolation per
volume), mean images, tSNR maps, the motion table (CSV + JSON) and ``metrics.json``.

This module holds :func:`motion_correct` and re-exports the names of its parts:
:mod:`~spinereg.epi.moco_acquisition` (slice groups, sidecar, bvals/bvecs),
:mod:`~spinereg.epi.moco_result` (:class:`MocoResult`), :mod:`~spinereg.epi.moco_series`
(reading the series), :mod:`~spinereg.epi.moco_masks` (the mask and its warnings),
:mod:`~spinereg.epi.moco_estimate` (Gauss-Newton, regularisation) and
:mod:`~spinereg.epi.moco_outputs` (files and ``metrics.json``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from spinereg.epi.artifacts import (
    ArtifactScores,
    Thresholds,
    cord_means,
    dropout_scores,
    framewise_displacement,
    ghosting_scores,
    object_mask,
    robust_z,
)
from spinereg.epi.moco_acquisition import (
    _renumber,
    read_bvals,
    read_bvecs,
    read_sidecar,
    require_bvalues,
    slice_groups_from_multiband,
    slice_groups_from_timing,
)
from spinereg.epi.moco_estimate import (
    FAR_START_VOX,
    _cap_exclusions,
    _estimate,
    _Reference,
    _regularise,
    _shift_volume,
    coarse_shift,
    misfit,
    prealign_shifts,
)
from spinereg.epi.moco_masks import (
    MIN_MASK_VOXELS,
    TIGHT_MASK_MM2,
    TIGHT_MASK_OUTLIER_PCT,
    _as_weights,
    _mask_coverage,
    _mask_name,
    _tight_mask,
)
from spinereg.epi.moco_outputs import (
    METRICS_SCHEMA,
    cord_region,
    moco_metrics,
    output_names,
    series_stem,
    tsnr_in_mask,
    write_moco_outputs,
)
from spinereg.epi.moco_result import PARAMS_SCHEMA, MocoResult, load_volume_transforms
from spinereg.epi.moco_series import _as_image, _Series
from spinereg.errors import InputError
from spinereg.io.image import Image

log = logging.getLogger(__name__)

# the names of the parts are kept importable from here (the CLI, tests and benches import them so)
__all__ = [
    "B0_THRESHOLD",
    "METRICS_SCHEMA",
    "MIN_MASK_VOXELS",
    "PARAMS_SCHEMA",
    "TIGHT_MASK_MM2",
    "TIGHT_MASK_OUTLIER_PCT",
    "MocoResult",
    "cord_region",
    "load_volume_transforms",
    "moco_metrics",
    "motion_correct",
    "output_names",
    "read_bvals",
    "read_bvecs",
    "read_sidecar",
    "series_stem",
    "slice_groups_from_multiband",
    "slice_groups_from_timing",
    "tsnr_in_mask",
    "write_moco_outputs",
]

B0_THRESHOLD = 50.0


def motion_correct(
    series: Image | str | Path,
    mask: Image | str | Path | np.ndarray | None = None,
    multiband: int = 1,
    group: int = 1,
    *,
    bvals: np.ndarray | None = None,
    slice_timing: Sequence[float] | None = None,
    slice_groups: np.ndarray | None = None,
    reference: str = "mean",
    n_ref: int | None = None,
    iterations: int = 2,
    regularise: str = "spline",
    smooth: float = 0.0,
    pe_axis: int = 1,
    thresholds: Thresholds | None = None,
    exclude_flagged: bool = True,
    align_classes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MocoResult:
    """Estimate slice-wise in-plane motion of a 4D series (see the module docstring).

    Parameters
    ----------
    series: 4D image (slices along the third voxel axis, as acquired).
    mask: binary or soft weights on the series grid (resampled by header otherwise); also the
        cord region for the dropout score. None: the whole slice.
    multiband: slices ``k`` and ``k + nz/multiband`` share one estimate (ignored when
        ``slice_timing`` or ``slice_groups`` is given).
    group: DWI: number of consecutive b>0 volumes averaged for one estimate.
    bvals: per-volume b-values (b <= 50 is b=0); None: every volume is one class (fMRI).
    slice_timing: BIDS ``SliceTiming``; slices with equal times share one estimate.
    reference: ``mean`` or ``median`` of the (first ``n_ref``) volumes for the first pass.
    iterations: registration passes; each later pass uses the mean of the corrected volumes.
    regularise: ``spline`` (GCV smoothing spline along z), ``poly:N`` or ``none``.
    smooth: in-plane Gaussian sigma (voxels) of the finest level.
    pe_axis: phase-encode voxel axis (0 or 1) for the ghosting score.
    exclude_flagged: leave flagged volumes/slices out of the reference and the z fit.
    align_classes: DWI: also register the b>0 reference onto the b=0 reference.
    """
    t0 = time.perf_counter()
    img = _as_image(series)
    if img.ndim != 4 or img.nvols < 2:
        raise InputError(f"motion correction needs a 4D series with 2+ volumes (shape {img.shape})", img.name,
                         "give the fMRI/DWI series")
    grid = img.grid
    nz = grid.shape[2]
    nvol = img.nvols
    thresholds = thresholds or Thresholds()
    if reference not in ("mean", "median"):
        raise InputError(f"unknown reference {reference!r}", None, "use reference=mean or median")
    if not (regularise in ("spline", "none") or regularise.startswith("poly")):
        raise InputError(f"unknown regularisation {regularise!r}", None, "use spline, poly:N or none")
    if group < 1:
        raise InputError(f"group size must be >= 1 (got {group})", None, "give -g 1 or more")
    if slice_groups is not None:
        groups = _renumber(np.asarray(slice_groups, int))
        if groups.size != nz:
            raise InputError(f"{groups.size} slice groups for {nz} slices", None, "give one group per slice")
    elif slice_timing is not None:
        groups = slice_groups_from_timing(slice_timing, nz)
    else:
        groups = slice_groups_from_multiband(nz, multiband)
    n_groups = int(groups.max()) + 1
    order = None
    if slice_timing is not None and slice_groups is None:
        g_time = np.array([np.min(np.asarray(slice_timing, float)[groups == g]) for g in range(n_groups)])
        order = np.argsort(g_time, kind="stable")
    weights = _as_weights(mask, grid)
    data = _Series(img)
    missing, warnings = data.no_signal()
    tight: list[str] = []
    if weights is not None:
        warnings += _mask_coverage(weights, mask)
        tight = _tight_mask(weights, grid, _mask_name(mask))  # said only if the run went wrong (below)
    for w in warnings:
        log.info(w)  # the CLI prints result.warnings
    signal = np.flatnonzero(~missing)

    classes = np.zeros(nvol, int)
    if bvals is not None:
        b = np.asarray(bvals, float).ravel()
        if b.size != nvol:
            raise InputError(f"{b.size} b-values for {nvol} volumes", None, "give the matching bvals")
        require_bvalues(b)
        classes = (b > B0_THRESHOLD).astype(int)
    units = np.zeros(nvol, int)
    uid = 0
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        size = group if c == 1 else 1
        for n, t in enumerate(members):
            units[t] = uid + n // size
        uid += (len(members) + size - 1) // size

    # -- artifact scores of the raw series (motion-independent ones)
    mean0 = np.zeros(grid.shape)
    for t in signal:
        mean0 += data[t]
    mean0 /= signal.size
    from spinereg.io.structure import image_structure

    image_scores = image_structure(Image(mean0.astype(np.float32), grid.affine))
    cord = weights if weights is not None else ndimage.binary_erosion(
        object_mask(mean0), structure=np.ones((3, 3, 1), bool), iterations=2).astype(float)
    obj = object_mask(mean0)
    means = np.empty((nvol, nz))
    ghost = np.empty((nvol, nz))
    for t in range(nvol):
        v = data[t]
        means[t] = cord_means(v, cord)
        ghost[t] = ghosting_scores(v, pe_axis, obj)
    drop, static = dropout_scores(means, classes)
    scores = ArtifactScores(drop, static, ghost, np.zeros(nvol), np.zeros((nvol, nz)), thresholds)

    w_est = weights if weights is not None else np.ones(grid.shape, np.float32)
    shifts_within = np.zeros((nvol, nz, 2))
    raw = np.full((nvol, n_groups, 2), np.nan)
    excluded = np.zeros(nvol, bool)
    refs: dict[int, np.ndarray] = {}
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        members = members[~missing[members]] if (~missing[members]).any() else members
        pick = members[: n_ref] if n_ref else members
        stack = [data[t] for t in pick]
        first = np.median(stack, axis=0) if reference == "median" else np.mean(stack, axis=0)
        pre = prealign_shifts(stack, first)
        if pre is not None:
            stack = [_shift_volume(v, np.tile(d, (nz, 1))) for v, d in zip(stack, pre, strict=True)]
            first = np.median(stack, axis=0) if reference == "median" else np.mean(stack, axis=0)
        refs[int(c)] = first
        del stack

    levels = sorted({2.0, float(smooth)}, reverse=True)
    total = iterations * len(np.unique(units))
    done = 0
    for it in range(iterations):
        slice_ok = np.ones((nvol, nz))
        if exclude_flagged:
            slice_ok = (~scores.slice_flags & ~scores.static_flags[None, :]).astype(float)
        preps = {c: [_Reference(r.astype(np.float64), w_est, s) for s in levels] for c, r in refs.items()}
        prev: dict[int, np.ndarray] = {}
        for u in np.unique(units):
            members = np.flatnonzero(units == u)
            c = int(classes[members[0]])
            if missing[members].all():  # nothing to register: no estimate, no shift
                done += 1
                if progress:
                    progress(done, total)
                continue
            members = members[~missing[members]]
            vol = np.mean([data[t] for t in members], axis=0).astype(np.float64) if len(members) > 1 \
                else data[members[0]].astype(np.float64)
            sw = slice_ok[members].max(axis=0)
            if not (sw > 0).any():
                # every slice flagged (a far jump misfits near the field's edge): still moved by its
                # own estimate, and still left out of the reference. Left with no estimate it got
                # the shift 0: SCT's fmri mean with a (6, -5) voxel jump in one volume was estimated
                # right in the first pass, flagged, and ended 7.0 mm off (session 49)
                sw = np.ones_like(sw)
            start = np.nan_to_num(raw[members[0]]) if done >= len(np.unique(units)) else \
                prev.get(c, np.zeros((n_groups, 2)))
            starts = [start]
            if it == 0:  # a jump beyond the local search's reach: the whole volume's shift as a second start
                far = coarse_shift(vol, refs[c])
                if np.abs(far - start.mean(axis=0)).max() > FAR_START_VOX:
                    starts.append(np.tile(far, (n_groups, 1)))
            fits = []
            for est in starts:
                ok = np.zeros(n_groups, bool)
                for prep in (preps[c] if it == 0 else preps[c][-1:]):  # later passes start close
                    est, ok = _estimate(vol, prep, groups, n_groups, np.nan_to_num(est), sw)
                fits.append((misfit(vol, preps[c][-1], groups, est) if len(starts) > 1 else 0.0, est, ok))
            _, est, ok = min(fits, key=lambda f: f[0])
            prev[c] = np.nan_to_num(est)
            gvalid = ok & (np.bincount(groups, weights=sw, minlength=n_groups) > 0)
            reg = _regularise(np.where(gvalid[:, None], est, np.nan), gvalid, regularise, order)
            for t in members:
                raw[t] = np.where(gvalid[:, None], est, np.nan)
                shifts_within[t] = reg[groups]
            done += 1
            if progress:
                progress(done, total)
        # residuals, flags and the new references from the corrected volumes
        resid = np.zeros((nvol, nz))
        resid_own = np.zeros((nvol, nz))
        sums = {c: np.zeros(grid.shape) for c in refs}
        wsum = {c: np.zeros(nz) for c in refs}
        for t in range(nvol):
            c = int(classes[t])
            r = refs[c]
            den = ((r - (r * w_est).sum(axis=(0, 1)) / np.maximum(w_est.sum(axis=(0, 1)), 1e-12)) ** 2
                   * w_est).sum(axis=(0, 1))
            own = raw[t][groups]
            for out, sh in ((resid, shifts_within[t]), (resid_own, np.where(np.isfinite(own), own, shifts_within[t]))):
                corr = _shift_volume(data[t], sh)
                out[t] = ((corr - r) ** 2 * w_est).sum(axis=(0, 1)) / np.maximum(den, 1e-12)
        # a residual outlier (an artifact) misfits both at the regularised value and at the
        # slice's own estimate. Taken at the regularised value only, a slice that moved unlike its
        # neighbours (a regularisation error, no artifact) was flagged, left out of the next
        # pass's estimate and so kept the wrong regularised value: independent per-slice motion on
        # SCT's fmri mean (0.5 voxel SD per slice, 3 seeds) had 7 / 1 / 4 slices flagged and a max
        # error of 0.92 / 2.42 / 1.36 mm, now none and 0.92 / 1.13 / 0.97 mm
        # (tests/test_moco_known_motion.py)
        scores.residual_z = np.minimum(robust_z(resid, classes), robust_z(resid_own, classes))
        scores.fd_mm = framewise_displacement(
            shifts_within @ grid.affine[:3, :2].T)
        excluded = _cap_exclusions(scores.volume_flags & ~missing, scores.fd_mm) if exclude_flagged \
            else np.zeros(nvol, bool)
        excluded |= missing
        keep = (~scores.slice_flags).astype(float) if exclude_flagged else np.ones((nvol, nz))
        for t in range(nvol):
            c = int(classes[t])
            wt = keep[t] * (0.0 if excluded[t] else 1.0)
            if wt.any():
                sums[c] += _shift_volume(data[t], shifts_within[t]) * wt[None, None, :]
                wsum[c] += wt
        for c in refs:
            good = wsum[c] > 0
            refs[c][:, :, good] = sums[c][:, :, good] / wsum[c][good]

    # -- bring the b>0 reference onto the b=0 one
    offsets = {c: np.zeros((nz, 2)) for c in refs}
    if align_classes and 0 in refs and 1 in refs:
        prep = [_Reference(refs[0].astype(np.float64), w_est, s) for s in levels]
        est = np.zeros((n_groups, 2))
        ok = np.zeros(n_groups, bool)
        for p in prep:
            est, ok = _estimate(refs[1].astype(np.float64), p, groups, n_groups, np.nan_to_num(est), np.ones(nz))
        offsets[1] = _regularise(np.where(ok[:, None], est, np.nan), ok, regularise, order)[groups]
    shifts = shifts_within + np.stack([offsets[int(c)] for c in classes])
    pct_outliers = 100.0 * float((scores.volume_flags | missing).mean())
    if tight and pct_outliers > TIGHT_MASK_OUTLIER_PCT:
        tight = [f"{tight[0].split(': ', 1)[0]}: {pct_outliers:.0f} % outlier volumes; "
                 f"{tight[0].split(': ', 1)[1]}"]
        log.info(tight[0])
        warnings = [*warnings, *tight]
    info = {"seconds_estimate": round(time.perf_counter() - t0, 3), "iterations": iterations,
            "reference": reference, "n_ref": n_ref, "regularise": regularise, "multiband_groups": n_groups,
            "group": group, "regularisation_order": "slice timing" if order is not None else "z",
            "exclude_flagged": exclude_flagged, "align_classes": align_classes,
            "levels_sigma_vox": levels,
            "series": img.name}
    return MocoResult(grid=grid, shifts=shifts, raw_shifts=raw, slice_groups=groups, volume_units=units,
                      classes=classes, reference=refs[0] if 0 in refs else refs[int(classes[0])],
                      scores=scores, excluded=excluded, info=info, no_signal=missing, warnings=warnings,
                      image_scores=image_scores)

