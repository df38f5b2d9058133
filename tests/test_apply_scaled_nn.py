"""``apply -x nn`` (and ``-x label``) on a scaled integer NIfTI (``scl_slope`` / ``scl_inter``):
the result is stored as the input is, its integers with its scaling: the same values, exactly, in a
file the size of the input's. Before, a 3D image was written as float64 (values right, twice the
size of its int16 input) and a 4D series was cast to int16 without the scaling (scaled values
beyond int16's range wrapped). When the fill value 0 has no stored integer (``scl_inter`` not a
multiple of the slope from it), float32."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image, read_grid
from spinereg.transforms import apply_transforms, apply_transforms_file


def _scaled(path, shape, slope, inter, seed=0):
    raw = np.random.default_rng(seed).integers(-30000, 30000, shape).astype(np.int16)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_data_dtype(np.int16)
    img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return raw.astype(np.float64) * slope + inter  # the values


def _shifted(path, shape):
    a = np.eye(4)
    a[:3, 3] = [0.3, -2.2, 1.4]  # nn: voxel (i, j, k) reads (i, j - 2, k + 1); 0 where that is outside
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), a), str(path))


def _check_shifted(got, values):
    assert np.array_equal(got[:, 2:, :-1], values[:, :-2, 1:])  # exactly the input's values
    assert not got[:, :2].any() and not got[:, :, -1].any()  # outside the input: 0


def test_cli_nn_keeps_the_stored_integers_and_scaling(tmp_path, capsys):
    values = _scaled(tmp_path / "in.nii.gz", (20, 18, 10), 2.0, 0.0)
    out = tmp_path / "out.nii.gz"
    assert main(["apply", "-i", str(tmp_path / "in.nii.gz"), "-d", str(tmp_path / "in.nii.gz"), "-x", "nn",
                 "-o", str(out)]) == 0, capsys.readouterr().err
    o = nib.load(str(out))
    assert o.get_data_dtype() == np.int16 and (o.dataobj.slope, o.dataobj.inter) == (2.0, 0.0)
    assert np.array_equal(np.asanyarray(o.dataobj), values)


@pytest.mark.parametrize(("interp", "nvol"), [("nn", 1), ("label", 1), ("nn", 3)])
def test_scaled_input_onto_another_grid(tmp_path, interp, nvol):
    shape = (20, 18, 10) + ((nvol,) if nvol > 1 else ())
    values = _scaled(tmp_path / "in.nii.gz", shape, 2.0, 0.0)  # beyond int16 once scaled: up to +-60000
    _shifted(tmp_path / "ref.nii.gz", shape[:3])
    out = apply_transforms_file(tmp_path / "in.nii.gz", read_grid(tmp_path / "ref.nii.gz"), None,
                                tmp_path / "out.nii.gz", interp=interp)
    o = nib.load(str(out))
    assert o.get_data_dtype() == np.int16 and (o.dataobj.slope, o.dataobj.inter) == (2.0, 0.0)
    got = np.asanyarray(o.dataobj)
    _check_shifted(got, values)
    # the in-memory result holds the values too (a 4D series was cast to the stored int16 before)
    mem = apply_transforms(load_image(tmp_path / "in.nii.gz"), read_grid(tmp_path / "ref.nii.gz"), None, interp)
    assert np.array_equal(mem.data, got)


@pytest.mark.parametrize("nvol", [1, 3])
def test_fill_without_a_stored_integer_gives_float32(tmp_path, nvol):
    shape = (12, 10, 8) + ((nvol,) if nvol > 1 else ())
    values = _scaled(tmp_path / "in.nii.gz", shape, 0.5, 0.25)  # 0 would be stored as -0.5
    _shifted(tmp_path / "ref.nii.gz", shape[:3])
    out = apply_transforms_file(tmp_path / "in.nii.gz", read_grid(tmp_path / "ref.nii.gz"), None,
                                tmp_path / "out.nii.gz", interp="nn")
    o = nib.load(str(out))
    assert o.get_data_dtype() == np.float32 and (o.dataobj.slope, o.dataobj.inter) == (1.0, 0.0)
    got = np.asanyarray(o.dataobj)
    _check_shifted(got, values)


def test_unscaled_input_unchanged(tmp_path):
    raw = np.arange(10 * 8 * 6, dtype=np.int16).reshape(10, 8, 6)
    nib.save(nib.Nifti1Image(raw, np.eye(4)), str(tmp_path / "in.nii.gz"))
    for interp, dtype in (("nn", np.int16), ("linear", np.float32)):
        out = apply_transforms_file(tmp_path / "in.nii.gz", read_grid(tmp_path / "in.nii.gz"), None,
                                    tmp_path / f"{interp}.nii.gz", interp=interp)
        o = nib.load(str(out))
        assert o.get_data_dtype() == dtype and np.array_equal(np.asanyarray(o.dataobj), raw)
