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


def test_unknown_phase_encoding_in_a_sidecar_names_it(tmp_path, capsys):
    """A sidecar's PhaseEncodingDirection "y" was refused as "unknown phase-encode direction 'y'"
    without naming the sidecar or the key."""
    import json

    d = tmp_path / "ph"
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    meta = json.loads((d / "epi.json").read_text())
    meta["PhaseEncodingDirection"] = "y"
    (tmp_path / "bad.json").write_text(json.dumps(meta))
    out = tmp_path / "o"
    rc = main(["sdc", "fieldmap", "-i", str(d / "epi.nii.gz"), "--fieldmap", str(d / "fieldmap_hz.nii.gz"),
               "--json", str(tmp_path / "bad.json"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "bad.json" in err and "PhaseEncodingDirection" in err and "--pe" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_bad_readout_time_argument_is_not_blamed_on_the_sidecar(tmp_path, capsys):
    """--readout-time nan was refused as 'ph/epi.json: total readout time nan s is out of range',
    naming a sidecar that holds a right 0.03."""
    d = tmp_path / "ph"
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    out = tmp_path / "o"
    rc = main(["sdc", "fieldmap", "-i", str(d / "epi.nii.gz"), "--fieldmap", str(d / "fieldmap_hz.nii.gz"),
               "--readout-time", "nan", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "(--readout-time)" in err and "epi.json" not in err, err
    assert len(err.splitlines()) == 1 and not out.exists()
