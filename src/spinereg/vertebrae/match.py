"""Matching the subject's cord-frame slab to the template's spine classes.

Contrast-agnostic: the subject may show any intensity for each tissue class (discs brighter or
darker than bodies, T1, T2, T2*), so the global match scores the *correlation ratio* (eta^2) of
the subject's intensities grouped by template class and depth bin: the fraction of the intensity
variance that the template's classes explain. It is computed for every S-I shift at once by FFT
cross-correlation, for a range of S-I scales (subjects 0.8-1.25x the template's length).

:func:`refine_discs` then places every disc by dynamic programming: each vertebra between two
consecutive discs is the template's vertebra stretched linearly onto the subject, scored by the
squared difference between the subject and the class means (per class and depth, estimated from
the global match), plus a penalty on each vertebra's height ratio departing from the global
scale. Min-marginals give each disc's positional uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.fft import next_fast_len

from spinereg.vertebrae.model import SpineModel
from spinereg.vertebrae.straight import Straightened

N_CLASSES = 8


@dataclass
class GlobalMatch:
    """``t(s) = t0 + scale * (s - s0)``: template arc length of subject arc length ``s``."""

    scale: float
    t0: float
    s0: float
    eta2: float

    def t(self, s: np.ndarray) -> np.ndarray:
        return self.t0 + self.scale * (np.asarray(s, float) - self.s0)

    def s(self, t: np.ndarray) -> np.ndarray:
        return self.s0 + (np.asarray(t, float) - self.t0) / self.scale


#: length (mm, Gaussian) along the cord over which the detrended pattern's amplitude is levelled
#: (session 14): a receive coil's intensity falling along S-I scales the vertebral pattern with
#: it, and the brighter end outweighs the rest in the correlation ratio. Full phantom seed 0 with
#: its intensity times 1.5 per 100 mm toward the head was named one level off, unflagged
#: (docs/labeling_bare_image.md, "A receive coil's fall-off along S-I")
LEVEL_MM = 30.0


def normalise(sub: Straightened, detrend_mm: float = 15.0, level_mm: float = LEVEL_MM) -> tuple[np.ndarray, np.ndarray]:
    """Robustly scaled values (0 where invalid) and the validity mask. Each depth's slow trend
    along the cord (Gaussian ``detrend_mm``) is removed: what stays is the S-I pattern of the
    vertebrae, not the constant tube of cord and CSF; then the pattern's amplitude is levelled
    along the cord (divided by its RMS over all depths, Gaussian ``level_mm``), so a multiplicative
    intensity fall-off along S-I does not weight one end of the spine over the other."""
    v = sub.valid
    x = np.where(v, sub.values, 0.0)
    if detrend_mm > 0:
        sig = detrend_mm / float(sub.s[1] - sub.s[0])
        w = ndimage.gaussian_filter1d(v.astype(float), sig, axis=0, mode="constant")
        m = ndimage.gaussian_filter1d(x, sig, axis=0, mode="constant")
        x = np.where(v, x - m / np.maximum(w, 1e-6), 0.0)
    if level_mm > 0:
        sig = level_mm / float(sub.s[1] - sub.s[0])
        n = ndimage.gaussian_filter1d(v.sum(1).astype(float), sig, mode="constant")
        e = ndimage.gaussian_filter1d((x * x).sum(1), sig, mode="constant")
        rms = np.sqrt(e / np.maximum(n, 1e-6))
        ok = rms > 0
        x = np.where(v & ok[:, None], x / np.where(ok, rms, 1.0)[:, None], 0.0)
    lo, med, hi = np.percentile(x[v], [5, 50, 95]) if v.any() else (0.0, 0.0, 1.0)
    y = np.where(v, (x - med) / max(hi - lo, 1e-6), 0.0)
    return y, v.astype(float)


def _bins(b: np.ndarray, bin_mm: float) -> np.ndarray:
    return ((b - b[0]) // bin_mm).astype(int)


def global_search(sub: Straightened, model: SpineModel, scales: np.ndarray | None = None,
                  bin_mm: float = 4.0, min_overlap: float = 0.7, row_mm: float = 1.0,
                  depth_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation ratio for every (scale, shift): returns ``eta2`` (n_scales, n_shifts),
    ``scales`` and ``t_first`` (n_scales, n_shifts), the template arc length matched to the
    subject's first row. Computed on ``row_mm`` x ``depth_mm`` cells; shifts leaving less than
    ``min_overlap`` of the subject inside the template score NaN."""
    if scales is None:
        scales = np.exp(np.linspace(np.log(0.8), np.log(1.25), 15))
    y, v = normalise(sub)
    bstep = max(1, int(round(depth_mm / float(model.b[1] - model.b[0]))))
    tstep = max(1, int(round(row_mm / model.ds)))
    bsel = np.arange(0, len(model.b), bstep)
    y, v = y[:, bsel], v[:, bsel]
    cls = model.classes[bsel][:, ::tstep].T  # (nt, nb)
    t_rows = model.s[::tstep]
    ds_t = float(t_rows[1] - t_rows[0])
    nt, nb = cls.shape
    gb = _bins(model.b[bsel], bin_mm)
    starts = np.flatnonzero(np.r_[True, np.diff(gb) != 0])  # depths are increasing: bins are runs
    sizes = np.diff(np.r_[starts, len(gb)])
    onehot = np.stack([(cls.T == c) for c in range(N_CLASSES)]).astype(np.float32)  # (C, nb, nt)
    rows, firsts = [], []
    cache: dict[int, np.ndarray] = {}
    for sc in scales:
        m = np.arange(0.0, (sub.s[-1] - sub.s[0]) * sc / ds_t + 1e-9)
        j = np.clip(np.rint(m * ds_t / sc / (sub.s[1] - sub.s[0])).astype(int), 0, len(sub.s) - 1)
        ym, vm = y[j], v[j]
        nm = len(m)
        L = next_fast_len(nm + nt, real=True)
        if L not in cache:  # the template's classes, transformed along s once per length
            cache[L] = np.fft.rfft(onehot, L, axis=-1).astype(np.complex128)  # (C, nb, F)
        fo = cache[L]
        # correlations along s of the subject's y (valid rows) and validity with each class, per
        # depth, summed over the depths of each bin: (2, C, nbins, L); transforms along the last,
        # contiguous axis
        fa = np.conj(np.fft.rfft(np.stack([ym * vm, vm]).transpose(0, 2, 1), L, axis=-1))  # (2, nb, F)
        prod = fa[:, None] * fo[None]  # (2, C, nb, F)
        fg = prod[:, :, starts]  # (2, C, nbins, F): each bin's depths summed in order
        for o in range(1, int(sizes.max())):
            more = sizes > o
            fg[:, :, more] += prod[:, :, starts[more] + o]
        corr = np.fft.irfft(fg, L, axis=-1)
        lags = np.r_[np.arange(L - (nm - 1), L), np.arange(0, nt)]
        Sg, Ng = corr[0][..., lags], corr[1][..., lags]  # (C, nbins, lags)
        Ng = np.rint(Ng)  # counts of valid cells: whole numbers (the transforms' rounding removed)
        # sum of y^2 over the subject rows that overlap the template at each lag (every template
        # cell has one class: the classes' correlations sum to this window sum)
        cum = np.r_[0.0, np.cumsum((ym * ym * vm).sum(1))]
        tau = np.r_[np.arange(-(nm - 1), 0), np.arange(0, nt)]
        Q = cum[np.minimum(nm, nt - tau)] - cum[np.maximum(0, -tau)]
        with np.errstate(all="ignore"):
            between = np.where(Ng > 0.5, Sg ** 2 / Ng, 0.0).sum((0, 1))
            T, Nt = Sg.sum((0, 1)), Ng.sum((0, 1))
            eta = (between - T ** 2 / Nt) / (Q - T ** 2 / Nt)
        eta[Nt / max(vm.sum(), 1.0) < min_overlap] = np.nan
        k = np.r_[np.arange(-(nm - 1), 0), np.arange(0, nt)]
        rows.append(eta)
        firsts.append(t_rows[0] + k * ds_t)
    width = max(len(r) for r in rows)
    out = np.full((len(scales), width), np.nan)
    tf = np.full((len(scales), width), np.nan)
    for i, (r, f) in enumerate(zip(rows, firsts, strict=True)):
        out[i, :len(r)], tf[i, :len(f)] = r, f
    return out, np.asarray(scales), tf


def candidates(eta2: np.ndarray, scales: np.ndarray, t_first: np.ndarray, sub: Straightened,
               n: int = 6, separation_mm: float = 8.0) -> list[GlobalMatch]:
    """The best global matches whose template positions of the subject's middle differ by at
    least ``separation_mm`` (distinct level identities), best first."""
    s_mid = 0.5 * (sub.s[0] + sub.s[-1])
    s0 = float(sub.s[0])
    order = np.argsort(np.where(np.isfinite(eta2), -eta2, np.inf), axis=None)
    order = order[np.isfinite(eta2.ravel()[order])]
    ii, kk = np.unravel_index(order, eta2.shape)
    mids = t_first[ii, kk] + scales[ii] * (s_mid - s0)  # template position of the subject's middle
    alive = np.ones(len(order), bool)  # not within separation_mm of a match already taken
    out: list[GlobalMatch] = []
    while len(out) < n and alive.any():
        j = int(np.argmax(alive))  # the best match left
        i, k = ii[j], kk[j]
        out.append(GlobalMatch(float(scales[i]), float(t_first[i, k]), s0, float(eta2[i, k])))
        alive &= np.abs(mids - mids[j]) >= separation_mm
    return out
