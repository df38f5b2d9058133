"""Content checks that catch swapped or wrong inputs before any long work.

A cord segmentation is a mask: values 0/1 (or soft values in [0, 1], or one constant non-zero
value such as 255). An anatomical image is not: an "image" holding two values (or a handful of
integer values on almost all-zero voxels) is a mask or a label file given in its place. Values
are judged on at most ~2 million evenly spaced voxels, so the checks take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinereg.errors import InputError
from spinereg.io.image import Image


@dataclass
class Values:
    """What an image's voxel values look like (on a sample)."""

    n_distinct: int  # distinct values, counted up to 64
    vmin: float
    vmax: float
    frac_nonzero: float
    integer: bool

    def describe(self) -> str:
        kind = "integer" if self.integer else "real"
        many = "64+" if self.n_distinct >= 64 else str(self.n_distinct)
        return f"{many} distinct {kind} values in [{self.vmin:.4g}, {self.vmax:.4g}], {100 * self.frac_nonzero:.1f}% non-zero"


def values_of(img: Image, max_samples: int = 2_000_000) -> Values:
    """Summary of ``img``'s voxel values (3D, or the first volume of a series)."""
    data = np.asarray(img.data if img.ndim == 3 else img.volume(0))
    flat = data.reshape(-1)
    step = max(1, flat.size // max_samples)
    sample = flat[::step]
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if finite.size == 0:
        return Values(0, 0.0, 0.0, 0.0, True)
    distinct = np.unique(finite[: 1_000_000]) if finite.size > 1_000_000 else np.unique(finite)
    if distinct.size < 64 and finite.size > 1_000_000:  # the head may miss rare values
        distinct = np.unique(finite)
    integer = bool(np.all(np.round(distinct[:64]) == distinct[:64]))
    return Values(int(min(distinct.size, 64)), float(finite.min()), float(finite.max()),
                  float(np.count_nonzero(finite) / finite.size), integer)


def constant_value(data: np.ndarray) -> float | None:
    """The one value every finite voxel of ``data`` holds (NaN when none is finite), or None when
    the voxels vary (relative tolerance 1e-6): an empty or failed image."""
    a = np.asarray(data)
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a.ravel()
    if finite.size == 0:
        return float("nan")
    lo, hi = float(finite.min()), float(finite.max())
    return lo if hi - lo <= 1e-6 * max(abs(hi), abs(lo), 1e-12) else None


#: a labelled segmentation's levels each cover a stretch of cord (hundreds of voxels); a point-label
#: file (labels.nii.gz: one voxel per value) given as the segmentation is refused below this
MIN_VOXELS_PER_LEVEL = 30


def is_mask(v: Values) -> bool:
    """Binary (at most two values, e.g. 0/1 or 0/255) or soft in [0, 1] and mostly zero (an
    intensity image scaled to [0, 1] is non-zero almost everywhere)."""
    if v.n_distinct <= 2 and v.vmin >= 0:
        return True
    return v.vmin >= -1e-3 and v.vmax <= 1 + 1e-3 and v.frac_nonzero <= 0.5


def looks_like_mask(v: Values) -> bool:
    """A mask or label file: at most two values, or <= 8 integer values on >= 99% zeros."""
    if v.n_distinct <= 2:
        return True
    return v.integer and v.n_distinct <= 8 and v.frac_nonzero <= 0.01


def is_segmentation(v: Values) -> bool:
    """A mask (:func:`is_mask`) or a labelled segmentation: fewer than 64 non-negative integer
    values on at most half the voxels (SCT's ``*_seg_labeled``: levels as values)."""
    return is_mask(v) or (v.integer and v.vmin >= 0 and v.n_distinct < 64 and v.frac_nonzero <= 0.5)


def unit_mask(img: Image) -> Image:
    """``img`` with a binary mask's one non-zero value as 1 (masks stored 0/255 or 0/2, as some
    tools write them); other images unchanged. The registration reads a mask's values as partial
    volume: before session 36 t2's manual mask stored 0/255 gave register-to-template a cord Dice
    of 0.866 instead of 0.977, and ``register --dseg`` a failed verdict."""
    v = values_of(img)
    if v.n_distinct == 2 and v.vmin == 0 and v.vmax > 1:  # a value in (0, 1] is a partial volume
        data = np.asarray(img.data)
        return Image((data > 0).astype(np.uint8), img.affine, img.header, img.path)
    return img


#: a mask resampled with spline / sinc interpolation rings a little beyond 0..1 at its edges
#: (a binary disk shifted by a cubic B-spline: -0.27..1.36)
OVERSHOOT = 0.5


def overshoot(img: Image, v: Values) -> bool:
    """A soft mask that rings beyond 0..1 (by at most :data:`OVERSHOOT`), mostly near zero: one
    resampled with spline interpolation, refused as "an intensity image?" before session 40."""
    if v.integer or not (-OVERSHOOT <= v.vmin and v.vmax <= 1 + OVERSHOOT) or (v.vmin >= -1e-3 and v.vmax <= 1 + 1e-3):
        return False
    data = np.asarray(img.data if img.ndim == 3 else img.volume(0))
    return float(np.mean(np.abs(data) > 0.05)) <= 0.5


def _not_a_mask(img: Image, v: Values, what: str, option: str, fix: str) -> InputError:
    if overshoot(img, v):
        return InputError(f"the {what} ({option}) rings beyond 0..1: {v.describe()} (a mask resampled with "
                          "spline interpolation?)", img.name,
                          f"resample the {what} with -x linear (or nn), or clip it to 0..1")
    return InputError(f"the {what} ({option}) is not a mask: {v.describe()} (an intensity image?)", img.name, fix)


def require_segmentation(img: Image, what: str = "segmentation", option: str = "-s",
                         points_ok: bool = False) -> None:
    """Raise :class:`InputError` unless ``img`` is a mask or a labelled segmentation: an intensity
    image given in its place would be read as a cord filling the field of view. ``points_ok``:
    labelled regions may be a few voxels each (lesions numbered one by one), so a point-label
    file is not refused."""
    v = values_of(img)
    if not is_segmentation(v):
        fix = (f"give a binary or soft (0..1) {what} with {option}, or one labelled by region" if points_ok else
               f"give a binary or soft (0..1) cord {what} with {option}, or one labelled with levels")
        raise _not_a_mask(img, v, what, option, fix)
    if not is_mask(v) and not points_ok:  # labelled: each level covers a stretch of cord, not a point
        data = np.asarray(img.data if img.ndim == 3 else img.volume(0))
        nz = data[data > 0]
        per_value = nz.size / max(len(np.unique(nz)), 1)
        if per_value < MIN_VOXELS_PER_LEVEL:
            raise InputError(f"the {what} ({option}) looks like a point-label file, not a segmentation: "
                             f"{nz.size} labelled voxels for {len(np.unique(nz))} values", img.name,
                             f"give the cord {what} with {option} (point labels go with -l / -initlabel)")


#: the highest vertebral level number, S5 (``spinereg.vertebrae.names.MAX_LEVEL``; a test checks they
#: agree: io sits below vertebrae and may not import it)
MAX_LEVEL = 29


def require_levels_image(img: Image, what: str = "levels image", option: str = "--levels") -> None:
    """Raise :class:`InputError` unless ``img`` looks like vertebral levels: fewer than 64 integer
    values, all in 0..MAX_LEVEL (S5 = 29). An intensity image given in its place had its voxel
    values reported as levels (t2.nii.gz: "levels" 118, 157, 161 ... before session 37)."""
    v = values_of(img)
    fix = (f"give the vertebral levels with {option}: cord voxels valued by level, 1 (C1) to {MAX_LEVEL} "
           "(label-vertebrae's <img>_seg_labeled, or PAM50_levels warped with nearest-neighbour)")
    # real values on a levels-like range (levels resampled linearly, 0..30 on at most half the
    # voxels) or on a soft mask's: the same message; other real images fall to the next check
    if not v.integer and (is_mask(v) or (v.vmin >= 0 and v.vmax <= MAX_LEVEL + 1 and v.frac_nonzero <= 0.5)):
        raise InputError(f"the {what} ({option}) has non-integer values: {v.describe()} "
                         "(resampled with linear interpolation?)", img.name, fix)
    if not is_segmentation(v):
        raise InputError(f"the {what} ({option}) is not a labelled segmentation: {v.describe()} "
                         "(an intensity image?)", img.name, fix)
    if v.vmin < 0 or v.vmax > MAX_LEVEL:
        raise InputError(f"the {what} ({option}) holds values outside the vertebral levels 0..{MAX_LEVEL}: "
                         f"{v.describe()}", img.name, fix)
    if v.n_distinct <= 2 and v.vmax == 1:  # every cord slice would be "C1"
        raise InputError(f"the {what} ({option}) holds one value, 1 (C1): a binary mask, not levels",
                         img.name, fix)


def require_mask(img: Image, what: str = "segmentation", option: str = "-s") -> None:
    """Raise :class:`InputError` unless ``img`` looks like a mask (see module doc)."""
    v = values_of(img)
    if not is_mask(v):
        if overshoot(img, v):
            raise _not_a_mask(img, v, what, option, "")
        hint = " (a label file?)" if v.integer and v.n_distinct <= 64 and v.frac_nonzero < 0.2 else \
            " (an intensity image?)"
        raise InputError(f"the {what} ({option}) is not a mask: {v.describe()}{hint}", img.name,
                         f"give a binary or soft (0..1) cord {what} with {option}")


def require_not_mask(img: Image, what: str = "image", option: str = "-i") -> None:
    """Raise :class:`InputError` if ``img`` looks like a mask or a label file."""
    v = values_of(img)
    if looks_like_mask(v):
        raise InputError(f"the {what} ({option}) looks like a mask or label file, not an image: {v.describe()}",
                         img.name, f"give the anatomical image with {option}")


def check_image_and_seg(img: Image, seg: Image, image_option: str = "-i", seg_option: str = "-s",
                        what: str = "image") -> None:
    """The image is an image and the segmentation a mask; says "swapped" when both are wrong."""
    vi, vs = values_of(img), values_of(seg)
    if looks_like_mask(vi) and not is_mask(vs):
        raise InputError(f"{what} and segmentation look swapped: {image_option} holds {vi.describe()}, "
                         f"{seg_option} holds {vs.describe()}", img.name,
                         f"give the {what} with {image_option} and its cord segmentation with {seg_option}")
    require_mask(seg, "segmentation", seg_option)
    require_not_mask(img, what, image_option)


def require_bvalues(b: np.ndarray, path: str | Path | None = None) -> None:
    """Refuse b-values that no acquisition has: negative or not finite. A b-value is a diffusion
    weighting (s/mm2, 0 for a b=0 volume); ``0 750 -750 750 ...`` classed volume 2 as a b=0
    volume (-750 <= 50) and moco ran with it in the b=0 reference, exit 0, before this check.
    A ``nan`` (parsed as a number) was classed the same way."""
    b = np.asarray(b, float).ravel()
    bad = np.flatnonzero(~np.isfinite(b) | (b < 0))
    if not bad.size:
        return
    shown = ", ".join(f"volume {int(t)}: {b[t]:g}" for t in bad[:5]) + (", ..." if bad.size > 5 else "")
    raise InputError(f"{bad.size} b-value(s) negative or not a number ({shown})", path,
                     "b-values are diffusion weightings >= 0 s/mm2 (0 for the b=0 volumes): give the "
                     "bvals file that belongs to this series (FSL format, one value per volume)")
