"""Motion estimation of ``spinereg moco``: group translations by weighted Gauss-Newton against a
reference (linear intensity fit per slice), their regularisation along z (or acquisition order),
in-plane resampling of a volume, and the cap on volumes left out of the reference."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinereg.epi.moco_masks import MIN_MASK_VOXELS
from spinereg.register.slicewise import regularise_poly, regularise_spline


class _Reference:
    """Reference slices prepared for Gauss-Newton: masked points, values, gradients, weights."""

    def __init__(self, ref: np.ndarray, weight: np.ndarray, sigma: float):
        r = ndimage.gaussian_filter(ref, (sigma, sigma, 0)) if sigma > 0 else ref
        gi = np.gradient(r, axis=0)
        gj = np.gradient(r, axis=1)
        self.sigma = sigma
        self.slices = []
        for k in range(ref.shape[2]):
            w = weight[:, :, k]
            idx = np.nonzero(w > 0)
            if idx[0].size < MIN_MASK_VOXELS:
                self.slices.append(None)
                continue
            self.slices.append((np.array(idx, float), r[:, :, k][idx], np.stack([gi[:, :, k][idx], gj[:, :, k][idx]]),
                                w[idx]))


def _fit_gain(rv: np.ndarray, vw: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    sw = w.sum()
    mr = (w * rv).sum() / sw
    mv = (w * vw).sum() / sw
    var = (w * (rv - mr) ** 2).sum()
    a = (w * (rv - mr) * (vw - mv)).sum() / var if var > 0 else 0.0
    return a, mv - a * mr


def _estimate(vol: np.ndarray, ref: _Reference, groups: np.ndarray, n_groups: int, start: np.ndarray,
              slice_weight: np.ndarray, max_iter: int = 30, tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Group translations (voxels) with ``vol(p + d_g) ~ a_k ref(p) + b_k`` for the slices of
    each group; returns (estimates (n_groups, 2), estimated (n_groups,))."""
    v = ndimage.gaussian_filter(vol, (ref.sigma, ref.sigma, 0)) if ref.sigma > 0 else vol
    coefs = [ndimage.spline_filter(v[:, :, k].astype(np.float64), order=3, mode="mirror")
             if ref.slices[k] is not None and slice_weight[k] > 0 else None for k in range(v.shape[2])]
    d = np.array(start, float).copy()
    ok = np.zeros(n_groups, bool)
    for _ in range(max_iter):
        h = np.zeros((n_groups, 2, 2))
        g = np.zeros((n_groups, 2))
        for k, c in enumerate(coefs):
            if c is None:
                continue
            pts, rv, grad, w = ref.slices[k]
            gk = groups[k]
            vw = ndimage.map_coordinates(c, pts + d[gk][:, None], order=3, mode="mirror", prefilter=False)
            wk = w * slice_weight[k]
            a, b = _fit_gain(rv, vw, wk)
            if abs(a) < 1e-9:
                continue
            jac = a * grad
            r = vw - a * rv - b
            jw = jac * wk
            h[gk] += jw @ jac.T
            g[gk] += jw @ r
        det = h[:, 0, 0] * h[:, 1, 1] - h[:, 0, 1] * h[:, 1, 0]
        tr = h[:, 0, 0] + h[:, 1, 1]
        ok = det > 1e-10 * np.maximum(tr, 1e-30) ** 2
        delta = np.zeros_like(d)
        if ok.any():
            delta[ok] = -np.linalg.solve(h[ok], g[ok][..., None])[..., 0]
        delta = np.clip(delta, -1.0, 1.0)
        d += delta
        if np.abs(delta).max() < tol:
            break
    d[~ok] = np.nan
    return d, ok


def _regularise(raw: np.ndarray, valid: np.ndarray, method: str, order: np.ndarray | None = None) -> np.ndarray:
    """Regularise group estimates ``(n_groups, 2)`` along ``order`` (group indices in acquisition
    order; default the group position along z)."""
    if order is not None:
        out = np.empty_like(raw)
        out[order] = _regularise(raw[order], valid[order], method)
        return out
    if not valid.any():
        return np.zeros_like(raw)
    vals = np.nan_to_num(raw)
    if method == "none" or raw.shape[0] == 1:
        idx = np.flatnonzero(valid)
        z = np.arange(raw.shape[0], dtype=float)
        return np.stack([np.interp(z, idx, vals[idx, c]) for c in range(2)], axis=1)
    if method.startswith("poly"):
        deg = int(method.split(":")[1]) if ":" in method else 2
        return regularise_poly(vals, valid, deg)
    return regularise_spline(vals, valid)


#: a whole-volume start further than this (voxels) from the previous volume's estimate is tried
#: beside it (the Gauss-Newton steps are clipped to 1 voxel and start on a 2-voxel blur)
FAR_START_VOX = 2.0


