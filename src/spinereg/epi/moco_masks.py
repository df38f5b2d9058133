"""The ``-m`` mask of ``spinereg moco``: as weights on the series grid, and the warnings for a
mask that leaves slices out or is about the cord's own size."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.io.sanity import require_mask, values_of

log = logging.getLogger(__name__)

#: fewer mask voxels than this in a slice: the slice is not registered (see
#: :class:`spinereg.epi.moco_estimate._Reference`)
MIN_MASK_VOXELS = 8

#: a mask whose covered slices hold less than this (mm2, median) is about the cord's own section:
#: dmri with its cord mask (30-77 mm2) 86 % outlier volumes, verdict fail; disks of 96 / 177 / 282 /
#: 491 mm2 about the cord: warn (14 %) / pass / pass / pass (session 39, sct_testing_data dmri)
TIGHT_MASK_MM2 = 150.0
#: ... said only when the run then flags more outlier volumes than this (%, the verdict's warn bound
#: for pct_outlier_volumes): fmri with its own cord mask (87 mm2) passed with 0 % and tSNR 11.0 ->
#: 11.5, and was warned of all the same before session 40
TIGHT_MASK_OUTLIER_PCT = 5.0


def require_weights(mask: Image, option: str = "-m") -> None:
    """Refuse a ``-m`` that is not a mask or a weight map: its values are the registration's
    weights, so an anatomical image (t2.nii.gz, 0..1257) given there weighted every voxel by its
    intensity, exit 0, before this check. A map within 0..1 is taken as weights whatever its share
    of non-zero voxels (a Gaussian weight map, ``sct_create_mask -f gaussian``, is non-zero almost
    everywhere, which :func:`~spinereg.io.sanity.require_mask` reads as an intensity image); others
    must pass :func:`~spinereg.io.sanity.require_mask` (binary, e.g. 0/255, or soft 0..1)."""
    v = values_of(mask)
    if v.vmin >= 0 and v.vmax <= 1 + 1e-3:
        return
    require_mask(mask, "mask", option)


def _as_weights(mask: Image | str | Path | np.ndarray | None, grid: Grid) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, str | Path):
        mask = load_image(mask, ndim=3, what="mask")
    if isinstance(mask, Image):
        require_weights(mask)
        if not mask.grid.same_as(grid, atol=1e-3):
            from spinereg.transforms.apply import resample

            log.info("moco: mask resampled onto the series grid (linear)")
            mask = resample(mask, grid, "linear")
        data = np.asarray(mask.data, float)
    else:
        data = np.asarray(mask, float)
    if data.shape != tuple(grid.shape):
        raise InputError(f"mask shape {data.shape} does not match the series {grid.shape}", None,
                         "give a mask on the series grid")
    w = np.clip(data, 0.0, None)
    if w.max() <= 0:
        raise InputError("mask is empty (no positive voxel)", getattr(mask, "name", None),
                         "check that the right mask was given")
    return (w / w.max()).astype(np.float32)


def _mask_name(mask: Image | str | Path | np.ndarray) -> str:
    return mask.name if isinstance(mask, Image) else (str(mask) if isinstance(mask, str | Path) else "mask")


def _tight_mask(weights: np.ndarray, grid: Grid, name: str) -> list[str]:
    """The warning for a mask about the size of the cord itself (no CSF or edge around it for the
    slice-wise registration to hold on to)."""
    per_slice = (weights > 0).sum(axis=(0, 1))
    covered = per_slice[per_slice >= MIN_MASK_VOXELS]
    if not covered.size:
        return []
    area = float(np.median(covered)) * float(grid.zooms[0] * grid.zooms[1])
    if area >= TIGHT_MASK_MM2:
        return []
    return [f"{name}: the mask is about the cord's own size (median {area:.0f} mm2 per slice, under "
            f"{TIGHT_MASK_MM2:.0f}): inside it the slice-wise registration has little edge to hold on to and can "
            "run away (dmri with its cord mask: 86 % outlier volumes) -- fix: a mask that takes in the CSF around "
            "the cord, e.g. sct_create_mask -i SERIES_MEAN -p centerline,CORD_SEG -size 35mm"]


def _mask_coverage(weights: np.ndarray, mask: Image | str | Path | np.ndarray) -> list[str]:
    """The warning for a mask that leaves slices out (too few voxels there to register them:
    their motion is the z fit's through the others, e.g. a cord mask of another image that
    covers part of the series' slices); an InputError when it leaves every slice out (nothing
    would be registered: the output would be the input)."""
    name = _mask_name(mask)
    per_slice = (weights > 0).sum(axis=(0, 1))
    out = np.flatnonzero(per_slice < MIN_MASK_VOXELS)
    nz = weights.shape[2]
    fix = ("give a mask that covers every slice of the series, on its grid (e.g. a cylinder around the cord: "
           "sct_create_mask -i SERIES_MEAN -p centerline,CORD_SEG -size 35mm)")
    if out.size == nz:
        raise InputError(f"mask has fewer than {MIN_MASK_VOXELS} voxels in every slice of the series (at most "
                         f"{int(per_slice.max())}): no slice can be registered", name, fix)
    if not out.size:
        return []
    shown = ", ".join(str(int(k)) for k in out[:20]) + (", ..." if out.size > 20 else "")
    return [f"{name}: the mask covers {nz - out.size} of {nz} slices of the series; slice(s) {shown} have fewer "
            f"than {MIN_MASK_VOXELS} mask voxels: not registered, their motion is the fit along z through the "
            f"masked slices -- fix: {fix}"]

