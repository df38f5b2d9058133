"""EPI phantom: geometry, physics and truth files are consistent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.epi.distortion import distort, jacobian, pe_axis, unwarp
from spinereg.phantom.epi import make_epi_phantom, read_motion_table


@pytest.fixture(scope="module")
def ph():
    return make_epi_phantom(n_volumes=4, multiband=2, seed=3)


def test_phantom_geometry_and_field(ph):
    assert ph.epi.shape == (64, 64, 20, 4)
    assert ph.blip_up.shape == ph.blip_down.shape == (64, 64, 20)
    field = ph.field_true_hz.data
    body = ph.epi_undistorted.data > 0.1
    assert 69.0 < np.abs(field[body]).max() <= 70.01
    # about 2 voxels of shift at 30 ms, > 1 voxel in the cord, no fold-over
    assert 2.0 < np.abs(ph.vsm_true[body]).max() < 2.2
    cord = ph.epi_seg.data > 0
    assert np.abs(ph.vsm_true[cord]).max() > 1.0
    assert jacobian(ph.vsm_true, 1).min() > 0.5
    meta = ph.sidecars["epi"]
    assert meta["PhaseEncodingDirection"] == "j" and meta["TotalReadoutTime"] == 0.03
    assert meta["MultibandAccelerationFactor"] == 2 and len(meta["SliceTiming"]) == 20
    assert ph.sidecars["epi_blipdown"]["PhaseEncodingDirection"] == "j-"


def test_phantom_motion_table(ph):
    m = ph.motion
    assert m.shape == (4, 20, 2)
    assert np.all(m[0] == 0)
    assert np.abs(m).max() > 0.3
    # slices of one multiband group (k and k + 10) share one translation
    np.testing.assert_array_equal(m[:, :10], m[:, 10:])
    # a translated volume is the reference volume translated (analytic, up to noise)
    t = 2
    for k in (5, 12):
        tx, ty = m[t, k]
        # LAS grid: +x world = -i, +y = +j (1 mm voxels)
        ref = ph.blip_up.data[:, :, k]
        from scipy import ndimage
        moved = ndimage.shift(ref, (-tx, ty), order=3, mode="nearest")
        err = np.abs(moved - ph.epi.data[:, :, k, t])[8:-8, 8:-8]
        assert np.median(err) < 0.01  # measured 0.0084 / 0.0088 (slices 5 / 12, seed 3)


def test_forward_model_matches_analytic(ph):
    """distort(undistorted, vsm) reproduces the analytic EPI; unwarp inverts it."""
    axis, _ = pe_axis("j")
    d = distort(ph.epi_undistorted.data, ph.vsm_true, axis)
    cord = ph.epi_seg.data > 0
    ref = ph.blip_up.data
    assert np.abs(d - ref)[cord].mean() < 0.01  # measured 0.0083 (seed 3)
    u = unwarp(d, ph.vsm_true, axis)
    rel = np.abs(u - ph.epi_undistorted.data)[cord].mean() / ph.epi_undistorted.data[cord].mean()
    assert rel < 0.0035  # measured 0.0032 (seed 3)


def test_phantom_cli(tmp_path):
    out = tmp_path / "ph"
    rc = main(["phantom", "-o", str(out), "--shape", "33", "31", "6", "--volumes", "2",
               "--pe", "j-", "--seed", "1"])
    assert rc == 0
    for name in ("t2w.nii.gz", "t2s.nii.gz", "epi.nii.gz", "epi.json", "epi_blipup.nii.gz",
                 "epi_blipdown.json", "fieldmap_hz.nii.gz", "fieldmap_phasediff.json",
                 "truth/warp_sdc.nii.gz", "truth/warp_t2w2epi.nii.gz", "truth/motion.csv",
                 "truth/field_hz.nii.gz", "truth/params.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "epi.json").read_text())["PhaseEncodingDirection"] == "j-"
    m = read_motion_table(out / "truth" / "motion.csv")
    assert m.shape == (2, 6, 2)
    assert main(["phantom", "-o", str(out), "--volumes", "2"]) == 2  # exists, no --overwrite
    assert main(["phantom", "-o", str(tmp_path / "bad"), "--multiband", "4", "--shape", "8", "8", "6"]) == 2
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_phantom_cli_refuses_a_field_that_is_not_a_number_or_leaves_the_frame(tmp_path, capsys):
    """--field-max nan wrote every EPI and field map all-NaN, --field-max 100000 an EPI shifted
    3000 voxels out of its 64-voxel frame (max 0.05: noise), both exit 0."""
    for extra, words in ((["--field-max", "nan"], "--field-max must be a finite number"),
                         (["--noise", "nan"], "--noise must be a finite number"),
                         (["--field-max", "100000"], "more than half the 64-voxel phase-encode axis"),
                         # an internal error (MemoryError, 21.3 PiB) before session 37
                         (["--shape", "100000", "100000", "100000"], "more than the phantom's")):
        out = tmp_path / "ph"
        assert main(["phantom", "-o", str(out), "--volumes", "2", *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() or not any(out.iterdir())
