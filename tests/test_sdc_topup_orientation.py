"""sdc topup with the blip-down image stored in another voxel order than the blip-up image (one of
the pair reoriented, e.g. by ``sct_image -setorient`` or ``fslreorient2std``): the same voxels in
the same world, so the same correction. Refused before session 38 ("not on the same voxel grid").
The blip-down sidecar's PhaseEncodingDirection names its own file's voxel axes: it is read in
the blip-up image's axes (a sidecar left unchanged after a flip along PE now names the same
direction as the blip-up's, and is refused as such)."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.epi.topup import pe_on_grid
from spinereg.phantom.epi import make_epi_phantom


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("topup_orient")
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    return d


def _stored(pair, tmp_path, name, data_fn, aff_fn, pe):
    """The blip-down image in another voxel order: data and affine changed together (same world)."""
    img = nib.load(str(pair / "epi_blipdown.nii.gz"))
    data, aff = data_fn(np.asarray(img.dataobj)), aff_fn(img.affine.copy(), img.shape)
    nib.save(nib.Nifti1Image(data, aff), str(tmp_path / f"{name}.nii.gz"))
    meta = json.loads((pair / "epi_blipdown.json").read_text())
    meta["PhaseEncodingDirection"] = pe
    (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    return tmp_path / f"{name}.nii.gz"


def _flip_j(aff, shape):
    out = aff.copy()
    out[:3, 3] = aff[:3, 3] + aff[:3, 1] * (shape[1] - 1)
    out[:3, 1] = -aff[:3, 1]
    return out


def _swap_ij(aff, shape):
    out = aff.copy()
    out[:3, [0, 1]] = aff[:3, [1, 0]]
    return out


def _run(pair, tmp_path, down, out):
    shutil.copy(pair / "epi_blipup.json", tmp_path / "up.json")
    shutil.copy(pair / "epi_blipup.nii.gz", tmp_path / "up.nii.gz")
    return main(["sdc", "topup", "-i", str(tmp_path / "up.nii.gz"), "--reverse", str(down), "-o", str(tmp_path / out)])


def test_blip_down_in_another_voxel_order_gives_the_same_correction(pair, tmp_path, capsys):
    assert _run(pair, tmp_path, pair / "epi_blipdown.nii.gz", "ref") == 0
    ref = nib.load(str(tmp_path / "ref" / "epi_sdc.nii.gz")).get_fdata()
    ref_vsm = nib.load(str(tmp_path / "ref" / "epi_vsm.nii.gz")).get_fdata()
    assert np.abs(ref_vsm).max() > 1.0  # the pair shows a distortion to correct
    cases = {"flip_j": (lambda a: np.ascontiguousarray(a[:, ::-1]), _flip_j, "j"),  # j- read the other way
             "swap_ij": (lambda a: np.ascontiguousarray(a.swapaxes(0, 1)), _swap_ij, "i-")}
    for name, (data_fn, aff_fn, pe) in cases.items():
        down = _stored(pair, tmp_path, name, data_fn, aff_fn, pe)
        assert _run(pair, tmp_path, down, name) == 0, capsys.readouterr().err
        got = nib.load(str(tmp_path / name / "epi_sdc.nii.gz")).get_fdata()
        assert np.array_equal(got, ref), name
        assert np.array_equal(nib.load(str(tmp_path / name / "epi_vsm.nii.gz")).get_fdata(), ref_vsm), name
    # flipped along PE but the sidecar not updated: it now names blip-up's own direction
    down = _stored(pair, tmp_path, "flip_j_stale", cases["flip_j"][0], _flip_j, "j-")
    assert _run(pair, tmp_path, down, "stale") == 2
    err = capsys.readouterr().err
    assert "blip-down PhaseEncodingDirection is 'j-' ('j' in the blip-up image's voxel axes), not the reverse of 'j'" in err


def test_pe_on_grid():
    a = np.diag([-1.0, 1.0, 2.0, 1.0])
    assert pe_on_grid("j-", a, a) == "j-"
    assert pe_on_grid("j-", _flip_j(a, (4, 5, 6)), a) == "j"
    assert pe_on_grid("i", _swap_ij(a, (4, 5, 6)), a) == "j"
    assert pe_on_grid("k-", a, a) == "k-"
