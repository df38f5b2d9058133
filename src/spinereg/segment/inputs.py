"""What the cord models are given: one 3D volume with a usable signal.

4D series (fMRI, DWI) are reduced to their mean, or to the mean of the diffusion-weighted
volumes (b > 50 s/mm2; the b = 0 mean when there are none) when b-values are given (``--bvals``,
or a BIDS ``<stem>.bval`` file beside the series). A series given without b-values whose volumes
differ in brightness like a diffusion series' b = 0 and weighted volumes is segmented on the mean
of all of them, with a note saying so. Empty and constant images, 2D and 5D files are refused with
a one-line error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinereg.errors import InputError
from spinereg.io.image import Image, load_image
from spinereg.io.sanity import constant_value, require_bvalues

#: b-value (s/mm2) above which a volume counts as diffusion-weighted
B_DWI = 50.0
#: a series given without b-values whose brightest volume (mean over the field) is this many times
#: its dimmest is taken for a mix of b = 0 and diffusion-weighted volumes: a note. sct_testing_data
#: dmri (one b = 0, six b = 750): 2.19; its dwi (the six alone) 1.05, fmri (30 volumes) 1.06.
MIXED_BRIGHTNESS = 1.5


def bids_bval(path: str | Path) -> Path | None:
    """The BIDS b-values file beside a series (``sub-01_dwi.nii.gz`` -> ``sub-01_dwi.bval``), if any."""
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            cand = p.with_name(name[: -len(ext)] + ".bval")
            return cand if cand.is_file() else None
    return None


def read_bvals(path: str | Path, nvols: int) -> np.ndarray:
    """b-values (one per volume) from an FSL-style text file."""
    p = Path(path)
    try:
        vals = np.loadtxt(p, dtype=float).ravel()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read b-values ({type(exc).__name__})", p,
                         "give a text file of numbers (FSL bvals: one row, one value per volume)") from exc
    if vals.size != nvols:
        raise InputError(f"{vals.size} b-values for {nvols} volumes", p,
                         "give the bvals file that belongs to this series")
    require_bvalues(vals, p)  # a negative b-value was read as a b=0 volume
    return vals


def _refuse_single_long_slice(img: Image) -> None:
    """A single slice that is not axial (one voxel across R-L or A-P) holds no cross-section of the
    cord to segment: refused naming that, where the model would find no cord and the error said
    'give an image that shows the spinal cord' of an image that shows it (t2's mid-sagittal slice)."""
    lin = np.asarray(img.affine, float)[:3, :3]
    for ax in range(3):
        if img.shape[ax] != 1:
            continue
        d = lin[:, ax] / max(float(np.linalg.norm(lin[:, ax])), 1e-12)
        if abs(d[2]) < np.cos(np.deg2rad(45.0)):  # its one voxel is not along S-I: not an axial slice
            kind = "sagittal" if abs(d[0]) >= abs(d[1]) else "coronal"
            raise InputError(f"image is a single {kind} slice (shape {tuple(img.shape)}): the cord is segmented "
                             "in axial cross-sections, which it does not hold", img.name,
                             "give the 3D volume (or axial slices)")


def load_volume(image: Image | str | Path, bvals: str | Path | np.ndarray | None = None,
                notes: list[str] | None = None) -> tuple[Image, str]:
    """A 3D image to segment and a sentence saying what it is (``"the image"``, ``"the mean of
    30 volumes"``, ``"the mean of 6 diffusion-weighted volumes (b > 50)"``). A 4D series read from
    a file without ``bvals`` takes the BIDS ``.bval`` beside it when there is one; ``notes``
    (when given) receives a warning for a series without b-values whose volumes look like a mix of
    b = 0 and diffusion-weighted ones (:data:`MIXED_BRIGHTNESS`)."""
    if bvals is None and isinstance(image, str | Path) and (side := bids_bval(image)) is not None:
        bvals = side
        found_beside = side.name
    else:
        found_beside = None
    if isinstance(image, str | Path):
        img = load_image(image, ndim=(3, 4), lazy=True)
    else:
        img = image
        if img.ndim not in (3, 4) and not (img.ndim > 4 and img.nvols == 1):
            raise InputError(f"image is {img.ndim}D {img.shape}, 3D or 4D needed", img.name,
                             "give a 3D image or a 4D series")
    if min(img.shape[:3]) < 1 or (img.shape[0] == 1 and img.shape[1] == 1):
        raise InputError(f"image has no slice to segment (shape {img.shape})", img.name, "give a 3D image")
    _refuse_single_long_slice(img)
    if img.ndim == 3 or img.nvols == 1:
        vol = np.asarray(img.data if img.ndim == 3 else img.volume(0), np.float32)
        what = "the image"
    else:
        n = img.nvols
        use = np.arange(n)
        what = f"the mean of its {n} volumes"
        if bvals is not None:
            b = np.asarray(bvals, float).ravel() if isinstance(bvals, np.ndarray) else read_bvals(bvals, n)
            if b.size != n:
                raise InputError(f"{b.size} b-values for {n} volumes", img.name, "give matching b-values")
            dwi = np.flatnonzero(b > B_DWI)
            if dwi.size:
                use, what = dwi, f"the mean of its {dwi.size} diffusion-weighted volumes (b > {B_DWI:g})"
            else:
                what = f"the mean of its {n} b=0 volumes"
            if found_beside:
                what += f" (b-values from {found_beside})"
        acc = np.zeros(img.shape[:3], np.float64)
        means = []
        for t in use:
            v = np.asarray(img.volume(int(t)), np.float64).reshape(img.shape[:3])
            acc += v
            means.append(float(np.nanmean(v)))
        vol = (acc / len(use)).astype(np.float32)
        if bvals is None and notes is not None and min(means) > 0 and max(means) / min(means) > MIXED_BRIGHTNESS:
            notes.append(
                f"the series' volumes differ in brightness up to {max(means) / min(means):.1f}x (a diffusion series' "
                f"b=0 and weighted volumes?): segmented on the mean of all {n}; give --bvals to segment the mean "
                "of the diffusion-weighted volumes (sct_testing_data dmri: 19 % more cord voxels on the mean of all)")
    if not np.any(vol):
        raise InputError("image is empty (every voxel is 0)", img.name, "give the image that shows the spinal cord")
    value = constant_value(vol)
    if value is not None:
        raise InputError(f"image is constant (every voxel = {value:g})", img.name,
                         "give the image that shows the spinal cord")
    out = Image(vol, img.affine, img.header, img.path)
    return out, what
