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


def _shift(a: np.ndarray, d: int, fill: float) -> np.ndarray:
    """``out[x] = a[x + d]`` (fill outside)."""
    out = np.full_like(a, fill)
    n = len(a)
    if d >= 0:
        out[: n - d] = a[d:]
    else:
        out[-d:] = a[: n + d]
    return out


def _pair_cost(q: np.ndarray | None, dq: np.ndarray | None, k: int, ds_: np.ndarray, sd: float) -> np.ndarray:
    """Cost (len(ds_), n) of disc ``k`` at ``x + d`` and disc ``k + 1`` at ``x``: the squared
    departure of ``q[x + d] - q[x]`` from the template's ``dq[k]`` (0 where ``q`` is unknown)."""
    if q is None or dq is None:
        return np.zeros((len(ds_), 1))
    diff = np.stack([_shift(q, int(d), np.nan) for d in ds_]) - q[None] - dq[k]
    return np.where(np.isfinite(diff), diff * diff / (2 * sd * sd), 0.0)


def best_chain(grid: np.ndarray, unary: np.ndarray, t: np.ndarray, scales: np.ndarray,
               sd: float = 0.10, max_dev: float = 0.30, weight: float = 1.0, pair_q: np.ndarray | None = None,
               pair_dq: np.ndarray | None = None, pair_sd: float = 0.04) -> ChainResult:
    """Best positions on ``grid`` (uniform, increasing) for the discs with template positions
    ``t`` (decreasing), given ``unary[k, x]`` (score of disc ``k`` at ``grid[x]``); ``pair_q``
    (per grid position, NaN where unknown) and ``pair_dq[k]`` (the template's change from disc
    ``k`` to ``k + 1``): the pair term, spread ``pair_sd``."""
    step = float(grid[1] - grid[0])
    K, n = unary.shape
    best: ChainResult | None = None
    neg = -1e18
    for sc in scales:
        gaps = sc * (t[:-1] - t[1:])
        fwd = np.empty((K, n))
        arg = np.zeros((K, n), np.int32)
        fwd[0] = unary[0]
        offs = []
        for k in range(K - 1):
            lo = int(np.floor(gaps[k] * (1 - max_dev) / step))
            hi = int(np.ceil(gaps[k] * (1 + max_dev) / step))
            ds_ = np.arange(max(lo, 1), hi + 1)
            pen = weight * ((ds_ * step / gaps[k] - 1.0) ** 2) / (2 * sd * sd)
            pen = pen[:, None] + _pair_cost(pair_q, pair_dq, k, ds_, pair_sd)  # (nd, n or 1)
            offs.append((ds_, pen))
            cand = np.stack([_shift(fwd[k], int(d), neg) - p for d, p in zip(ds_, pen, strict=True)])
            i = np.argmax(cand, 0)
            fwd[k + 1] = unary[k + 1] + cand[i, np.arange(n)]
            arg[k + 1] = ds_[i]
        end = int(np.argmax(fwd[-1]))
        score = float(fwd[-1, end])
        if best is not None and score <= best.score:
            continue
        pos = np.empty(K, int)
        pos[-1] = end
        for k in range(K - 1, 0, -1):
            pos[k - 1] = pos[k] + arg[k, pos[k]]
        bwd = np.zeros((K, n))
        for k in range(K - 2, -1, -1):
            ds_, pen = offs[k]
            nxt = bwd[k + 1] + unary[k + 1]
            cand = np.stack([_shift(nxt - p, -int(d), neg) for d, p in zip(ds_, pen, strict=True)])
            bwd[k] = cand.max(0)
        best = ChainResult(grid, grid[np.clip(pos, 0, n - 1)], float(sc), score, fwd + bwd)
    assert best is not None
    return best
