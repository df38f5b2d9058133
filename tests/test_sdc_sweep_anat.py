"""``spinereg sdc anat`` with inputs that used to give a result that looked fine but was not."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.phantom.epi import make_epi_phantom


def test_anatomy_off_the_epi_is_refused(tmp_path, capsys):
    """The phantom's T2*w moved 500 mm by its header was resampled onto the EPI as zeros and the
    EPI 'registered' to them: 'max shift 21.44 voxels', exit 0."""
    d = tmp_path / "ph"
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    t2s = nib.load(str(d / "t2s.nii.gz"))
    aff = t2s.affine.copy()
    aff[:3, 3] += 500
    nib.save(nib.Nifti1Image(t2s.get_fdata().astype(np.float32), aff), str(tmp_path / "far.nii.gz"))
    out = tmp_path / "o"
    rc = main(["sdc", "anat", "-i", str(d / "epi.nii.gz"), "-d", str(tmp_path / "far.nii.gz"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "does not overlap the EPI" in err and "far.nii.gz" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_anat_without_readout_time(tmp_path, capsys):
    """Without TotalReadoutTime (documented: only the field in Hz needs it) the run was refused
    with 'total readout time 1.0 s is out of range (0, 1)' naming the sidecar, a time nobody gave.
    Now it runs, warns that the field map output holds zeros, and its JSON says null (not NaN)."""
    import json

    d = tmp_path / "ph"
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    meta = json.loads((d / "epi.json").read_text())
    meta.pop("TotalReadoutTime")
    (tmp_path / "noro.json").write_text(json.dumps(meta))
    out = tmp_path / "o"
    rc = main(["sdc", "anat", "-i", str(d / "epi.nii.gz"), "-d", str(d / "t2s.nii.gz"), "--json",
               str(tmp_path / "noro.json"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 0 and "out of range" not in err and "field map output holds zeros" in err, err
    res = json.loads((out / "epi_sdc.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert res["TotalReadoutTime"] is None and res["field_hz"] is False
