"""``spinereg sdc topup`` with inputs that used to give a result that looked fine but was not."""

from __future__ import annotations

import shutil

import pytest

from spinereg.cli.main import main
from spinereg.phantom.epi import make_epi_phantom


@pytest.fixture(scope="module")
def ph_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("epi_phantom")
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    return d


def test_apply_to_of_the_opposite_phase_encoding_is_refused(ph_dir, tmp_path, capsys):
    """The blip-down series (its sidecar: j-) as --apply-to was unwarped with blip-up's shifts,
    doubling its distortion: 'max shift 28.18 voxels', exit 0."""
    for ext in (".nii.gz", ".json"):
        shutil.copy(ph_dir / f"epi_blipdown{ext}", tmp_path / f"series{ext}")
    out = tmp_path / "o"
    rc = main(["sdc", "topup", "-i", str(ph_dir / "epi_blipup.nii.gz"), "--reverse",
               str(ph_dir / "epi_blipdown.nii.gz"), "--apply-to", str(tmp_path / "series.nii.gz"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--apply-to PhaseEncodingDirection is 'j-'" in err and "series.json" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_apply_to_read_out_longer_is_unwarped_with_its_own_shifts(tmp_path, capsys):
    """A shift (voxels) is the field (Hz) times the readout time: a series read out in 0.06 s is
    shifted twice as far as the 0.03 s blip-up / blip-down pair by the same field. It was unwarped
    with the pair's shifts, half its distortion left (mean |error| in the subject against its
    undistorted truth 0.0244, as much as the pair's own raw EPI), exit 0. Now its sidecar's
    TotalReadoutTime scales them: 0.0124 (a series read out like the pair: 0.0104). Same phantom
    field (seed 0, no motion); the truth is the phantom's undistorted EPI, which the solver never sees."""
    import json

    import nibabel as nib
    import numpy as np

    a, b = tmp_path / "a", tmp_path / "b"
    make_epi_phantom(n_volumes=2, seed=0, motion=0.0).save(a)
    make_epi_phantom(n_volumes=2, seed=0, readout_s=0.060, motion=0.0).save(b)
    out = tmp_path / "o"
    assert main(["sdc", "topup", "-i", str(a / "epi_blipup.nii.gz"), "--reverse", str(a / "epi_blipdown.nii.gz"),
                 "--apply-to", str(b / "epi.nii.gz"), "-o", str(out)]) == 0, capsys.readouterr().err
    truth = np.asanyarray(nib.load(str(b / "truth" / "epi_undistorted.nii.gz")).dataobj).astype(float)
    truth = truth if truth.ndim == 3 else truth[..., 0]
    got = np.asanyarray(nib.load(str(out / "epi_sdc.nii.gz")).dataobj).astype(float)[..., 0]
    subject = truth > 0.2 * np.percentile(truth, 99)
    err = float(np.abs(got - truth)[subject].mean())
    assert err <= 0.014, err  # measured 0.0124 (0.0244 with the pair's own shifts)
    assert json.loads((out / "epi_sdc.json").read_text())["apply_to_shift_scale"] == 2.0
