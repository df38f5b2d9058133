"""Vertebral-level checks of a template registration.

:func:`label_si_scale`: the S-I scaling the landmarks impose, i.e. the subject's arc length
between its first and last landmarks over the template's between the same levels
(``label_si_scale``), and ``label_si_scale_deviation`` = max |ln s| over that span and every
segment between consecutive landmarks. Labels shifted by one vertebra pair each subject vertebra
with the template's neighbour, which leaves Dice and landmark residuals perfect but changes this
scale -- by about as much as real subjects differ from the template (0.85-1.15x), so the score
only catches gross label errors.

:func:`auto_level_offset`: an independent check of the levels. The subject's discs are found by
the automatic vertebral labeling (:func:`spinereg.vertebrae.label.label_vertebrae`, from the
image and the cord segmentation, without the user's labels) and pushed into the template by the
registration; each lands at its own template disc when the levels are right and about one
vertebra away when they are off by one. With the offsets in units of the local disc spacing,
``level_offset_vertebrae`` is the integer shift (0, 1, 2) that explains them best (least absolute
deviation weighted by the labeling's per-disc confidence, so one disc misplaced by the automatic
labeling does not decide), with
``level_offset_margin`` (how much better than the next shift, per disc) and the median offset.
When the labeling is ambiguous (small fields of view without C2, thick slices, fewer than 3 discs
found: :func:`~spinereg.vertebrae.label.label_vertebrae` flags those), or fewer than
:data:`MIN_DISCS` of its discs lie inside the image's grid (outside it the warp is the identity),
no score is given and a note says so.

When the registration's landmarks are that labeling's own discs (a bare-image run), nothing is
checked; ``landmark_levels_ambiguous`` (1 when the labeling flagged its identity ambiguous) and
``landmark_levels_contradicted`` (1 when the reason is that the image's own vertebral pattern
prefers other levels than the labeling's, even after its second pass with the cord width
down-weighted: the levels rest on the segmentation's cord width alone; or that the image looks
upside down, :mod:`spinereg.vertebrae.orientation`) say what the landmarks' levels are worth.

A job that already labelled the image (register-to-template labels it before registering, to
add the discs it finds to the user's labels) hands that labeling to the check with
:func:`shared_labeling` instead of labelling the image twice; the check uses it only for the
same image and segmentation (same grid and voxels). When that labeling's discs joined the user's
labels as landmarks (:mod:`spinereg.register.auto_landmarks`), they were first checked against
the labels' levels (every label within 0.45 disc spacings of its level), and an offset of 0 here
follows from that check; when they disagreed the registration used the labels alone and this
check measures the disagreement independently, as without the automatic discs.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from spinereg.io.image import Image, load_image
from spinereg.vertebrae.model import CONUS
from spinereg.vertebrae.names import margin_text

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.template import Template
    from spinereg.transforms.base import Transform
    from spinereg.vertebrae.result import VertebralLabeling

#: fewest discs (in the image's field of view) the automatic labeling must find to verify levels
MIN_DISCS = 2

_SHARED: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("spinereg_shared_labeling", default=None)


@contextlib.contextmanager
def shared_labeling(labeling: VertebralLabeling | None, image: Image, seg: Image, *,
                    landmarks: bool = False) -> Iterator[None]:
    """Within this block :func:`auto_level_offset` reuses ``labeling`` (the automatic labeling of
    ``image`` with ``seg``) for that image and segmentation instead of running it again.
    ``landmarks``: the registration's landmarks ARE this labeling's discs (a bare-image run): the
    check would compare the labeling with itself, so it gives no score and says so."""
    token = _SHARED.set((labeling, image, seg, landmarks) if labeling is not None else None)
    try:
        yield
    finally:
        _SHARED.reset(token)


def _same(a: Image, b: Image) -> bool:
    return a is b or (a.grid.same_as(b.grid, atol=1e-4) and np.array_equal(np.asarray(a.data), np.asarray(b.data)))


def _shared_for(image: Image, seg: Image) -> tuple[object, bool]:
    """The shared labeling of ``image``/``seg`` (or None) and whether it gave the landmarks."""
    shared = _SHARED.get()
    if shared is None:
        return None, False
    lab, img0, seg0, landmarks = shared
    return (lab, landmarks) if _same(image, img0) and _same(seg, seg0) else (None, False)


def label_si_scale(prov: dict, seg: Image, tpl: Template) -> dict[str, float]:
    """``label_si_scale`` and ``label_si_scale_deviation`` (see the module docstring); empty with
    fewer than two landmarks in common with the template.

    Subject landmarks (provenance ``landmarks.subject_mm``) are projected on the centerline of
    ``seg``, the template's on its cord centerline. A conus tip among disc labels (60) is left out.
    """
    from spinereg.cord.centerline import centerline_from_seg
    from spinereg.register.template import template_centerline, template_landmarks

    lm = prov.get("landmarks") or {}
    kind = lm.get("kind")
    # the conus tip (disc value 60) is not a vertebral level: its height varies between people
    # and PAM50's lies 0.5 mm from its L1/L2 disc (a segment between them has no scale)
    subj = {int(k): v for k, v in (lm.get("subject_mm") or {}).items() if not (kind == "disc" and int(k) == CONUS)}
    if len(subj) < 2 or kind is None:
        return {}
    tlm = template_landmarks(tpl, kind)
    common = sorted(set(subj) & {int(v) for v in tlm.values})
    if len(common) < 2:
        return {}
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    s_subj, _ = centerline_from_seg(seg).project(np.array([subj[v] for v in common], float))
    s_tpl, _ = template_centerline(tcord).project(tlm.subset(common).points[np.argsort(tlm.subset(common).values)])
    d_subj, d_tpl = np.diff(s_subj), np.diff(s_tpl)
    ok = np.abs(d_tpl) > 1e-6
    if not ok.any():
        return {}
    seg_scales = d_subj[ok] / d_tpl[ok]
    total = float((s_subj[-1] - s_subj[0]) / (s_tpl[-1] - s_tpl[0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.abs(np.log(np.append(seg_scales, total)))
    dev = float(np.nanmax(np.where(np.isfinite(logs), logs, np.inf)))
    return {"label_si_scale": round(total, 4), "label_si_scale_deviation": round(dev, 4)}


def auto_level_offset(image: Image, seg: Image, contrast: str, subject2template: Transform,
                      tpl: Template) -> tuple[dict[str, float], list[str]]:
    """``level_offset_vertebrae`` and ``level_check_discs`` (see the module docstring), and notes."""
    from spinereg.vertebrae.label import CUES_DISAGREE, label_vertebrae
    from spinereg.vertebrae.orientation import UPSIDE_DOWN

    try:
        lab, gave_landmarks = _shared_for(image, seg)
        if gave_landmarks:
            reasons = list(lab.report.get("ambiguous_reasons") or []) if lab.ambiguous else []
            contradicted = any(r.startswith((CUES_DISAGREE, UPSIDE_DOWN)) for r in reasons)
            ambiguous = lab.ambiguous
            pin = lab.report.get("init_check") or {}
            if pin.get("level_shift"):  # a pinned disc (-initz) the image alone names otherwise
                reasons.append(pin["warning"])
                ambiguous = True
                # the image alone sure of other levels: as when the cues disagree
                contradicted = contradicted or not pin.get("image_ambiguous", True)
            return ({"landmark_levels_ambiguous": float(ambiguous), "landmark_levels_contradicted": float(contradicted)},
                    ["levels not independently verified: the registration's landmarks are the automatic "
                     f"labeling's own discs (identity margin {margin_text(lab.identity_margin)}"
                     f"{', flagged ambiguous: ' + '; '.join(reasons) if ambiguous else ''}); "
                     "give -l or --ldisc to have them checked"])
        if lab is None:
            lab = label_vertebrae(image, seg, contrast=contrast if contrast in ("t1", "t2", "t2s") else "auto",
                                  template=tpl.name if tpl.name in ("PAM50",) else "PAM50")
    except Exception as err:  # noqa: BLE001 - the check must never block the outputs
        return {}, [f"levels not verified: automatic labeling failed ({type(err).__name__}: {err})"]
    scores, notes = _level_offset(lab, image, subject2template, tpl)
    if lab.ambiguous:
        # an ambiguous labeling does not verify the levels (level_offset_vertebrae is not scored),
        # but what its best reading says is scored apart, to warn only: level_offset_unverified
        # (its best reading was right in 15 of 15 ambiguous runs of the QC calibration,
        # docs/qc_calibration.md; wrong levels on 5 mm axial stacks passed without it)
        said, out = "", {}
        if "level_offset_vertebrae" in scores:
            k = int(scores["level_offset_vertebrae"])
            out = {"level_offset_unverified": float(k)}
            said = ("; its best reading agrees with the registration's levels" if k == 0 else
                    f"; its best reading differs from the registration's levels by {k} level(s): check the labels")
        return out, [f"levels not verified: automatic labeling ambiguous (identity margin {margin_text(lab.identity_margin)})"
                     + said]
    return scores, notes


def _level_offset(lab: VertebralLabeling, image: Image, subject2template: Transform,
                  tpl: Template) -> tuple[dict[str, float], list[str]]:
    """The registration's level shift read from ``lab``'s measured discs (see the module doc)."""
    from spinereg.register.template import template_landmarks

    tl = template_landmarks(tpl, "disc")
    tz = {int(v): float(p[2]) for v, p in zip(tl.values, tl.points, strict=True)}
    found = lab.measured  # discs seen on the image (not the estimated C1/C2)
    ijk = image.grid.world_to_voxel(np.array([d.point for d in found], float).reshape(-1, 3))
    inside = np.all((ijk >= -0.5) & (ijk <= np.array(image.grid.shape) - 0.5), axis=1)
    # discs in the image's field of view only (a warp is the identity outside its grid)
    discs = [d for d, ok in zip(found, inside, strict=True) if ok and d.value in tz and d.value != CONUS]
    if len(discs) < MIN_DISCS:
        return {}, [f"levels not verified: the automatic labeling found {len(discs)} disc(s) in the field of "
                    f"view (at least {MIN_DISCS} needed to verify the levels)"]
    moved = subject2template.map(np.array([d.point for d in discs], float))
    z = np.array(sorted(tz.values()))
    units, weights = [], []
    for d, m in zip(discs, moved, strict=True):
        if not np.all(np.isfinite(m)):
            continue
        i = int(np.argmin(np.abs(z - tz[d.value])))
        spacing = float(np.median(np.abs(np.diff(z[max(0, i - 1): i + 2])))) if len(z) > 1 else 18.0
        units.append((m[2] - tz[d.value]) / max(spacing, 1.0))
        weights.append(max(float(d.confidence), 0.05))
    if not units:
        return {}, ["levels not verified: the discs fall outside the registration"]
    u, w = np.array(units), np.array(weights)
    # the registration's level shift: the integer k (in disc spacings) that explains the offsets
    # best (least absolute deviation weighted by the labeling's confidence per disc: one disc
    # misplaced by the automatic labeling does not decide)
    ks = np.arange(-2, 3)
    cost = (w[:, None] * np.abs(u[:, None] - ks[None, :])).sum(0)
    order = np.argsort(cost)
    return {"level_offset_vertebrae": float(abs(ks[order[0]])),
            "level_offset_median": round(float(np.median(u)), 4),
            "level_offset_margin": round(float((cost[order[1]] - cost[order[0]]) / w.sum()), 4),
            "level_check_discs": float(len(u))}, []
