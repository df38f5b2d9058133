"""The levels' names from the CSF around the cord (spinereg.vertebrae.csf_identity).

The CSF / cord area ratio along the cord falls from C2 (PAM50 2.6) to the cervical enlargement
(C5 1.5) and rises again below it: a cue free of the subject's size that the disc bands and
the cord width lack. Checked on real images it was not tuned on: sct_testing_data t2 (the
labeling's names are right) and the same discs given names one to three levels off; on a
phantom of the development set (axial_thick 127, two levels off before) the flagged labeling is
relabelled right. Figures measured at the commit that added the module."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.vertebrae import label_vertebrae

pytestmark = pytest.mark.realdata


def _profile():
    from spinereg.io.template import load_template
    from spinereg.vertebrae.csf_identity import template_area_profiles

    tpl = load_template("PAM50")
    return template_area_profiles(str(tpl.path("csf")), str(tpl.path("cord")))


@pytest.fixture(scope="module")
def t2(sct_data):
    image = load_image(sct_data / "t2" / "t2.nii.gz")
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    return image, seg, label_vertebrae(image, seg, "t2")


def test_template_ratio_falls_to_the_enlargement_and_rises_below():
    from spinereg.vertebrae.model import spine_model

    z, ratio = _profile()
    model = spine_model("PAM50")
    t = dict(zip(model.disc_values.tolist(), model.disc_s.tolist(), strict=True))
    # mean log ratio of each vertebra between its discs: C2 .. C7
    per = [float(ratio[(z <= t[v]) & (z > t[v + 1])].mean()) for v in range(2, 8)]
    assert np.all(np.diff(per[:4]) < 0) and per[4] > per[3] and per[5] > per[4], np.round(np.exp(per), 2)


def test_real_t2_names_are_the_csf_profiles(t2):
    """The flagged labeling of t2 (identity margin 0.66) is read by the CSF and kept: the
    profile fits its names best (residual 0.117 against 0.170 one level lower)."""
    _, _, lab = t2
    rec = lab.report["csf_identity"]
    assert lab.ambiguous and rec["shift"] == 0 and rec["evidence"] == 0.0, rec
    assert abs(rec["rms"]["0"] - 0.117) <= 0.01 and rec["rms"]["1"] - rec["rms"]["0"] >= 0.045, rec
    assert [d.name for d in lab.measured][:3] == ["C2/C3", "C3/C4", "C4/C5"]


@pytest.mark.parametrize("given, evidence", [(1, 7.44), (2, 43.17), (3, 48.78)])
def test_real_t2_discs_named_wrong_are_renamed(t2, given, evidence):
    """t2's discs at their places under names ``given`` levels too low: the CSF profile says
    how many (t2's 1.05 mm sampling along the cord: 9.8 independent samples)."""
    from spinereg.vertebrae.csf_identity import csf_identity
    from spinereg.vertebrae.label import CSF_RELABEL_EVIDENCE, _si_spacing
    from spinereg.vertebrae.model import spine_model

    image, seg, lab = t2
    band = [(d.value + given, d.s) for d in lab.discs if d.source == "band" and d.value != 60]
    found = csf_identity(image, seg, lab.centerline, band, spine_model("PAM50"), _profile(), "t2",
                         _si_spacing(image, lab.centerline))
    assert found.shift == -given and abs(found.evidence - evidence) <= 0.05 * evidence, found.as_dict()
    assert found.evidence >= CSF_RELABEL_EVIDENCE


def test_dark_csf_and_single_disc_are_not_read(t2):
    from spinereg.vertebrae.csf_identity import csf_identity
    from spinereg.vertebrae.model import spine_model

    image, seg, lab = t2
    band = [(d.value, d.s) for d in lab.discs if d.source == "band" and d.value != 60]
    model, prof = spine_model("PAM50"), _profile()
    assert csf_identity(image, seg, lab.centerline, band, model, prof, "t1", 1.0) is None
    assert csf_identity(image, seg, lab.centerline, band[:1], model, prof, "t2", 1.0) is None


def test_flagged_axial_stack_named_one_level_low_is_relabelled():
    """Independent phantom axial_thick 101 (0.5 x 0.5 x 5 mm, C2-C5, T2*-like, true
    segmentation; development set of the rule): the chain names its discs C3/C4 onwards, one
    level low (flagged); the CSF profile prefers one level higher with evidence 15.2, the image
    is relabelled with its strongest band pinned there: names right, disc MAE 0.39 mm, still
    flagged with the reason. Until session 51 the case was axial_thick 127 (named two levels low,
    evidence 45.0), which the cord width pooled over thick slices (vertebrae.cordwidth) now
    names right by the chain alone (margin 5.16, unflagged)."""
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.vertebrae.evaluate import compare_to_truth

    ph = make_independent_subject("axial_thick", seed=101)
    lab = label_vertebrae(ph.image, ph.seg, contrast="t2s")
    rec = lab.report["csf_identity"]
    assert rec["relabelled"] and rec["shift"] == -1 and rec["discs_before"][0] == "C3/C4", rec
    assert lab.identity_source == "csf" and rec["pinned"]["name"] in {d.name for d in lab.discs}, rec
    assert abs(rec["evidence"] - 15.2) <= 1.0, rec
    r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
    assert r["identity_ok"] and r["mae_mm"] <= 0.42, r  # measured 0.394
    assert lab.ambiguous and lab.report["ambiguous_reasons"][0].startswith("the CSF around the cord"), lab.report


def test_auto_contrast_on_a_bright_csf_is_read(t2):
    """``-c auto`` on t2 (its CSF clearly brighter than the cord) gets the same CSF reading."""
    image, seg, lab = t2
    auto = label_vertebrae(image, seg, "auto")
    assert auto.report["csf_identity"] == lab.report["csf_identity"], auto.report.get("csf_identity")


def test_cli_writes_the_csf_reading(tmp_path):
    """``spinereg label-vertebrae`` on the saved axial_thick 101 stack: the JSON names the levels
    the CSF gave (identity source ``csf``, the record with the names before), flagged."""
    import json
    import subprocess
    import sys

    from spinereg.io.image import save_image
    from spinereg.phantom.independent import make_independent_subject

    ph = make_independent_subject("axial_thick", seed=101)
    save_image(ph.image, tmp_path / "img.nii.gz")
    save_image(ph.seg, tmp_path / "seg.nii.gz")
    r = subprocess.run([sys.executable, "-m", "spinereg.cli.main", "label-vertebrae", "-i", str(tmp_path / "img.nii.gz"),
                        "-s", str(tmp_path / "seg.nii.gz"), "-c", "t2s", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "img_discs.json").read_text())
    assert doc["identity_source"] == "csf" and doc["ambiguous"], doc["identity_source"]
    assert doc["csf_identity"]["relabelled"] and doc["csf_identity"]["discs_before"][0] == "C3/C4"
    assert doc["discs"][0]["name"] in ("C1/C2", "C2/C3"), doc["discs"][0]
