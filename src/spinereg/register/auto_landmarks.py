"""Automatic discs added to the landmarks a user gives to ``register-to-template``.

Two body labels pin the cord's arc-length correspondence at two levels only; far from them (a
C1-T6 field of view labelled at C3 and C5) the S-I error grows to several millimetres. The
automatic vertebral labeling (:func:`spinereg.vertebrae.label_vertebrae`) measures every disc it
sees on the image. :func:`automatic_discs` decides whether those discs may join the user's labels:

* the labeling must not be ambiguous (its identity margin is large enough, see the labeling);
* every given label must lie where the labeling puts that level, along the labeling's own
  centerline, within ``tolerance`` (0.45 by default) of the local disc spacing: a body label of
  level ``v`` midway between discs ``v`` and ``v + 1``, a disc label at disc ``v``. A label one
  level off the labeling is one spacing away and is refused (0.55 spacings to spare); half a
  spacing is where the level is undecidable; at least one given label must be checkable (its
  level within the labeling's range);
* only the *measured* discs join (the estimated C1/C2 and the conus do not), and only levels the
  template has; the user's labels win: a given disc label replaces the automatic disc of its
  level, and where a given label lies more than :data:`LOCAL_TOLERANCE` (0.15) spacings from
  where the labeling puts it (levels agree, positions do not: the labeling is off there), the
  automatic discs around that label (discs ``v`` and ``v + 1`` of a body label, ``v - 1`` to
  ``v + 1`` of a disc label) are left out and the user's label alone holds that vertebra.
  Elsewhere body labels and discs are different landmarks and both stay (each mapped to its own
  template point): leaving out the two discs that bound every given body label was tried and is
  worse where the labeling is right, since it drops C2/C3, the only landmark above C3 (full
  phantom, seed 0, bodies C3 and C5: 0.65 / 2.49 mm mean / p95 against 0.53 / 1.39 with them).
  On seed 3 the labeling places C2/C3-C5/C6 about 6 mm low; the bodies lie 0.40 spacings off and
  its thoracic discs (within 1.3 mm) join without the four around them.

When they disagree the registration uses the user's labels only; the report says why (stderr,
provenance.json), and the QC level check, which measures the labeling's discs after the
registration, reports the disagreement as it always did.

Each kind of landmark keeps its own template counterpart (:func:`arc_pairs` matches values
within a kind only): a body label and a disc label of the same value are never confused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from spinereg.cord.landmarks import Landmarks
from spinereg.register.cord_mapping import PiecewiseLinear
from spinereg.vertebrae.convention import to_label_convention
from spinereg.vertebrae.model import CONUS
from spinereg.vertebrae.names import margin_text, margin_value

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.cord.centerline import Centerline
    from spinereg.vertebrae.result import VertebralLabeling

#: largest distance of a given label from where the labeling puts its level, in local disc
#: spacings (a label one level off is 1.0 away)
TOLERANCE = 0.45
#: beyond this distance (disc spacings) the labeling is off near that label: its discs around the
#: label are left out (seeds 0-2 of the full phantom: at most 0.04)
LOCAL_TOLERANCE = 0.15


def arc_pairs(cl_ref: Centerline, cl_src: Centerline,
              pairs: list[tuple[Landmarks, Landmarks]]) -> tuple[np.ndarray, np.ndarray]:
    """Arc lengths (reference, source) of every landmark matched by value within each
    (reference, source) pair of one kind: a body label and a disc label of the same value are
    never matched with each other."""
    s_ref, s_src = [], []
    for ref, src in pairs:
        common = np.intersect1d(ref.values, src.values)
        if len(common):
            s_ref.append(cl_ref.project(ref.subset(common).points[np.argsort(ref.subset(common).values)])[0])
            s_src.append(cl_src.project(src.subset(common).points[np.argsort(src.subset(common).values)])[0])
    if not s_ref:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(s_ref), np.concatenate(s_src)


class FittedEnds(PiecewiseLinear):
    """:class:`~spinereg.register.cord_mapping.PiecewiseLinear` extrapolated beyond its first and
    last knots with the least-squares slope of the knots within ``span_mm`` of each end (through
    the end knot), not with the slope of the end segment alone. With the automatic discs beside
    the given labels the end segment may be short (a body label a few mm from a disc), and one
    millimetre of error over it tilts the whole extrapolation: on the cervicothoracic phantom
    (seed 0, bodies C3 and C5 with the automatic discs) C1/C2, above the last landmark, landed
    3.6 mm off (2.3 mm with the fitted slope; cord error 0.86 / 3.43 -> 0.76 / 2.62 mm mean / p95;
    full phantom seeds 0-3: 0.53 / 1.39, 0.61 / 1.51, 0.56 / 1.59, 0.67 / 1.60 ->
    0.53 / 1.37, 0.58 / 1.51, 0.48 / 1.02, 0.67 / 1.60)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, span_mm: float = 40.0,
                 slopes: tuple[float, float] | None = None):
        super().__init__(x, y)
        self.span_mm = float(span_mm)
        self.slopes = slopes if slopes is not None else (self._fit(0), self._fit(-1))

    def _fit(self, end: int) -> float:
        dx, dy = self.x - self.x[end], self.y - self.y[end]
        near = np.abs(dx) <= self.span_mm
        if near.sum() < 3:  # one segment: its own slope
            near = np.zeros(len(dx), bool)
            near[[0, 1] if end == 0 else [-2, -1]] = True
        return float(np.sum(dx[near] * dy[near]) / np.sum(dx[near] ** 2))

    def __call__(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        out = np.interp(v, self.x, self.y)
        lo, hi = v < self.x[0], v > self.x[-1]
        out[lo] = self.y[0] + (v[lo] - self.x[0]) * self.slopes[0]
        out[hi] = self.y[-1] + (v[hi] - self.x[-1]) * self.slopes[1]
        return out

    def inverse(self) -> FittedEnds:
        return FittedEnds(self.y, self.x, self.span_mm, (1.0 / self.slopes[0], 1.0 / self.slopes[1]))

    def as_dict(self) -> dict:
        return {**super().as_dict(), "end_slopes": [round(float(a), 5) for a in self.slopes]}


def _disc_positions(lab: VertebralLabeling) -> dict[int, float]:
    """Arc length of every disc of the labeling (estimated included, conus not)."""
    return {int(d.value): float(d.s) for d in lab.discs if d.value != CONUS}


def _local_spacing(s: dict[int, float], v: int) -> float | None:
    """Median distance between consecutive discs near level ``v``."""
    gaps = [abs(s[a] - s[a + 1]) for a in range(v - 1, v + 2) if a in s and a + 1 in s]
    return float(np.median(gaps)) if gaps else None


def expected_position(lab: VertebralLabeling, kind: str, value: int) -> tuple[float, float] | None:
    """Where the labeling puts landmark ``value`` of ``kind`` (arc length on its centerline) and
    the local disc spacing there; None when the level is outside the labeling's range."""
    s = _disc_positions(lab)
    spacing = _local_spacing(s, value)
    if spacing is None:
        return None
    if kind == "disc":
        return (s[value], spacing) if value in s else None
    if kind == "body":  # level v lies under disc v and above disc v + 1 (s grows upwards)
        if value in s and value + 1 in s:
            return (s[value] + s[value + 1]) / 2, spacing
        return None
    return None


def level_agreement(given: Landmarks, lab: VertebralLabeling, tolerance: float = TOLERANCE) -> dict:
    """Where each given label lies relative to the labeling's level (see the module doc):
    ``{"checked": {value: offset in spacings}, "unchecked": [values], "agree": bool}``."""
    s_given, _ = lab.centerline.project(np.asarray(given.points, float))
    checked, unchecked = {}, []
    for v, sg in zip(given.values, s_given, strict=True):
        exp = expected_position(lab, given.kind, int(v))
        if exp is None:
            unchecked.append(int(v))
            continue
        checked[int(v)] = round(float((sg - exp[0]) / max(exp[1], 1.0)), 3)
    agree = bool(checked) and all(abs(o) <= tolerance for o in checked.values())
    return {"checked_offset_spacings": checked, "unchecked": unchecked, "agree": agree,
            "tolerance_spacings": round(float(tolerance), 3)}


def automatic_discs(given: Landmarks, lab: VertebralLabeling, template_discs: Landmarks,
                    tolerance: float = TOLERANCE,
                    template: str | None = None, si_spacing_mm: float | None = None
                    ) -> tuple[Landmarks | None, dict]:
    """The labeling's measured discs that may join ``given`` (see the module doc), or None, and
    the report (``used``, ``reason``, the agreement, the discs added; ``warn`` when the labeling
    disagrees with the given labels, which a user should hear of). ``template``: the discs that
    join are moved to that template's disc-label convention, as the bare job's are
    (:func:`spinereg.vertebrae.convention.to_label_convention`, with the image's S-I voxel extent
    ``si_spacing_mm``; the report's ``registered_as`` says what was moved); None keeps the
    measured points. The level check above uses the measured points either way."""
    report: dict = {"used": False, "ambiguous": bool(lab.ambiguous),
                    "identity_margin": margin_value(lab.identity_margin)}
    if given.kind not in ("body", "disc"):
        report["reason"] = f"{given.kind} landmarks are not checked against the labeling's levels"
        return None, report
    if lab.ambiguous:
        report["reason"] = (f"automatic labeling ambiguous (identity margin {margin_text(lab.identity_margin)}): "
                            "the given labels only")
        return None, report
    agreement = level_agreement(given, lab, tolerance)
    report["agreement"] = agreement
    if not agreement["checked_offset_spacings"]:
        report["reason"] = ("no given label lies within the levels the automatic labeling found: its levels "
                            "cannot be checked, the given labels only")
        return None, report
    if not agreement["agree"]:
        bad = {v: o for v, o in agreement["checked_offset_spacings"].items() if abs(o) > tolerance}
        report["reason"] = ("the automatic labeling disagrees with the given labels (label: offset in disc "
                            f"spacings {bad}, more than {tolerance:.2f}): the given labels only")
        report["warn"] = True  # a label may be on the wrong level (the QC level check will say)
        return None, report
    skip = {int(v) for v in given.values} if given.kind == "disc" else set()
    off = {v for v, o in agreement["checked_offset_spacings"].items() if abs(o) > LOCAL_TOLERANCE}
    skip |= {v + k for v in off for k in ((-1, 0, 1) if given.kind == "disc" else (0, 1))}
    if off:
        report["left_out_near"] = sorted(off)
    keep = [d for d in lab.measured if d.value != CONUS and int(d.value) not in skip
            and int(d.value) in set(int(v) for v in template_discs.values)]
    if not keep:
        report["reason"] = "the automatic labeling found no disc beyond the given labels"
        return None, report
    auto = Landmarks("disc", np.array([d.value for d in keep], int), np.array([d.point for d in keep], float),
                     "label-vertebrae (automatic)")
    if template is not None:
        auto, report["registered_as"] = to_label_convention(lab, auto, template, si_spacing_mm)
    reason = "the automatic labeling is not ambiguous and agrees with the given labels"
    if off:
        reason += (f" (its discs around label(s) {sorted(off)}, more than {LOCAL_TOLERANCE:.2f} spacings from "
                   "where it puts them, are left out)")
    report.update(used=True, reason=reason, discs=[d.name for d in keep])
    return auto, report
