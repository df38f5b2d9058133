"""A 4D diffusion series segmented without b-values: its b=0 and weighted volumes averaged, said so;
the BIDS ``.bval`` beside a series is read (sct_testing_data dmri / fmri)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image
from spinereg.segment import segment

pytestmark = pytest.mark.realdata


@pytest.fixture()
def dmri(sct_data):
    return sct_data / "dmri" / "dmri.nii.gz", sct_data / "dmri" / "bvals.txt"


def test_mixed_series_without_bvals_is_noted(dmri):
    series, bvals = dmri
    bare = segment(series, "dwi")
    given = segment(series, "dwi", bvals=bvals)
    n_bare, n_given = int(np.count_nonzero(bare.seg.data)), int(np.count_nonzero(given.seg.data))
    assert (n_bare, n_given) == (501, 420)  # the mean of all 7 volumes (1 b=0, 6 b=750) vs the DWI mean
    notes = [w for w in bare.info.get("warnings", []) if "differ in brightness" in w]
    assert len(notes) == 1 and "2.2x" in notes[0] and "--bvals" in notes[0]
    assert not any("differ in brightness" in w for w in given.info.get("warnings", []))


def test_fmri_series_is_not_noted(sct_data):
    res = segment(sct_data / "fmri" / "fmri.nii.gz", "t2s")
    assert not any("differ in brightness" in w for w in res.info.get("warnings", []))


def test_bids_bval_beside_the_series_is_read(dmri, tmp_path, capsys):
    series, bvals = dmri
    shutil.copy(series, tmp_path / "sub-01_dwi.nii.gz")
    shutil.copy(bvals, tmp_path / "sub-01_dwi.bval")
    res = segment(tmp_path / "sub-01_dwi.nii.gz", "dwi")
    assert "6 diffusion-weighted volumes" in res.info["segmented"] and "sub-01_dwi.bval" in res.info["segmented"]
    assert int(np.count_nonzero(res.seg.data)) == 420
    out = tmp_path / "sub-01_dwi_seg.nii.gz"
    assert main(["segment", "-i", str(tmp_path / "sub-01_dwi.nii.gz"), "-c", "dwi", "-o", str(out)]) == 0
    assert "differ in brightness" not in capsys.readouterr().err
    assert int(np.count_nonzero(load_image(out).data > 0)) == 420


def test_mixed_series_note_reaches_the_cli(dmri, tmp_path, capsys):
    series, _ = dmri
    assert main(["segment", "-i", str(series), "-c", "dwi", "-o", str(tmp_path / "seg.nii.gz")]) == 0
    assert "differ in brightness up to 2.2x" in capsys.readouterr().err
