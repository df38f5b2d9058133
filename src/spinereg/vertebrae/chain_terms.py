"""The terms the labeling's chain (:func:`spinereg.vertebrae.label._chain_labeling`) scores each
template disc at each place with: the vertebral-body column the disc bands are read in, the band's
half-width, the band evidence less what a disc must show, the global match's vote and its pick by
the cord width, and the spread of the cord width's disc-to-disc change."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.io.image import Image
from spinereg.vertebrae.evidence import Evidence
from spinereg.vertebrae.model import CORD, SpineModel

if TYPE_CHECKING:
    from spinereg.vertebrae.match import GlobalMatch


#: evidence (robust z-score) a disc band must exceed to pay for itself
E0 = 1.0
#: spread of the change of the log cord width from one disc to the next against the template's
#: (the pair term of the chain: scale-free, it places the cervical and lumbar enlargements)
WIDTH_STEP_SD = 0.05
#: the band's half-width (evidence.band_evidence): this fraction of the expected disc spacing at
#: the row, from HALF_WIDTH_MIN_MM (per disc polarity) to HALF_WIDTH_MAX_MM. A bright disc is
#: the band alone, between the dark endplates: on a short spine it is 2-3 mm thin, and a 3.5 mm
#: floor (every polarity before session 20) set the flanks on the endplate lines, so the bright
#: vertebral bodies between them read as bands (held-out phantom cervical 44: every disc
#: 5.6-6.9 mm low; sagittal_thick 44: a level off). A dark disc's band takes in the dark endplates
#: with it, so it is wider: 3.0 there made two T1 phantoms worse (iso1mm_t1 2 and 44: disc MAE
#: 0.48 -> 0.88, 0.36 -> 0.72 mm). docs/labeling_bare_image.md, session 20
HALF_WIDTH_FRACTION = 0.22
HALF_WIDTH_MIN_MM = {1: 3.0, -1: 3.5}
HALF_WIDTH_MAX_MM = 8.0
#: measurement part of that spread per (left-right voxel extent / cord width)
WIDTH_RES_FACTOR = 0.5
#: weight of the cord-width mismatch against the correlation ratio in the global match
WIDTH_WEIGHT = 2.0
#: weight of the global match's correlation ratio in the chain (per unit of eta^2, whole chain)
GLOBAL_WEIGHT = 60.0


def _front(mask: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Most anterior depth of ``mask`` (rows x depths) per row; rows without it filled from the
    nearest row that has it (NaN when none has)."""
    has = mask.any(1)
    front = np.where(has, np.max(np.where(mask, b[None], -np.inf), 1), np.nan)
    if not has.any():
        return front
    idx = np.arange(len(front))
    return np.interp(idx, idx[has], front[has])


