"""Image similarity of a registration, measured from the images (not from inside the solver).

:func:`registration_similarity` compares a fixed image with a moving image brought onto the fixed
grid by a transform, over a region of the fixed image (e.g. the dilated cord) restricted to the
points that both images cover:

* ``after``: normalised mutual information ``NMI - 1`` (``NMI = (H(A) + H(B)) / H(A, B)``, 32
  bins between the 1st and 99th percentiles; 0 = independent, 1 = identical up to a monotone
  intensity map; contrast-independent, so T2 vs T2* works);
* ``before``: the same with the moving image placed by its header alone (identity);
* ``shift_gain``: ``after`` minus the best similarity of the moved image shifted by +-``shift_mm``
  along each voxel axis (at least one voxel): positive when the result sits on a similarity peak,
  about 0 for images without common structure, negative when a shifted placement fits better;
* ``si_peak``: the fraction of ``after`` lost when the moved image slides ``SI_SHIFT_MM`` up or down
  the fixed image's S-I voxel axis (the worse of the two); judged only when both images resolve
  S-I (spacing <= ``SI_MAX_SPACING_MM`` along their S-I axes) and ``after`` >= ``SI_MIN_AFTER``,
  else None. Vertebrae, discs and rootlets make right results peak along S-I (bench/qc_si_peak.py:
  0.34 / 0.40 on SCT's t1 <-> t2, 0.24-0.60 on 12 independent phantom pairs); a cord aligned with
  an image whose data runs the other way along S-I (a cord-driven registration gives it a good
  Dice all the same) peaks less: -0.04 / 0.06 on SCT's pairs, but 0.08-0.33 on the phantoms,
  whose curved cords lose similarity to any S-I slide;
* ``coverage``: the fraction of the region that both images cover.

:func:`image_structure` flags images that cannot support a registration: ``empty`` (no signal
or constant), and ``structure`` = the fraction of the image's variance that survives a Gaussian
smoothing of one voxel (real images keep most of it, white noise about 3%).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinereg.io.box import box_slices, mask_box
from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.io.structure import image_structure  # noqa: F401 (re-exported: the scores' home before)
from spinereg.metrics.overlap import si_axis
from spinereg.transforms.base import Transform

#: ``si_peak``'s slide (mm): about half a vertebra, where the vertebral pattern is out of phase
SI_SHIFT_MM = 6.0
#: ``si_peak`` needs both images' S-I spacing at most this (mm): thick axial slices blur the pattern
SI_MAX_SPACING_MM = 3.0
#: ``si_peak`` is a fraction of ``after``: not judged below this similarity (noise is 0.002-0.003)
SI_MIN_AFTER = 0.01


def nmi_score(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """``NMI - 1`` of two equally long samples (0 when either is constant or empty)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 50:
        return 0.0
    ia = _bins_of(a, bins)
    ib = _bins_of(b, bins) if ia is not None else None
    return 0.0 if ib is None else _nmi(ia, ib, bins)


class _FixedSample:
    """:func:`nmi_score` of one sample ``a`` against several others: ``a``'s binning done once
    (the same numbers; a sample with undefined values takes :func:`nmi_score` itself)."""

    def __init__(self, a: np.ndarray, bins: int = 32):
        self.a, self.bins = np.asarray(a, np.float64).ravel(), bins
        ok = self.a.size >= 50 and bool(np.isfinite(self.a).all())
        self.idx = _bins_of(self.a, bins) if ok else None
        self.constant = ok and self.idx is None

    def score(self, b: np.ndarray) -> float:
        b = np.asarray(b, np.float64).ravel()
        if (self.idx is None and not self.constant) or not np.isfinite(b).all():
            return nmi_score(self.a, b, self.bins)
        if self.constant:
            return 0.0
        ib = _bins_of(b, self.bins)
        return 0.0 if ib is None else _nmi(self.idx, ib, self.bins)


def _bins_of(v: np.ndarray, bins: int) -> np.ndarray | None:
    """Bin of each value: ``bins`` bins between the 1st and 99th percentiles (values beyond
    them in the outer bins); None for a sample without spread."""
    lo, hi = np.percentile(v, [1, 99])
    if not hi > lo:
        return None
    e = np.linspace(lo, hi, bins + 1)
    return _bin_index(np.clip(v, e[0], e[-1]), e)


