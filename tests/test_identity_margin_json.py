"""The identity margin and its alternatives never carry the hard limits' -1e9 score into the
discs JSON. Before session 50 a run whose levels a pin (or the CSF's relabelling) held wrote
``identity_margin: 999999994.44`` and ``identity_alternatives`` of the same size: a margin that
reads as certainty on a labeling flagged ambiguous. Now an alternative the limits rule out is
None, and a margin with no alternative left is None in JSON ("unbounded" in messages).

Case: sct_testing_data t2 averaged to 3 mm voxels along its last (R-L) axis, a labeling the CSF
relabelled (the chain named C3/C4-C5/C6, one level low; relabelled C2/C3-C4/C5, right, and
flagged). Until session 51 the case was the same image averaged to 3 mm along A-P, whose right
chain the CSF relabelled one level low (before session 50's held end widths it was thoracic,
with identity_margin 999999994.44); the CSF no longer renames images that coarse along A-P
(tests/test_label_coarse_resampling.py). t1 with its init file (slice 55 = C2/C3, right)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d

from spinereg.cli.main import main
from spinereg.vertebrae.names import margin_text, margin_value

pytestmark = pytest.mark.realdata


def test_margin_helpers():
    assert margin_value(1.996) == 2.0 and margin_value(float("inf")) is None
    assert margin_text(1.996) == "1.99" and margin_text(float("inf")).startswith("unbounded")


def _thick(src, dst, seg=False, axis=2):
    im = nib.load(str(src))
    d = uniform_filter1d(np.asarray(im.dataobj, np.float32), 3, axis=axis)
    d = d[tuple(slice(None, None, 3) if a == axis else slice(None) for a in range(3))]
    if seg:
        d = (d >= 0.5).astype(np.uint8)
    zoom = [1.0, 1.0, 1.0, 1.0]
    zoom[axis] = 3.0
    nib.save(nib.Nifti1Image(d, im.affine @ np.diag(zoom)), str(dst))
    return dst


def _values(doc: dict) -> list:
    return [doc["identity_margin"]] + [v for a in doc["identity_alternatives"] for v in (a["up"], a["down"])]


def test_relabelled_run_has_no_sentinel_margin(sct_data, tmp_path, capsys):
    t2 = sct_data / "t2"
    img = _thick(t2 / "t2.nii.gz", tmp_path / "t2thick.nii.gz")
    seg = _thick(t2 / "t2_seg-manual.nii.gz", tmp_path / "t2thick_seg.nii.gz", seg=True)
    out = tmp_path / "lv"
    assert main(["label-vertebrae", "-i", str(img), "-s", str(seg), "-c", "t2", "-o", str(out),
                 "--qc", str(tmp_path / "qc")]) == 0
    assert "level identity is ambiguous" in capsys.readouterr().err
    text = (out / "t2thick_discs.json").read_text()
    doc = json.loads(text)
    # measured (session 51): the chain named C3/C4-C5/C6 (margin 0.50), the CSF (evidence 6.08)
    # relabelled it one level higher, C2/C3-C4/C5 (right, flagged); under that pin every "up"
    # reading is ruled out: None, where 999999994-sized values were written before session 50
    assert doc["identity_source"] == "csf" and doc["ambiguous"]
    assert [d["name"] for d in doc["discs"]] == ["C2/C3", "C3/C4", "C4/C5"]
    assert "99999" not in text and all(a["up"] is None for a in doc["identity_alternatives"]), _values(doc)
    assert doc["identity_margin"] == pytest.approx(5.55, abs=0.1)
    assert doc["csf_identity"]["identity_margin_before"] == pytest.approx(0.50, abs=0.05)
    assert doc["csf_identity"]["evidence"] == pytest.approx(6.08, abs=0.1)


def test_pinned_run_alternatives_are_finite_or_none(sct_data, tmp_path):
    t1 = sct_data / "t1"
    out = tmp_path / "lv"
    assert main(["label-vertebrae", "-i", str(t1 / "t1w.nii.gz"), "-s", str(t1 / "t1w_seg-manual.nii.gz"), "-c", "t1",
                 "-initfile", str(t1 / "init_label_vertebrae.txt"), "-o", str(out)]) == 0
    text = (out / "t1w_discs.json").read_text()
    doc = json.loads(text)
    vals = _values(doc)
    # measured: margin 15.34; the alternatives the pin rules out (every "up") are None
    assert "99999" not in text and doc["identity_margin"] == pytest.approx(15.34, abs=0.5), vals
    assert all(a["up"] is None for a in doc["identity_alternatives"][:3])
    assert all(v is None or abs(v) < 100 for v in vals), vals
