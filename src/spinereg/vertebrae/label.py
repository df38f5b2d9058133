"""Automatic vertebral labeling: every intervertebral disc along the cord, with its level.

:func:`label_vertebrae` takes an image and its cord segmentation (same grid) and returns a
:class:`VertebralLabeling`: one :class:`Disc` per intervertebral disc in the field of view
(PAM50_label_disc values: 3 = C2/C3 ... 8 = C7/T1 ... 20 = T12/L1), each at its arc length along
the cord centerline and as a world point on the centerline at the disc's height, with a
confidence. Steps (see the modules):

1. the cord centerline of the segmentation and a mid-sagittal slab of the image in the cord's
   frame (:mod:`~spinereg.vertebrae.straight`);
2. a global, contrast-agnostic match of the slab to the template's tissue classes over every S-I
   shift and scale (:mod:`~spinereg.vertebrae.match`), checked against the cord's left-right
   width (:mod:`~spinereg.vertebrae.cordwidth`): where the vertebral-body column lies in depth,
   the expected disc spacing, and a vote on identity;
3. disc band evidence in the posterior half of that column, over tilts
   (:mod:`~spinereg.vertebrae.evidence`), for bright and/or dark discs (by contrast);
4. the chain of template discs placed by dynamic programming with the template's disc spacing
   (:mod:`~spinereg.vertebrae.dp`): each disc in view scores its band evidence minus what a disc
   must show, plus the cord-width agreement and the global match's vote; the pontomedullary
   junction cannot lie below the top of the segmented cord nor the template's last disc far
   above its end; ``init`` (SCT's ``-initz`` / ``-initlabel``) pins one disc (and the image's
   own reading of it is recorded, ``init_check``, warned of when it names another level). The chain that
   names the levels reads bands tilted at most ``IDENTITY_TILTS_DEG`` (steep tilts make spurious
   peaks between weak discs); the discs are then re-placed on every tilt, each within
   ``REFINE_MM`` of that chain's place;
5. the conus tip (value 60) at the inferior end of the segmented cord when the image continues
   below it and the lowest disc is T10/T11 (value 18) or lower.

Identity (which disc is C2/C3) comes from the chain itself where the field of view shows
something only one identity explains (C2 and the skull base above the first disc, the spacing of
thoracic versus cervical vertebrae, the template match); ``identity_margin`` says by how much the
best identity beats the chain shifted by one level, and ``ambiguous`` is set when that margin is
small: then pass ``init``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.cord.centerline import Centerline
from spinereg.cord.roll import MAX_DEG, TOLERANCE_DEG, Roll, cross_section_roll, frame_turn
from spinereg.errors import InputError
from spinereg.io.image import Image, onto_grid_of, require_nonempty
from spinereg.io.sanity import require_not_mask, require_segmentation
from spinereg.vertebrae.consistency import c1c2_reason, c1c2_spacing, disc_steps, step_reason
from spinereg.vertebrae.cord_end import SHORT_MM, cord_below_end
from spinereg.vertebrae.cord_signal import faint_reason, require_cord_signal
from spinereg.vertebrae.cordwidth import lr_width
from spinereg.vertebrae.csf_identity import csf_identity, template_area_profiles
from spinereg.vertebrae.dp import best_chain
from spinereg.vertebrae.evidence import (
    TILTS_DEG,
    Evidence,
    band_evidence_sets,
    smoothed,
    tilt_profiles,
)
from spinereg.vertebrae.intensity import zero_based
from spinereg.vertebrae.match import candidates, global_search
from spinereg.vertebrae.model import CONUS, CORD, SPACING_SD, SpineModel, spine_model
from spinereg.vertebrae.names import margin_text
from spinereg.vertebrae.orientation import flip_si, si_reversal
from spinereg.vertebrae.pmj import PMJ, find_pmj
from spinereg.vertebrae.result import Disc, VertebralLabeling, disc_name
from spinereg.vertebrae.straight import Straightened, slab_points, straighten_slab

if TYPE_CHECKING:
    from spinereg.vertebrae.cord_signal import CordSignal
    from spinereg.vertebrae.dp import ChainResult
    from spinereg.vertebrae.match import GlobalMatch

#: the mid-sagittal slab follows the subject's turn about S-I (the cord cross-section's roll,
#: :mod:`spinereg.cord.roll`) beyond ROLL_TOLERANCE_DEG; every figure measured before (phantoms
#: turned -5..+5 deg, t2, t1) stays as it was; a larger turn is followed up to within the
#: tolerance (sct_testing_data t2 turned 15 deg was labelled T10/T11-T11/T12, and 30 deg lost
#: C2/C3: docs/labeling_bare_image.md); nothing beyond MAX_ROLL_DEG
ROLL_TOLERANCE_DEG = TOLERANCE_DEG
MAX_ROLL_DEG = MAX_DEG
#: discs of PAM50's numbering that are not seen as bands (pontomedullary junction, C1/C2)
UNSEEN = (1, 2)
#: evidence (robust z-score) a disc band must exceed to pay for itself
E0 = 1.0
#: where in the column the disc bands are averaged (see evidence.band_evidence)
EVIDENCE_OPTIONS = {"offset_mm": 3.0, "fraction": 0.45}
#: the image must go on this far (mm) below the end of the cord for that end to be the conus
CONUS_BELOW_MM = 5.0
#: coarsest sampling along the cord (mm) at which discs (4-6 mm thick) are still resolved
MAX_SI_SPACING_MM = 6.0
#: how far (mm) below the top of the segmented cord PAM50's disc 1 may be found (the top of
#: PAM50's cord, which SCT's conventions call the pontomedullary junction region)
PMJ_TOLERANCE_MM = 5.0
#: where PAM50's disc 1 lies below the pontomedullary junction when the image shows it (mm along
#: the cord): SCT's manual PMJ on PAM50_small_t2 moved to current PAM50 space
#: (phantom.tissue_contrast.SMALL_TO_PAM50_MM) lies 21.3 mm above PAM50_label_disc's value 1;
#: the range allows the subject's size (0.85-1.15x) and the PMJ reading's error (0.6-5 mm low on
#: moved copies of that image). A segmentation that reaches into the medulla put the top of the
#: cord 20-45 mm above disc 1: held within PMJ_TOLERANCE_MM of it, PAM50_small_t2 (whose field
#: runs from the pons to T12) was labelled C2/C3-T11/T12 17-65 mm off (flagged; right, MAE 0.5 mm,
#: with PAM50_small_cord as the segmentation)
PMJ_TO_DISC1_MM = (9.0, 33.0)
#: how far (mm) above the inferior end of the segmented cord the template's last disc may be
CONUS_TOLERANCE_MM = 40.0
#: a disc this far (mm) beyond the last row with band evidence is still reported (its band shows)
EDGE_SLACK_MM = 1.0
#: fewest discs found, and fewest of them showing a band (evidence >= E0), for an identity that
#: comes from the chain (not ``init``) to be trusted: one or two discs fix no sequence
MIN_DISCS = 3
MIN_BANDS = 2
#: a flagged labeling's discs report this share of the confidence the chain gives them (its
#: positional and identity margins): on 1,220 discs of the independent phantoms' development set
#: (eight variants, seeds 100-129, true segmentations) the discs of flagged labelings lay within
#: 2 mm of their truth under the right name 46 times in 82 (56 %), those of unflagged ones 1,123
#: in 1,138 (98.7 %); a flag says "check the levels", and a confidence of 0.8-1 beside it did not
FLAGGED_CONFIDENCE = 0.5
#: band evidence at which a disc counts as showing a band for MIN_BANDS (dark T1 discs: 0.5-0.8)
BAND_SHOWN = 0.5
#: discs whose names anchor the levels: a cervical disc (up to C7/T1, the cervical enlargement and
#: C2 above), a lumbar one (from T12/L1) or the conus. Discs T1/T2-T11/T12 alone are named by their
#: spacing, which a subject's length scale mimics: a T2-T10 phantom (seed 162, length 0.87) was
#: named one level low with identity margin 3.58, unflagged, where right ones had 0.8-10.9
#: (session 39, tests/test_label_vertebrae_fov.py)
LAST_CERVICAL_DISC, FIRST_LUMBAR_DISC = 8, 20
#: identity margin (chain score units) under which the identity is called ambiguous; with an
#: S-I sampling coarser than THICK_SI_MM it grows in proportion (a 5 mm slice shows a 4-6 mm disc
#: in one or two slices: its band evidence is the weaker and the margin's units the less certain)
AMBIGUOUS_MARGIN = 2.0
THICK_SI_MM = 2.5
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
#: when the cues disagree, the chain is run again with the absolute cord-width term this much
#: wider (log units; the subject's own width profile, the pair term, keeps its weight): an
#: automatic segmentation 17-26 % too wide (full phantom seed 3) costs < 0.3 a disc there. The
#: three labelings that disagreed (docs/labeling_bare_image.md) were all right after it
WIDTH_SD_FALLBACK = 0.3
#: evidence (see :mod:`spinereg.vertebrae.csf_identity`) with which the CSF profile renames the
#: levels of a labeling already flagged ambiguous (chosen on the ``axial_thick`` phantoms of
#: seeds 100-129 and the other variants of seeds 100-103, docs/labeling_bare_image.md)
CSF_RELABEL_EVIDENCE = 5.0
#: how a disagreement is said in ``ambiguous_reasons`` (metrics.level_check reads it)
CUES_DISAGREE = "the cues disagree"
#: spread of the log ratio of the subject's cord width to the template's at the same level
WIDTH_SD = 0.12
#: spread of the change of the log cord width from one disc to the next against the template's
#: (the pair term of the chain: scale-free, it places the cervical and lumbar enlargements)
WIDTH_STEP_SD = 0.05
#: the identity's reference disc stays this close (mm) to its place when positions are refined
POSITION_HOLD_MM = 6.0
#: band tilts (degrees) the chain that names the levels reads; the positions are then refined
#: on every tilt (evidence.TILTS_DEG) within REFINE_MM of that chain's
IDENTITY_TILTS_DEG: tuple[float, ...] = tuple(range(-15, 16, 5))
REFINE_MM = 3.0
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
#: the width measured at the ends of the segmented cord is held this far (mm) beyond them, so the
#: pair term reaches discs at the edges of the field of view
WIDTH_EXTEND_MM = 8.0
#: weight of the cord-width mismatch against the correlation ratio in the global match
WIDTH_WEIGHT = 2.0
#: weight of the global match's correlation ratio in the chain (per unit of eta^2, whole chain)
GLOBAL_WEIGHT = 60.0
#: disc polarities tried per contrast (+1 bright, -1 dark discs); the first gets PRIOR_BONUS
#: for t1 (discs darker than fatty marrow on most T1w images, but not on every one:
#: sct_testing_data's t1 shows bright discs, and wins by a wide margin) and for t2 (discs
#: brighter than the bodies on most T2w images, but not on every one: dehydrated discs, thin
#: thoracic discs between dark endplates, and the T2 average PAM50_small_t2's upper cervical
#: discs read dark; sct_testing_data's t2_fake_lesion, a real thoracic T2 image, was labelled
#: 4-5 mm above its dark disc bands, on the marrow of the body above, unflagged, when only bright
#: discs were tried)
CONTRAST_POLARITY = {"t2": (1, -1), "t2s": (1,), "t1": (-1, 1), "auto": (1, -1)}
PRIOR_BONUS = {"t1": 2.0, "t2": 2.0}
#: chain score difference under which the two polarities are called a tie (ambiguous)
POLARITY_MARGIN = 1.0
#: the polarity margin without PRIOR_BONUS (the chain's own scores: disc bands, spacing, cord
#: width). Below 0 the other polarity scores higher and the contrast's prior alone kept the
#: reading (the labeling is flagged, not changed). The threshold is the prior itself, not fitted:
#: on the development phantoms (seeds 100-129) it flags `test` 116 (named right, C2/C3 and C4/C5
#: 6 mm off, unflagged before) and two right labelings of 196 (session 28)
IMAGE_POLARITY_MARGIN = 0.0
#: how that is said in ``ambiguous_reasons``
PRIOR_ALONE = "score higher without the prior"


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


def _si_spacing(image: Image, cl: Centerline) -> float:
    """Extent (mm) of one voxel along the cord's mean direction: how finely the image samples the
    cord's length (a 7.5 mm axial slice crossed by a cord tilted 20 degrees: about 7.2 mm)."""
    return image.grid.extent_along(cl.tangent(np.linspace(0.0, cl.length, 20)).mean(0))