def _nmi(ia: np.ndarray, ib: np.ndarray, bins: int) -> float:
    # the joint histogram (np.histogram2d's counts on these edges, by one bincount)
    h = np.bincount(ia * bins + ib, minlength=bins * bins).reshape(bins, bins).astype(np.float64)
    p = h / h.sum()

    def ent(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    hab = ent(p)
    return 0.0 if hab <= 0 else (ent(p.sum(1)) + ent(p.sum(0))) / hab - 1.0


def _bin_index(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value of ``v`` (within ``[edges[0], edges[-1]]``, uniform ``edges``) as
    ``np.histogram`` places it (right-open bins, the last one closed): arithmetic, then the
    values that rounding put one bin off moved by comparing with the edges themselves."""
    n = len(edges) - 1
    i = ((v - edges[0]) * (n / (edges[-1] - edges[0]))).astype(np.intp)
    np.clip(i, 0, n - 1, out=i)
    i[v < edges[i]] -= 1
    i[(v >= edges[i + 1]) & (i != n - 1)] += 1
    return i


@dataclass
class Similarity:
    before: float
    after: float
    shift_gain: float
    coverage: float
    n_voxels: int
    si_peak: float | None = None

    def as_dict(self) -> dict[str, float]:
        out = {"similarity_before": round(self.before, 4), "similarity_after": round(self.after, 4),
               "similarity_shift_gain": round(self.shift_gain, 4), "similarity_coverage": round(self.coverage, 4)}
        if self.si_peak is not None:
            out["similarity_si_peak"] = round(self.si_peak, 4)
        return out


def _moved_and_covered(moving: Image, grid: Grid, transforms: list[Transform]) -> tuple[np.ndarray, np.ndarray]:
    """``moving`` resampled (linear) onto ``grid`` through ``transforms``, and where it is covered
    (linear interpolation of ones > 0.99: the source point within half a voxel of ``moving``'s
    grid, where that interpolation is 1 and 0 beyond), from ONE evaluation of the transforms."""
    from spinereg.io.resample import VolumeSampler
    from spinereg.transforms.apply import CHUNK_POINTS, as_chain, source_voxels

    chain = as_chain(transforms)
    img_s = VolumeSampler(moving.data, "linear", 0.0)
    limit = np.array(moving.shape[:3]) - 0.5
    moved = np.empty(grid.shape, np.float32)
    covered = np.empty(grid.shape, bool)
    for k0, k1 in grid.chunks(CHUNK_POINTS):
        ijk = source_voxels(chain, grid, moving.grid, k0, k1)
        shape = (grid.shape[0], grid.shape[1], k1 - k0)
        moved[:, :, k0:k1] = img_s.at_voxels(ijk).reshape(shape)
        covered[:, :, k0:k1] = np.all((ijk >= -0.5) & (ijk <= limit), axis=1).reshape(shape)
    return moved, covered


def _region_box(region: np.ndarray, grid: Grid, margin: int) -> tuple[tuple[slice, ...], Grid]:
    """Slices of the bounding box of ``region`` plus ``margin`` voxels (clipped), and its grid."""
    lo, hi = mask_box(region, margin)
    return box_slices(lo, hi), grid.box(lo, hi)


def registration_similarity(fixed: Image, moving: Image, transform: Transform | None,
                            region: np.ndarray | None = None, shift_mm: float = 3.0,
                            si_peak: bool = True) -> Similarity:
    """Similarity of ``fixed`` and ``moving`` resampled onto ``fixed``'s grid through ``transform``
    (a pull: fixed points -> moving points), over ``region`` (boolean, fixed grid; default: the
    whole image) where both images are defined.

    ``si_peak=False``: ``Similarity.si_peak`` is not computed (None; two NMI evaluations and a
    larger resampled box saved) -- for callers whose verdict does not judge it (only the
    ``register`` kind has a ``similarity_si_peak`` threshold); the other figures are the same.

    Only the bounding box of ``region`` (plus the voxels the +-``shift_mm`` shifts read) is
    resampled: the figures are those of the whole grid, at a fraction of the cost."""
    fdata = np.asarray(fixed.data, np.float32)
    region = np.ones(fdata.shape, bool) if region is None else np.asarray(region, bool)
    steps = [max(1.0, shift_mm / float(z)) for z in fixed.grid.zooms]
    si = si_axis(fixed.grid.affine)
    judge_si = si_peak and max(float(fixed.grid.zooms[si]),
                               float(moving.grid.zooms[si_axis(moving.grid.affine)])) <= SI_MAX_SPACING_MM
    si_step = SI_SHIFT_MM / float(fixed.grid.zooms[si])
    grid = fixed.grid
    box = None
    if region.any():
        reach = max(max(steps), si_step if judge_si else 0.0)
        box, grid = _region_box(region, fixed.grid, int(np.ceil(reach)) + 2)
        fdata, region = fdata[box], region[box]
    tr = [] if transform is None else [transform]
    moved, covered = _moved_and_covered(moving, grid, tr)
    cov = region & covered
    enough = cov.sum() >= 50
    fixed_cov = _FixedSample(fdata[cov])  # the fixed sample of ``after`` and the shifted scores
    finite = bool(np.isfinite(moved).all())

    def shifted(axis: int, sign: float, step: float | None = None) -> float:
        if not enough:
            return 0.0
        step = steps[axis] if step is None else step
        if finite:
            return fixed_cov.score(_shift_along(moved, axis, sign * step)[cov])
        shift = np.zeros(3)
        shift[axis] = sign * step
        return fixed_cov.score(ndimage.shift(moved, shift, order=1, mode="nearest")[cov])

    # half the shifted scores in a second thread, beside the rest (numpy's array work releases
    # the GIL); the same numbers
    with ThreadPoolExecutor(1) as pool:
        jobs = [pool.submit(shifted, axis, -1.0) for axis in range(3)]
        after = fixed_cov.score(moved[cov]) if enough else 0.0
        if moving.grid.shape == fixed.grid.shape and np.array_equal(moving.grid.affine, fixed.grid.affine):
            # the same grid: the identity placement is the moving image itself (its linear
            # interpolation at its own voxel centres), every voxel covered
            placed = np.asarray(moving.data, np.float32)[box] if box is not None else np.asarray(moving.data,
                                                                                               np.float32)
            cov0 = region
        else:
            placed, covered0 = _moved_and_covered(moving, grid, [])
            cov0 = region & covered0
        before = nmi_score(fdata[cov0], placed[cov0]) if cov0.sum() >= 50 else 0.0
        best = max([shifted(axis, 1.0) for axis in range(3)] + [j.result() for j in jobs])
        peak = None
        if judge_si and enough and after >= SI_MIN_AFTER:
            si_job = pool.submit(shifted, si, -1.0, si_step)
            si_best = max(shifted(si, 1.0, si_step), si_job.result())
            peak = float((after - si_best) / after)
    return Similarity(float(before), float(after), float(after - best), float(cov.sum() / max(region.sum(), 1)),
                      int(cov.sum()), peak)


def _shift_along(a: np.ndarray, axis: int, shift: float) -> np.ndarray:
    """``ndimage.shift(a, shift along axis, order=1, mode="nearest")`` of a finite float32 array,
    by one linear interpolation along that axis (the other axes' weights are 1 and 0 there), several
    times faster: the same numbers bit for bit in 14,396 of 14,400 random cases (1-30 voxels a side,
    shifts 0.33-40 voxels), the other 4 one float32 ulp apart in one first-row voxel."""
    n = a.shape[axis]
    pos = np.clip(np.arange(n, dtype=np.float64) - shift, 0, n - 1)
    i0 = np.floor(pos).astype(np.intp)
    t = pos - i0
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * a.ndim
    shape[axis] = -1
    t = t.reshape(shape)
    out = np.take(a, i0, axis=axis).astype(np.float64)
    out *= 1.0 - t
    out += np.take(a, i1, axis=axis).astype(np.float64) * t
    return out.astype(a.dtype)