def coarse_shift(vol: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """One in-plane translation ``d`` (voxels, integer) of the whole volume with ``vol(p + d) ~
    ref(p)``: the peak of the phase correlation, the slices' cross-power spectra summed. A start
    for motion beyond the Gauss-Newton's capture range (a jump of several voxels)."""
    win = np.outer(np.hanning(vol.shape[0]), np.hanning(vol.shape[1]))[:, :, None]
    f = np.fft.fft2((ref - ref.mean(axis=(0, 1))) * win, axes=(0, 1))
    m = np.fft.fft2((vol - vol.mean(axis=(0, 1))) * win, axes=(0, 1))
    cross = (m * np.conj(f)).sum(axis=2)
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = np.real(np.fft.ifft2(cross))
    peak = np.array(np.unravel_index(int(np.argmax(corr)), corr.shape), float)
    n = np.array(corr.shape, float)
    return np.where(peak > n / 2, peak - n, peak)


#: a pre-alignment shift (:func:`prealign_shifts`) must raise the volume's correlation with the
#: anchor by this much (true jumps of 5-8 voxels on SCT's fmri mean: +0.5 to +0.6; phase-correlation
#: noise across contrasts: -0.04 to +0.03)
PREALIGN_MIN_GAIN = 0.1


def prealign_shifts(stack: list[np.ndarray], mean: np.ndarray) -> np.ndarray | None:
    """Whole-volume shifts (voxels, pull, integer) that bring ``stack``'s volumes together before
    the first reference is taken, or None when they lie within :data:`FAR_START_VOX` of their
    median (the plain mean is a fair reference). Each volume's phase-correlation shift onto the
    volume most like the plain mean (the anchor), less their mean (the reference stays at the
    average position, where the plain mean puts it).

    A series that jumps several voxels from volume to volume has a plain mean that shows the
    subject several times over; slices then settled on different copies and kept them through the
    later passes, which refine at the finest level only. SCT's fmri mean moved by random
    translations up to 8 voxels (15 volumes, Rician noise sigma 45, seeds 0-4): max error 0.32 /
    0.17 / 0.15 / 0.19 / 2.83 mm (seed 4 mean 1.25 mm, slices of one volume 1.9-5.6 voxels apart);
    pre-aligned 0.133 / 0.091 / 0.110 / 0.088 / 0.140 mm (held-out seeds 5-9 0.067-0.177); a drift of 8
    voxels over 20 volumes, seeds 0 / 4: 0.186 / 0.369 -> 0.083 / 0.028 mm
    (tests/test_moco_large_jumps.py). Series within 2 voxels are not touched. A volume's shift
    is kept only when it raises its correlation with the anchor by over :data:`PREALIGN_MIN_GAIN`:
    across contrasts the phase correlation's peak is noise (SCT's dmri, b=0 and b=750 volumes as one
    class, no bvals: shifts of up to 7 voxels that changed the correlation by -0.04 to +0.03; the
    jumps above: +0.5 to +0.6)."""
    if len(stack) < 2:
        return None
    anchor = stack[int(np.argmax([_corr(v, mean) for v in stack]))]
    d = np.zeros((len(stack), 2))
    for t, v in enumerate(stack):
        dt = coarse_shift(v, anchor)
        if np.any(dt != 0) and _corr(_shift_volume(v, np.tile(dt, (v.shape[2], 1))), anchor) \
                > _corr(v, anchor) + PREALIGN_MIN_GAIN:
            d[t] = dt
    if np.abs(d - np.median(d, axis=0)).max() <= FAR_START_VOX:
        return None
    return d - d.mean(axis=0)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(np.dot(a, b)) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)


def misfit(vol: np.ndarray, ref: _Reference, groups: np.ndarray, d: np.ndarray) -> float:
    """Mean over slices of the weighted residual after the linear intensity fit, relative to the
    reference's weighted variance, at group translations ``d`` (a lower value fits better)."""
    v = ndimage.gaussian_filter(vol, (ref.sigma, ref.sigma, 0)) if ref.sigma > 0 else vol
    out = []
    for k, sl in enumerate(ref.slices):
        if sl is None or not np.all(np.isfinite(d[groups[k]])):
            continue
        pts, rv, _, w = sl
        vw = ndimage.map_coordinates(v[:, :, k], pts + d[groups[k]][:, None], order=1, mode="nearest")
        a, b = _fit_gain(rv, vw, w)
        var = (w * (rv - (w * rv).sum() / w.sum()) ** 2).sum()
        if var > 0:
            out.append(float((w * (vw - a * rv - b) ** 2).sum() / var / max(a * a, 1e-12)))
    return float(np.mean(out)) if out else np.inf


def _shift_volume(vol: np.ndarray, shifts: np.ndarray, order: int = 3) -> np.ndarray:
    """Fast in-plane resampling (internal use: references and residuals)."""
    out = np.empty_like(vol, dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(vol.shape[0], dtype=float), np.arange(vol.shape[1], dtype=float), indexing="ij")
    for k in range(vol.shape[2]):
        out[:, :, k] = ndimage.map_coordinates(vol[:, :, k], [ii + shifts[k, 0], jj + shifts[k, 1]], order=order,
                                               mode="nearest")
    return out


def _cap_exclusions(flags: np.ndarray, severity: np.ndarray, max_fraction: float = 0.5) -> np.ndarray:
    """At most ``max_fraction`` of the volumes leave the reference: the most severe flagged ones
    (a series that moves a lot must still keep a reference to register to)."""
    flags = np.asarray(flags, bool)
    limit = int(np.floor(max_fraction * flags.size))
    if flags.sum() <= limit:
        return flags
    order = np.argsort(-np.where(flags, np.nan_to_num(np.asarray(severity, float), nan=0.0), -np.inf),
                       kind="stable")
    out = np.zeros_like(flags)
    out[order[:limit]] = True
    return out & flags