def _width_step_sd(image: Image, width: np.ndarray) -> float:
    """Spread of the disc-to-disc change of the log cord width: ``WIDTH_STEP_SD`` (anatomy) and
    the measurement's own, which grows with the voxel's left-right extent beyond 0.5 mm against
    the cord's width (3 mm sagittal slices measure an 11 mm cord's width in 3-4 steps)."""
    w = float(np.nanmedian(width)) if np.isfinite(width).any() else 10.0
    lr = image.grid.extent_along([1.0, 0.0, 0.0])
    return float(np.hypot(WIDTH_STEP_SD, WIDTH_RES_FACTOR * max(lr - 0.5, 0.0) / max(w, 1.0)))


def _conus(discs: list[Disc], cl: Centerline, s_first: float, margin: float) -> Disc | None:
    """The conus medullaris tip (PAM50 value 60): the inferior end of the segmented cord, when the
    image goes on at least ``CONUS_BELOW_MM`` below it and the lowest disc found is T10/T11 or
    lower (above that, a cord ending in the image is a cropped segmentation, not the conus)."""
    if not discs or s_first > -CONUS_BELOW_MM or max(d.value for d in discs) < 18:
        return None
    conf = float(1 - np.exp(-max(margin, 0.0) / 2.0))
    return Disc(CONUS, 0.0, cl.points(0.0), conf, float("nan"), 0.0)


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


