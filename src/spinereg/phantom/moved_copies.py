"""Copies of a real image with a manual landmark, moved by a known rigid motion and degraded.

``PAM50_small_t2`` (a real T2-weighted average of SCT's testing data, from the medulla oblongata and
pons down to the lumbar cord) is the one image at hand whose field shows the pontomedullary
junction, and SCT ships a manual PMJ label for it (``PAM50_small_t2_pmj_manual.nii.gz``, value 50).
:func:`moved_copy` resamples it, turned by a random rotation (flexion up to +-15 degrees, the other
two axes up to +-6) about a point 60 mm below the PMJ and shifted up to 3 mm, onto a new grid
around the PMJ (one of :data:`GRIDS`: isotropic 1 or 0.8 mm, 3 mm sagittal or 2 mm axial slices,
thick slices averaged over their thickness), with a multiplicative S-I intensity ramp and Rician
noise, stored in a permuted voxel order; the PMJ label moves with the same motion.

Only numpy and scipy make the copies (``scipy.ndimage.map_coordinates``): nothing of spinereg's
own resampling, segmentation or labeling, which the copies are used to score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinereg.io.image import Image

#: voxel sizes (x, y, z mm) of the copies' grids
GRIDS = {"iso1": (1.0, 1.0, 1.0), "iso08": (0.8, 0.8, 0.8), "sag3": (3.0, 0.6, 0.6), "ax2": (0.6, 0.6, 2.0)}
#: the copies' field around the PMJ (mm: right-left, posterior-anterior, inferior-superior)
FIELD_MM = ((-30.0, 30.0), (-45.0, 35.0), (-95.0, 35.0))


@dataclass
class MovedCopy:
    image: Image
    pmj: np.ndarray  #: world mm, the manual PMJ moved with the image
    discs: dict  #: {PAM50_small_label_disc value: world mm}, moved likewise
    grid: str
    angles_deg: tuple[float, float, float]  #: flexion (about L-R), about A-P, about S-I
    snr: float


def _rotation(flex: float, roll: float, yaw: float) -> np.ndarray:
    def rx(a: float) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(a: float) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rz(a: float) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    return rz(np.radians(yaw)) @ ry(np.radians(roll)) @ rx(np.radians(flex))


def source() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """PAM50_small_t2's data and affine, its manual PMJ (world mm) and its disc labels
    ({value: world mm}, ``PAM50_small_label_disc``), read with nibabel."""
    import nibabel as nib

    from spinereg.io.template import load_template

    t2 = load_template("PAM50_small").path("t2")
    img = nib.load(str(t2))
    lab = nib.load(str(t2.parent / "PAM50_small_t2_pmj_manual.nii.gz"))
    ijk = np.argwhere(np.asarray(lab.dataobj) > 0)[0]
    dl = nib.load(str(t2.parent / "PAM50_small_label_disc.nii.gz"))
    d = np.asarray(dl.dataobj).round().astype(int)
    discs = {int(v): (dl.affine @ np.r_[np.argwhere(d == v)[0], 1.0])[:3] for v in np.unique(d[d > 0])}
    return np.asarray(img.dataobj, float), img.affine, (lab.affine @ np.r_[ijk, 1.0])[:3], discs


def moved_copy(seed: int, grid: str | None = None) -> MovedCopy:
    """The copy of ``seed`` (its grid cycles through :data:`GRIDS` unless given)."""
    from scipy import ndimage

    data, affine, pmj, discs = source()
    rng = np.random.default_rng(seed)
    grid = grid or list(GRIDS)[seed % len(GRIDS)]
    flex, roll, yaw = rng.uniform(-15, 15), rng.uniform(-6, 6), rng.uniform(-6, 6)
    rot = _rotation(flex, roll, yaw)
    centre = pmj + np.array([0.0, 0.0, -60.0])
    shift = rng.uniform(-3, 3, 3)
    truth = rot @ (pmj - centre) + centre + shift
    moved = {v: rot @ (p - centre) + centre + shift for v, p in discs.items()}
    vox = np.array(GRIDS[grid])
    lo = truth + np.array([f[0] for f in FIELD_MM])
    shape = np.ceil((np.array([f[1] - f[0] for f in FIELD_MM])) / vox).astype(int)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk * vox + lo
    to_src = np.linalg.inv(affine)
    thick = int(np.argmax(vox)) if vox.max() > 1.5 else None
    offsets = np.linspace(-0.4, 0.4, 5) if thick is not None else np.zeros(1)
    out = np.zeros(len(world))
    for f in offsets:  # a thick slice averages the anatomy across its thickness
        d = np.zeros(3)
        if thick is not None:
            d[thick] = f * vox[thick]
        src = (world + d - centre - shift) @ rot + centre  # the motion's inverse
        idx = src @ to_src[:3, :3].T + to_src[:3, 3]
        out += ndimage.map_coordinates(data, idx.T, order=3, mode="constant", cval=0.0) / len(offsets)
    out = out.reshape(shape)
    ramp = np.exp(rng.uniform(-0.3, 0.3) * (np.arange(shape[2]) / shape[2] - 0.5))[None, None]
    snr = float(rng.uniform(15, 30))
    sd = np.percentile(data, 99) / snr
    out = np.abs(out * ramp + rng.normal(0, sd, shape) + 1j * rng.normal(0, sd, shape))
    perm = [1, 2, 0]  # stored as (A-P, S-I, R-L) voxel axes
    aff = np.eye(4)
    aff[:3, :3] = np.diag(vox)[:, perm]
    aff[:3, 3] = lo
    return MovedCopy(Image(np.transpose(out, perm).astype(np.float32), aff), truth, moved, grid,
                     (round(flex, 1), round(roll, 1), round(yaw, 1)), round(snr, 1))
