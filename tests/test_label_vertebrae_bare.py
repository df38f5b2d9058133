"""Template registration from a bare image: ``register-to-template -i t2.nii.gz -c t2 -o DIR``
with neither -s nor -l segments the cord (spinereg segment), labels every disc (spinereg
label-vertebrae) and registers with all of them (--ldisc). Scored with what the job did not use:
t2's manual segmentation and labels.nii.gz (mid-body of C3 and C5, held out).

Measured (this commit): discs C2/C3, C3/C4, C4/C5 (the right levels; flagged ambiguous, identity
margin 1.85 < 2, so the job warns on stderr and records it); template cord warped to t2 against the
manual segmentation: Dice 0.967; labels.nii.gz's bodies pushed into PAM50 land 0.75 / 1.32 mm
(3D; S-I 0.11 / -0.68 mm) from PAM50's body labels.

Not asserted here (about 150 s a seed), measured with template_job on the independent full
phantom (0.8 mm, C1-T6) from the bare image, seeds 0-2: the automatic segmentation has Dice
0.903 / 0.901 / 0.908 against the phantom's cord; the labeling is right on seeds 1-2 (cord mapping
error 0.74 / 1.45 and 0.69 / 1.21 mm mean / p95, template cord Dice 0.900 / 0.909 against the true
cord) and one level off on seed 0, flagged ambiguous (identity margin 1.42; with the true
segmentation the same labeling is right with margin 7.2: the automatic segmentation's width
profile misleads the width cue), so that registration is wrong by ~19 mm, with the warning. The
issue's 0.6 mm / 1.5 mm / Dice 0.97 from the bare image is therefore not met.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spinereg.cord.landmarks import read_point_labels
from spinereg.io.image import load_image
from spinereg.io.template import load_template
from spinereg.metrics import dice
from spinereg.transforms import apply_transforms
from spinereg.transforms.itk import read_displacement

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_register_to_template_from_bare_t2(sct_data, tmp_path):
    t2 = sct_data / "t2"
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "spinereg.cli.main", "register-to-template", "-i",
                        str(t2 / "t2.nii.gz"), "-c", "t2", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "t2_discs.json").read_text())
    assert [d["name"] for d in doc["discs"]] == ["C2/C3", "C3/C4", "C4/C5"]
    prov = json.loads((out / "provenance.json").read_text())
    assert "automatic: spinereg label-vertebrae" in prov["inputs"]["ldisc"]
    assert "automatic: spinereg segment" in prov["inputs"]["seg"]
    (stage,) = [s for s in prov["stages"] if s["name"] == "vertebral labeling"]
    assert stage["labeling"]["discs"] == ["C2/C3", "C3/C4", "C4/C5"]
    assert prov["landmarks"]["kind"] == "disc"
    # an ambiguous identity is said, on stderr and in provenance.json
    assert stage["labeling"]["ambiguous"] == doc["ambiguous"]
    if doc["ambiguous"]:
        assert "warning: automatic vertebral labeling: level identity is ambiguous" in r.stderr
    assert {"t2_seg.nii.gz", "t2_labels-disc.nii.gz", "t2_discs.json"} <= set(prov["outputs"])
    # held-out truth: the manual segmentation and the body labels
    man = load_image(t2 / "t2_seg-manual.nii.gz")
    tpl = load_template("PAM50")
    t2a = read_displacement(out / "warp_template2anat.nii.gz")
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    assert dice(apply_transforms(tcord, man.grid, [t2a], "linear"), man).dice >= 0.96  # measured 0.967
    bodies = read_point_labels(load_image(t2 / "labels.nii.gz"), "body")
    tb = read_point_labels(load_image(tpl.path("body"), ndim=3, check_finite=False), "body")
    moved = t2a.map(bodies.points)
    res = [float(np.linalg.norm(p - tb.points[list(tb.values).index(v)])) for v, p in zip(bodies.values, moved,
                                                                                          strict=True)]
    assert max(res) <= 1.45 and np.mean(res) <= 1.1, res  # measured 0.75 / 1.32
