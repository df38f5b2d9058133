"""Slice-wise registration algorithms that need no ANTs: centermass, centermassrot, columnwise,
slicereg.

Every algorithm has the signature::

    fn(fixed, moving, fixed_grid, moving_grid, step, fixed_mask=None, *,
       fixed_seg=None, moving_seg=None) -> DisplacementField

Contract (the caller prepares the inputs):

* ``fixed`` and ``moving`` are 3D arrays **on the same grid**: the caller resamples the moving
  image (and segmentation) onto the fixed grid first (e.g. ``spinereg.transforms.resample``), so
  ``moving_grid`` must equal ``fixed_grid`` (it is checked; an :class:`InputError` says so).
* Slices are taken along the **last voxel axis**, which the caller makes the cord's
  superior-inferior axis (reorient to e.g. RPI/LAS-like axial first).
* ``step`` is a :class:`~spinereg.register.steps.Step`; for ``type=seg`` the arrays are
  segmentations, for ``type=imseg`` they are the images and the segmentations come as
  ``fixed_seg``/``moving_seg``; for ``type=im`` they are images.

The result is a pull :class:`DisplacementField` on the fixed grid: ``map(x)`` sends a fixed-space
point to the moving-space point whose value belongs at ``x``, so
``apply_transforms(moving_img, fixed_grid, field)`` brings the moving image onto the fixed one.
Displacements lie in the slice plane: their component along the slice (voxel k) axis is zero.

In-plane geometry (centres, angles) is computed in the slice's mm frame ``(i * dx, j * dy)``
(``dx, dy`` = in-plane voxel sizes); angles are counter-clockwise from +i towards +j in that
frame. Per-slice estimates are attached to the returned field as ``field.slice_params``
(:class:`SliceParams`) for reports and tests.

``ALGORITHMS`` maps algorithm names to functions; ANTs-based steps are added from their own
module with :func:`register_algorithm`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize
from scipy.interpolate import make_smoothing_spline

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.register.steps import Step
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.displacement import DisplacementField, VelocityField, taper_window

log = logging.getLogger(__name__)

__all__ = [
    "ALGORITHMS",
    "SliceParams",
    "centermass",
    "centermassrot",
    "columnwise",
    "field_from_params",
    "get_algorithm",
    "invert_params",
    "register_algorithm",
    "regularise_poly",
    "regularise_spline",
    "rigid_velocity",
    "slicereg",
]

AlgorithmFn = Callable[..., DisplacementField | AffineTransform]

#: Minimum segmentation area (voxels) for a slice to count as present.
MIN_AREA_VOX = 1.0
#: Minimum cross-section (mm2) of both segmentations for an orientation (rotation) estimate.
MIN_ROT_AREA_MM2 = 8.0
#: Largest PCA rotation trusted (radians): beyond it the principal axes may have swapped.
MAX_PCA_ANGLE = np.pi / 4


# -- per-slice parameters ---------------------------------------------------------------------
@dataclass
class SliceParams:
    """Per-slice in-plane rigid parameters (pull: fixed point -> moving point).

    ``shift`` (nz, 2) voxels along i, j: the moving slice's content sits at fixed position + shift
    (after regularisation). ``angle`` (nz,) radians in the slice mm frame, rotation about
    ``center`` (nz, 2, fixed voxel coordinates). ``raw_shift``/``raw_angle`` are the unregularised
    estimates (NaN where the slice had no estimate); ``valid`` marks slices with an estimate.
    """

    shift: np.ndarray
    angle: np.ndarray
    center: np.ndarray
    valid: np.ndarray
    raw_shift: np.ndarray
    raw_angle: np.ndarray

    def shift_mm(self, grid: Grid) -> np.ndarray:
        """Shift of each slice as a world (RAS+ mm) vector (nz, 3)."""
        a = grid.affine[:3, :2]
        return self.shift @ a.T


def invert_params(params: SliceParams) -> SliceParams:
    """Exact inverse of per-slice rigid parameters: angle -a about ``center + shift``, shift -shift."""
    return SliceParams(shift=-params.shift, angle=-params.angle, center=params.center + params.shift,
                       valid=params.valid, raw_shift=params.raw_shift, raw_angle=params.raw_angle)


def field_from_params(grid: Grid, params: SliceParams) -> DisplacementField:
    """The pull field of per-slice rigid parameters: ``p -> R(angle)(p - c) + c + shift``."""
    nx, ny, nz = grid.shape
    dx, dy = grid.zooms[:2]
    i = np.arange(nx, dtype=float)[:, None, None]
    j = np.arange(ny, dtype=float)[None, :, None]
    cx = params.center[:, 0][None, None, :] * dx
    cy = params.center[:, 1][None, None, :] * dy
    ca = np.cos(params.angle)[None, None, :]
    sa = np.sin(params.angle)[None, None, :]
    px, py = i * dx - cx, j * dy - cy
    disp_x = (ca * px - sa * py) - px + params.shift[:, 0][None, None, :] * dx
    disp_y = (sa * px + ca * py) - py + params.shift[:, 1][None, None, :] * dy
    return _field_from_inplane(grid, disp_x / dx, disp_y / dy)


def rigid_velocity(grid: Grid, params: SliceParams, keep: tuple[np.ndarray, np.ndarray] | None = None,
                   width_mm: float = 8.0) -> VelocityField:
    """The per-slice rigid maps as one diffeomorphism on ``grid``: the SE(2) logarithm of every
    slice's map (``v(p) = angle J p + u``, whose flow is the rigid map) as an in-plane velocity
    field, tapered to zero at the in-plane edges of the grid outside the voxel box ``keep``
    (where the maps stay exactly rigid), then exponentiated. Unlike :func:`field_from_params`
    it continues without a jump into the identity beyond the grid, so chains through it do not
    fold there, and its inverse is exact."""
    nx, ny, nz = grid.shape
    dx, dy = (float(v) for v in grid.zooms[:2])
    th = np.asarray(params.angle, float)
    u = se2_log_offset(th, params.center * [dx, dy], params.shift * [dx, dy])
    px = (np.arange(nx, dtype=float) * dx)[:, None, None]
    py = (np.arange(ny, dtype=float) * dy)[None, :, None]
    vx = -th[None, None, :] * py + u[:, 0][None, None, :]
    vy = th[None, None, :] * px + u[:, 1][None, None, :]
    if keep is not None:
        # the flow from a point of the box travels to its image: keep the whole path rigid
        lo, hi = (np.asarray(k, int) for k in keep)
        box = field_from_params(grid, params).data[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
        reach = np.abs(np.einsum("ij,...j->...i", np.linalg.inv(grid.affine[:3, :3]), box)).max(axis=(0, 1, 2))
        pad = np.ceil(reach).astype(int) + 1
        keep = (np.maximum(lo - pad, 0), np.minimum(hi + pad, np.array(grid.shape) - 1))
    w = taper_window(grid.shape, grid.zooms, (0, 1), width_mm, keep)
    v = np.zeros(tuple(grid.shape) + (3,), np.float32)
    v[..., 0] = vx / dx * w
    v[..., 1] = vy / dy * w
    return VelocityField.from_voxel_velocity(grid, v)


def se2_log_offset(theta: np.ndarray, center_mm: np.ndarray, shift_mm: np.ndarray) -> np.ndarray:
    """Per slice, the ``u`` (nz, 2) of the SE(2) logarithm ``v(q) = theta J q + u`` of the rigid
    map ``q -> R(theta)(q - c) + c + t`` (slice mm frame): its flow for unit time is that map."""
    cos, sin = np.cos(theta), np.sin(theta)
    c, t = center_mm, shift_mm
    rc = np.stack([cos * c[:, 0] - sin * c[:, 1], sin * c[:, 0] + cos * c[:, 1]], -1)
    b = c - rc + t
    small = np.abs(theta) < 1e-8
    safe = np.where(small, 1.0, theta)
    a_ = np.where(small, 1.0, sin / safe)  # V = [[a, -g], [g, a]]
    g_ = np.where(small, 0.0, (1 - cos) / safe)
    det = a_**2 + g_**2
    return np.stack([(a_ * b[:, 0] + g_ * b[:, 1]) / det, (-g_ * b[:, 0] + a_ * b[:, 1]) / det], -1)


def _field_from_inplane(grid: Grid, di: np.ndarray, dj: np.ndarray) -> DisplacementField:
    """World field from in-plane voxel displacements ``di``, ``dj`` (broadcastable to the grid)."""
    shape = tuple(grid.shape)
    di = np.broadcast_to(di, shape)
    dj = np.broadcast_to(dj, shape)
    a = grid.affine[:3, :3]
    data = di[..., None] * a[:, 0].astype(np.float32) + dj[..., None] * a[:, 1].astype(np.float32)
    return DisplacementField(grid, data.astype(np.float32))


# -- regularisation along z ---------------------------------------------------------------------
def regularise_poly(values: np.ndarray, valid: np.ndarray, degree: int) -> np.ndarray:
    """Least-squares polynomial of ``degree`` in the slice index through the valid slices.

    As ANTs' slice-regularised registration, the degree is capped at ``n_valid - 2`` (0 when
    fewer than 3 slices are valid). Slices beyond the first/last valid one get the boundary value
    (constant extrapolation). ``values`` is (nz,) or (nz, c); no valid slice gives zeros.
    """
    vals = np.asarray(values, dtype=float)
    flat = vals.reshape(len(vals), -1)
    idx = np.flatnonzero(valid)
    out = np.zeros_like(flat)
    if idx.size == 0:
        return out.reshape(vals.shape)
    deg = int(max(0, min(degree, idx.size - 2)))
    z = np.clip(np.arange(len(vals), dtype=float), idx[0], idx[-1])
    for c in range(flat.shape[1]):
        if idx.size == 1:
            out[:, c] = flat[idx[0], c]
            continue
        poly = np.polynomial.Polynomial.fit(idx.astype(float), flat[idx, c], deg)
        out[:, c] = poly(z)
    return out.reshape(vals.shape)


def regularise_spline(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Smoothing spline along z through the valid slices, smoothness chosen by generalised
    cross-validation (little smoothing for clean estimates, more for noisy ones).

    Missing interior slices are interpolated; outside the valid range the boundary value is kept.
    With fewer than 5 valid slices it falls back to :func:`regularise_poly` of degree 1.
    """
    vals = np.asarray(values, dtype=float)
    flat = vals.reshape(len(vals), -1)
    idx = np.flatnonzero(valid)
    if idx.size < 5:
        return regularise_poly(vals, valid, 1)
    z = np.clip(np.arange(len(vals), dtype=float), idx[0], idx[-1])
    out = np.empty_like(flat)
    for c in range(flat.shape[1]):
        y = flat[idx, c]
        if np.ptp(y) < 1e-9:
            out[:, c] = y[0]
            continue
        try:
            out[:, c] = make_smoothing_spline(idx.astype(float), y)(z)
        except (ValueError, np.linalg.LinAlgError):  # degenerate GCV: fall back to a polynomial
            out[:, c] = regularise_poly(flat[:, c], valid, 3)
    return out.reshape(vals.shape)


