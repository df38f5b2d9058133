"""``spinereg sdc fieldmap`` with inputs that used to give a result that looked fine but was not."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.phantom.epi import make_epi_phantom


@pytest.fixture(scope="module")
def ph_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("epi_phantom")
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    return d


def _write(path, data, affine, meta=None):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    if meta is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))
    return path


def _run(ph_dir, out, *args):
    return main(["sdc", "fieldmap", "-i", str(ph_dir / "epi.nii.gz"), *args, "-o", str(out)])


def test_fieldmap_off_the_epi_is_refused_and_partial_one_warned(ph_dir, tmp_path, capsys):
    """A field map 500 mm off the EPI (a wrong header, another session) was a field of zeros on
    the EPI: 'max shift 0.00 voxels', exit 0. One over 4 of 20 slices: exit 0, no word of the 16
    slices left uncorrected."""
    fm = nib.load(str(ph_dir / "fieldmap_hz.nii.gz"))
    aff = fm.affine.copy()
    aff[:3, 3] += 500
    far = _write(tmp_path / "far.nii.gz", fm.get_fdata(), aff)
    out = tmp_path / "o1"
    rc = _run(ph_dir, out, "--fieldmap", str(far))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "does not overlap the EPI" in err and "far.nii.gz" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()
    part = _write(tmp_path / "part.nii.gz", fm.get_fdata()[:, :, :4], fm.affine)
    out = tmp_path / "o2"
    rc = _run(ph_dir, out, "--fieldmap", str(part))
    err = capsys.readouterr().err.strip()
    assert rc == 0 and "covers only 20 % of the subject" in err, err
    assert json.loads((out / "epi_sdc.json").read_text())["fieldmap_outside_subject_fraction"] == pytest.approx(0.8, abs=0.005)  # measured 0.8002
    out = tmp_path / "o3"
    rc = _run(ph_dir, out, "--fieldmap", str(ph_dir / "fieldmap_hz.nii.gz"))
    err = capsys.readouterr().err.strip()
    assert rc == 0 and "warning" not in err, err


def test_stated_units_are_checked_for_zero_and_size(ph_dir, tmp_path, capsys):
    """Units stated by the sidecar or --fieldmap-units were taken on trust: an all-zero map with
    "Units": "Hz" gave 'max shift 0.00 voxels' (the EPI as it was), and the phantom's map in Hz
    said to be in T 'max shift 89743825.92 voxels', each exit 0."""
    fm = nib.load(str(ph_dir / "fieldmap_hz.nii.gz"))
    zero = _write(tmp_path / "zero.nii.gz", np.zeros(fm.shape), fm.affine, {"Units": "Hz"})
    for args, words in ((["--fieldmap", str(zero)], "zero everywhere"),
                        (["--fieldmap", str(ph_dir / "fieldmap_hz.nii.gz"), "--fieldmap-units", "T"],
                         "its units are not T?")):
        out = tmp_path / f"o{len(words)}"
        rc = _run(ph_dir, out, *args)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and words in err and len(err.splitlines()) == 1 and not out.exists(), err


def test_field_map_in_hz_as_phasediff_is_refused(ph_dir, tmp_path, capsys):
    """The phantom's field map in Hz (-67 to 70) as --phasediff was read as 12-bit scanner units:
    a field of about -200 Hz everywhere, 'max shift 6.30 voxels', exit 0."""
    fm = nib.load(str(ph_dir / "fieldmap_hz.nii.gz"))
    pd = _write(tmp_path / "pd.nii.gz", fm.get_fdata(), fm.affine, {"EchoTime1": 0.00492, "EchoTime2": 0.00738})
    out = tmp_path / "o"
    rc = _run(ph_dir, out, "--phasediff", str(pd))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "a field map in Hz?" in err and "pd.nii.gz" in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    out = tmp_path / "o2"
    assert _run(ph_dir, out, "--phasediff", str(ph_dir / "fieldmap_phasediff.nii.gz")) == 0
