"""Overlap of binary masks (Dice), plus the input helpers shared by the metrics.

Inputs are :class:`~spinereg.io.Image` objects, paths, or ``(array, affine)`` pairs. Masks are
``value > threshold``. Voxel-wise metrics need both masks on the same grid; a mismatch is an
:class:`~spinereg.errors.InputError` that names both files and says how to resample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinereg.cord.centerline import si_axis  # noqa: F401 (the slice axis of axial images, re-exported)
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image, reordered_onto
from spinereg.metrics.report import MetricResult

ImageLike = Image | str | Path | tuple[np.ndarray, np.ndarray]


def as_image(obj: ImageLike, what: str = "image") -> Image:
    """An :class:`Image` from an image, a path or an ``(array, affine)`` pair (3D only)."""
    if isinstance(obj, Image):
        img = obj
    elif isinstance(obj, str | Path):
        img = load_image(obj, ndim=3, what=what)
    elif isinstance(obj, tuple) and len(obj) == 2:
        img = Image(np.asarray(obj[0]), np.asarray(obj[1], dtype=float))
    else:
        raise TypeError(f"expected an Image, a path or (array, affine), got {type(obj).__name__}")
    if img.ndim != 3:
        raise InputError(f"{what} is {img.ndim}D {img.shape}, a 3D volume is needed", img.name,
                         "give one 3D volume")
    return img


def check_same_grid(a: Image, b: Image, interp: str = "nn") -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` share shape and affine."""
    if a.grid.same_as(b.grid):
        return
    diff = (f"shape {tuple(a.shape[:3])} vs {tuple(b.shape[:3])}" if a.shape[:3] != b.shape[:3]
            else f"affines differ by up to {np.abs(a.affine - b.affine).max():.3g} mm")
    raise InputError(
        f"{a.name} and {b.name} are not on the same grid ({diff})",
        b.name,
        f"resample one onto the other first: `spinereg apply -i {b.name} -d {a.name} -x {interp} "
        "-o resampled.nii.gz`",
    )


def same_grid_as(a: Image, b: Image, interp: str = "nn") -> Image:
    """``b`` on ``a``'s grid when it is that grid with its voxel axes reordered or flipped (the
    same voxel centres in world space: the same mask stored in another orientation); otherwise
    ``b`` if the grids are the same, else :func:`check_same_grid`'s error. Before session 37 the
    manual t2 cord stored RAS was refused against itself stored PSR ("not on the same grid").

    The reference comes first here (called ``on_grid_of`` before; renamed as
    :func:`spinereg.io.image.on_grid_of` / :func:`~spinereg.io.image.onto_grid_of` take the image
    to move first and the reference second, with :func:`~spinereg.io.image.require_same_grid`'s
    message)."""
    if a.grid.same_as(b.grid):
        return b
    r = reordered_onto(a.grid, b)
    if r is not None:
        return r
    check_same_grid(a, b, interp)
    return b


def binary_mask(img: Image, threshold: float = 0.5, what: str = "mask") -> np.ndarray:
    """``img > threshold`` as a boolean array; an empty mask is an :class:`InputError`."""
    data = np.asarray(img.data)
    if data.dtype == bool:
        mask = data.copy()
    else:
        mask = data > threshold
    if not mask.any():
        raise InputError(f"{what} is empty (no voxel > {threshold:g})", img.name,
                         "check that this is the right file, or lower --thr")
    return mask


def voxel_volume(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))


@dataclass
class DiceResult(MetricResult):
    """Dice = 2 |A and B| / (|A| + |B|), over the whole grid or (``zb``) common slices."""

    metric = "dice"
    dice: float
    mode: str
    threshold: float
    n_a: int
    n_b: int
    n_both: int
    volume_a_mm3: float
    volume_b_mm3: float
    n_slices: int
    a: str
    b: str


def dice(a: ImageLike, b: ImageLike, *, threshold: float = 0.5, zb: bool = False) -> DiceResult:
    """Dice coefficient of ``a > threshold`` and ``b > threshold`` (same grid required).

    ``zb=True`` counts only the slices (along the voxel axis closest to S-I) where both masks
    have voxels, as SCT's tests do ("zb"); otherwise the whole volume is used ("whole").
    ``n_slices`` is the number of slices counted (slices holding either mask for "whole").
    """
    ia, ib = as_image(a, "mask"), as_image(b, "mask")
    ib = same_grid_as(ia, ib)
    ma, mb = binary_mask(ia, threshold), binary_mask(ib, threshold)
    ax = si_axis(ia.affine)
    others = tuple(d for d in range(3) if d != ax)
    has_a, has_b = ma.any(axis=others), mb.any(axis=others)
    if zb:
        keep = has_a & has_b
        if not keep.any():
            raise InputError(
                f"{ia.name} and {ib.name} share no slice along S-I, so the zb Dice is undefined",
                ib.name, "check the inputs, or use the whole-volume Dice (no --zb)")
        ma = np.compress(keep, ma, axis=ax)
        mb = np.compress(keep, mb, axis=ax)
    else:
        keep = has_a | has_b
    na, nb = int(ma.sum()), int(mb.sum())
    nboth = int(np.count_nonzero(ma & mb))
    vox = voxel_volume(ia.affine)
    return DiceResult(
        dice=2.0 * nboth / (na + nb) if na + nb else float("nan"),
        mode="zb" if zb else "whole",
        threshold=float(threshold),
        n_a=na, n_b=nb, n_both=nboth,
        volume_a_mm3=na * vox, volume_b_mm3=nb * vox,
        n_slices=int(keep.sum()),
        a=ia.name, b=ib.name,
    )