# -- helpers ---------------------------------------------------------------------------------
def _check_inputs(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid,
                  fixed_mask: np.ndarray | None = None) -> None:
    if fixed.ndim != 3 or tuple(fixed.shape) != tuple(fixed_grid.shape):
        raise InputError(f"fixed array shape {fixed.shape} does not match its grid {fixed_grid.shape}",
                         None, "give a 3D array on the fixed grid")
    if not moving_grid.same_as(fixed_grid, atol=1e-3) or moving.shape != fixed.shape:
        raise InputError(
            "slice-wise registration needs the moving image on the fixed grid "
            f"(moving {moving_grid!r}, fixed {fixed_grid!r})",
            None,
            "resample the moving image onto the fixed grid first (spinereg.transforms.resample)",
        )
    if fixed_mask is not None and np.shape(fixed_mask) != fixed.shape:
        raise InputError(f"mask shape {np.shape(fixed_mask)} does not match the fixed image {fixed.shape}",
                         None, "resample the mask onto the fixed grid")
    if fixed.shape[2] < 1:
        raise InputError("image has no slices", None, "give a 3D image")


def _segs(fixed: np.ndarray, moving: np.ndarray, step: Step, fixed_seg: np.ndarray | None,
          moving_seg: np.ndarray | None, algo: str) -> tuple[np.ndarray, np.ndarray]:
    if step.type == "imseg" or fixed_seg is not None or moving_seg is not None:
        if fixed_seg is None or moving_seg is None:
            raise InputError(f"algo={algo} with type={step.type} needs both segmentations", None,
                             "give the fixed and moving cord segmentations (-iseg/-dseg)")
        if np.shape(fixed_seg) != fixed.shape or np.shape(moving_seg) != fixed.shape:
            raise InputError("segmentations are not on the fixed grid", None,
                             "resample the segmentations onto the fixed grid first")
        return np.asarray(fixed_seg, float), np.asarray(moving_seg, float)
    if step.type not in ("seg", "imseg"):
        raise InputError(f"algo={algo} works on segmentations, not type={step.type}", None,
                         f"use type=seg (or type=imseg) with algo={algo}, or algo=slicereg for images")
    return np.asarray(fixed, float), np.asarray(moving, float)