def _init_position(init: tuple[np.ndarray, int], cl: Centerline) -> tuple[int, float]:
    """``init`` = (world point (3,), disc value) -> (value, arc length)."""
    point, value = init
    s, dist = cl.project(np.asarray(point, float)[None])
    return int(value), float(s[0])


def _one_blas_thread():
    """Small dense products and solves (the centerline fit) run far faster on one BLAS thread
    than on a pool competing for busy cores; ``threadpoolctl`` when installed, else nothing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def discs_on_bands(discs: list[Disc]) -> list[Disc]:
    """The discs that show a band in the image (placed on one, evidence >= :data:`BAND_SHOWN`;
    not the conus, not an estimate): what :data:`MIN_BANDS` counts."""
    return [d for d in discs if d.value != CONUS and not d.estimated and d.evidence >= BAND_SHOWN]


def _c1c2_from_csf(image: Image, seg: Image, cl: Centerline, contrast: str, template: str,
                   model: SpineModel, discs: list[Disc]) -> tuple[Disc | str, float | None]:
    """C1/C2 from the CSF profile above the measured C2/C3 (:func:`spinereg.vertebrae.c1c2.locate_c1c2`)
    as a disc, or why not; and the stretch the fit ran into when it ran into an end of its search."""
    from spinereg.io.template import load_template
    from spinereg.vertebrae.c1c2 import locate_c1c2, template_csf

    c23 = [d for d in discs if d.value == 3 and not d.estimated]
    vals = list(model.disc_values)
    if not c23 or 2 not in vals or 3 not in vals:
        return "no measured C2/C3 (or no C1/C2 in the template)", None
    tpl = load_template(template)
    if not tpl.has("csf"):
        return f"template {template} has no CSF mask", None
    found, why = locate_c1c2(image, seg, cl, c23[0].s, contrast, template_csf(str(tpl.path("csf"))),
                             float(model.disc_s[vals.index(3)]), float(model.disc_s[vals.index(2)]))
    if found is None:
        return why, None
    if not found.placed:
        return why, found.k
    if found.s > cl.length:
        return f"C1/C2 from the CSF lies {found.s - cl.length:.1f} mm above the cord in view", None
    conf = float(min(c23[0].confidence, found.ncc))
    return Disc(2, found.s, cl.points(found.s), conf, float("nan"), 0.0, source="csf"), None


def label_vertebrae(image: Image, seg: Image, contrast: str = "auto", init: tuple | None = None,
                    template: str = "PAM50", check_identity: bool = True) -> VertebralLabeling:
    """Find every intervertebral disc of ``image`` along the cord of ``seg`` (see
    :func:`_label_vertebrae`). ``check_identity=False`` skips the image-alone second opinion on the
    levels' names (for callers whose own labels fix the identity and are checked against the
    result, e.g. register-to-template given body labels)."""
    require_segmentation(seg, "segmentation", "-s")
    require_not_mask(image, "image", "-i")
    image, offset = zero_based(image)  # the cues read intensities on a scale that starts near 0
    with _one_blas_thread():
        prep, seg = _prepare(image, seg, contrast)  # seg: on the image's grid
        lab = _label_vertebrae(image, seg, prep, init, template, check_identity)
        free = None
        if init is not None and check_identity:  # the free run shares the checks and the cord frame
            free = _with_csf_identity(image, seg, prep, template, _label_vertebrae(image, seg, prep, None, template, True))
            _check_init(lab, free, init)
        elif check_identity:
            lab = _with_csf_identity(image, seg, prep, template, lab)
        if init is not None and not lab.discs:
            _refuse_empty_pin(image, init, free)
        lab.report["pmj"] = None if prep.pmj is None else {**prep.pmj.as_dict(), "s": round(prep.pmj_s, 2)}
        if offset:
            lab.report["intensity_offset"] = round(offset, 4)
        return _with_flag_confidence(_with_cord_end(image, lab, prep))


def _refuse_empty_pin(image: Image, init: tuple, free: VertebralLabeling | None) -> None:
    """A pinned disc that leaves no disc in the field of view is a wrong pin, not a result:
    ``-initz 2,3`` on t2 (C2/C3 pinned at its inferior end, every other disc then below the image)
    wrote an all-zero labelling and exited 3 before session 40; now refused before any output,
    with what the image alone reads."""
    value = int(init[1])
    seen = [d.name for d in free.measured] if free is not None else []
    reads = (f"; the image alone reads {seen[0]} to {seen[-1]}" if len(seen) > 1
             else f"; the image alone reads {seen[0]}" if seen else "")
    raise InputError(f"the pinned disc ({disc_name(value)}) leaves no disc in the field of view{reads}", image.name,
                     "check -initz / -initlabel (slices counted from the inferior end, as SCT's RPI: "
                     "-initz Z,3 puts C2/C3 at slice Z), or leave the pin out")


def _with_flag_confidence(lab: VertebralLabeling) -> VertebralLabeling:
    """Every disc of a flagged labeling reports :data:`FLAGGED_CONFIDENCE` of the confidence its
    chain gave it (the relative weights between its discs are kept)."""
    if lab.ambiguous:
        for d in lab.discs:
            d.confidence = float(d.confidence) * FLAGGED_CONFIDENCE
        lab.report["confidence_scaled_by_flag"] = FLAGGED_CONFIDENCE
    return lab


def _with_csf_identity(image: Image, seg: Image, prep: _Prepared, template: str,
                       lab: VertebralLabeling) -> VertebralLabeling:
    """A labeling already flagged ambiguous, of an image with a bright CSF, is read again by the
    CSF around the cord (:func:`spinereg.vertebrae.csf_identity.csf_identity`); when that profile
    prefers levels shifted by ``k`` with evidence of at least :data:`CSF_RELABEL_EVIDENCE`, the
    image is labelled again with its strongest band disc pinned under the shifted name (as
    ``-initz`` would), and stays flagged with the reason. Unflagged labelings are left as they
    are (the record is not computed): read on them, the CSF preferred a wrong shift with evidence
    >= 5 on 2 of 111 right ones (3 mm sagittal stacks), and caught no wrong one."""
    if not lab.ambiguous:
        return lab
    if prep.signal.csf == "dark":
        # the profile needs a bright CSF: read as -c t2 on a T1-weighted image (the user's word
        # kept, flagged) it relabelled sct_testing_data's t1w 3 levels low (C5/C6 for C2/C3, where
        # the disc bands had it right) before session 38
        lab.report["csf_identity"] = {"skipped": "the CSF is darker than the cord"}
        return lab
    from spinereg.io.template import load_template

    tpl = load_template(template)
    band = [d for d in lab.discs if d.source == "band" and d.value != CONUS]
    if not (tpl.has("csf") and tpl.has("cord")) or len(band) < 2:
        return lab
    # -c auto on an image whose CSF is clearly brighter than the cord reads it as T2 does
    bright = prep.contrast == "auto" and prep.signal.csf == "bright"
    found = csf_identity(image, seg, lab.centerline, [(d.value, d.s) for d in band], spine_model(template),
                         template_area_profiles(str(tpl.path("csf")), str(tpl.path("cord"))),
                         "t2" if bright else prep.contrast, float(lab.report["si_spacing_mm"]))
    lab.report["csf_identity"] = None if found is None else found.as_dict()
    if found is None or found.shift == 0 or found.evidence < CSF_RELABEL_EVIDENCE:
        return lab
    pin = max(band, key=lambda d: d.evidence)
    value = pin.value + found.shift
    try:
        again = _label_vertebrae(image, seg, prep, (pin.point, value), template, True)
    except InputError as err:  # pragma: no cover - the same image was just labelled
        lab.report["csf_identity"]["relabel_failed"] = str(err)
        return lab
    before = [d.name for d in lab.measured]
    again.report["csf_identity"] = {**found.as_dict(), "relabelled": True, "discs_before": before,
                                    "identity_margin_before": round(float(lab.identity_margin), 2),
                                    "image_identity_before": lab.report.get("image_identity"),
                                    "pinned": {"name": disc_name(value), "s_mm": round(float(pin.s), 2)}}
    for key in ("first_pass", "second_pass"):  # what the passes before it named
        if key in lab.report:
            again.report[key] = lab.report[key]
    again.report["ambiguous_reasons"] = list(dict.fromkeys([  # both passes' reasons, each once (t1w -c t2
        # said "the CSF is darker than the cord ... give -c t1" twice, before session 37)
        f"the CSF around the cord (its area against the cord's, along the cord) named the levels {abs(found.shift)} "
        f"{'lower' if found.shift > 0 else 'higher'} than the disc bands and cord width did ({' to '.join(before[:1] + before[-1:])}; "
        f"evidence {found.evidence:.1f}): relabelled with the disc at {pin.s:.0f} mm named {disc_name(value)}; check the levels "
        "or give -initz", *lab.report["ambiguous_reasons"], *again.report["ambiguous_reasons"]]))
    again.ambiguous = True
    again.identity_source = "csf"
    return again


def _csf_sign(signal: CordSignal) -> int:
    """+1 where the CSF around the cord is brighter than the cord (T2, T2*), -1 where darker."""
    return 1 if (float(signal.contrast) if signal.pieces else 0.0) >= 0 else -1


def _with_cord_end(image: Image, lab: VertebralLabeling, prep: _Prepared) -> VertebralLabeling:
    """A segmentation that ends where the image still shows the cord below it stops short of the
    cord's end (:func:`spinereg.vertebrae.cord_end.cord_below_end`): its end is not the conus,
    and the labeling is flagged (the discs below the end are placed by the chain alone)."""
    end = cord_below_end(image, lab.centerline, _csf_sign(prep.signal))
    lab.report["cord_below_end"] = end
    if end is None or end["cord_below_end_mm"] < SHORT_MM:
        return lab
    lab.discs = [d for d in lab.discs if d.value != CONUS]
    lab.report["ambiguous_reasons"].append(
        f"the image shows the cord going on {end['cord_below_end_mm']:.0f} mm below the lower end of the segmentation: "
        "it stops short of the cord's end (no conus reported; discs below its end placed by the chain alone); "
        "check the segmentation")
    lab.ambiguous = True
    return lab


def _check_init(pinned: VertebralLabeling, free: VertebralLabeling, init: tuple[np.ndarray, int]) -> None:
    """Record in ``pinned.report["init_check"]`` what the image alone (the same call without
    ``init``) names the pinned disc: the level of its disc nearest the pin (within
    POSITION_HOLD_MM; else the median over the discs both place, :func:`level_shift`), and a
    warning when that is another level. A pinned disc is trusted, as SCT does, but a wrong
    ``-initz`` (an init file made for another image, a slice counted from the other end) would
    otherwise pass unremarked, under an identity margin that only measures the pin. Near the pin,
    not over all discs: a chain held to a wrong pin stretches over a few discs and gives the rest
    their image names back."""
    value, s0 = _init_position(init, pinned.centerline)
    near = min((d for d in free.measured if d.value != CONUS), key=lambda d: abs(d.s - s0), default=None)
    if near is not None and abs(near.s - s0) <= POSITION_HOLD_MM:
        shift = int(near.value - value)
    else:
        shift = level_shift(pinned, free)
    names = [d.name for d in free.measured]
    record = {"image_discs": names, "image_identity_margin": round(float(free.identity_margin), 2),
              "image_ambiguous": bool(free.ambiguous), "level_shift": shift,
              "image_name_at_pin": None if near is None or abs(near.s - s0) > POSITION_HOLD_MM else near.name}
    if shift:
        how = "ambiguously" if free.ambiguous else "unambiguously"
        record["warning"] = (
            f"the pinned disc ({disc_name(value)}) names the levels {abs(shift)} level(s) "
            f"{'higher' if shift > 0 else 'lower'} than the image alone reads them ({how}: "
            f"{' to '.join(names[:1] + names[-1:])}, identity margin {margin_text(free.identity_margin)}): "
            "check -initz / -initlabel")
    pinned.report["init_check"] = record


@dataclass(frozen=True)
class _Prepared:
    """What every labeling pass of one image and segmentation shares: the checked inputs' cord
    signal, the contrast given and the one read, and the cord frame (centerline and roll)."""

    signal: CordSignal
    given: str
    contrast: str
    mismatch: str | None
    frame: tuple
    pmj: PMJ | None = None
    #: the PMJ's arc length on the frame's centerline (None without a PMJ)
    pmj_s: float | None = None


def _prepare(image: Image, seg: Image, contrast: str) -> tuple[_Prepared, Image]:
    """Check the inputs (one-line errors) and compute what the passes share (:class:`_Prepared`);
    also ``seg`` on ``image``'s grid (holding the image's voxels in another axis order: moved exactly
    onto it; any other grid difference refused, after the contrast and dimension checks)."""
    if contrast not in CONTRAST_POLARITY:
        raise InputError(f"unknown contrast {contrast!r}", None, "use t1, t2, t2s or auto")
    if image.ndim != 3:
        raise InputError(f"image must be 3D, got shape {image.shape}", image.name, "give one 3D volume")
    seg = onto_grid_of(seg, image, what="image and segmentation")
    require_nonempty(seg, "segmentation")
    signal = require_cord_signal(image, seg)
    read, mismatch = read_contrast(contrast, signal)
    cl = Centerline.from_mask(seg)
    roll = cross_section_roll(seg, cl)
    pmj = find_pmj(image, seg, _slab_frame(cl, roll)[0], csf_sign=_csf_sign(signal))
    pmj_s = None if pmj is None else float(cl.project(pmj.point[None])[0][0])
    return _Prepared(signal, contrast, read, mismatch, (cl, roll), pmj, pmj_s), seg


def _label_vertebrae(image: Image, seg: Image, prep: _Prepared, init: tuple | None = None,
                     template: str = "PAM50", check_identity: bool = True) -> VertebralLabeling:
    """Find every intervertebral disc of ``image`` along the cord of ``seg`` (:func:`_chain_labeling`);
    when the image alone contradicts the identity the cord width chose (``the cues disagree``),
    label again with the absolute cord width down-weighted (``WIDTH_SD_FALLBACK``): the result is
    flagged ambiguous either way, and says what the first pass named."""
    signal, given, contrast, mismatch, frame = prep.signal, prep.given, prep.contrast, prep.mismatch, prep.frame
    pmj_s = prep.pmj_s
    lab = _chain_labeling(image, seg, contrast, init, template, check_identity=check_identity, frame=frame,
                          pmj_s=pmj_s)
    lab = _with_signal(lab, signal, given, mismatch)
    orientation = _orientation(image, seg, contrast, template, lab) if init is None and check_identity else None
    if not any(r.startswith(CUES_DISAGREE) for r in lab.report["ambiguous_reasons"]):
        return _with_orientation(lab, orientation)
    again = _chain_labeling(image, seg, contrast, init, template, width_sd=WIDTH_SD_FALLBACK, frame=frame,
                            pmj_s=pmj_s)
    first = [d.name for d in lab.measured]
    shift = level_shift(lab, again)
    if shift is None or abs(shift) > MAX_SECOND_PASS_SHIFT:
        second = [d.name for d in again.measured]
        how = "no disc at a place of the first's" if shift is None else f"{shift:+d} levels from the first's"
        lab.report["ambiguous_reasons"].insert(0, (
            f"cord width and image disagreed; relabelled with the cord width down-weighted (spread "
            f"{WIDTH_SD_FALLBACK}) the discs were named {' to '.join(second[:1] + second[-1:])} ({how}), beyond the "
            f"{MAX_SECOND_PASS_SHIFT} levels the image's check weighs: the first labeling is kept"))
        lab.report["second_pass"] = {"discs": second, "identity_margin": round(again.identity_margin, 2),
                                     "level_shift": shift, "kept": False}
        lab.ambiguous = True
        return _with_orientation(lab, orientation)
    note = (f"cord width and image disagreed: with the absolute cord width (spread {WIDTH_SD}) the discs were "
            f"named {' to '.join(first[:1] + first[-1:])} (image-alone margin {margin_text(lab.report['image_identity']['margin'])}); "
            f"relabelled with it down-weighted (spread {WIDTH_SD_FALLBACK})")
    again.report["ambiguous_reasons"].insert(0, note)
    again.report["first_pass"] = {"discs": first, "identity_margin": round(lab.identity_margin, 2),
                                  "image_identity": lab.report["image_identity"], "level_shift": shift}
    again.ambiguous = True
    return _with_orientation(_with_signal(again, signal, given, mismatch), orientation)


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


def read_contrast(contrast: str, signal: CordSignal) -> tuple[str, str | None]:
    """The contrast the chain reads the discs with, and a reason to flag the labeling, from the
    CSF around the cord (:func:`~spinereg.vertebrae.cord_signal.cord_signal`: + = the ring brighter
    than the cord, as on T2/T2*; - = darker, as on T1). ``auto`` on an image whose CSF is clearly
    dark is read as ``t1`` (dark discs first, then bright: sct_testing_data's t1 has bright discs
    and keeps them); ``t2``/``t2s`` given for such an image, or ``t1`` for one whose CSF is clearly
    bright, is kept (the user's word) and flagged: the independent phantom iso1mm_t1 seed 0 (dark
    discs) read as ``-c t2`` was named one level off, unflagged."""
    c = float(signal.contrast) if signal.pieces else 0.0
    if contrast == "auto" and signal.csf == "dark":
        return "t1", None
    if contrast in ("t2", "t2s") and signal.csf == "dark":
        return contrast, (f"the CSF is darker than the cord ({c:+.2f} robust SDs), as on T1-weighted images, but "
                          f"the discs were read as -c {contrast} (bright discs "
                          f"{'only' if CONTRAST_POLARITY[contrast] == (1,) else 'first'}): give -c t1")
    if contrast == "t1" and signal.csf == "bright":
        return contrast, (f"the CSF is brighter than the cord ({c:+.2f} robust SDs), as on T2-weighted images, but "
                          "the discs were read as -c t1: give -c t2")
    return contrast, None


def _with_signal(lab: VertebralLabeling, signal: CordSignal, given: str,
                 mismatch: str | None) -> VertebralLabeling:
    lab.report["cord_signal"] = signal.as_dict()
    lab.report["contrast_given"] = given
    for reason in (faint_reason(signal), mismatch):
        if reason is not None:
            lab.report["ambiguous_reasons"].append(reason)
            lab.ambiguous = True
    return lab


def _orientation(image: Image, seg: Image, contrast: str, template: str,
                 lab: VertebralLabeling) -> tuple[dict, str | None]:
    """:func:`spinereg.vertebrae.orientation.si_reversal` of ``lab`` (its record and reason, or
    None): the same chain on the image and segmentation mirrored along S-I."""
    try:
        mirrored = _chain_labeling(flip_si(image), flip_si(seg), contrast, None, template, check_identity=False)
    except InputError as err:  # the mirror shows too little to label: nothing to compare
        return {"checked": False, "why": str(err)}, None
    n_bands = sum(d.source == "band" and d.value != CONUS for d in lab.discs)
    return si_reversal(lab.report["chain_score"], mirrored.report["chain_score"], n_bands)


def _with_orientation(lab: VertebralLabeling,
                      orientation: tuple[dict, str | None] | None) -> VertebralLabeling:
    if orientation is not None:
        record, reason = orientation
        lab.report["orientation"] = record
        if reason is not None:
            lab.report["ambiguous_reasons"].append(reason)
            lab.ambiguous = True
    return lab


def _slab_frame(cl: Centerline, roll: Roll) -> tuple[Centerline, float]:
    """The centerline whose frame the slab follows, and how far (degrees) it is turned, for the
    cross-section ``roll`` (:func:`~spinereg.cord.roll.cross_section_roll`) of ``cl``."""
    turn = _slab_turn(roll.angle_deg)
    return (cl.rolled(turn) if turn else cl), turn


def _slab_turn(roll_deg: float) -> float:
    """How far (degrees) the slab's frame is turned for a cross-section roll of ``roll_deg``."""
    return frame_turn(roll_deg, ROLL_TOLERANCE_DEG, MAX_ROLL_DEG)


