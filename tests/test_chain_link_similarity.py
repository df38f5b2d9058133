"""A composed chain's link is measured by its images' mutual information around the cord, before
(headers) and after (the link): ``link_similarity`` per image in metrics.json, the smallest gain
as the chain's ``link_similarity_gain``, warned of below 0. SCT's DWI mean -> t2 with slice-wise
correlation (the default for a DWI before session 49, mutual information since:
tests/test_epi_link_preset.py) moved the template cord 5-6 mm off the DWI's cord (Dice 0.42
against the headers' 0.65), and the verdict warned of the field of view only, as it does for the right links,
before session 48. The Dice figures are the session's measurements against the DWI's own
segmentation, which the chain was not given (--seg none)."""

from __future__ import annotations

import json

import pytest

from spinereg.cli.main import main

pytestmark = pytest.mark.realdata


def _run(sct_data, out, *extra):
    d = sct_data
    main(["chain", "-i", str(d / "dmri" / "dwi_mean.nii.gz"), str(d / "t2" / "t2.nii.gz"), "--seg", "none",
          str(d / "t2" / "t2_seg-manual.nii.gz"), "-l", str(d / "t2" / "labels.nii.gz"), *extra, "-o", str(out)])
    return json.loads((out / "metrics.json").read_text())


def test_dwi_link_that_moves_the_images_apart_is_warned_of(sct_data, tmp_path):
    m = _run(sct_data, tmp_path / "cc", "--link-param", "step=1,type=im,algo=slicereg,metric=CC")
    sim = m["dwi_mean"]["link_similarity"]
    assert abs(sim["gain"] - (-0.0154)) < 0.003, sim  # before 0.0858, after 0.0704
    assert "warn: link_similarity_gain -0.0154 < 0" in m["qc"]["reasons"], m["qc"]
    assert any("lowered the images' mutual information" in n and "--link-warp" in n for n in m["qc"]["notes"])


def test_dwi_link_with_mutual_information_is_not(sct_data, tmp_path):
    m = _run(sct_data, tmp_path / "mi")  # the default for a DWI since session 49 (multimodal_dwi)
    sim = m["dwi_mean"]["link_similarity"]
    assert sim["gain"] > 0.012, sim  # measured +0.018 (session 48)
    assert not any("link_similarity_gain" in r for r in m["qc"]["reasons"]), m["qc"]