@dataclass
class _Moments:
    area: np.ndarray  # (nz,) voxels
    center: np.ndarray  # (nz, 2) voxels
    angle: np.ndarray  # (nz,) principal axis (mm frame), radians in (-pi/2, pi/2]
    ratio: np.ndarray  # (nz,) eigenvalue ratio (>= 1)


def _moments(seg: np.ndarray, zooms: np.ndarray) -> _Moments:
    """Per-slice area, centre of mass and principal axis of a (soft) segmentation, vectorised."""
    w = np.clip(seg, 0.0, 1.0)
    nx, ny, _ = w.shape
    i = np.arange(nx, dtype=float)[:, None, None]
    j = np.arange(ny, dtype=float)[None, :, None]
    area = w.sum(axis=(0, 1))
    safe = np.where(area > 0, area, 1.0)
    ci = (w * i).sum(axis=(0, 1)) / safe
    cj = (w * j).sum(axis=(0, 1)) / safe
    dx, dy = float(zooms[0]), float(zooms[1])
    xi = (i - ci[None, None, :]) * dx
    yj = (j - cj[None, None, :]) * dy
    cxx = (w * xi * xi).sum(axis=(0, 1)) / safe
    cyy = (w * yj * yj).sum(axis=(0, 1)) / safe
    cxy = (w * xi * yj).sum(axis=(0, 1)) / safe
    angle = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    half = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    lmax = (cxx + cyy) / 2 + half
    lmin = (cxx + cyy) / 2 - half
    ratio = np.where(lmin > 1e-12, lmax / np.maximum(lmin, 1e-12), np.inf)
    ratio = np.where(area > 0, ratio, 1.0)
    return _Moments(area, np.stack([ci, cj], axis=1), angle, ratio)


