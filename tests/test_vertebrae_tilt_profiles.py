"""The column is sheared by each tilt once and read for both disc polarities
(``vertebrae.evidence.tilt_profiles``): the same evidence as measuring it per polarity."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.vertebrae.evidence import TILTS_DEG, band_evidence_sets, tilt_profiles
from spinereg.vertebrae.straight import Straightened


def _slab(seed: int = 0) -> tuple[Straightened, np.ndarray, np.ndarray]:
    """Bright bands tilted by 10 degrees every 18 mm, noise, rows above 150 mm out of view."""
    rng = np.random.default_rng(seed)
    s = np.arange(0.0, 180.0, 0.5)
    b = np.arange(0.0, 30.0, 0.5)
    ss, bb = np.meshgrid(s, b, indexing="ij")
    centre = (ss - (bb - 5.0) * np.tan(np.deg2rad(10.0))) % 18.0
    values = 1.0 + np.exp(-0.5 * ((centre - 9.0) / 1.5) ** 2) + 0.1 * rng.standard_normal(ss.shape)
    values[s > 150] = np.nan
    return Straightened(s, b, values), np.full(s.size, 2.0), np.full(s.size, 20.0)


@pytest.mark.parametrize("polarity", [1, -1])
def test_shared_profiles_give_the_same_evidence(polarity):
    sub, back, depth = _slab()
    half = np.where(sub.s < 90, 4.0, 5.0)
    sets = (TILTS_DEG, (-10, 0, 10))
    direct = band_evidence_sets(sub, back, depth, polarity=polarity, half_width_mm=half, tilt_sets=sets)
    tp = tilt_profiles(sub, back, depth, tilts=TILTS_DEG)
    shared = band_evidence_sets(tp, polarity=polarity, half_width_mm=half, tilt_sets=sets)
    for a, b in zip(direct, shared, strict=True):
        assert np.array_equal(a.score, b.score) and np.array_equal(a.tilt_deg, b.tilt_deg)
        assert np.array_equal(a.inside, b.inside) and a.polarity == b.polarity == polarity
    # the bright bands are found at their tilt, and nothing is read out of view
    ev = shared[0]
    peaks = ev.score > 2.0
    if polarity > 0:
        assert peaks.any() and np.median(ev.tilt_deg[peaks]) == 10
    assert not ev.inside[sub.s > 155].any()


def test_missing_tilts_are_refused():
    sub, back, depth = _slab()
    tp = tilt_profiles(sub, back, depth, tilts=(0,))
    with pytest.raises(ValueError, match="lack the tilts"):
        band_evidence_sets(tp, tilt_sets=((0, 5),))