def _too_little_in_view(image: Image, cl: Centerline, model: SpineModel,
                        pts: tuple[np.ndarray, np.ndarray]) -> None:
    """Raise the reason no labeling can be read: too short a stretch of cord, or a field of view
    too narrow around it (an axial stack cropped to the cord, as sct_testing_data's t2s, shows no
    vertebral body)."""
    if cl.length < 10.0:
        raise InputError(f"the image covers {cl.length:.0f} mm of the cord (less than 1 cm)", image.name,
                         "give an image with at least one vertebra in view")
    every = straighten_slab(image, cl, model.b, ds=0.5, margin_mm=40.0, min_valid=0.0, points=pts)
    seen = float(np.isfinite(every.values).mean(1).max()) if len(every.s) else 0.0
    span = float(model.b.max() - model.b.min())
    raise InputError(f"the field of view shows {seen:.0%} of the {span:.0f} mm in front of and behind the cord where "
                     "discs and vertebral bodies are read (30% needed)", image.name,
                     "label an image of the subject with a wider field of view (e.g. its T2w) and bring its levels "
                     "over with the registration, or give vertebral labels yourself")


def _chain_labeling(image: Image, seg: Image, contrast: str = "auto", init: tuple | None = None,
                    template: str = "PAM50", width_sd: float | None = None,
                    check_identity: bool = True, frame: tuple | None = None,
                    pmj_s: float | None = None) -> VertebralLabeling:
    """Find every intervertebral disc of ``image`` along the cord of ``seg``; ``width_sd``: the
    spread of the absolute cord-width term (default ``WIDTH_SD``); ``frame``: ``seg``'s
    centerline and its cross-section roll when the caller has them (else measured here);
    ``pmj_s``: the arc length of the pontomedullary junction the image shows, if any
    (:mod:`spinereg.vertebrae.pmj`; it places PAM50's disc 1, see :data:`PMJ_TO_DISC1_MM`).

    ``contrast``: ``t1``, ``t2``, ``t2s`` or ``auto`` (bright discs for T2/T2*, both polarities
    tried otherwise). ``init``: ``(world_point, disc_value)`` pinning one disc (e.g. from
    SCT's ``-initz`` or ``-initlabel``); the chain keeps that disc within 5 mm of the point.
    The inputs were checked by :func:`_label_vertebrae`, every caller's way in.
    """
    if frame is None:
        cl = Centerline.from_mask(seg)
        frame = (cl, cross_section_roll(seg, cl))
    cl, turn = _slab_frame(*frame)
    roll = frame[1]
    model = spine_model(template)
    pts = slab_points(cl, model.b, ds=0.5, margin_mm=40.0)
    sub = straighten_slab(image, cl, model.b, ds=0.5, margin_mm=40.0, points=pts)
    if pmj_s is not None and (sub.s <= pmj_s).sum() >= 20:
        # nothing above the PMJ belongs to the spine the template models (it ends at the top of
        # PAM50's cord): the brainstem and the skull base left in the slab pulled the global match
        # up by a level or more (copies of PAM50_small_t2 cut 95 mm below the PMJ)
        keep = sub.s <= pmj_s
        sub = Straightened(sub.s[keep], sub.b, sub.values[keep])
    if len(sub.s) < 20:
        _too_little_in_view(image, cl, model, pts)
    eta, scales, tfirst = global_search(sub, model)
    width = lr_width(seg, cl, sub.s)
    glob = _best_global(candidates(eta, scales, tfirst, sub, n=40), model, sub.s, width)
    seg_slab = straighten_slab(seg, cl, model.b, ds=0.5, margin_mm=40.0, min_valid=0.0, mask_padding=False,
                               points=pts)
    j0 = int(np.rint((sub.s[0] - seg_slab.s[0]) / 0.5))
    cord = np.nan_to_num(seg_slab.values[j0:j0 + len(sub.s)]) > 0.5
    back, depth = _column_walls(model, glob.t(sub.s), _front(cord, model.b))

    step = float(sub.s[1] - sub.s[0])
    t = model.disc_s
    span = float(t[0] - t[-1])
    ext = 1.3 * span
    grid = np.arange(sub.s[0] - ext, sub.s[-1] + ext + 1e-6, step)
    j = np.rint((grid - sub.s[0]) / step).astype(int)
    in_sub = (j >= 0) & (j < len(sub.s))
    jc = np.clip(j, 0, len(sub.s) - 1)
    seen = ~np.isin(model.disc_values, UNSEEN)
    pinned = None
    if init is not None:
        value, s_init = _init_position(init, cl)
        if value not in model.disc_values:
            raise InputError(f"initial disc value {value} is not a {model.name} disc label",
                             None, f"use one of {model.disc_values.tolist()} (3 = C2/C3)")
        pinned = (int(np.flatnonzero(model.disc_values == value)[0]), s_init)

    # the cord's width at each grid position against the template's at each disc
    w_grid = np.where(in_sub, width[jc], np.nan)
    w_tpl = np.interp(t, model.s, model.cord_width)
    with np.errstate(all="ignore"):
        lr = np.log(w_grid[None] / w_tpl[:, None])
    wsd = WIDTH_SD if width_sd is None else width_sd
    width_term = np.where(np.isfinite(lr), -(lr ** 2) / (2 * wsd ** 2), 0.0)
    with np.errstate(all="ignore"):
        pair_q = np.log(_extend(w_grid, int(round(WIDTH_EXTEND_MM / step))))
        pair_dq = -np.diff(np.log(w_tpl))
    pair_sd = _width_step_sd(image, width)
    vote = _global_vote(eta, scales, tfirst, sub.s[0], grid, t)
    # PAM50's disc 1 (the top of its cord, below the medulla) lies PMJ_TO_DISC1_MM below the PMJ
    # when the image shows it; else never more than PMJ_TOLERANCE_MM below the top of the
    # segmented cord
    if model.disc_values[0] == 1 and pmj_s is not None:
        vote[0] = np.where((grid <= pmj_s - PMJ_TO_DISC1_MM[0]) & (grid >= pmj_s - PMJ_TO_DISC1_MM[1]), vote[0], -1e9)
    elif model.disc_values[0] == 1:
        vote[0] = np.where(grid >= cl.length - PMJ_TOLERANCE_MM, vote[0], -1e9)
    # nor can the cord end far below the template's last disc (L1/L2 in PAM50, next to its conus)
    vote[-1] = np.where(grid <= CONUS_TOLERANCE_MM, vote[-1], -1e9)
    results = []
    # the column sheared by every tilt once, read for each polarity
    profiles = tilt_profiles(sub, back, depth, tilts=tuple(set(TILTS_DEG) | set(IDENTITY_TILTS_DEG)),
                             **EVIDENCE_OPTIONS)
    for pol in CONTRAST_POLARITY[contrast]:
        half_width = _half_widths(model, glob.t(sub.s), glob.scale, pol)
        ev, ev_id = band_evidence_sets(profiles, polarity=pol, half_width_mm=half_width,
                                       tilt_sets=(TILTS_DEG, IDENTITY_TILTS_DEG))
        if pol < 0:  # one peak per dark disc, not one per endplate
            ev, ev_id = smoothed(ev), smoothed(ev_id)
        e = _grid_evidence(ev_id, grid, in_sub, jc, half_width)
        unary = np.where(seen[:, None], e[None], 0.0) + width_term + vote
        unary_pos = np.where(seen[:, None], _grid_evidence(ev, grid, in_sub, jc, half_width)[None], 0.0) \
            + width_term + vote
        if pinned is not None:
            k, s0 = pinned
            unary[k] = np.where(np.abs(grid - s0) <= 5.0, unary[k], -1e9)
            unary_pos[k] = np.where(np.abs(grid - s0) <= 5.0, unary_pos[k], -1e9)
        chain = best_chain(grid, unary, t, scales, sd=SPACING_SD, pair_q=pair_q, pair_dq=pair_dq,
                           pair_sd=pair_sd)
        img_unary = np.where(seen[:, None], e[None], 0.0) + vote
        bonus = PRIOR_BONUS.get(contrast, 0.0) if pol == CONTRAST_POLARITY[contrast][0] else 0.0
        results.append((chain.score + bonus, pol, ev, chain, unary_pos, img_unary, half_width))
    results.sort(key=lambda r: -r[0])
    _, pol, ev, chain, unary_pos, img_unary, half_width = results[0]
    pol_margin = results[0][0] - results[1][0] if len(results) > 1 else np.inf
    # the same difference without the prior (+ = the chain's own scores agree with the reading)
    pol_margin_image = chain.score - results[1][3].score if len(results) > 1 else np.inf

    inside = (chain.positions >= ev.s[ev.inside][0]) & (chain.positions <= ev.s[ev.inside][-1]) \
        if ev.inside.any() else np.zeros(len(t), bool)
    gx = np.rint((chain.positions - grid[0]) / step).astype(int)
    # identity margin: best chain vs chains putting the neighbouring template disc at the
    # position of each seen disc in view (the whole labeling shifted by one level)
    margins, alts = [], []
    for k in np.flatnonzero(inside & seen):
        best_here = chain.marginal[k, gx[k]]
        win = slice(max(gx[k] - 6, 0), gx[k] + 7)
        alt = [chain.marginal[k2, win].max() for k2 in (k - 1, k + 1) if 0 <= k2 < len(t)]
        margins.append(best_here - max(alt))
        alts.append({"disc": int(model.disc_values[k]), "up": None if k == 0 else round(float(best_here - chain.marginal[k - 1, win].max()), 2),
                     "down": None if k + 1 >= len(t) else round(float(best_here - chain.marginal[k + 1, win].max()), 2)})
    margin = float(min(margins)) if margins else 0.0
    image_check = _image_identity(grid, img_unary, t, scales, chain, ev, sub.s, step, inside & seen) \
        if pinned is None and check_identity else None
    # positions: the cord width's pair term decides the identity, not where each disc sits (a
    # width changing fast across a disc would pull it): with the identity held (the in-view disc
    # with the strongest band kept within POSITION_HOLD_MM of its place) the chain is placed
    # again on the band evidence and the spacing alone
    ref = [k for k in np.flatnonzero(inside & seen)]
    if ref:
        kr = max(ref, key=lambda k: ev.score[int(np.clip(np.rint((chain.positions[k] - sub.s[0]) / step), 0,
                                                            len(sub.s) - 1))])
        held = unary_pos.copy()
        held[kr] = np.where(np.abs(grid - chain.positions[kr]) <= POSITION_HOLD_MM, held[kr], -1e9)
        for k in ref:  # every disc in view stays near where the identity's chain put it
            held[k] = np.where(np.abs(grid - chain.positions[k]) <= REFINE_MM, held[k], -1e9)
        chain = best_chain(grid, held, t, scales, sd=SPACING_SD)
        gx = np.rint((chain.positions - grid[0]) / step).astype(int)
    # reported: the chain's discs in view (a disc within EDGE_SLACK_MM beyond the last row with
    # evidence still shows its band there), less those at an edge of the field of view that show
    # no band (their place is the spacing's guess, not a measurement)
    if ev.inside.any():
        lo_s, hi_s = ev.s[ev.inside][[0, -1]]
        jk = np.clip(np.rint((chain.positions - sub.s[0]) / step), 0, len(sub.s) - 1).astype(int)
        near = (chain.positions >= lo_s - EDGE_SLACK_MM) & (chain.positions <= hi_s + EDGE_SLACK_MM)
        at_edge = np.minimum(chain.positions - lo_s, hi_s - chain.positions) < half_width[jk]
        shown = near & ~(at_edge & (ev.score[jk] < E0))
    else:
        shown = np.zeros(len(t), bool)
    discs = []
    for k in np.flatnonzero(shown & seen):
        m = chain.marginal[k]
        far = np.abs(np.arange(len(grid)) - gx[k]) * step > 3.0
        pos_margin = float(m[gx[k]] - m[far].max()) if far.any() else 10.0
        conf = float((1 - np.exp(-max(pos_margin, 0.0) / 2.0)) * (1 - np.exp(-max(margin, 0.0) / 2.0)))
        jj = int(np.clip(np.rint((chain.positions[k] - sub.s[0]) / step), 0, len(sub.s) - 1))
        discs.append(Disc(int(model.disc_values[k]), float(chain.positions[k]), cl.points(chain.positions[k]),
                          conf, float(ev.score[jj]), float(ev.tilt_deg[jj])))
    # C1/C2 (PAM50 disc 2) shows no band: measured where the CSF above a measured C2/C3 shows it
    c1c2_report, stretch_limit = _c1c2_from_csf(image, seg, cl, contrast, template, model, discs)
    k2 = np.flatnonzero(model.disc_values == 2)
    if isinstance(c1c2_report, Disc):
        discs.insert(0, c1c2_report)
        c1c2_report = {"located_from": "csf", **c1c2_report.as_dict()}
    elif len(k2) and ev.inside.any() and discs:
        # otherwise reported where the field of view shows it (inside the evidence's rows, not at
        # their edge) at the chain's place, marked estimated; measured 0.2-2.3 mm from the truth
        # on the independent phantoms that show it
        k = int(k2[0])
        x = float(chain.positions[k])
        jj = int(np.clip(np.rint((x - sub.s[0]) / step), 0, len(sub.s) - 1))
        if lo_s + half_width[jj] <= x <= hi_s - half_width[jj] and x <= cl.length:
            conf = float(min(d.confidence for d in discs)) * 0.5
            discs.insert(0, Disc(2, x, cl.points(x), conf, float("nan"), 0.0, source="estimated"))
    conus = _conus(discs, cl, sub.s[0], margin)
    if conus is not None:
        discs.append(conus)
    gaps = [d.name for d in discs if d.value != CONUS and d.evidence < E0]
    source = "init" if pinned is not None else "chain"
    si_mm = _si_spacing(image, cl)
    coarse = si_mm > MAX_SI_SPACING_MM
    n_found = sum(d.value != CONUS and d.source == "band" for d in discs)
    n_bands = len(discs_on_bands(discs))
    reasons = []
    if coarse:
        reasons.append(f"S-I sampling {si_mm:.1f} mm > {MAX_SI_SPACING_MM} mm")
    if pinned is None:
        need = AMBIGUOUS_MARGIN * max(1.0, si_mm / THICK_SI_MM)
        if margin < need:
            reasons.append(f"identity margin {margin_text(margin)} < {need:.2f}: the levels shifted by one fit "
                           "almost as well")
        if image_check is not None and image_check["margin"] < -IMAGE_DISAGREE_MARGIN:
            reasons.append(f"{CUES_DISAGREE}: without the cord width (disc bands, spacing and template match "
                           f"alone) levels shifted by one or two fit better by {-image_check['margin']:.2f} > "
                           f"{IMAGE_DISAGREE_MARGIN}; the identity rests on the segmentation's cord width")
        if pol_margin < POLARITY_MARGIN:
            reasons.append(f"bright and dark discs fit alike (margin {pol_margin:.2f} < {POLARITY_MARGIN})")
        elif pol_margin_image < IMAGE_POLARITY_MARGIN:
            kept, other = ("bright", "dark") if pol > 0 else ("dark", "bright")
            reasons.append(f"{other} discs {PRIOR_ALONE} (chain score of bands, spacing and cord "
                           f"width, by {-pol_margin_image:.2f}); {kept} discs were read "
                           f"only because -c {contrast} expects them (prior {PRIOR_BONUS.get(contrast, 0.0):g}): if the "
                           "marks sit on vertebral bodies, label with -c auto (no prior) or pin one disc")
        if n_found < MIN_DISCS:
            reasons.append(f"{n_found} disc(s) found in the field of view: fewer than {MIN_DISCS} fix no sequence")
        if n_bands < MIN_BANDS:
            reasons.append(f"weak sequence fit: {n_bands} of the {n_found} discs show a band "
                           f"(evidence >= {BAND_SHOWN}), fewer than {MIN_BANDS}")
        if discs and not any(d.value <= LAST_CERVICAL_DISC or d.value >= FIRST_LUMBAR_DISC for d in discs):
            reasons.append(f"thoracic discs only ({discs[0].name} to {discs[-1].name}): no cervical or lumbar "
                           "disc nor the conus in view to name the levels, which rest on the discs' spacing "
                           "(a short subject's spacing fits the levels one lower)")
    steps = disc_steps(discs, model)
    if pinned is None and (why := step_reason(steps)) is not None:
        reasons.append(why)
    c12 = c1c2_spacing(discs, model, stretch_limit)
    if (why := c1c2_reason(c12)) is not None:
        reasons.append(why)
    ambiguous = bool(reasons)
    report = {"global_match": {"eta2": round(glob.eta2, 4), "scale": round(glob.scale, 4)},
              "roll": {**roll.as_dict(), "slab_turned_deg": round(turn, 2)},
              "chain_score": round(chain.score, 2), "contrast": contrast,
              "polarity_margin": None if not np.isfinite(pol_margin) else round(float(pol_margin), 2),
              "polarity_margin_image": None if not np.isfinite(pol_margin_image) else round(float(pol_margin_image), 2),
              "si_spacing_mm": round(si_mm, 2), "width_step_sd": round(pair_sd, 3),
              "ambiguous_reasons": reasons, "identity_alternatives": alts,
              "image_identity": image_check, "c1c2": c1c2_report, "c1c2_spacing": c12,
              "disc_steps": steps}
    if coarse:
        report["warning"] = (f"the image samples the cord every {si_mm:.1f} mm along S-I, too coarse to see "
                             f"discs (> {MAX_SI_SPACING_MM} mm): positions and levels are unreliable")
    return VertebralLabeling(discs, cl, chain.scale, margin, ambiguous, pol, source, gaps, ev, report)