def _wrap(angle: np.ndarray, period: float) -> np.ndarray:
    """Wrap to (-period/2, period/2]."""
    return -((-np.asarray(angle) + period / 2) % period - period / 2)


def _interp_missing(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over missing slices, constant beyond the ends (zeros if none valid)."""
    vals = np.asarray(values, dtype=float).reshape(len(values), -1)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return np.zeros_like(values, dtype=float)
    z = np.arange(len(vals), dtype=float)
    out = np.stack([np.interp(z, idx, vals[idx, c]) for c in range(vals.shape[1])], axis=1)
    return out.reshape(np.shape(values))


def _attach(field: DisplacementField, params: SliceParams | None) -> DisplacementField:
    field.slice_params = params  # type: ignore[attr-defined]
    return field


# -- centermass / centermassrot --------------------------------------------------------------------
def _centermass_params(fseg: np.ndarray, mseg: np.ndarray, grid: Grid) -> tuple[SliceParams, _Moments, _Moments]:
    zooms = grid.zooms
    mf, mm = _moments(fseg, zooms), _moments(mseg, zooms)
    valid = (mf.area >= MIN_AREA_VOX) & (mm.area >= MIN_AREA_VOX)
    if not valid.any():
        raise InputError("no slice holds both the fixed and the moving segmentation", None,
                         "check that the segmentations overlap in z (after the previous steps)")
    raw = np.where(valid[:, None], mm.center - mf.center, np.nan)
    shift = regularise_spline(np.nan_to_num(raw), valid)
    center = _interp_missing(mf.center, mf.area >= MIN_AREA_VOX)
    nz = len(valid)
    params = SliceParams(shift=shift, angle=np.zeros(nz), center=center, valid=valid,
                         raw_shift=raw, raw_angle=np.full(nz, np.nan))
    return params, mf, mm


def centermass(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid, step: Step,
               fixed_mask: np.ndarray | None = None, *, fixed_seg: np.ndarray | None = None,
               moving_seg: np.ndarray | None = None) -> DisplacementField:
    """Slice-wise translation aligning the centres of mass of the two segmentations.

    The per-slice translations (moving centre - fixed centre) are regularised along z by a
    smoothing spline (GCV); slices where either segmentation is absent take interpolated values,
    constant beyond the covered range. ``fixed_mask`` is not used.
    """
    _check_inputs(fixed, moving, fixed_grid, moving_grid, fixed_mask)
    fseg, mseg = _segs(fixed, moving, step, fixed_seg, moving_seg, "centermass")
    params, _, _ = _centermass_params(fseg, mseg, fixed_grid)
    return _attach(field_from_params(fixed_grid, params), params)


def centermassrot(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid, step: Step,
                  fixed_mask: np.ndarray | None = None, *, fixed_seg: np.ndarray | None = None,
                  moving_seg: np.ndarray | None = None) -> DisplacementField:
    """Slice-wise centre-of-mass translation plus in-plane rotation about the slice's centre.

    ``rot_method``:

    * ``pca``: angle between the principal axes of the two segmentations, trusted only where both
      eigenvalue ratios exceed ``pca_eigenratio_th`` (rounder sections carry no orientation);
    * ``hog``: angle between the symmetry axes found from histograms of image-gradient
      orientations around the cord (see :func:`hog_symmetry_profile`); limited to +-45 degrees;
    * ``pcahog``: PCA where trusted, HOG elsewhere.

    Untrusted slices are treated as missing and filled from their neighbours (SCT sets them to 0,
    which makes the angle jump where the cord turns round); angles and translations are then
    smoothed along z with a smoothing spline. For ``type=imseg`` HOG uses the images and PCA /
    centres the segmentations; for ``type=seg`` both use the segmentations.
    """
    _check_inputs(fixed, moving, fixed_grid, moving_grid, fixed_mask)
    fseg, mseg = _segs(fixed, moving, step, fixed_seg, moving_seg, "centermassrot")
    params, mf, mm = _centermass_params(fseg, mseg, fixed_grid)
    valid = params.valid
    th = step.pca_eigenratio_th
    raw = np.full(len(valid), np.nan)
    vox_mm2 = float(np.prod(fixed_grid.zooms[:2]))
    big = (mf.area * vox_mm2 >= MIN_ROT_AREA_MM2) & (mm.area * vox_mm2 >= MIN_ROT_AREA_MM2)
    pca_ok = valid & big & (mf.ratio > th) & (mm.ratio > th)
    if step.rot_method in ("pca", "pcahog"):
        pca = _wrap(mm.angle - mf.angle, np.pi)
        # beyond 45 degrees the two principal axes may have swapped (an ellipse turned by
        # 90 degrees is itself): no orientation information (e.g. the conus, where the section
        # shrinks and rounds)
        pca_ok &= np.abs(pca) <= MAX_PCA_ANGLE
        raw[pca_ok] = pca[pca_ok]
    if step.rot_method in ("hog", "pcahog"):
        need = valid & (~pca_ok if step.rot_method == "pcahog" else True)
        fimg = np.asarray(fixed, float) if step.type == "imseg" else fseg
        mimg = np.asarray(moving, float) if step.type == "imseg" else mseg
        zooms = fixed_grid.zooms
        for k in np.flatnonzero(need):
            pf = hog_symmetry_profile(fimg[:, :, k], mf.center[k], mf.area[k], zooms, step.smooth)
            pm = hog_symmetry_profile(mimg[:, :, k], mm.center[k], mm.area[k], zooms, step.smooth)
            if pf is not None and pm is not None:
                raw[k] = _profile_shift(pf, pm)
    ok = np.isfinite(raw)
    angle = regularise_spline(np.nan_to_num(raw), ok) if ok.any() else np.zeros(len(raw))
    log.debug("centermassrot: %d/%d slices with an angle estimate", ok.sum(), len(raw))
    params.angle = angle
    params.raw_angle = raw
    return _attach(field_from_params(fixed_grid, params), params)


HOG_BINS = 360


def hog_symmetry_profile(image: np.ndarray, center: np.ndarray, area: float, zooms: np.ndarray,
                         smooth_mm: float = 0.0) -> np.ndarray | None:
    """Symmetry score of a slice around ``center``: ``HOG_BINS`` values indexed by
    ``s = 2 * axis angle`` over [0, 2 pi), i.e. every candidate axis angle in [0, pi).

    Gradient orientations (mm frame) are histogrammed over [0, 2 pi), weighted by gradient
    magnitude times a Gaussian window around the cord centre (sigma 2.5 cord radii, >= 3 mm).
    An image mirror-symmetric about the axis at angle b has ``H(phi) = H(2 b - phi)``, so the
    score of axis ``b`` is the circular self-convolution ``sum_phi H(phi) H(2 b - phi)``.
    Returns None for a flat slice.
    """
    img = np.asarray(image, dtype=float)
    dx, dy = float(zooms[0]), float(zooms[1])
    if smooth_mm > 0:
        img = ndimage.gaussian_filter(img, (smooth_mm / dx, smooth_mm / dy))
    # Gaussian derivatives (sigma 1 voxel): far less orientation bias than Sobel on a pixel grid
    gx = ndimage.gaussian_filter(img, 1.0, order=(1, 0)) / dx
    gy = ndimage.gaussian_filter(img, 1.0, order=(0, 1)) / dy
    mag = np.hypot(gx, gy)
    radius = np.sqrt(max(area, 1.0) * dx * dy / np.pi)
    sigma = max(2.5 * radius, 3.0)
    i = (np.arange(img.shape[0]) - center[0])[:, None] * dx
    j = (np.arange(img.shape[1]) - center[1])[None, :] * dy
    weight = mag * np.exp(-(i**2 + j**2) / (2 * sigma**2))
    if weight.sum() <= 1e-12:
        return None
    phi = np.arctan2(gy, gx) % (2 * np.pi)
    hist, _ = np.histogram(phi, bins=HOG_BINS, range=(0, 2 * np.pi), weights=weight)
    hist = ndimage.gaussian_filter1d(hist, 2.0, mode="wrap")
    # score(s) = sum_b H(b) H(s - b), s = 2 * axis angle; s in [0, 2 pi) <-> axis in [0, pi)
    score = np.real(np.fft.ifft(np.fft.fft(hist) ** 2))
    return score


def _profile_shift(pf: np.ndarray, pm: np.ndarray) -> float:
    """Rotation (radians, in (-pi/4, pi/4]) that best maps the fixed symmetry profile onto the
    moving one. Profiles are indexed by s = 2 * axis angle, so a rotation a shifts them by 2 a."""
    n = len(pf)
    a = pf - pf.mean()
    b = pm - pm.mean()
    xc = np.real(np.fft.ifft(np.conj(np.fft.fft(a)) * np.fft.fft(b)))  # xc[s] = sum a[t] b[t+s]
    # restrict to |rotation| <= 45 deg, i.e. |s| <= n/4 bins (a cord's section is near-symmetric
    # about two axes, which makes larger rotations ambiguous)
    lags = np.arange(n)
    lags = np.where(lags > n // 2, lags - n, lags)
    xc = np.where(np.abs(lags) <= n // 4, xc, -np.inf)
    k = int(np.argmax(xc))
    y0, y1, y2 = xc[(k - 1) % n], xc[k], xc[(k + 1) % n]
    frac = 0.0
    if np.isfinite(y0) and np.isfinite(y2) and (y0 - 2 * y1 + y2) < 0:
        frac = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    s = (lags[k] + frac) * (2 * np.pi / n)
    return float(s / 2)


# -- columnwise --------------------------------------------------------------------------------
def _extent_map(fmask: np.ndarray, mmask: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-linear pull displacement along ``axis`` of a 2D slice, matching, line by line,
    the extent of the fixed mask to that of the moving mask. Returns (displacement, line valid)."""
    f = np.moveaxis(fmask, axis, 0)
    m = np.moveaxis(mmask, axis, 0)
    n = f.shape[0]
    pos = np.arange(n, dtype=float)[:, None]
    lo_edge, hi_edge = -0.5, n - 0.5

    def extent(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        has = a.any(axis=0)
        first = np.argmax(a, axis=0) - 0.5
        last = n - 1 - np.argmax(a[::-1], axis=0) + 0.5
        return has, first, last

    fh, fa, fb = extent(f)
    mh, ma, mb = extent(m)
    ok = fh & mh
    fa_, fb_, ma_, mb_ = (np.where(ok, v, 0.0)[None, :] for v in (fa, fb, ma, mb))
    fb_ = np.where(fb_ > fa_, fb_, fa_ + 1)
    # three linear pieces: [lo, fa] -> [lo, ma], [fa, fb] -> [ma, mb], [fb, hi] -> [mb, hi]
    below = lo_edge + (pos - lo_edge) * (ma_ - lo_edge) / np.maximum(fa_ - lo_edge, 1e-6)
    inside = ma_ + (pos - fa_) * (mb_ - ma_) / (fb_ - fa_)
    above = mb_ + (pos - fb_) * (hi_edge - mb_) / np.maximum(hi_edge - fb_, 1e-6)
    target = np.where(pos < fa_, below, np.where(pos > fb_, above, inside))
    disp = np.where(ok[None, :], target - pos, 0.0)
    return np.moveaxis(disp, 0, axis), ok


def _smooth_lines(disp: np.ndarray, ok: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    """Normalised Gaussian smoothing of a line-wise displacement (lines without data get their
    neighbours' values)."""
    w = np.broadcast_to(np.expand_dims(ok, axis).astype(float), disp.shape)
    if sigma <= 0:
        return disp
    num = ndimage.gaussian_filter(disp * w, sigma, mode="nearest")
    den = ndimage.gaussian_filter(w, sigma, mode="nearest")
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)


def columnwise(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid, step: Step,
               fixed_mask: np.ndarray | None = None, *, fixed_seg: np.ndarray | None = None,
               moving_seg: np.ndarray | None = None) -> DisplacementField:
    """Slice-wise non-linear in-plane warp matching the shape of the moving segmentation to the
    fixed one (SCT's ``columnwise``).

    Per slice: first each row (line along i) of the fixed mask is mapped piecewise-linearly onto
    the extent of the same row of the moving mask (edges of the image stay put); then, on the
    row-corrected moving mask, each column (line along j) likewise. The two 1D maps are smoothed
    in-plane (Gaussian, ``smoothWarpXY`` voxels) and composed. Masks are thresholded at 0.5.
    """
    _check_inputs(fixed, moving, fixed_grid, moving_grid, fixed_mask)
    fseg, mseg = _segs(fixed, moving, step, fixed_seg, moving_seg, "columnwise")
    nx, ny, nz = fixed_grid.shape
    di = np.zeros((nx, ny, nz))
    dj = np.zeros((nx, ny, nz))
    ii, jj = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    sigma = float(step.smoothWarpXY)
    for k in range(nz):
        f = fseg[:, :, k] > 0.5
        m = mseg[:, :, k] > 0.5
        if not f.any() or not m.any():
            continue
        d1, ok1 = _extent_map(f, m, axis=0)  # along i, per row j
        d1 = _smooth_lines(d1, ok1, 0, sigma)
        m1 = ndimage.map_coordinates(m.astype(float), [ii + d1, jj], order=1, mode="nearest") > 0.5
        d2, ok2 = _extent_map(f, m1, axis=1)  # along j, per column i
        d2 = _smooth_lines(d2, ok2, 1, sigma)
        # total pull: p -> phi1(phi2(p)), phi2 moves along j, phi1 along i
        jj2 = jj + d2
        d1_at = ndimage.map_coordinates(d1, [ii, jj2], order=1, mode="nearest")
        di[:, :, k] = d1_at
        dj[:, :, k] = d2
    return _attach(_field_from_inplane(fixed_grid, di, dj), None)


# -- slicereg ----------------------------------------------------------------------------------
def _rescale(a: np.ndarray, sel: np.ndarray) -> np.ndarray:
    vals = a[sel] if sel.any() else a.ravel()
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return (a - lo) / (hi - lo) if hi > lo else a - lo


def _phase_correlation(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Shift d (voxels) with m(p + d) ~ f(p), from the peak of the phase correlation."""
    win = np.outer(np.hanning(f.shape[0]), np.hanning(f.shape[1]))
    ff = np.fft.fft2((f - f.mean()) * win)
    fm = np.fft.fft2((m - m.mean()) * win)
    cross = fm * np.conj(ff)
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = np.real(np.fft.ifft2(cross))
    peak = np.array(np.unravel_index(int(np.argmax(corr)), corr.shape))
    shift = peak.astype(float)
    for ax in range(2):
        n = corr.shape[ax]
        idx = [int(peak[0]), int(peak[1])]
        vals = []
        for o in (-1, 0, 1):
            idx[ax] = (peak[ax] + o) % n
            vals.append(corr[tuple(idx)])
        den = vals[0] - 2 * vals[1] + vals[2]
        if den < 0:
            shift[ax] += 0.5 * (vals[0] - vals[2]) / den
        if shift[ax] > n / 2:
            shift[ax] -= n
    return shift


class _SliceMetric:
    """Metric of the moving slice shifted by d against the fixed slice, within a mask."""

    def __init__(self, f: np.ndarray, m: np.ndarray, sel: np.ndarray, metric: str):
        self.metric = metric
        self.coef = ndimage.spline_filter(m, order=3, mode="nearest")
        self.idx = np.nonzero(sel)
        self.pts = np.array(self.idx, dtype=float)
        self.fv = f[self.idx]
        if metric == "MI":
            lo, hi = np.percentile(self.fv, [0.5, 99.5])
            self.fbin = np.clip(((self.fv - lo) / max(hi - lo, 1e-12) * 31).astype(int), 0, 31)
            self.mrange = np.percentile(m[sel], [0.5, 99.5])

    def sample(self, d: np.ndarray) -> np.ndarray:
        coords = self.pts + np.asarray(d, float)[:, None]
        return ndimage.map_coordinates(self.coef, coords, order=3, mode="nearest", prefilter=False)

    def __call__(self, d: np.ndarray) -> float:
        mv = self.sample(d)
        if self.metric == "MeanSquares":
            return float(np.mean((mv - self.fv) ** 2))
        if self.metric == "CC":
            a = self.fv - self.fv.mean()
            b = mv - mv.mean()
            den = np.sqrt((a * a).sum() * (b * b).sum())
            return float(-(a * b).sum() / den) if den > 0 else 0.0
        lo, hi = self.mrange
        mb = np.clip(((mv - lo) / max(hi - lo, 1e-12) * 31).astype(int), 0, 31)
        joint = np.bincount(self.fbin * 32 + mb, minlength=32 * 32).reshape(32, 32).astype(float)
        p = joint / joint.sum()
        px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
        nzp = p > 0
        return float(-(p[nzp] * np.log(p[nzp] / (px @ py)[nzp])).sum())


def _slice_shift(f: np.ndarray, m: np.ndarray, sel: np.ndarray, metric: str) -> np.ndarray:
    cost = _SliceMetric(f, m, sel, metric)
    starts = [np.zeros(2), _phase_correlation(f, m)]
    start = min(starts, key=lambda d: cost(d) if np.all(np.abs(d) < np.array(f.shape) / 2) else np.inf)
    res = optimize.minimize(cost, start, method="Powell",
                            options={"xtol": 1e-3, "ftol": 1e-10, "maxfev": 2000})
    return np.asarray(res.x, float)


def slicereg(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid, step: Step,
             fixed_mask: np.ndarray | None = None, *, fixed_seg: np.ndarray | None = None,
             moving_seg: np.ndarray | None = None) -> DisplacementField:
    """Slice-wise in-plane translation of the images, regularised along z (SCT's ``slicereg``,
    ANTs' ``antsSliceRegularizedRegistration`` done in numpy/scipy).

    Per slice: intensities are rescaled to [0, 1] between the 0.5 and 99.5 percentiles (as ANTs'
    preprocessing), optionally smoothed (``smooth`` mm); the start is the better of no shift and
    the phase-correlation peak (sub-voxel by parabolic fit); the shift is refined by Powell's
    method on the ``metric`` (MeanSquares, CC = normalised cross-correlation, MI = mutual
    information, 32 bins) computed over the fixed voxels inside ``fixed_mask`` (all voxels
    without a mask), with the moving slice interpolated by cubic B-splines. The per-slice shifts
    are then replaced by a polynomial of degree ``poly`` in the slice index (capped at
    n_slices - 2, as ANTs). Slices with an empty mask or a flat image are ignored in the fit.
    ``iter`` is not used: each slice is optimised to convergence.
    """
    _check_inputs(fixed, moving, fixed_grid, moving_grid, fixed_mask)
    f3 = np.asarray(fixed, float)
    m3 = np.asarray(moving, float)
    nz = f3.shape[2]
    zooms = fixed_grid.zooms
    raw = np.full((nz, 2), np.nan)
    for k in range(nz):
        sel = np.ones(f3.shape[:2], bool) if fixed_mask is None else np.asarray(fixed_mask[:, :, k]) > 0.5
        f, m = f3[:, :, k], m3[:, :, k]
        if sel.sum() < 4 or np.ptp(f[sel]) <= 0 or np.ptp(m) <= 0:
            continue
        f = _rescale(f, sel)
        m = _rescale(m, sel)
        if step.smooth > 0:
            sig = (step.smooth / zooms[0], step.smooth / zooms[1])
            f, m = ndimage.gaussian_filter(f, sig), ndimage.gaussian_filter(m, sig)
        raw[k] = _slice_shift(f, m, sel, step.metric)
    valid = np.all(np.isfinite(raw), axis=1)
    if not valid.any():
        raise InputError("slicereg found no slice to register (empty mask or flat images)", None,
                         "check the mask overlaps the images, or give no mask")
    shift = regularise_poly(np.nan_to_num(raw), valid, step.poly)
    center = np.tile((np.array(fixed_grid.shape[:2], float) - 1) / 2, (nz, 1))
    params = SliceParams(shift=shift, angle=np.zeros(nz), center=center, valid=valid,
                         raw_shift=raw, raw_angle=np.full(nz, np.nan))
    return _attach(field_from_params(fixed_grid, params), params)


# -- registry ----------------------------------------------------------------------------------
ALGORITHMS: dict[str, AlgorithmFn] = {
    "centermass": centermass,
    "centermassrot": centermassrot,
    "columnwise": columnwise,
    "slicereg": slicereg,
}


def register_algorithm(name: str, fn: AlgorithmFn, *, replace: bool = False) -> None:
    """Add an algorithm (e.g. the ANTs-based ``syn``, ``bsplinesyn``, ``rigid``...) to
    :data:`ALGORITHMS`. ``fn`` takes ``(fixed, moving, fixed_grid, moving_grid, step,
    fixed_mask=None, **kwargs)`` and returns a pull transform on the fixed grid."""
    if name in ALGORITHMS and not replace and ALGORITHMS[name] is not fn:
        raise ValueError(f"algorithm {name!r} is already registered (pass replace=True)")
    ALGORITHMS[name] = fn


def get_algorithm(name: str) -> AlgorithmFn:
    """The function registered for ``name`` (InputError listing the available ones otherwise)."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise InputError(f"registration algorithm {name!r} is not available", None,
                         "available: " + ", ".join(sorted(ALGORITHMS))) from None
