"""spinereg.vertebrae.convention: detected discs moved to PAM50_label_disc's convention before
they are registered (offsets from training/template_disc_offsets.py: where the detector reads
PAM50's own discs, against its labels)."""

from __future__ import annotations

import json
from importlib import resources
from types import SimpleNamespace

import numpy as np
import pytest

from spinereg.cord.centerline import Centerline
from spinereg.cord.landmarks import Landmarks
from spinereg.vertebrae.convention import label_offsets, to_label_convention
from spinereg.vertebrae.label import Disc


def test_offsets_table_as_measured():
    doc = json.loads(resources.files("spinereg").joinpath("data/template_disc_offsets.json").read_text())
    assert doc["made_by"]["script"] == "training/template_disc_offsets.py"
    off = label_offsets("PAM50", +1)
    # measured on PAM50's T2-like tissue image, texture seeds 0-3: C3/C4 +0.92, C4/C5 +1.04, C7/T1 -0.45
    assert off[4] == pytest.approx(0.92, abs=0.02) and off[5] == pytest.approx(1.04, abs=0.02)
    assert off[8] == pytest.approx(-0.45, abs=0.02) and set(off) == set(range(3, 22))
    assert label_offsets("PAM50", -1) == {} and label_offsets("MNI-Poly-AMU", +1) == {}


def _labeling(polarity: int, scale: float = 1.1):
    s = np.linspace(0.0, 100.0, 101)
    cl = Centerline(s, np.c_[np.zeros_like(s), np.zeros_like(s), s])  # straight, S-I = arc length
    discs = [Disc(2, 90.0, cl.points(90.0), 0.9, float("nan"), 0.0, source="csf"),
             Disc(3, 70.0, cl.points(70.0), 0.9, 3.0, 0.0),
             Disc(5, 40.0, cl.points(40.0), 0.9, 3.0, 0.0)]
    return SimpleNamespace(discs=discs, polarity=polarity, scale=scale, centerline=cl)


def test_band_discs_moved_along_the_centerline_csf_c1c2_not():
    lab = _labeling(+1)
    lm = Landmarks("disc", np.array([2, 3, 5]), np.array([d.point for d in lab.discs]), "x")
    out, rec = to_label_convention(lab, lm, "PAM50")
    off = label_offsets("PAM50", +1)
    z = out.points[:, 2]
    assert z[0] == pytest.approx(90.0)  # C1/C2 from the CSF: already matched to the template's label
    assert z[1] == pytest.approx(70.0 - off[3] * 1.1) and z[2] == pytest.approx(40.0 - off[5] * 1.1)
    assert rec["converted"] and set(rec["moved_mm"]) == {"C2/C3", "C4/C5"}
    assert out.values.tolist() == [2, 3, 5] and out.source == "x"


def test_dark_discs_and_other_templates_are_not_moved():
    for lab, template in ((_labeling(-1), "PAM50"), (_labeling(+1), "MNI-Poly-AMU")):
        lm = Landmarks("disc", np.array([3, 5]), np.array([d.point for d in lab.discs[1:]]), "x")
        out, rec = to_label_convention(lab, lm, template)
        assert out is lm and not rec["converted"] and rec["why"]


def test_coarse_si_sampling_is_not_converted():
    from spinereg.vertebrae.convention import MAX_SI_SPACING_MM

    lab = _labeling(+1)
    lm = Landmarks("disc", np.array([3, 5]), np.array([d.point for d in lab.discs[1:]]), "x")
    out, rec = to_label_convention(lab, lm, "PAM50", si_spacing_mm=5.0)  # 5 mm axial slices
    assert out is lm and not rec["converted"] and "5.0 mm" in rec["why"]
    out, rec = to_label_convention(lab, lm, "PAM50", si_spacing_mm=MAX_SI_SPACING_MM)
    assert rec["converted"]
