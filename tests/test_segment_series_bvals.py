"""A 4D diffusion series segmented without b-values: its b=0 and weighted volumes averaged, said so;
the BIDS ``.bval`` beside a series is read (sct_testing_data dmri / fmri); a single non-axial slice refused naming it."""

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


@pytest.mark.parametrize("axis, kind", [(0, "coronal"), (2, "sagittal")])
def test_single_long_slice_refused_naming_it(sct_data, tmp_path, capsys, axis, kind):
    """t2's middle slice across A-P / R-L: 'no spinal cord found ... give an image that shows the
    spinal cord' before (it shows it); now the slice's kind and the fix. The axial slice (axis 1)
    is segmented (82 voxels, one section)."""
    import nibabel as nib

    src = nib.load(sct_data / "t2" / "t2.nii.gz")
    d = np.asarray(src.dataobj)
    outs = {}
    for ax in (axis, 1):
        sl = [slice(None)] * 3
        k = d.shape[ax] // 2
        sl[ax] = slice(k, k + 1)
        start = np.zeros(3)
        start[ax] = k
        aff = src.affine.copy()
        aff[:3, 3] = src.affine[:3, :3] @ start + src.affine[:3, 3]
        p = tmp_path / f"slice{ax}.nii.gz"
        nib.save(nib.Nifti1Image(d[tuple(sl)], aff), p)
        outs[ax] = main(["segment", "-i", str(p), "-o", str(tmp_path / f"slice{ax}_seg.nii.gz")])
    err = capsys.readouterr().err
    assert outs == {axis: 2, 1: 0}
    assert f"single {kind} slice" in err and "give the 3D volume" in err and "no spinal cord found" not in err
    assert not (tmp_path / f"slice{axis}_seg.nii.gz").exists()
    assert int(np.count_nonzero(load_image(tmp_path / "slice1_seg.nii.gz").data)) == 82
