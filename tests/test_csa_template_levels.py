"""``csa --levels`` given a template's own levels file (not warped onto the subject): the levels
were read at the subject's world points, and sct_testing_data t2's cervical cord got T3-T5 from
``PAM50_small_levels``, exit 0, before session 49. Refused now, unless the segmentation lies on
that template's grid too (a template-space measure)."""

from __future__ import annotations

import pytest

from spinereg.cli.main import main

pytestmark = pytest.mark.realdata


def test_template_levels_for_a_subject_are_refused(sct_data, tmp_path, capsys):
    tpl = sct_data / "template" / "template"
    out = tmp_path / "csa.csv"
    rc = main(["csa", "-s", str(sct_data / "t2" / "t2_seg-manual.nii.gz"), "--levels",
               str(tpl / "PAM50_small_levels.nii.gz"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "lies on PAM50_small's own grid" in err and "warp-template" in err, err
    assert not out.exists()
    # the subject's own levels are taken, and a template-space segmentation with the template's levels too
    assert main(["csa", "-s", str(sct_data / "t2" / "t2_seg-manual.nii.gz"), "--levels",
                 str(sct_data / "t2" / "t2_seg-manual_labeled.nii.gz"), "-o", str(out)]) == 0
    assert main(["csa", "-s", str(tpl / "PAM50_small_cord.nii.gz"), "--levels", str(tpl / "PAM50_small_levels.nii.gz"),
                 "-o", str(tmp_path / "tpl.csv")]) == 0
