"""extract-metric: label files valued beyond 0..1 with only two distinct values (session 49).

Real data: ``sct_testing_data/mt`` (MTR and SCT's own ``label/template`` warped onto mt1), cropped to
mt1's slices 2-4, whose only vertebral level is C4: SCT's ``PAM50_levels`` then holds the values 0
and 4. It passed as a weight map (weight 4 per cord voxel): a "vertebral labeling" row, exit 0, its
``Size [vox]`` 448 for 112 voxels, and ``-l 7`` was accepted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.metrics.extract import extract_metric

pytestmark = pytest.mark.realdata


@pytest.fixture()
def one_level(sct_data: Path, tmp_path: Path) -> dict[str, Path]:
    src = sct_data / "mt"
    tdir = tmp_path / "label" / "template"
    tdir.mkdir(parents=True)
    for f in (src / "label" / "template").glob("*.nii.gz"):
        nib.save(nib.load(f).slicer[:, :, 2:5], tdir / f.name)
    shutil.copy(src / "label" / "template" / "info_label.txt", tdir / "info_label.txt")
    mtr = tmp_path / "mtr.nii.gz"
    nib.save(nib.load(src / "mtr.nii.gz").slicer[:, :, 2:5], mtr)
    return {"mtr": mtr, "template": tdir}


def test_levels_file_of_one_level_is_not_a_weight_map(one_level, caplog):
    lv = np.asarray(nib.load(one_level["template"] / "PAM50_levels.nii.gz").dataobj)
    assert sorted(np.unique(lv).tolist()) == [0, 4] and int((lv > 0).sum()) == 112
    with caplog.at_level("WARNING"):
        rows = extract_metric(one_level["mtr"], one_level["template"])
    # was [3, 4, 5, 6, 7]: label 7 a "WA" row with Size [vox] 448.0 (112 voxels x 4)
    assert [r.label_id for r in rows] == [3, 4, 5, 6]
    assert "PAM50_levels.nii.gz: values 0..4" in caplog.text and "skipped" in caplog.text
    wm = nib.load(one_level["template"] / "PAM50_wm.nii.gz").get_fdata()
    y = nib.load(one_level["mtr"]).get_fdata()
    ok = np.isfinite(y)
    truth = float((wm * np.where(ok, y, 0)).sum() / (wm * ok).sum())
    assert rows[1].value == pytest.approx(truth) and truth == pytest.approx(30.07, abs=0.01)


def test_levels_file_of_one_level_named_is_refused(one_level, tmp_path, capsys):
    from spinereg.cli.main import main

    out = tmp_path / "levels.csv"
    rc = main(["extract-metric", "-i", str(one_level["mtr"]), "-f", str(one_level["template"]), "-l", "7",
               "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "not a weight map" in err and "values 0..4" in err and not out.exists()


def test_point_label_file_is_not_a_weight_map(one_level, caplog):
    """A point label (one voxel valued 4, as PAM50_label_body warped onto mt1) gave WA = that voxel's
    value with Size [vox] 4."""
    tdir = one_level["template"]
    ref = nib.load(tdir / "PAM50_cord.nii.gz")
    pt = np.zeros(ref.shape, np.uint8)
    pt[20, 19, 0] = 4
    nib.save(nib.Nifti1Image(pt, ref.affine), tdir / "PAM50_label_body.nii.gz")
    info = tdir / "info_label.txt"
    info.write_text(info.read_text().rstrip("\n") + "\n9, point-wise vertebral body labels, PAM50_label_body.nii.gz\n")
    with caplog.at_level("WARNING"):
        rows = extract_metric(one_level["mtr"], tdir)
    assert 9 not in [r.label_id for r in rows]
    assert "PAM50_label_body.nii.gz: values 0..4" in caplog.text
