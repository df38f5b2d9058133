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

This module holds the labeling passes (:func:`label_vertebrae`, the second pass with the cord
width down-weighted, the relabeling by the CSF, the S-I mirror's chain) and the chain itself
(:func:`_chain_labeling`), and re-exports the names of its parts: :mod:`~spinereg.vertebrae.prepare`
(the checked inputs and cord frame the passes share), :mod:`~spinereg.vertebrae.contrast` (disc
polarities, the contrast read from the CSF), :mod:`~spinereg.vertebrae.chain_terms` (the chain's
scores per disc and place), :mod:`~spinereg.vertebrae.identity_check` (the image-alone check of
the levels, ``level_shift``), :mod:`~spinereg.vertebrae.bandless` (C1/C2 from the CSF, the conus),
:mod:`~spinereg.vertebrae.init_check` (a pinned disc against the image) and
:mod:`~spinereg.vertebrae.flags` (discs on bands, a flagged labeling's confidence, the orientation
record, a segmentation short of the cord's end).
"""

from __future__ import annotations

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.cord.roll import cross_section_roll
from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.io.sanity import require_not_mask, require_segmentation
from spinereg.vertebrae.bandless import CONUS_BELOW_MM, _c1c2_from_csf, _conus
from spinereg.vertebrae.c2c3_csf import moved_reason, replace_c2c3
from spinereg.vertebrae.chain_terms import (
    E0,
    GLOBAL_WEIGHT,
    HALF_WIDTH_FRACTION,
    HALF_WIDTH_MAX_MM,
    HALF_WIDTH_MIN_MM,
    WIDTH_RES_FACTOR,
    WIDTH_STEP_SD,
    WIDTH_WEIGHT,
    _best_global,
    _column_walls,
    _extend,
    _front,
    _global_vote,
    _grid_evidence,
    _half_widths,
    _hold_ends,
    _width_step_sd,
)
from spinereg.vertebrae.chain_terms import (
    _expected_strength as _expected_strength,
)
from spinereg.vertebrae.consistency import c1c2_reason, c1c2_spacing, disc_steps, step_reason
from spinereg.vertebrae.contrast import (
    CONTRAST_POLARITY,
    IMAGE_POLARITY_MARGIN,
    POLARITY_MARGIN,
    PRIOR_ALONE,
    PRIOR_BONUS,
    _with_signal,
    read_contrast,
)
from spinereg.vertebrae.contrast import (
    _csf_sign as _csf_sign,
)
from spinereg.vertebrae.cordwidth import lr_width
from spinereg.vertebrae.csf_identity import coarse_ap_reason, csf_identity, template_area_profiles
from spinereg.vertebrae.dp import best_chain
from spinereg.vertebrae.evidence import (
    TILTS_DEG,
    band_evidence_sets,
    smoothed,
    tilt_profiles,
)
from spinereg.vertebrae.flags import (
    BAND_SHOWN,
    FLAGGED_CONFIDENCE,
    MIN_BANDS,
    MIN_DISCS,
    _with_cord_end,
    _with_flag_confidence,
    _with_orientation,
    discs_on_bands,
)
from spinereg.vertebrae.identity_check import (
    CUES_DISAGREE,
    IMAGE_DISAGREE_MARGIN,
    IMAGE_SHIFTS,
    MAX_SECOND_PASS_SHIFT,
    POSITION_HOLD_MM,
    _image_identity,
    level_shift,
)
from spinereg.vertebrae.init_check import _check_init, _init_position, _refuse_empty_pin
from spinereg.vertebrae.intensity import zero_based
from spinereg.vertebrae.match import candidates, global_search
from spinereg.vertebrae.model import CONUS, SPACING_SD, spine_model
from spinereg.vertebrae.names import margin_text, margin_value
from spinereg.vertebrae.orientation import UPSIDE_DOWN, flip_si, si_reversal
from spinereg.vertebrae.prepare import (
    MAX_ROLL_DEG,
    ROLL_TOLERANCE_DEG,
    _one_blas_thread,
    _prepare,
    _Prepared,
    _si_spacing,
    _slab_frame,
    _too_little_in_view,
)
from spinereg.vertebrae.prepare import (
    _slab_turn as _slab_turn,
)
from spinereg.vertebrae.result import Disc, VertebralLabeling, disc_name
from spinereg.vertebrae.straight import Straightened, slab_points, straighten_slab

__all__ = [
    "AMBIGUOUS_MARGIN", "BAND_SHOWN", "CONTRAST_POLARITY", "CONUS_BELOW_MM", "CONUS_TOLERANCE_MM",
    "CSF_RELABEL_EVIDENCE", "CUES_DISAGREE", "E0", "EDGE_SLACK_MM", "EVIDENCE_OPTIONS",
    "FIRST_LUMBAR_DISC", "FLAGGED_CONFIDENCE", "GLOBAL_WEIGHT", "HALF_WIDTH_FRACTION", "HELD_WIDTH_TOLERANCE",
    "HALF_WIDTH_MAX_MM", "HALF_WIDTH_MIN_MM", "IDENTITY_TILTS_DEG", "IMAGE_DISAGREE_MARGIN",
    "IMAGE_POLARITY_MARGIN", "IMAGE_SHIFTS", "LAST_CERVICAL_DISC", "MAX_ROLL_DEG",
    "MAX_SECOND_PASS_SHIFT", "MAX_SI_SPACING_MM", "MIN_BANDS", "MIN_DISCS", "PMJ_TOLERANCE_MM",
    "PMJ_TO_DISC1_MM", "POLARITY_MARGIN", "POSITION_HOLD_MM", "PRIOR_ALONE", "PRIOR_BONUS",
    "REFINE_MM", "ROLL_TOLERANCE_DEG", "THICK_SI_MM", "UNSEEN", "WIDTH_EXTEND_MM", "WIDTH_RES_FACTOR",
    "WIDTH_SD", "WIDTH_SD_FALLBACK", "WIDTH_STEP_SD", "WIDTH_WEIGHT", "Disc", "VertebralLabeling",
    "discs_on_bands", "label_vertebrae", "level_shift", "read_contrast",
]

#: discs of PAM50's numbering that are not seen as bands (pontomedullary junction, C1/C2)
UNSEEN = (1, 2)
#: a chain score at or below this is a reading the hard limits (-1e9) or a pin rule out: no
#: alternative for the identity margin
IMPOSSIBLE = -1e8
#: PAM50_label_disc's value 1: the pontomedullary junction region, above C1 (no disc)
PMJ_REGION = 1
#: where in the column the disc bands are averaged (see evidence.band_evidence)
EVIDENCE_OPTIONS = {"offset_mm": 3.0, "fraction": 0.45}
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
#: when the cues disagree, the chain is run again with the absolute cord-width term this much
#: wider (log units; the subject's own width profile, the pair term, keeps its weight): an
#: automatic segmentation 17-26 % too wide (full phantom seed 3) costs < 0.3 a disc there. The
#: three labelings that disagreed (docs/labeling_bare_image.md) were all right after it
WIDTH_SD_FALLBACK = 0.3
#: evidence (see :mod:`spinereg.vertebrae.csf_identity`) with which the CSF profile renames the
#: levels of a labeling already flagged ambiguous (chosen on the ``axial_thick`` phantoms of
#: seeds 100-129 and the other variants of seeds 100-103, docs/labeling_bare_image.md)
CSF_RELABEL_EVIDENCE = 5.0
#: spread of the log ratio of the subject's cord width to the template's at the same level
WIDTH_SD = 0.12
#: band tilts (degrees) the chain that names the levels reads; the positions are then refined
#: on every tilt (evidence.TILTS_DEG) within REFINE_MM of that chain's
IDENTITY_TILTS_DEG: tuple[float, ...] = tuple(range(-15, 16, 5))
REFINE_MM = 3.0
#: bands (evidence >= BAND_SHOWN, in view, under the identity's chain) from which the positions'
#: chain is placed without the global match's vote: the chain of that many discs fixes its own
#: stretch, and the vote's single scale pulled an unevenly stretched spine towards a uniform one
#: (independent full phantom, 0.8 mm C1-T6, 11-12 bands; t2's 55 mm field shows 3)
VOTE_FREE_MIN_BANDS = 8
#: log width ratio the absolute cord-width term forgives where the width is held over the partial
#: end bins of the segmented cord (2-3 mm at each end): a cervical cord (11-13 mm) read at a
#: thoracic disc (7.6-8.5 mm) is 0.3-0.5 off, neighbouring cervical levels < 0.1. Held in full
#: (no tolerance), t2 with its automatic segmentation was named one level low by the chain (C2/C3
#: at its top edge, 12.7 mm wide against the template's 11.5; margin 0.45, relabelled by the CSF)
HELD_WIDTH_TOLERANCE = 0.2
#: the width measured at the ends of the segmented cord is held this far (mm) beyond them, so the
#: pair term reaches discs at the edges of the field of view
WIDTH_EXTEND_MM = 8.0


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
            lab = _with_orientation(lab, _free_orientation(free))
        elif check_identity:
            lab = _with_csf_identity(image, seg, prep, template, lab)
        if init is not None and not lab.discs:
            _refuse_empty_pin(image, init, free)
        lab.report["pmj"] = None if prep.pmj is None else {**prep.pmj.as_dict(), "s": round(prep.pmj_s, 2)}
        if offset:
            lab.report["intensity_offset"] = round(offset, 4)
        return _with_flag_confidence(_with_cord_end(image, lab, prep))


def _free_orientation(free: VertebralLabeling) -> tuple[dict, str | None] | None:
    """The upside-down check of the image-alone labeling, for a pinned one: a pin names the levels,
    but on an image whose header has S-I reversed the chain runs from it the wrong way (t2 flipped,
    C4/C5 pinned right: the next discs named C5/C6 and C6/C7 where C3/C4 and C2/C3 are, confidence
    0.99, unflagged, before session 48). The free run checks the mirror already."""
    record = free.report.get("orientation")
    if record is None:
        return None
    return record, next((r for r in free.report["ambiguous_reasons"] if r.startswith(UPSIDE_DOWN)), None)


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
    coarse = coarse_ap_reason(image)
    if coarse is not None:  # t2 at 3 mm A-P: relabelled one level low (evidence 13.1) before session 51
        lab.report["csf_identity"]["not_applied"] = coarse
        lab.report["ambiguous_reasons"].append(
            f"the CSF around the cord named the levels {abs(found.shift)} {'lower' if found.shift > 0 else 'higher'} "
            f"(evidence {found.evidence:.1f}) but was not read: {coarse}")
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
                                    "identity_margin_before": margin_value(lab.identity_margin),
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
        lab.report["second_pass"] = {"discs": second, "identity_margin": margin_value(again.identity_margin),
                                     "level_shift": shift, "kept": False}
        lab.ambiguous = True
        return _with_orientation(lab, orientation)
    note = (f"cord width and image disagreed: with the absolute cord width (spread {WIDTH_SD}) the discs were "
            f"named {' to '.join(first[:1] + first[-1:])} (image-alone margin {margin_text(lab.report['image_identity']['margin'])}); "
            f"relabelled with it down-weighted (spread {WIDTH_SD_FALLBACK})")
    again.report["ambiguous_reasons"].insert(0, note)
    again.report["first_pass"] = {"discs": first, "identity_margin": margin_value(lab.identity_margin),
                                  "image_identity": lab.report["image_identity"], "level_shift": shift}
    again.ambiguous = True
    return _with_orientation(_with_signal(again, signal, given, mismatch), orientation)


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

    def row(x: np.ndarray | float) -> np.ndarray:
        """The slab's row (index into ``sub.s``, clipped) nearest to arc length(s) ``x``."""
        return np.clip(np.rint((np.asarray(x, float) - sub.s[0]) / step), 0, len(sub.s) - 1).astype(int)

    seen = ~np.isin(model.disc_values, UNSEEN)
    pinned = None
    if init is not None:
        value, s_init = _init_position(init, cl)
        if value not in model.disc_values:
            raise InputError(f"initial disc value {value} is not a {model.name} disc label",
                             None, f"use one of {model.disc_values.tolist()} (3 = C2/C3)")
        if value == PMJ_REGION:  # the chain does not hold it: the pin was ignored, warned of as held, before session 48
            raise InputError(f"initial disc value {value} is the pontomedullary junction region, not a disc the "
                             "labeling places", None,
                             "pin a disc from C1/C2 down (e.g. -initz Z,3 for C2/C3); the PMJ is found by itself "
                             "when the image shows the brainstem")
        pinned = (int(np.flatnonzero(model.disc_values == value)[0]), s_init)

    # the cord's width at each grid position against the template's at each disc
    w_grid = np.where(in_sub, width[jc], np.nan)
    w_tpl = np.interp(t, model.s, model.cord_width)
    # over the segmented cord's partial end bins (NaN in lr_width) the absolute term reads the end
    # widths held, less HELD_WIDTH_TOLERANCE (an extrapolation: it rules out a gross mismatch only).
    # Free there, a chain of thoracic discs at the longest scale put its only two discs in view at
    # the two ends of t2's cervical cord cut 8 mm below, and named it T10/T11 (session 50)
    with np.errstate(all="ignore"):
        lr = np.log(w_grid[None] / w_tpl[:, None])
        held = np.log(np.where(in_sub, _hold_ends(width, cord.any(1))[jc], np.nan)[None] / w_tpl[:, None])
    held = np.sign(held) * np.maximum(np.abs(held) - HELD_WIDTH_TOLERANCE, 0.0)
    lr = np.where(np.isfinite(lr), lr, held)
    wsd = WIDTH_SD if width_sd is None else width_sd
    width_term = np.where(np.isfinite(lr), -(lr ** 2) / (2 * wsd ** 2), 0.0)
    with np.errstate(all="ignore"):
        pair_q = np.log(_extend(w_grid, int(round(WIDTH_EXTEND_MM / step))))
        pair_dq = -np.diff(np.log(w_tpl))
    pair_sd = _width_step_sd(image, width)
    vote = _global_vote(eta, scales, tfirst, sub.s[0], grid, t)
    # hard limits (-1e9 where a disc cannot lie), held in every chain. PAM50's disc 1 (the top of
    # its cord, below the medulla) lies PMJ_TO_DISC1_MM below the PMJ when the image shows it;
    # else never more than PMJ_TOLERANCE_MM below the top of the segmented cord
    limits = np.zeros_like(vote)
    if model.disc_values[0] == 1 and pmj_s is not None:
        limits[0] = np.where((grid <= pmj_s - PMJ_TO_DISC1_MM[0]) & (grid >= pmj_s - PMJ_TO_DISC1_MM[1]), 0.0, -1e9)
    elif model.disc_values[0] == 1:
        limits[0] = np.where(grid >= cl.length - PMJ_TOLERANCE_MM, 0.0, -1e9)
    # nor can the cord end far below the template's last disc (L1/L2 in PAM50, next to its conus)
    limits[-1] = np.where(grid <= CONUS_TOLERANCE_MM, 0.0, -1e9)
    vote = np.where(limits < 0, limits, vote)
    # the vote itself (the whole-field match: one global scale and shift) is left out of the
    # positions' chain where the identity's chain stands on VOTE_FREE_MIN_BANDS or more bands: on
    # a long spine that stretches unevenly it pulled the discs towards a uniform stretch
    # (docs/labeling_bare_image.md, session 43); the limits stay
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
            + width_term
        if pinned is not None:
            k, s0 = pinned
            unary[k] = np.where(np.abs(grid - s0) <= 5.0, unary[k], -1e9)
            unary_pos[k] = np.where(np.abs(grid - s0) <= 5.0, unary_pos[k], -1e9)
        chain = best_chain(grid, unary, t, scales, sd=SPACING_SD, pair_q=pair_q, pair_dq=pair_dq,
                           pair_sd=pair_sd)
        img_unary = np.where(seen[:, None], e[None], 0.0) + vote
        bonus = PRIOR_BONUS.get(contrast, 0.0) if pol == CONTRAST_POLARITY[contrast][0] else 0.0
        on_view = (chain.positions >= sub.s[0]) & (chain.positions <= sub.s[-1]) & seen
        vote_free = int(np.sum(on_view & (ev.score[row(chain.positions)] >= BAND_SHOWN))) >= VOTE_FREE_MIN_BANDS
        unary_pos = unary_pos + (limits if vote_free else vote)
        results.append((chain.score + bonus, pol, ev, chain, unary_pos, img_unary, half_width, vote_free))
    results.sort(key=lambda r: -r[0])
    _, pol, ev, chain, unary_pos, img_unary, half_width, vote_free = results[0]
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
        # a reading the hard limits or a pin rule out (score <= IMPOSSIBLE) is no alternative
        shifted = {k2: float(chain.marginal[k2, win].max()) for k2 in (k - 1, k + 1) if 0 <= k2 < len(t)}
        alt = [v for v in shifted.values() if v > IMPOSSIBLE]
        margins.append(best_here - max(alt) if alt else np.inf)
        gap = {k2: round(float(best_here - v), 2) if v > IMPOSSIBLE else None for k2, v in shifted.items()}
        alts.append({"disc": int(model.disc_values[k]), "up": gap.get(k - 1), "down": gap.get(k + 1)})
    margin = float(min(margins)) if margins else 0.0
    image_check = _image_identity(grid, img_unary, t, scales, chain, ev, sub.s, step, inside & seen) \
        if pinned is None and check_identity else None
    # positions: the cord width's pair term decides the identity, not where each disc sits (a
    # width changing fast across a disc would pull it): with the identity held (the in-view disc
    # with the strongest band kept within POSITION_HOLD_MM of its place) the chain is placed
    # again on the band evidence and the spacing alone
    ref = [k for k in np.flatnonzero(inside & seen)]
    if ref:
        kr = max(ref, key=lambda k: ev.score[int(row(chain.positions[k]))])
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
        jk = row(chain.positions)
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
        jj = int(row(chain.positions[k]))
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
        jj = int(row(x))
        if lo_s + half_width[jj] <= x <= hi_s - half_width[jj] and x <= cl.length:
            conf = float(min(d.confidence for d in discs)) * 0.5
            discs.insert(0, Disc(2, x, cl.points(x), conf, float("nan"), 0.0, source="estimated"))
    # C1/C2 from the CSF and C2/C3 on a weak band disagreeing: C2/C3 placed again between them
    # (not a C2/C3 the user pinned)
    c2c3_moved = None
    if pinned is None or int(model.disc_values[pinned[0]]) != 3:
        discs, c2c3_moved, stretch_limit = replace_c2c3(image, seg, cl, contrast, template, model, discs, ev,
                                                        chain.scale, stretch_limit)
    if c2c3_moved is not None:
        c1c2_report = {"located_from": "csf", **discs[0].as_dict()}
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
    if c2c3_moved is not None:
        reasons.append(moved_reason(c2c3_moved))
    ambiguous = bool(reasons)
    report = {"global_match": {"eta2": round(glob.eta2, 4), "scale": round(glob.scale, 4)},
              "roll": {**roll.as_dict(), "slab_turned_deg": round(turn, 2)},
              "chain_score": round(chain.score, 2), "contrast": contrast,
              "polarity_margin": None if not np.isfinite(pol_margin) else round(float(pol_margin), 2),
              "polarity_margin_image": None if not np.isfinite(pol_margin_image) else round(float(pol_margin_image), 2),
              "si_spacing_mm": round(si_mm, 2), "width_step_sd": round(pair_sd, 3),
              "positions_without_vote": bool(vote_free),
              "ambiguous_reasons": reasons, "identity_alternatives": alts,
              "image_identity": image_check, "c1c2": c1c2_report, "c1c2_spacing": c12,
              "disc_steps": steps}
    if c2c3_moved is not None:
        report["c2c3_moved"] = c2c3_moved
    if coarse:
        report["warning"] = (f"the image samples the cord every {si_mm:.1f} mm along S-I, too coarse to see "
                             f"discs (> {MAX_SI_SPACING_MM} mm): positions and levels are unreliable")
    return VertebralLabeling(discs, cl, chain.scale, margin, ambiguous, pol, source, gaps, ev, report)
