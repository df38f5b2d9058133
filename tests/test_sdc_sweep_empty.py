"""``spinereg sdc`` with an EPI that is zero everywhere."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.phantom.epi import make_epi_phantom


@pytest.fixture(scope="module")
def ph_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("epi_phantom")
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    epi = nib.load(str(d / "epi.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros(epi.shape, np.float32), epi.affine), str(d / "zero.nii.gz"))
    return d


@pytest.mark.parametrize("method", ["fieldmap", "topup-up", "topup-down", "anat"])
def test_all_zero_epi_is_refused(ph_dir, tmp_path, capsys, method):
    """An all-zero EPI was 'corrected' by fieldmap ('max shift 2.11 voxels', exit 0); as topup's
    blip-up it was warned of as 'were both acquired with the same phase-encode direction?', exit 0."""
    d = ph_dir
    args = {"fieldmap": ["fieldmap", "-i", d / "zero.nii.gz", "--fieldmap", d / "fieldmap_hz.nii.gz"],
            "topup-up": ["topup", "-i", d / "zero.nii.gz", "--reverse", d / "epi_blipdown.nii.gz", "--pe", "j",
                         "--readout-time", "0.03"],
            "topup-down": ["topup", "-i", d / "epi_blipup.nii.gz", "--reverse", d / "zero.nii.gz"],
            "anat": ["anat", "-i", d / "zero.nii.gz", "-d", d / "t2s.nii.gz", "--pe", "j"]}[method]
    out = tmp_path / "o"
    rc = main(["sdc", *map(str, args), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "zero.nii.gz" in err and "zero everywhere" in err and len(err.splitlines()) == 1, err
    assert not out.exists()
