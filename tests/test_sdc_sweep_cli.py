"""``spinereg sdc`` arguments that used to write outputs where the user did not ask."""

from __future__ import annotations

from spinereg.cli.main import main
from spinereg.phantom.epi import make_epi_phantom


def test_name_with_a_folder_is_refused(tmp_path, capsys):
    """--name ../x wrote x_sdc.nii.gz, x_fieldmap_hz.nii.gz ... beside the -o folder (past its
    check of existing outputs) and the warp under 'warp_..', exit 0."""
    d = tmp_path / "ph"
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    out = tmp_path / "o"
    rc = main(["sdc", "fieldmap", "-i", str(d / "epi.nii.gz"), "--fieldmap", str(d / "fieldmap_hz.nii.gz"),
               "--name", "../x", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--name '../x' is not a file name prefix" in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob("x_*"))
