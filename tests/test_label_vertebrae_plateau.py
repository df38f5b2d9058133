"""spinereg.vertebrae.plateau: a flat-topped bright band is read at its plateau's middle, a peaked
one where the chain put it.

Truth: analytic columns rasterised here (bright discs of known centres along a straight cord, as a
uniform band of 6 mm between darker bodies, the full phantom's ``tissue`` source, or as a peak,
a real T2 disc), read by the band detector itself (:func:`evidence.band_evidence_sets` on the
column's profile). The figures on the full phantoms and the real images that chose the threshold
are in docs/labeling_bare_image.md (session 42): converted disc MAE over seeds 0-9, ``tissue``
0.563 -> 0.343 mm, ``average`` 0.378 -> 0.364 mm; t2's discs unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.vertebrae.evidence import Evidence, TiltProfiles, band_evidence_sets
from spinereg.vertebrae.plateau import (
    FLAT_WIDTH_MM,
    MAX_SI_SPACING_MM,
    band_plateau,
    plateau_position,
)

DS = 0.5
S = np.arange(0.0, 120.0 + DS / 2, DS)
CENTRES = np.array([15.3, 35.3, 55.3, 75.3, 95.3])  # 20 mm apart: a half-width of 5 mm


def _column(kind: str) -> np.ndarray:
    """The column's profile along the cord: flat bands of 6 mm with sharp edges (``flat``) or
    peaks of SD 1 mm (``peaked``), each disc 1 above the bodies, smoothed by 1 mm."""
    x = np.zeros_like(S)
    for c in CENTRES:
        if kind == "flat":  # each row's share of the band (partial volume of its 0.5 mm)
            x += np.clip(np.minimum(S + DS / 2, c + 3.0) - np.maximum(S - DS / 2, c - 3.0), 0.0, DS) / DS
        else:
            x += np.exp(-0.5 * ((S - c) / 1.0) ** 2)
    return ndimage.gaussian_filter1d(x, 1.0 / DS)  # as evidence.tilt_profiles smooths the column


def _evidence(kind: str, polarity: int = 1) -> Evidence:
    tp = TiltProfiles(S, {0.0: _column(kind) * polarity}, {0.0: np.ones_like(S, bool)})
    (ev,) = band_evidence_sets(tp, polarity=polarity, half_width_mm=5.0, tilt_sets=((0.0,),))
    return ev


def test_flat_band_read_at_its_middle():
    ev = _evidence("flat")
    for c in CENTRES[1:-1]:
        for off in (-1.0, 0.0, 1.2):  # wherever the chain put it on the plateau
            p = band_plateau(ev, c + off)
            assert p is not None and not p.cut
            # a 6 mm band with flanks at +-5 mm, smoothed by 1 mm: within 10 % of its peak over
            # 2.24 mm (measured), wherever the chain stood on it
            assert p.width >= FLAT_WIDTH_MM and p.width == pytest.approx(2.24, abs=0.02), p
            x = plateau_position(ev, c + off, 0.8)
            assert x is not None and abs(x - c) <= 0.02, (c, off, x)  # measured +0.01


def test_peaked_band_keeps_the_chain_place():
    ev = _evidence("peaked")
    for c in CENTRES[1:-1]:
        p = band_plateau(ev, c + 0.5)
        assert p is not None and p.width == pytest.approx(1.30, abs=0.02), p  # measured 1.296
        assert plateau_position(ev, c + 0.5, 0.8) is None


def test_dark_discs_and_coarse_sampling_not_read():
    dark = _evidence("flat", polarity=-1)
    assert band_plateau(dark, CENTRES[2]).width >= FLAT_WIDTH_MM  # as flat, but dark: not read
    assert plateau_position(dark, CENTRES[2] + 1.0, 0.8) is None
    bright = _evidence("flat")
    assert plateau_position(bright, CENTRES[2] + 1.0, MAX_SI_SPACING_MM + 0.5) is None
    assert plateau_position(bright, CENTRES[2] + 1.0, MAX_SI_SPACING_MM) is not None


def test_plateau_cut_by_the_field_of_view_not_read():
    ev = _evidence("flat")
    inside = S <= CENTRES[2] + 0.5  # the evidence ends inside the third band's plateau
    cut = Evidence(ev.s, np.where(inside, ev.score, 0.0), ev.tilt_deg, inside, 1)
    p = band_plateau(cut, CENTRES[2])
    assert p is not None and p.cut
    assert plateau_position(cut, CENTRES[2], 0.8) is None
    assert plateau_position(cut, CENTRES[1] + 1.0, 0.8) == pytest.approx(CENTRES[1], abs=0.05)
