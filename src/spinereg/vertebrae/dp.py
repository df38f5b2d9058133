"""Dynamic programming over the chain of discs: which template disc sits where.

Every template disc ``k`` (top to bottom, template arc lengths ``t_k``) gets a subject arc length
``x_k``; consecutive discs are ``scale * (t_k - t_{k+1}) * (1 + e_k)`` apart, with ``e_k`` the
vertebra's departure from the global scale (penalty ``e_k^2 / (2 sd^2)``, ``|e_k| <= max_dev``).
Discs outside the field of view are virtual (no evidence, no cost); a disc inside it scores its
evidence minus ``e0`` (an expected disc without a band costs ``e0``), so the chain also says
which template disc is the first one in view: the identity of the levels. Discs that are not
seen as bands (the pontomedullary junction and C1/C2 in PAM50's numbering) score nothing. The
search runs for every global scale; min-marginals (forward + backward) give, for every disc and
position, the best chain that puts it there.

An optional pair term scores how a quantity measured along the subject (the log of the cord's
width) changes from one disc to the next against the template's change between the same discs:
scale-free (a subject's cord may be wider or narrower than the template's throughout), it tells a
vertebra in the cervical enlargement from its neighbours where the disc bands alone cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ChainResult:
    """Best chain: ``positions[k]`` (subject arc length of template disc ``k``), its ``scale`` and
    ``score``; ``marginal[k, x]`` the best chain score with disc ``k`` at grid position ``x``."""

    grid: np.ndarray
    positions: np.ndarray
    scale: float
    score: float
    marginal: np.ndarray


def _windows(a: np.ndarray, d0: int, d1: int, fill: float) -> np.ndarray:
    """``w[i, x] = a[x + d0 + i]`` for ``0 <= i <= d1 - d0`` (``fill`` beyond the end of ``a``):
    a read-only view, one contiguous row per offset."""
    padded = np.concatenate([a, np.full(d1, fill, a.dtype)])
    return np.lib.stride_tricks.sliding_window_view(padded, len(a))[d0:d1 + 1]


def _first_argmax(c: np.ndarray) -> np.ndarray:
    """``np.argmax(c, 0)`` (the first maximum of each column) for a short first axis: the column
    maxima, then the first row reaching them, by reductions along the first axis (numpy's
    ``argmax`` over a short axis runs one call per column)."""
    mx = c.max(0)
    w = np.arange(len(c), 0, -1, dtype=np.int32)[:, None]
    hit = ((c == mx) * w).max(0)
    out = len(c) - hit
    if not hit.all():  # a column with NaN: numpy's own answer there
        bad = hit == 0
        out[bad] = np.argmax(c[:, bad], 0)
    return out


def _offsets(gap: float, step: float, max_dev: float) -> tuple[int, int]:
    """First and last offset (grid steps) allowed between two discs ``gap`` mm apart."""
    lo = int(np.floor(gap * (1 - max_dev) / step))
    hi = int(np.ceil(gap * (1 + max_dev) / step))
    return max(lo, 1), hi


def _pair_cost(q: np.ndarray, dq: float, d0: int, d1: int, sd: float) -> np.ndarray:
    """Cost (d1 - d0 + 1, n) of disc ``k`` at ``x + d`` and disc ``k + 1`` at ``x`` (``d0 <= d
    <= d1``): the squared departure of ``q[x + d] - q[x]`` from the template's change ``dq``
    (0 where ``q`` is unknown)."""
    diff = _windows(q, d0, d1, np.nan) - q[None] - dq
    return np.where(np.isfinite(diff), diff * diff / (2 * sd * sd), 0.0)


def best_chain(grid: np.ndarray, unary: np.ndarray, t: np.ndarray, scales: np.ndarray,
               sd: float = 0.10, max_dev: float = 0.30, weight: float = 1.0, pair_q: np.ndarray | None = None,
               pair_dq: np.ndarray | None = None, pair_sd: float = 0.04) -> ChainResult:
    """Best positions on ``grid`` (uniform, increasing) for the discs with template positions
    ``t`` (decreasing), given ``unary[k, x]`` (score of disc ``k`` at ``grid[x]``); ``pair_q``
    (per grid position, NaN where unknown) and ``pair_dq[k]`` (the template's change from disc
    ``k`` to ``k + 1``): the pair term, spread ``pair_sd``. The first scale reaching the best
    score wins; min-marginals are computed for that scale only."""
    step = float(grid[1] - grid[0])
    K, n = unary.shape
    neg = -1e18
    rows = np.arange(n)
    gaps_of = [sc * (t[:-1] - t[1:]) for sc in scales]
    offsets = [[_offsets(g[k], step, max_dev) for k in range(K - 1)] for g in gaps_of]
    pair = []  # per disc: (first offset, cost (offsets, n)) over the offsets of every scale
    if pair_q is not None and pair_dq is not None:
        for k in range(K - 1):
            d0 = min(o[k][0] for o in offsets)
            d1 = max(o[k][1] for o in offsets)
            pair.append((d0, _pair_cost(pair_q, pair_dq[k], d0, d1, pair_sd)))

    def penalty(k: int, gaps: np.ndarray, d0: int, d1: int) -> np.ndarray:
        """Cost (offsets, n or 1) of disc ``k`` at ``x + d`` with disc ``k + 1`` at ``x``."""
        ds_ = np.arange(d0, d1 + 1)
        pen = weight * ((ds_ * step / gaps[k] - 1.0) ** 2) / (2 * sd * sd)
        if not pair:
            return pen[:, None]
        p0, cost = pair[k]
        return pen[:, None] + cost[d0 - p0:d1 - p0 + 1]

    def forward(si: int, with_arg: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Forward scores at scale ``si`` (and each disc's best offset to the disc above)."""
        gaps = gaps_of[si]
        fwd = np.empty((K, n))
        arg = np.zeros((K, n), np.int32) if with_arg else None
        fwd[0] = unary[0]
        for k in range(K - 1):
            d0, d1 = offsets[si][k]
            # cand[i, x]: disc k at x + d0 + i (its forward score; neg beyond the grid) less the cost
            cand = _windows(fwd[k], d0, d1, neg) - penalty(k, gaps, d0, d1)
            if with_arg:
                i = _first_argmax(cand)
                fwd[k + 1] = unary[k + 1] + cand[i, rows]
                arg[k + 1] = d0 + i
            else:  # the maximum is the element argmax picks: the same scores
                fwd[k + 1] = unary[k + 1] + cand.max(0)
        return fwd, arg

    best = None  # (score, scale index, end, fwd)
    for si in range(len(gaps_of)):
        fwd, _ = forward(si, False)
        end = int(np.argmax(fwd[-1]))
        score = float(fwd[-1, end])
        if best is None or score > best[0]:
            best = (score, si, end, fwd)
    assert best is not None
    score, si, end, fwd = best
    _, arg = forward(si, True)  # the winning scale again, with the offsets for the positions
    pos = np.empty(K, int)
    pos[-1] = end
    for k in range(K - 1, 0, -1):
        pos[k - 1] = pos[k] + arg[k, pos[k]]
    bwd = np.zeros((K, n))
    for k in range(K - 2, -1, -1):
        d0, d1 = offsets[si][k]
        # bwd[k][x] = max over d of the chain below with disc k + 1 at x - d (neg where x - d < 0)
        m = (bwd[k + 1] + unary[k + 1])[None] - penalty(k, gaps_of[si], d0, d1)
        out = np.full(n, -np.inf)
        out[:d1] = neg
        for i, d in enumerate(range(d0, d1 + 1)):
            np.maximum(out[d:], m[min(i, len(m) - 1), : n - d], out=out[d:])
        bwd[k] = out
    return ChainResult(grid, grid[np.clip(pos, 0, n - 1)], float(scales[si]), score, fwd + bwd)
