"""Dark discs are placed at the centre of their band (session 25,
``vertebrae.evidence.dark_band_centres``).

On the independent phantom's T1-like variants a dark disc lies between two cortical endplates
darker still; its band response is two humps ~5 mm apart with a dip at the disc, and the chain
put every disc of a subject on the upper or the lower hump together (iso1mm_t1 43: every disc
+1.5..+3.5 mm, MAE 2.31 mm, unflagged). Chosen on development seeds (test_t1 100-115, iso1mm_t1
100-117; smoothing SD 2.5-4 mm and reach 2-4 mm tried, 3 / 3 mm taken: half the distance between
the humps), then run once on the held-out seeds 40-45, 50-55, 60-65 beside the method before it:
iso1mm_t1 mean MAE 1.10 -> 0.78 mm (max 2.31 -> 1.18), test_t1 0.94 -> 0.75 (max 1.99 -> 1.04);
identity unchanged (36 of 36 right).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.phantom.independent import make_independent_subject
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.evaluate import compare_to_truth
from spinereg.vertebrae.evidence import Evidence, dark_band_centres


def _evidence(score: np.ndarray, ds: float = 0.5) -> Evidence:
    s = np.arange(len(score)) * ds
    return Evidence(s, score, np.zeros(len(s)), np.ones(len(s), bool), -1)


def test_two_humps_read_at_their_centre():
    s = np.arange(0, 60, 0.5)
    # endplates 5 mm apart around a disc at 30 mm: two humps with a dip between them
    score = np.exp(-0.5 * ((s - 27.5) / 1.0) ** 2) + 1.05 * np.exp(-0.5 * ((s - 32.5) / 1.0) ** 2)
    ev = _evidence(score)
    out = dark_band_centres(ev, np.array([32.5, 10.0]), np.array([True, False]))
    assert abs(out[0] - 30.0) <= 0.5, out  # moved from the upper hump to the disc
    assert out[1] == 10.0  # not selected: untouched


def test_reach_and_field_of_view_limit_the_move():
    s = np.arange(0, 60, 0.5)
    score = np.exp(-0.5 * ((s - 40.0) / 1.5) ** 2)
    ev = _evidence(score)
    out = dark_band_centres(ev, np.array([30.0]), np.array([True]), reach_mm=3.0)
    assert 30.0 < out[0] <= 33.0  # toward the peak, never more than the reach
    ev.inside[:] = False
    assert dark_band_centres(ev, np.array([30.0]), np.array([True]))[0] == 30.0


@pytest.mark.realdata
def test_t1_phantom_discs_at_their_centre():
    """test_t1 seed 52 (held out): MAE 1.99 mm before (every disc on one endplate), 0.63 after."""
    ph = make_independent_subject("test_t1", seed=52)
    lab = label_vertebrae(ph.image, ph.seg, contrast="t1")
    assert lab.polarity < 0
    r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
    assert r["identity_ok"]
    assert r["mae_mm"] <= 0.63 + 0.1, r


@pytest.mark.realdata
def test_bright_discs_are_not_moved(monkeypatch):
    """A bright-disc labeling (t2-like `test` seed 3) never reads the dark centres."""
    from spinereg.vertebrae import label as label_module

    def boom(*a, **k):
        raise AssertionError("dark_band_centres called on bright discs")

    monkeypatch.setattr(label_module, "dark_band_centres", boom)
    ph = make_independent_subject("test", seed=3)
    lab = label_vertebrae(ph.image, ph.seg, contrast="t2")
    assert lab.polarity > 0 and lab.discs
