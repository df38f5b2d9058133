"""C2/C3 placed again between C1/C2 from the CSF and C3/C4, where the two cues disagree.

The chain places C2/C3 on the disc bands and the spacing alone: C1/C2 (PAM50 disc 2) shows no
band, so nothing above C2/C3 holds it. Where C2/C3's band is weak the chain may take a weak
band a few mm off (full phantom `average` seed 48: no band at the true C2/C3, band evidence
-0.4 there and 0.76 at 4.5 mm below, where the chain put it; its identity chain scored the true
place 0.4 lower). C1/C2 from the CSF (:mod:`spinereg.vertebrae.c1c2`), measured after the chain,
then lies 1.30 template gaps above C2/C3, and :func:`spinereg.vertebrae.consistency.c1c2_reason`
flags the labeling; the registration takes both landmarks as they are.

:func:`replace_c2c3`: when that check fires, C2/C3 is placed again, with C1/C2 (CSF) and C3/C4
held where they are, at the row that scores best on the band evidence less the chain's own
spacing cost of its two gaps (``dp.best_chain``'s ``(gap / expected - 1)^2 / (2 SPACING_SD^2)``,
expected = the chain's scale x the template's gap): the chain's position pass with C1/C2's place
given. A strong band stays (a ratio of 1.3 costs 2 units); a weak one gives way to the spacing.
C1/C2 is then located again from the CSF above the new C2/C3; the move is kept only when the
two then agree (ratio inside ``C1C2_RATIO_RANGE``), and the labeling stays flagged with a reason
saying what moved.
"""

from __future__ import annotations

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.io.image import Image
from spinereg.vertebrae.consistency import C1C2_RATIO_RANGE, c1c2_reason, c1c2_spacing
from spinereg.vertebrae.evidence import Evidence
from spinereg.vertebrae.model import SPACING_SD, SpineModel
from spinereg.vertebrae.result import Disc

#: the largest departure of one gap from its expected length the chain allows (dp.best_chain's
#: max_dev)
MAX_DEV = 0.30


def _gap_cost(gap: np.ndarray, expected: float) -> np.ndarray:
    return (gap / expected - 1.0) ** 2 / (2 * SPACING_SD ** 2)


def c2c3_between(discs: list[Disc], ev: Evidence, scale: float, model: SpineModel) -> float | None:
    """The arc length (mm) where C2/C3 scores best between C1/C2 (from the CSF) and C3/C4, both
    held, on the band evidence ``ev`` less the spacing cost of its two gaps at the chain's
    ``scale``; None without the three discs or an evidence row between them."""
    by = {d.value: d for d in discs}
    if not (2 in by and by[2].from_csf and 3 in by and 4 in by):
        return None
    vals = [int(v) for v in model.disc_values]
    t = {v: float(model.disc_s[vals.index(v)]) for v in (2, 3, 4)}
    g23, g34 = scale * (t[2] - t[3]), scale * (t[3] - t[4])
    s2, s4 = by[2].s, by[4].s
    ok = ev.inside & (ev.s >= s4 + (1 - MAX_DEV) * g34) & (ev.s <= s2 - (1 - MAX_DEV) * g23) \
        & (ev.s <= s4 + (1 + MAX_DEV) * g34) & (ev.s >= s2 - (1 + MAX_DEV) * g23)
    if not ok.any():
        return None
    s = ev.s[ok]
    score = ev.score[ok] - _gap_cost(s2 - s, g23) - _gap_cost(s - s4, g34)
    return float(s[int(np.argmax(score))])


def replace_c2c3(image: Image, seg: Image, cl: Centerline, contrast: str, template: str, model: SpineModel,
                 discs: list[Disc], ev: Evidence, scale: float, stretch_limit: float | None,
                 ) -> tuple[list[Disc], dict | None, float | None]:
    """``discs`` with C2/C3 placed again (:func:`c2c3_between`) when C1/C2 from the CSF and C2/C3
    disagree (:func:`~spinereg.vertebrae.consistency.c1c2_reason`) and, with C1/C2 located again
    above the new C2/C3, agree after it; the record of the move (None when nothing moved) and the
    CSF fit's stretch limit. Otherwise ``discs`` unchanged."""
    from spinereg.vertebrae.bandless import _c1c2_from_csf

    if c1c2_reason(c1c2_spacing(discs, model, stretch_limit)) is None:
        return discs, None, stretch_limit
    x = c2c3_between(discs, ev, scale, model)
    old = next((d for d in discs if d.value == 3), None)
    if x is None or old is None or abs(x - old.s) < float(ev.s[1] - ev.s[0]):
        return discs, None, stretch_limit
    j = int(np.clip(np.rint((x - ev.s[0]) / (ev.s[1] - ev.s[0])), 0, len(ev.s) - 1))
    new3 = Disc(3, x, cl.points(x), old.confidence, float(ev.score[j]), float(ev.tilt_deg[j]), source=old.source)
    rest = [d for d in discs if d.value not in (2, 3)]
    c12, limit = _c1c2_from_csf(image, seg, cl, contrast, template, model, [new3, *rest])
    if not isinstance(c12, Disc):
        return discs, None, stretch_limit
    moved = [c12, new3, *rest]
    ratio = c1c2_spacing(moved, model, limit)
    if ratio is None or "ratio" not in ratio or not C1C2_RATIO_RANGE[0] <= ratio["ratio"] <= C1C2_RATIO_RANGE[1]:
        return discs, None, stretch_limit
    old2 = next(d for d in discs if d.value == 2)
    before = c1c2_spacing(discs, model, stretch_limit)
    record = {"c2c3_from_mm": round(float(old.s), 2), "c2c3_to_mm": round(x, 2),
              "c2c3_evidence_before": round(float(old.evidence), 2), "c2c3_evidence_after": round(float(ev.score[j]), 2),
              "c1c2_from_mm": round(float(old2.s), 2), "c1c2_to_mm": round(float(c12.s), 2),
              "ratio_before": None if before is None else before.get("ratio"), "ratio_after": ratio["ratio"]}
    return moved, record, limit


def moved_reason(record: dict) -> str:
    """The ambiguity reason of a labeling whose C2/C3 :func:`replace_c2c3` moved."""
    return (f"C1/C2 from the CSF and C2/C3 on its band disagreed (C1/C2 {record['ratio_before']:.2f} times the "
            f"template's gap above it): C2/C3 placed again between C1/C2 and C3/C4 on the bands and the spacing, "
            f"{record['c2c3_to_mm'] - record['c2c3_from_mm']:+.1f} mm (band evidence {record['c2c3_evidence_before']:.2f} "
            f"-> {record['c2c3_evidence_after']:.2f}); check C2/C3")
