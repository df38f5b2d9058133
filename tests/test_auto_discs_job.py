"""register-to-template given two body labels: the automatic labeling runs once, before the
registration, and its measured discs join the labels when its levels agree (issue 10 item 4;
:mod:`spinereg.register.auto_landmarks`); the QC level check reuses that labeling.

Independent phantom ``cervical`` (0.8 mm, C1-C7, 60 x 100 x 144), seed 0, through
:func:`spinereg.pipelines.registration.template_job` (the command's code path), with the true
cord segmentation:

* bodies C3 and C5 (right): the labeling (5 discs C2/C3-C6/C7 and, since session 10, C1/C2 from
  the CSF profile above C2/C3, not ambiguous) agrees, its 6 discs join; provenance.json and
  metrics.json say so; the level check finds no offset. Cord mapping error 0.58 / 1.72 mm mean /
  p95 (0.49 / 1.62 at the discs' measured points, before session 14 moved the discs that join to
  PAM50_label_disc's convention as the bare job's are: worse on this case, better on the full
  phantom's seeds 0-3, tests/test_validation_register.py): worse than the 0.34 / 0.71 with the 5
  discs alone, because this phantom's C1/C2 is located 1.0 mm high (the labels alone: 0.71 / 1.78). On the short cervical fields of view the CSF's
  C1/C2 is mixed (discs alone, true segmentation: cervical 0 / 1 / 2 0.42 / 0.80 -> 0.58 / 1.55,
  0.50 / 1.16 -> 0.40 / 0.74, 0.61 / 0.86 -> 0.67 / 0.87); on the 20 full C1-T6 phantoms it lowers
  the bare job's mean of means 0.651 -> 0.601 / 0.753 -> 0.676 (docs/labeling_bare_image.md).
  Measured once, not asserted: the ``cervicothoracic`` phantom (1 mm, C1-T6, 48 x 80 mm
  in-plane), seed 0: 0.76 / 2.62 mm (labels alone 1.02 / 3.07, discs alone 0.86 / 2.89), its
  largest errors above C2/C3, beyond every landmark (C1/C2 2.3 mm S-I): item 4's 2 mm p95 is met
  on the 0.8 mm full phantom (tests/test_validation_register.py), not there;
* the same bodies labelled C4 and C6 (one level off): the labeling disagrees, the given labels are
  used alone with a warning, and the level check reports the one-level offset (verdict warn or
  fail), as it does without the automatic discs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import spinereg.vertebrae
import spinereg.vertebrae.label
from spinereg.io.image import Image, save_image
from spinereg.phantom.independent import make_independent_subject
from spinereg.pipelines.registration import template_job

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

#: measured cord mapping error (mean, p95 mm) of the right-label run, asserted + (0.03, 0.1)
CLAIM_RIGHT = (0.58, 1.72)


@pytest.fixture(scope="module")
def phantom(data_root, tmp_path_factory):
    ph = make_independent_subject("cervical", seed=0)
    d = tmp_path_factory.mktemp("cervical")
    body = ph.labels("body", (3, 5))
    wrong = np.asarray(body.data).copy()
    wrong[np.asarray(body.data) == 3], wrong[np.asarray(body.data) == 5] = 4, 6
    files = {"image": save_image(ph.image, d / "t2.nii.gz"), "seg": save_image(ph.seg, d / "t2_seg.nii.gz"),
             "right": save_image(body, d / "labels.nii.gz"),
             "wrong": save_image(Image(wrong, ph.grid.affine), d / "labels_wrong.nii.gz")}
    return ph, files


@pytest.fixture()
def labeling_calls(monkeypatch):
    """Counts the automatic labelings run (the job's and the level check's)."""
    calls = []
    real = spinereg.vertebrae.label.label_vertebrae

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(spinereg.vertebrae, "label_vertebrae", counted)
    monkeypatch.setattr(spinereg.vertebrae.label, "label_vertebrae", counted)
    return calls


def _run(phantom, labels: str, out: Path):
    ph, f = phantom
    res = template_job(f["image"], f["seg"], out, labels=f[labels], contrast="t2", crop=True)
    prov = json.loads((out / "provenance.json").read_text())
    mets = json.loads((out / "metrics.json").read_text())
    return ph, res, prov, mets


def test_agreeing_labeling_adds_its_discs(phantom, labeling_calls, tmp_path):
    ph, res, prov, mets = _run(phantom, "right", tmp_path / "out")
    assert len(labeling_calls) == 1  # labelled once: before the registration, reused by the level check
    used = prov["landmarks"]["used"]
    assert used["given"] == {"kind": "body", "values": [3, 5]}
    assert used["automatic"]["used"] and len(used["automatic"]["discs"]) == 6, used  # 5 bands + C1/C2 (CSF)
    assert mets["landmarks"]["used"] == used and len(mets["landmarks"]["automatic_disc_residual_mm"]) == 6
    assert len(prov["landmarks"]["automatic_discs_subject_mm"]) == 6
    assert mets["qc"]["scores"]["level_offset_vertebrae"] == 0
    assert not res.extra["warnings"]
    err = ph.error(res.result.template2anat)
    assert err["mean_mm"] <= CLAIM_RIGHT[0] + 0.03 and err["p95_mm"] <= CLAIM_RIGHT[1] + 0.1, err


def test_one_level_off_labels_register_alone_and_are_flagged(phantom, labeling_calls, tmp_path):
    ph, res, prov, mets = _run(phantom, "wrong", tmp_path / "out")
    assert len(labeling_calls) == 1
    auto = prov["landmarks"]["used"]["automatic"]
    assert not auto["used"] and auto["warn"] and "disagrees" in auto["reason"], auto
    assert "automatic_discs_subject_mm" not in prov["landmarks"]
    assert any("disagrees" in w for w in res.extra["warnings"])
    assert max(ph.level_errors(res.result.template2anat).values()) > 10  # the registration follows the labels
    assert mets["qc"]["scores"]["level_offset_vertebrae"] == 1
    assert mets["qc"]["verdict"] in ("warn", "fail"), mets["qc"]
