"""Sweep of ``spinereg extract-metric`` for results that would fool a user (session 40).

Real data: ``sct_testing_data/mt/mtr.nii.gz`` with SCT's atlas warped onto it (``mt/label/atlas``).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.metrics.extract import extract_metric


@pytest.fixture(scope="module")
def mt(sct_data: Path) -> dict[str, Path]:
    d = sct_data / "mt"
    return {"mtr": d / "mtr.nii.gz", "atlas": d / "label" / "atlas"}


def test_nan_over_much_of_a_label_is_warned_of(mt, tmp_path, caplog):
    img = nib.load(mt["mtr"])
    d = img.get_fdata()
    atlas = mt["atlas"]
    gm = sum(nib.load(atlas / f"PAM50_atlas_{i:02d}.nii.gz").get_fdata() for i in range(30, 36))
    d[18:22, 18:22, :] = np.nan  # the cord's centre
    path = tmp_path / "mtr_nan.nii.gz"
    nib.save(nib.Nifti1Image(d.astype(np.float32), img.affine), path)
    ok = np.isfinite(d)
    truth = float((gm * np.where(ok, d, 0)).sum() / (gm * ok).sum())
    with caplog.at_level("WARNING"):
        row = extract_metric(path, atlas, 52)[0]
    assert row.value == pytest.approx(truth)  # the number itself is unchanged
    assert "non-finite metric value" in caplog.text and "42 %" in caplog.text  # of the gray matter
    caplog.clear()
    with caplog.at_level("WARNING"):
        extract_metric(mt["mtr"], atlas, 52)  # mtr's own NaNs lie outside the labels
    assert not caplog.records


def test_template_folder_intensities_and_levels_are_not_weights(sct_data, tmp_path, capsys, caplog):
    from spinereg.cli.main import main

    tdir = sct_data / "mt" / "label" / "template"
    with caplog.at_level("WARNING"):
        rows = extract_metric(mt_path(sct_data), tdir)
    # were rows for the T1/T2/T2* templates (intensity-weighted) and PAM50_levels (level-weighted)
    assert [r.label_id for r in rows] == [3, 4, 5, 6]
    assert "PAM50_levels.nii.gz: values 0..5" in caplog.text and "skipped" in caplog.text
    wm = nib.load(tdir / "PAM50_wm.nii.gz").get_fdata()
    y = nib.load(mt_path(sct_data)).get_fdata()
    ok = np.isfinite(y)
    assert rows[1].value == pytest.approx(float((wm * np.where(ok, y, 0)).sum() / (wm * ok).sum()))
    out = tmp_path / "levels.csv"
    rc = main(["extract-metric", "-i", str(mt_path(sct_data)), "-f", str(tdir), "-l", "7", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "not a weight map" in err and "--vertfile" in err and not out.exists()


def mt_path(sct_data: Path) -> Path:
    return sct_data / "mt" / "mtr.nii.gz"
