"""NIfTI input/output: header preservation, qform/sform checks, streamed 4D writing and applying."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

import spinereg.transforms.apply as apply_mod
from helpers import folder_listing, save, synth_grid, synth_image
from spinereg.errors import InputError, OutputError
from spinereg.io.image import Image, load_image, save_image
from spinereg.io.stream import StreamingNiftiWriter
from spinereg.transforms import AffineTransform, apply_transforms, apply_transforms_file

AFFINE = AffineTransform.from_params(rotation_deg=(2.0, -3.0, 4.0), translation=(0.6, -0.4, 1.1))


def _header_fields(h: nib.Nifti1Header) -> dict:
    return {
        "descrip": h["descrip"].item(),
        "xyzt_units": int(h["xyzt_units"]),
        "qform_code": int(h["qform_code"]),
        "sform_code": int(h["sform_code"]),
        "zooms": tuple(np.round(np.asarray(h.get_zooms(), float), 5)),
        "dim": tuple(int(d) for d in h["dim"]),
        "intent_code": int(h["intent_code"]),
    }


def _synth_4d(nvol: int = 4) -> Image:
    img = synth_image()
    data = np.stack([img.data * (1 + 0.1 * t) + t for t in range(nvol)], axis=-1).astype(np.float32)
    out = img.with_data(data)
    out.header.set_data_shape(data.shape)
    out.header.set_zooms(tuple(img.grid.zooms) + (2.5,))
    out.header["descrip"] = b"spinereg test series"
    out.header.set_xyzt_units("mm", "sec")
    return out


# -- 3D and 4D load/save ---------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("rel", ["t2/t2.nii.gz", "fmri/fmri.nii.gz", "t2/t2_seg-manual.nii.gz"])
def test_save_keeps_header_real(sct_data, tmp_path, rel):
    src = sct_data / rel
    img = load_image(src)
    out = save_image(img, tmp_path / "out.nii.gz")
    a, b = nib.load(str(src)), nib.load(str(out))
    fa, fb = _header_fields(a.header), _header_fields(b.header)
    # zero codes become 1 (spinereg always writes both), non-zero codes are kept
    for k in ("qform_code", "sform_code"):
        assert fb[k] == (fa[k] or 1)
        fa.pop(k), fb.pop(k)
    assert fa == fb
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-5)
    assert b.get_data_dtype() == a.get_data_dtype()
    np.testing.assert_array_equal(np.asanyarray(b.dataobj), np.asanyarray(a.dataobj))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_save_keeps_header_4d_synthetic(tmp_path, suffix):
    img = _synth_4d()
    img.header.set_qform(img.affine, code=2)
    img.header.set_sform(img.affine, code=4)
    path = save_image(img, tmp_path / f"series{suffix}")
    back = load_image(path)
    h = back.header
    assert back.shape == img.shape
    assert h["descrip"].item() == b"spinereg test series"
    assert h.get_xyzt_units() == ("mm", "sec")
    assert float(h.get_zooms()[3]) == pytest.approx(2.5)
    assert (int(h["qform_code"]), int(h["sform_code"])) == (2, 4)
    np.testing.assert_array_equal(back.data, img.data)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-6)


def test_save_refuses_overwrite(tmp_path):
    img = synth_image()
    p = save_image(img, tmp_path / "a.nii.gz")
    with pytest.raises(OutputError, match="--overwrite"):
        save_image(img.with_data(img.data * 2), p)
    np.testing.assert_array_equal(load_image(p).data, img.data)
    save_image(img.with_data(img.data * 2), p, overwrite=True)
    np.testing.assert_allclose(load_image(p).data, img.data * 2)
    assert folder_listing(tmp_path) == {"a.nii.gz"}


def test_single_volume_4d_is_3d(tmp_path):
    img = synth_image()
    p = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(img.data[..., None], img.affine), str(p))
    back = load_image(p, ndim=3)
    assert back.shape == img.shape
    np.testing.assert_array_equal(back.data, img.data)


def test_qform_sform_disagreement_warns(tmp_path):
    img = synth_image().to_nifti()
    q = img.affine.copy()
    s = q.copy()
    s[:3, 3] += (2.0, 0.0, -1.0)
    img.set_qform(q, code=1)
    img.set_sform(s, code=1)
    p = tmp_path / "bad_header.nii.gz"
    nib.save(img, str(p))
    with pytest.warns(UserWarning, match="qform and sform disagree"):
        loaded = load_image(p)
    np.testing.assert_allclose(loaded.affine, s, atol=1e-5)  # the sform wins, as in nibabel/ITK
    # agreeing headers load silently
    ok = tmp_path / "ok.nii.gz"
    save(synth_image(), ok)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(ok)


def test_lazy_4d_reads_volumes_only(tmp_path):
    img = _synth_4d(5)
    p = save_image(img, tmp_path / "s.nii.gz")
    lazy = load_image(p, lazy=True)
    assert lazy._data is None and lazy.nvols == 5
    np.testing.assert_array_equal(lazy.volume(3), img.data[..., 3])
    assert lazy._data is None


def test_lazy_4d_nan_found_when_read(tmp_path):
    img = _synth_4d(3)
    data = img.data.copy()
    data[2, 3, 4, 1] = np.nan
    p = save_image(img.with_data(data), tmp_path / "nan.nii.gz")
    lazy = load_image(p, lazy=True)
    lazy.volume(0)
    with pytest.raises(InputError, match=r"NaN/Inf voxels \(volume 1\).*fix"):
        lazy.volume(1)
    with pytest.raises(InputError, match="NaN/Inf"):
        load_image(p)
    assert load_image(p, check_finite=False, lazy=True).volume(1).shape == img.shape[:3]


# -- streaming writer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_streaming_writer_round_trip(tmp_path, suffix, dtype):
    grid = synth_grid()
    rng = np.random.default_rng(3)
    data = (rng.random(grid.shape + (4,)) * 100).astype(dtype)
    tmpl = _synth_4d().header
    path = tmp_path / f"stream{suffix}"
    with StreamingNiftiWriter(path, data.shape, grid.affine, dtype, template_header=tmpl) as w:
        assert folder_listing(tmp_path) != {path.name}  # nothing at the final name yet
        for t in range(data.shape[3]):
            w.write_volume(data[..., t])
    assert folder_listing(tmp_path) == {path.name}
    back = nib.load(str(path))
    assert back.shape == data.shape and back.get_data_dtype() == np.dtype(dtype)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, grid.affine, atol=1e-6)
    assert float(back.header.get_zooms()[3]) == pytest.approx(2.5)
    assert back.header["descrip"].item() == b"spinereg test series"
    assert back.header.get_xyzt_units() == ("mm", "sec")


def test_streaming_writer_keeps_header_extensions(tmp_path):
    grid = synth_grid()
    data = np.arange(np.prod(grid.shape) * 2, dtype=np.float32).reshape(grid.shape + (2,))
    hdr = nib.Nifti1Header()
    hdr.extensions.append(nib.nifti1.Nifti1Extension("comment", b"acquired at 3T, 17 bytes+"))
    path = tmp_path / "ext.nii.gz"
    with StreamingNiftiWriter(path, data.shape, grid.affine, np.float32, template_header=hdr) as w:
        for t in range(2):
            w.write_volume(data[..., t])
    back = nib.load(str(path))
    np.testing.assert_array_equal(back.get_fdata(), data)
    assert [e.get_content() for e in back.header.extensions] == [b"acquired at 3T, 17 bytes+"]


def test_streaming_writer_failures_leave_nothing(tmp_path):
    grid = synth_grid()
    shape = grid.shape + (3,)
    vol = np.zeros(grid.shape, np.float32)
    # too few volumes
    with pytest.raises(RuntimeError, match="1 of 3"):
        with StreamingNiftiWriter(tmp_path / "a.nii.gz", shape, grid.affine, np.float32) as w:
            w.write_volume(vol)
    # an error mid-way
    with pytest.raises(KeyError):
        with StreamingNiftiWriter(tmp_path / "b.nii", shape, grid.affine, np.float32) as w:
            w.write_volume(vol)
            raise KeyError("boom")
    # wrong volume shape
    with pytest.raises(ValueError):
        with StreamingNiftiWriter(tmp_path / "c.nii", shape, grid.affine, np.float32) as w:
            w.write_volume(vol[:-1])
    assert folder_listing(tmp_path) == set()
    # existing output without overwrite: refused before anything is written
    (tmp_path / "d.nii.gz").write_bytes(b"keep")
    with pytest.raises(OutputError, match="--overwrite"):
        StreamingNiftiWriter(tmp_path / "d.nii.gz", shape, grid.affine, np.float32)
    assert (tmp_path / "d.nii.gz").read_bytes() == b"keep"
    assert folder_listing(tmp_path) == {"d.nii.gz"}


# -- 4D apply ------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("interp", ["nn", "linear", "spline"])
def test_apply_4d_equals_per_volume(sct_data, interp):
    img = load_image(sct_data / "fmri" / "fmri.nii.gz")
    ref = img.grid
    out = apply_transforms(img, ref, AFFINE, interp=interp)
    assert out.shape == img.shape
    for t in range(0, img.nvols, 7):
        one = apply_transforms(img.with_data(img.data[..., t]), ref, AFFINE, interp=interp)
        # the 4D path caches the mapped coordinates in float32: differences ~1e-5 relative
        scale = float(np.abs(one.data).max())
        np.testing.assert_allclose(out.data[..., t], one.data, rtol=0, atol=2e-5 * scale)


@pytest.mark.realdata
def test_apply_file_4d_streams(sct_data, tmp_path, monkeypatch):
    src = sct_data / "fmri" / "fmri.nii.gz"
    loaded: list[Image] = []
    real_load = apply_mod.load_image

    def spy_load(*args, **kwargs):
        img = real_load(*args, **kwargs)
        loaded.append(img)
        return img

    written = []
    real_write = StreamingNiftiWriter.write_volume

    def spy_write(self, vol):
        written.append(vol.shape)
        return real_write(self, vol)

    monkeypatch.setattr(apply_mod, "load_image", spy_load)
    monkeypatch.setattr(StreamingNiftiWriter, "write_volume", spy_write)
    out_path = tmp_path / "fmri_moved.nii.gz"
    ref = load_image(src, lazy=True).grid
    apply_transforms_file(src, ref, AFFINE, out_path, interp="linear")
    assert loaded and loaded[0]._data is None, "the 4D input was read whole"
    assert len(written) == 30
    monkeypatch.undo()

    got = nib.load(str(out_path))
    expected = apply_transforms(load_image(src), ref, AFFINE, interp="linear")
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), expected.data)  # same code path
    assert float(got.header.get_zooms()[3]) == pytest.approx(1.13, abs=1e-4)
    assert got.header.get_xyzt_units() == nib.load(str(src)).header.get_xyzt_units()
    assert folder_listing(tmp_path) == {"fmri_moved.nii.gz"}


def test_apply_file_4d_nan_volume_leaves_nothing(tmp_path):
    img = _synth_4d(3)
    data = img.data.copy()
    data[5, 5, 5, 2] = np.inf
    src = save_image(img.with_data(data), tmp_path / "in" / "series.nii.gz")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(InputError, match="series.nii.gz.*NaN/Inf.*fix"):
        apply_transforms_file(src, img.grid, AFFINE, out_dir / "moved.nii.gz", interp="linear")
    assert folder_listing(out_dir) == set()


def test_series_stored_5d_reads_as_4d(tmp_path):
    """(x, y, z, 1, t), as some converters write a series: read as 4D (moco ran on sct_testing_data's
    dmri so stored with the same output as the 4D file; before, "give one volume")."""
    img = _synth_4d(5)
    five = nib.Nifti1Image(np.asarray(img.data)[:, :, :, None, :], img.affine)
    p = tmp_path / "s5.nii.gz"
    nib.save(five, str(p))
    back = load_image(p, ndim=4)
    assert back.shape == img.shape and back.nvols == 5
    np.testing.assert_array_equal(back.data, img.data)
    lazy = load_image(p, ndim=4, lazy=True)
    np.testing.assert_array_equal(lazy.volume(3), img.data[..., 3])
    with pytest.raises(InputError, match="3D needed") as e:
        load_image(tmp_path / "s5.nii.gz", ndim=3)
    assert "give one volume" in e.value.fix
    seven = nib.Nifti1Image(np.zeros((4, 4, 4, 2, 3), np.float32), np.eye(4))
    nib.save(seven, str(tmp_path / "s7.nii.gz"))
    with pytest.raises(InputError, match="5D") as e:
        load_image(tmp_path / "s7.nii.gz", ndim=4)
    assert "4D series" in e.value.fix


def test_wrong_dimension_fixes_name_what_is_needed(tmp_path):
    """A 2D image where 3D is needed is told to store its slice 3D (before session 36: "give a 4D
    series"); a 3D image where a series is needed is told to give the series."""
    nib.save(nib.Nifti1Image(np.ones((6, 5), np.float32), np.eye(4)), str(tmp_path / "slice.nii.gz"))
    with pytest.raises(InputError, match=r"2D \(6, 5\), 3D needed") as e:
        load_image(tmp_path / "slice.nii.gz", ndim=3)
    assert "3D image" in e.value.fix and "4D" not in e.value.fix
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    with pytest.raises(InputError, match="3D .*4D needed") as e:
        load_image(tmp_path / "vol.nii.gz", ndim=4)
    assert "4D series" in e.value.fix


def test_header_without_orientation_warns(tmp_path):
    """qform and sform codes 0: nibabel guesses the axes from the voxel sizes; said on load."""
    img = synth_image().to_nifti()
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    p = tmp_path / "no_orientation.nii.gz"
    nib.save(img, str(p))
    with pytest.warns(UserWarning, match="no orientation"):
        load_image(p)


def test_singular_header_and_2d_grid_are_refused(tmp_path):
    """A zeroed axis in the sform: one line naming the file (before session 36: OverflowError in
    `segment`, HeaderDataError in `apply`, as internal errors); a 2D file's grid: one line."""
    from spinereg.io.image import read_grid

    aff = np.eye(4)
    aff[:3, 2] = 0.0
    img = nib.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4))
    img.set_sform(aff, code=1)
    nib.save(img, str(tmp_path / "sing.nii.gz"))
    for read in (load_image, read_grid):
        with pytest.raises(InputError, match="singular") as e:
            read(tmp_path / "sing.nii.gz")
        assert "sform" in e.value.fix
    nib.save(nib.Nifti1Image(np.ones((6, 5), np.float32), np.eye(4)), str(tmp_path / "slice.nii.gz"))
    with pytest.raises(InputError, match="2D"):
        read_grid(tmp_path / "slice.nii.gz")


