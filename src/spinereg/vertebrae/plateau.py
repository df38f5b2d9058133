"""Bright disc bands whose response is flat-topped: read at the plateau's middle.

The band response (:mod:`~spinereg.vertebrae.evidence`: the column at ``s`` minus its flanks at
``s -+ w``) of a disc that is a uniform bright band of thickness ``T`` between darker rims is flat
over about ``2w - T`` mm. On such a plateau the chain's place is set by texture and the spacing
term, not by the disc: on the full phantom's ``tissue`` source (PAM50's discs painted as 4-5 mm
flat bands) the discs lay 0.563 mm from the truth (converted disc MAE, seeds 0-9), in runs of
same-signed errors. A real T2 disc's response is peaked and the chain's place is kept there
(reading every disc at its own peak, or every plateau's middle, cost the real T2 average and t2,
docs/labeling_bare_image.md, session 29).

The statistic (session 42): the width of the run about the band's peak (within
:data:`PEAK_SEARCH_MM` of the chain's place) over which the response stays within
``1 - PLATEAU_FRACTION`` of that peak. Measured over the full phantoms' discs (seeds 0-9, automatic
segmentations, C2/C3-T5/T6, 110 a source): ``tissue`` median 3.17 mm (10th percentile 2.26),
``average`` (real T2 rendering) median 1.65 (90th percentile 2.47); t2 (manual mask) 0.66-1.56,
t1 1.47-2.46. A disc whose plateau is at least :data:`FLAT_WIDTH_MM` wide (the threshold that
separates the two sources best on those seeds: 95 % of ``tissue`` discs, 16 % of ``average``) is
moved to the plateau's middle (its edges interpolated between rows): ``tissue`` 0.563 -> 0.343 mm,
``average`` 0.378 -> 0.364 mm, t2's C3/C4 and C4/C5 unchanged (-1.05 / -0.55 mm). Real T1's bright
bands read as flat too: t1's three discs moved up 0.06-0.74 mm, each further from its truth (C2/C3
-0.24 -> -0.30 mm of slice 55; C3/C4 -1.25 -> -1.98 mm of t2's boundary): the statistic separates
the painted phantom from T2 discs, not from t1's.

Only bright discs (the dark response is smoothed by 3 mm, :func:`evidence.smoothed`, so its width
is the smoothing's, not the disc's) and images that sample S-I at :data:`MAX_SI_SPACING_MM` or
finer (a thick slice widens every band by its partial volume; the statistic was measured on
0.5-1 mm sampling). A plateau cut by the end of the evidence is not read (its middle is not the
disc's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinereg.vertebrae.evidence import Evidence

#: the plateau: the rows about the band's peak whose response is at least this fraction of it
PLATEAU_FRACTION = 0.9
#: a plateau at least this wide (mm) is flat-topped: the disc is read at its middle
FLAT_WIDTH_MM = 2.2
#: the band's peak is looked for this far (mm) from the chain's place
PEAK_SEARCH_MM = 1.5
#: coarsest S-I sampling (mm, one voxel's extent along world S-I) at which plateaus are read
MAX_SI_SPACING_MM = 2.0


@dataclass
class Plateau:
    """The run about the band's peak where the response is at least ``PLATEAU_FRACTION`` of it:
    ``peak`` (robust z-score), ``lo`` / ``hi`` its edges (arc length, mm, interpolated between
    rows), ``cut`` when the run reaches the end of the evidence (its edge is not seen)."""

    peak: float
    lo: float
    hi: float
    cut: bool

    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def middle(self) -> float:
        return 0.5 * (self.lo + self.hi)


def band_plateau(ev: Evidence, s0: float, fraction: float = PLATEAU_FRACTION,
                 search_mm: float = PEAK_SEARCH_MM) -> Plateau | None:
    """The plateau of the band nearest ``s0`` (see :class:`Plateau`); None when no row within
    ``search_mm`` of ``s0`` is in view or the peak is not positive."""
    s = np.asarray(ev.s, float)
    ds = float(s[1] - s[0])
    sc = np.where(ev.inside, ev.score, -np.inf)
    j0 = int(np.clip(np.rint((s0 - s[0]) / ds), 0, len(s) - 1))
    k = int(round(search_mm / ds))
    lo, hi = max(j0 - k, 0), min(j0 + k + 1, len(s))
    jp = lo + int(np.argmax(sc[lo:hi]))
    peak = float(sc[jp])
    if not np.isfinite(peak) or peak <= 0:
        return None
    thr = fraction * peak
    a, b = jp, jp
    while a - 1 >= 0 and sc[a - 1] >= thr:
        a -= 1
    while b + 1 < len(s) and sc[b + 1] >= thr:
        b += 1
    cut = a == 0 or b == len(s) - 1 or not np.isfinite(sc[a - 1]) or not np.isfinite(sc[b + 1])
    ea = s[a] if cut else s[a] - ds * (sc[a] - thr) / (sc[a] - sc[a - 1])
    eb = s[b] if cut else s[b] + ds * (sc[b] - thr) / (sc[b] - sc[b + 1])
    return Plateau(peak, float(ea), float(eb), bool(cut))


def plateau_position(ev: Evidence, s0: float, si_spacing_mm: float) -> float | None:
    """Where a disc the chain put at ``s0`` is read when its band is flat-topped: the plateau's
    middle (bright discs, S-I sampled at :data:`MAX_SI_SPACING_MM` or finer, a plateau at least
    :data:`FLAT_WIDTH_MM` wide and not cut by the end of the evidence); None otherwise (the
    chain's place stands)."""
    if ev.polarity <= 0 or si_spacing_mm > MAX_SI_SPACING_MM:
        return None
    p = band_plateau(ev, s0)
    if p is None or p.cut or p.width < FLAT_WIDTH_MM:
        return None
    return p.middle