def _column_walls(model: SpineModel, t_rows: np.ndarray, cord_front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The subject's vertebral-body column per row: posterior wall = the subject's cord front plus
    the template's gap from cord front to column at the matched row; depth from the template."""
    r = model.rows(t_rows)
    tpl_front = _front((model.classes == CORD).T, model.b)
    gap = np.clip(model.column_back - tpl_front, 1.0, 15.0)
    back = np.where(np.isfinite(cord_front), cord_front, tpl_front[r]) + gap[r]
    return back, np.maximum(model.column_front[r] - model.column_back[r], 8.0)


def _half_widths(model: SpineModel, t_rows: np.ndarray, scale: float, polarity: int) -> np.ndarray:
    """About a quarter of the expected disc spacing (subject mm) at each row, from
    ``HALF_WIDTH_MIN_MM[polarity]`` to ``HALF_WIDTH_MAX_MM``."""
    t = model.disc_s
    mids, gaps = 0.5 * (t[:-1] + t[1:]), t[:-1] - t[1:]
    hw = HALF_WIDTH_FRACTION * np.interp(t_rows, mids[::-1], gaps[::-1]) / scale
    return np.clip(hw, HALF_WIDTH_MIN_MM[polarity], HALF_WIDTH_MAX_MM)


def _grid_evidence(ev: Evidence, grid: np.ndarray, in_sub: np.ndarray, jc: np.ndarray,
                   half_width: np.ndarray) -> np.ndarray:
    """Band evidence less what a disc must score (``_expected_strength``) on the chain's grid; 0
    outside the image. Within a band's half-width of the evidence's ends a band is measured on one
    flank only: it counts half there, present or missing (free, a missing band there would let a
    chain of far-apart discs hide every disc at the edges of a short field of view)."""
    e = np.where(in_sub & ev.inside[jc], ev.score[jc] - _expected_strength(ev), 0.0)
    if ev.inside.any():
        lo_s, hi_s = ev.s[ev.inside][[0, -1]]
        edge = (np.minimum(grid - lo_s, hi_s - grid) < half_width[jc]) & in_sub & ev.inside[jc]
        e = np.where(edge, 0.5 * e, e)
    return e


def _expected_strength(ev: Evidence, n_peaks: int = 3) -> float:
    """What a disc in view must score to pay for itself: half the median of the image's strongest
    band peaks (at least ``E0``), so an expected disc without a band costs in proportion to how
    clearly the other discs show."""
    sc = np.where(ev.inside, ev.score, -1e9)
    size = 2 * max(1, int(8.0 / (ev.s[1] - ev.s[0]))) + 1
    pk = np.flatnonzero((sc == ndimage.maximum_filter1d(sc, size, mode="nearest")) & ev.inside)
    if len(pk) == 0:
        return E0
    top = np.sort(sc[pk])[::-1][:n_peaks]
    return float(max(E0, 0.5 * np.median(top)))


def _best_global(cands: list[GlobalMatch], model: SpineModel, s: np.ndarray,
                 width: np.ndarray) -> GlobalMatch:
    """The global match whose correlation ratio, less ``WIDTH_WEIGHT`` x the mean squared log
    ratio of the subject's to the template's cord width, is highest."""
    ok = np.isfinite(width)
    if ok.sum() < 5:
        return cands[0]

    def score(g: GlobalMatch) -> float:
        wt = np.interp(g.t(s[ok]), model.s, model.cord_width)
        return g.eta2 - WIDTH_WEIGHT * float(np.mean(np.log(width[ok] / wt) ** 2))

    return max(cands, key=score)


def _width_step_sd(image: Image, width: np.ndarray) -> float:
    """Spread of the disc-to-disc change of the log cord width: ``WIDTH_STEP_SD`` (anatomy) and
    the measurement's own, which grows with the voxel's left-right extent beyond 0.5 mm against
    the cord's width (3 mm sagittal slices measure an 11 mm cord's width in 3-4 steps)."""
    w = float(np.nanmedian(width)) if np.isfinite(width).any() else 10.0
    lr = image.grid.extent_along([1.0, 0.0, 0.0])
    return float(np.hypot(WIDTH_STEP_SD, WIDTH_RES_FACTOR * max(lr - 0.5, 0.0) / max(w, 1.0)))


def _global_vote(eta: np.ndarray, scales: np.ndarray, tfirst: np.ndarray, s0: float, grid: np.ndarray,
                 t: np.ndarray) -> np.ndarray:
    """``GLOBAL_WEIGHT`` x (best correlation ratio of a global match putting template disc ``k``
    at ``grid[x]``, minus the overall best), shared out over the discs: the whole-field match's
    say on identity."""
    out = np.full((len(t), len(grid)), -np.inf)
    for i, sc in enumerate(scales):
        row, tf = eta[i], tfirst[i]
        ok = np.isfinite(tf)
        if not ok.any():
            continue
        f0, step = tf[ok][0], tf[ok][1] - tf[ok][0]
        want = t[:, None] - sc * (grid[None] - s0)  # template position of the subject's first row
        idx = np.rint((want - f0) / step).astype(int)
        inside = (idx >= 0) & (idx < ok.sum())
        vals = np.where(inside, np.nan_to_num(row[np.flatnonzero(ok)][np.clip(idx, 0, ok.sum() - 1)], nan=-np.inf),
                        -np.inf)
        out = np.maximum(out, vals)
    best = np.nanmax(eta)
    out = np.where(np.isfinite(out), out - best, -0.5)
    return GLOBAL_WEIGHT * np.maximum(out, -0.5) / len(t)


def _extend(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` (NaN outside one finite run) with its first and last finite values held ``n``
    samples beyond them."""
    ok = np.flatnonzero(np.isfinite(x))
    if len(ok) == 0:
        return x
    out = x.copy()
    lo, hi = ok[0], ok[-1]
    out[max(lo - n, 0):lo] = x[lo]
    out[hi + 1:hi + 1 + n] = x[hi]
    return out


def _hold_ends(width: np.ndarray, cord: np.ndarray) -> np.ndarray:
    """``width`` (NaN outside one finite run) with its first and last finite values held over the
    rows where ``cord`` (the segmented cord is present) and the width is NaN."""
    ok = np.flatnonzero(np.isfinite(width))
    if len(ok) == 0:
        return width
    out = width.copy()
    lo, hi = ok[0], ok[-1]
    idx = np.arange(len(width))
    out[(idx < lo) & cord] = width[lo]
    out[(idx > hi) & cord] = width[hi]
    return out
