"""The image's own say on a labeling's level identity, and how far two labelings' names differ:
:func:`_image_identity` (the chain's identity against the levels shifted by one or two on the
disc bands, the spacing and the global match's vote alone, without the cord width; ``the cues
disagree`` when those fit better) and :func:`level_shift`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from spinereg.vertebrae.dp import best_chain
from spinereg.vertebrae.evidence import Evidence
from spinereg.vertebrae.model import CONUS, SPACING_SD
from spinereg.vertebrae.result import VertebralLabeling

if TYPE_CHECKING:
    from spinereg.vertebrae.dp import ChainResult


#: the chain's identity is also scored on the image alone (disc bands, spacing and the global
#: match's vote; no cord width, see _image_identity): when the levels shifted by one or two fit
#: the image better by more than IMAGE_DISAGREE_MARGIN (chain score units), the cues disagree and
#: the identity is called ambiguous. The cord width comes from the segmentation, and an automatic
#: one is biased wide: the full independent phantom seed 3 is one level off from its automatic
#: segmentation (identity margin 2.73), two levels off from its true one dilated by a voxel
#: (2.78), image-alone margins -3.10 / -3.08; the right, unflagged labelings of 48 reference
#: cases, full phantom seeds 0-9 (automatic and true segmentation) and 29 phantoms with dilated
#: segmentations score >= -0.87 (docs/labeling_bare_image.md)
IMAGE_DISAGREE_MARGIN = 1.5
#: the shifted identities (levels) that check tries
IMAGE_SHIFTS = (-2, -1, 1, 2)
#: the second pass (below) is taken only when it renames the levels by at most this many: the
#: shifts the image's check weighs
MAX_SECOND_PASS_SHIFT = max(abs(k) for k in IMAGE_SHIFTS)
#: how a disagreement is said in ``ambiguous_reasons`` (metrics.level_check reads it)
CUES_DISAGREE = "the cues disagree"
#: the identity's reference disc stays this close (mm) to its place when positions are refined
POSITION_HOLD_MM = 6.0


def _image_identity(grid: np.ndarray, img_unary: np.ndarray, t: np.ndarray, scales: np.ndarray,
                    chain: ChainResult, ev: Evidence, s_sub: np.ndarray, step: float,
                    in_view: np.ndarray) -> dict | None:
    """The image's own say on the chain's identity, without the cord width: the best chain on
    the band evidence, the global match's vote and the spacing alone with the in-view disc of the
    strongest band held at its place (within POSITION_HOLD_MM) under its own name, and under the
    names IMAGE_SHIFTS levels away (each over every scale). ``margin``: the chain's
    identity's score less the best shifted one (negative: the image prefers a shifted identity
    and only the cord width chose this one)."""
    ks = np.flatnonzero(in_view)
    if len(ks) == 0:
        return None
    jk = np.clip(np.rint((chain.positions[ks] - s_sub[0]) / step), 0, len(s_sub) - 1).astype(int)
    kr = int(ks[np.argmax(ev.score[jk])])
    near = np.abs(grid - chain.positions[kr]) <= POSITION_HOLD_MM
    scores = {}
    for shift in (0, *IMAGE_SHIFTS):
        k = kr + shift
        if not 0 <= k < len(t):
            continue
        u = img_unary.copy()
        u[k] = np.where(near, u[k], -1e9)
        scores[shift] = best_chain(grid, u, t, scales, sd=SPACING_SD).score
    alt = max(v for k, v in scores.items() if k != 0)
    return {"margin": round(float(scores[0] - alt), 2), "scores": {str(k): round(float(v), 2) for k, v in scores.items()}}


def level_shift(first: VertebralLabeling, second: VertebralLabeling, match_mm: float = POSITION_HOLD_MM) -> int | None:
    """How many levels ``second`` names the discs below ``first`` (+ = lower levels, larger disc
    values): the median value difference over discs on their bands in both within ``match_mm``
    of each other along the cord; None when no disc of one lies at a disc of the other."""
    a = [d for d in first.discs if d.source == "band" and d.value != CONUS]
    diffs = []
    for d in (d for d in second.discs if d.source == "band" and d.value != CONUS):
        near = min(a, key=lambda x: abs(x.s - d.s), default=None)
        if near is not None and abs(near.s - d.s) <= match_mm:
            diffs.append(d.value - near.value)
    return int(np.rint(np.median(diffs))) if diffs else None