def test_sheared_sform_is_named_a_shear(tmp_path):
    """A sheared sform (a CT's tilted gantry; here 8.5 deg between two voxel axes) cannot be held by
    a qform: nibabel writes the nearest rotation there, and ITK / ANTs / SCT read that qform. The
    warning said 'qform and sform disagree ... using the sform, as nibabel and ITK do', which is
    wrong about ITK for such an sform; it now names the shear and how far the two worlds part."""
    from spinereg.io.image import shear_deg

    img = synth_image().to_nifti()
    s = img.affine.copy()
    s[0, 1] += 0.15 * s[1, 1]  # axis j leans along x: atan(0.15) = 8.53 deg
    img.set_sform(s, code=1)
    img.set_qform(s, code=1)  # nibabel strips the shear
    p = tmp_path / "sheared.nii.gz"
    nib.save(img, str(p))
    assert abs(shear_deg(s) - np.degrees(np.arctan(0.15))) < 1e-6 and shear_deg(img.get_qform()) < 1e-6
    with pytest.warns(UserWarning, match=r"sform holds a shear \(8.5 deg") as rec:
        loaded = load_image(p)
    msg = str(rec[0].message)
    assert "ITK / ANTs / SCT the qform" in msg and "mm elsewhere" in msg and "as nibabel and ITK do" not in msg
    np.testing.assert_allclose(loaded.affine, s, atol=1e-5)  # the sform still wins
