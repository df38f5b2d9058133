"""Disc evidence along the cord: thin bands across the vertebral-body column.

An intervertebral disc crosses the column of vertebral bodies in front of the cord as a band a
few millimetres thick, between two bodies about three times thicker. In the cord-frame slab the
band may be tilted (lordosis, wedge-shaped discs), so the column is sheared by a range of tilts
before averaging over depth; each tilt pivots at the posterior wall of the column, so a band's
arc length is its height where the disc meets the canal (PAM50's disc labels: the height of the
disc's posterior tip). The response of a band of half-width ``w`` is the column mean at ``s``
minus the mean of the means at ``s - w`` and ``s + w``; ``polarity`` +1 looks for bright discs
(T2, T2*, many T1), -1 for dark ones. Responses are divided by their robust spread over the
image, so they read as z-scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinereg.robust import robust_sd
from spinereg.vertebrae.straight import Straightened

TILTS_DEG = tuple(range(-20, 21, 5))

#: dark discs: the band response is smoothed along the cord by a Gaussian of this SD (mm) before the
#: chain reads it (:func:`smoothed`): about half the 5-6 mm between a disc's two endplates
DARK_SMOOTH_MM = 3.0


@dataclass
class Evidence:
    """Band response ``score[j]`` (robust z-score) at arc length ``s[j]``, the tilt (degrees) that
    gave it, and whether the column was inside the field of view there."""

    s: np.ndarray
    score: np.ndarray
    tilt_deg: np.ndarray
    inside: np.ndarray
    polarity: int


def _local_standardise(x: np.ndarray, v: np.ndarray, ds: float, trend_mm: float = 8.0,
                       spread_mm: float = 15.0) -> np.ndarray:
    """Each depth minus its smooth trend along s, over its local spread (0 where invalid)."""
    w = v.astype(float)
    x = np.where(v, x, 0.0)

    def smooth(a: np.ndarray, mm: float) -> np.ndarray:
        return ndimage.gaussian_filter1d(a, mm / ds, axis=0, mode="constant")

    wt = np.maximum(smooth(w, trend_mm), 1e-6)
    y = np.where(v, x - smooth(x, trend_mm) / wt, 0.0)
    sd = np.sqrt(smooth(y * y, spread_mm) / np.maximum(smooth(w, spread_mm), 1e-6)) + 1e-6
    return np.where(v, y / sd, 0.0)


def band_evidence(sub: Straightened, back: np.ndarray, depth: np.ndarray, polarity: int = 1,
                  half_width_mm: np.ndarray | float = 4.0, offset_mm: float = 3.0,
                  fraction: float = 0.45, tilts_deg: tuple[float, ...] = TILTS_DEG) -> Evidence:
    """Disc band evidence per row of ``sub``. ``back``/``depth`` (per row, mm): the column's
    posterior wall and depth; the band is averaged over depths ``back + offset_mm`` to
    ``back + offset_mm + fraction * depth`` (the posterior half, where discs are most regular).
    ``half_width_mm`` (per row or one value): about a quarter of the expected disc spacing.
    ``tilts_deg``: the band tilts tried (the best one per row is kept)."""
    return band_evidence_sets(sub, back, depth, polarity, half_width_mm, offset_mm, fraction, (tilts_deg,))[0]


@dataclass
class TiltProfiles:
    """The column's mean along the cord, sheared by each tilt (:func:`tilt_profiles`): what
    :func:`band_evidence_sets` reads, the same for bright and dark discs, so an image whose
    polarity is unknown resamples its column once."""

    s: np.ndarray
    profile: dict[float, np.ndarray]  # tilt (deg) -> smoothed column mean per row (0 out of view)
    ok: dict[float, np.ndarray]  # tilt -> the column was in view at that row


def tilt_profiles(sub: Straightened, back: np.ndarray, depth: np.ndarray, offset_mm: float = 3.0,
                  fraction: float = 0.45, tilts: tuple[float, ...] = TILTS_DEG) -> TiltProfiles:
    """Each depth of ``sub`` standardised along the cord, sheared by each tilt in ``tilts`` about the
    pivot ``back + offset_mm`` and averaged over depths ``back + offset_mm`` to ``back + offset_mm
    + fraction * depth`` (see :func:`band_evidence`)."""
    ds = float(sub.s[1] - sub.s[0])
    v = sub.valid
    y = _local_standardise(sub.values, v, ds)
    b = sub.b
    lo = (back + offset_mm)[:, None]
    hi = (back + offset_mm + fraction * depth)[:, None]
    window = ((b[None] >= lo) & (b[None] <= hi)).astype(float)  # (ns, nb)
    ns, nb = y.shape
    jj, ii = np.meshgrid(np.arange(ns, dtype=float), np.arange(nb, dtype=float), indexing="ij")
    pivot = back + offset_mm
    prof_of, ok_of = {}, {}
    for tilt in sorted(set(tilts)):
        # sample each depth at s + (b - pivot) tan(tilt): a band tilted by `tilt` becomes vertical
        shift = (b[None] - pivot[:, None]) * np.tan(np.deg2rad(tilt)) / ds
        coords = np.stack([jj + shift, ii])
        ys = ndimage.map_coordinates(y, coords, order=1, mode="constant", cval=0.0)
        vs = ndimage.map_coordinates(v.astype(float), coords, order=1, mode="constant", cval=0.0)
        wsum = (window * vs).sum(1)
        prof = np.where(wsum > 0.3 * window.sum(1), (window * ys).sum(1) / np.maximum(wsum, 1e-6), np.nan)
        ok = np.isfinite(prof)
        prof_of[tilt] = ndimage.gaussian_filter1d(np.where(ok, prof, 0.0), 1.0 / ds)
        ok_of[tilt] = ok
    return TiltProfiles(sub.s, prof_of, ok_of)


def band_evidence_sets(sub: Straightened | TiltProfiles, back: np.ndarray | None = None,
                       depth: np.ndarray | None = None, polarity: int = 1,
                       half_width_mm: np.ndarray | float = 4.0, offset_mm: float = 3.0, fraction: float = 0.45,
                       tilt_sets: tuple[tuple[float, ...], ...] = (TILTS_DEG,)) -> list[Evidence]:
    """:func:`band_evidence` for each set of tilts in ``tilt_sets``, every tilt measured once.
    ``sub`` may be the :func:`tilt_profiles` already measured (then ``back``, ``depth``,
    ``offset_mm`` and ``fraction`` are those it was made with, and it holds every tilt asked)."""
    needed = {t for ts in tilt_sets for t in ts}
    if isinstance(sub, TiltProfiles):
        tp = sub
        missing = needed - set(tp.profile)
        if missing:
            raise ValueError(f"tilt profiles lack the tilts {sorted(missing)}")
    else:
        if back is None or depth is None:
            raise ValueError("band_evidence_sets needs the column's back and depth with a straightened slab")
        tp = tilt_profiles(sub, back, depth, offset_mm, fraction, tuple(needed))
    ns = len(tp.s)
    ds = float(tp.s[1] - tp.s[0])
    hw = np.rint(np.broadcast_to(np.asarray(half_width_mm, float), (ns,)))  # whole mm: few distinct
    ks = np.maximum(1, np.rint(hw / ds)).astype(int)
    per_tilt: dict[float, np.ndarray] = {}
    for tilt in sorted(needed):
        p, ok = tp.profile[tilt], tp.ok[tilt]
        r = np.full(ns, np.nan)
        for k in np.unique(ks):
            pp = np.pad(p, k, mode="edge")
            okp = np.pad(ok, k, constant_values=False)
            below, above = okp[:-2 * k], okp[2 * k:]
            # both flanks where both are in view, the one in view at the edges of the field
            flank = np.where(below & above, 0.5 * (pp[:-2 * k] + pp[2 * k:]),
                             np.where(below, pp[:-2 * k], pp[2 * k:]))
            rk = polarity * (p - flank)
            use = (ks == k) & ok & (below | above)
            r[use] = rk[use]
        per_tilt[tilt] = r
    out = []
    for tilts in tilt_sets:
        best = np.full(ns, -np.inf)
        best_tilt = np.zeros(ns)
        for tilt in tilts:  # in the caller's order: a tie keeps the first tilt
            r = per_tilt[tilt]
            better = np.nan_to_num(r, nan=-np.inf) > best
            best = np.where(better, r, best)
            best_tilt = np.where(better, tilt, best_tilt)
        score = np.where(np.isfinite(best), best, np.nan)
        fin = np.isfinite(score)
        out.append(Evidence(tp.s, np.where(fin, _standardised(score, fin), 0.0), best_tilt, fin, polarity))
    return out


def smoothed(ev: Evidence, sigma_mm: float = DARK_SMOOTH_MM) -> Evidence:
    """``ev`` with its response smoothed by ``sigma_mm`` along the cord and standardised again
    (median 0, robust SD 1 over the rows in view).

    For dark discs (T1, and T2 images read dark since session 26). A dark disc lies between two cortical endplates darker still, so its
    response is two humps about 5 mm apart with a dip at the disc (the independent phantom's
    T1-like variants); the chain's spacing term put every disc of a subject on the upper or every
    one on the lower hump (iso1mm_t1 43: all discs +1.5..+3.5 mm). Smoothed, the humps are one
    peak at the disc's centre. Bright discs are read as they are: their endplates darken the
    flanks, not the band."""
    fin = ev.inside
    ds = float(ev.s[1] - ev.s[0])
    w = ndimage.gaussian_filter1d(fin.astype(float), sigma_mm / ds)
    sc = ndimage.gaussian_filter1d(np.where(fin, ev.score, 0.0), sigma_mm / ds) / np.maximum(w, 1e-6)
    return Evidence(ev.s, np.where(fin, _standardised(sc, fin), 0.0), ev.tilt_deg, fin, ev.polarity)


def _standardised(score: np.ndarray, fin: np.ndarray) -> np.ndarray:
    """``score`` minus its median over the rows ``fin``, over its robust SD there (as it is when
    fewer than six rows are in view)."""
    if fin.sum() <= 5:
        return score
    med = np.median(score[fin])
    return (score - med) / (robust_sd(score[fin], centre=med) + 1e-6)
