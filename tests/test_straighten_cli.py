"""``spinereg straighten`` (SCT's sct_straighten_spinalcord) and its library function
``spinereg.pipelines.straighten.straighten_image``.

Truth from outside the method: an analytic curved tube (centre line x = 4 sin(2 pi z / 90) - 2,
y = 0.002 z^2 + 5 mm, radius 4 mm; tests/test_centerline.py's ``tube``, supersampled partial
volume) whose arc length is integrated here numerically; the real sct_testing_data t2 with its
manual segmentation; the written fields applied by ``spinereg apply``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io import load_image
from spinereg.pipelines.straighten import output_names, straighten_image
from test_centerline import _fx, _fy, tube


def _save(img, path: Path) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(img.data), img.affine), str(path))
    return path


def _centres(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice with cord: centroid (voxels) of a soft map and its sum."""
    w = np.clip(data, 0, None)
    area = w.sum(axis=(0, 1))
    ks = np.nonzero(area > 0.5 * area.max())[0]
    ii = (w.sum(axis=1) * np.arange(w.shape[0])[:, None]).sum(0)[ks] / area[ks]
    jj = (w.sum(axis=0) * np.arange(w.shape[1])[:, None]).sum(0)[ks] / area[ks]
    return np.column_stack([ii, jj]), area[ks]


def test_analytic_tube_straightened_on_its_centre_line(tmp_path):
    img = tube()
    seg = _save(img.with_data((img.data > 0.5).astype(np.uint8)), tmp_path / "tube_seg.nii.gz")
    image = _save(img, tmp_path / "tube.nii.gz")
    out = straighten_image(image, seg, tmp_path / "out", interp="linear")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(output_names(image).values())
    st = load_image(out.files["straight"])
    g = st.grid
    centre = g.world_to_voxel([[0.0, 0.0, g.affine[2, 3]]])[0][:2]
    c, area = _centres(np.asarray(st.data, float))
    inner = slice(3, len(c) - 3)  # the ends are cut obliquely by the field of view
    d = np.hypot(*(c[inner] - centre).T) * g.zooms[0]
    # measured: max 0.076 mm, RMS 0.041 mm (0.8 mm voxels; 75 slices)
    assert d.max() < 0.082 and np.sqrt((d**2).mean()) < 0.044, (d.max(), np.sqrt((d**2).mean()))
    # the cross-section perpendicular to the cord: pi r^2 = 50.27 mm2 (an axial cut of the tilted tube
    # is larger); measured 48.47-50.33 mm2 (the soft image interpolated once more)
    a = area[inner] * g.zooms[0] * g.zooms[1]
    assert a.min() > 48.2 and a.max() < 50.6, (a.min(), a.max())
    # the straight length is the analytic arc length over the fitted z range (measured 80.645 vs 80.651 mm)
    z = np.linspace(*out.result.centerline.z_range, 20001)
    pts = np.column_stack([_fx(z), _fy(z), z])
    arc = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
    assert out.metrics["length_mm"] == pytest.approx(arc, abs=0.012), (out.metrics["length_mm"], arc)
    doc = json.loads(out.files["json"].read_text())
    assert doc["sct_criteria_met"] and doc["parameters"]["interp"] == "linear"
    assert set(doc["inputs"]["files"]) == {"image", "seg"} and doc["inputs"]["files"]["seg"]["sha256"]
    assert out.warnings == []


def test_t2_cli_and_fields_through_apply(sct_data, tmp_path, capsys):
    t2, seg = sct_data / "t2" / "t2.nii.gz", sct_data / "t2" / "t2_seg-manual.nii.gz"
    rc = main(["straighten", "-i", str(t2), "-s", str(seg), "-o", str(tmp_path / "st")])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    # SCT's criteria (mse < 0.8 voxel^2, max < 1.2 voxel): measured 0.0529 / 0.4081, round trip 0.104 mm
    assert rep["sct_criteria_met"] and rep["mse_vox2"] < 0.056 and rep["max_dist_vox"] < 0.43
    assert rep["roundtrip_max_mm"] < 0.11
    st = tmp_path / "st"
    # the written warp, applied by `spinereg apply`, straightens the segmentation as the JSON says
    rc = main(["apply", "-i", str(seg), "-d", str(st / "straight_ref.nii.gz"), "-w",
               str(st / "warp_curve2straight.nii.gz"), "-x", "linear", "-o", str(tmp_path / "seg_straight.nii.gz")])
    assert rc == 0
    s = load_image(tmp_path / "seg_straight.nii.gz")
    c, _ = _centres((np.asarray(s.data) > 0.5).astype(float))
    centre = s.grid.world_to_voxel([[0.0, 0.0, s.grid.affine[2, 3]]])[0][:2]
    d = np.hypot(*(c[2:-2] - centre).T)
    assert np.sqrt((d**2).mean()) == pytest.approx(np.sqrt(rep["mse_vox2"]), abs=1e-3)
    # and back: warp_straight2curve brings the straightened segmentation onto t2's grid
    rc = main(["apply", "-i", str(tmp_path / "seg_straight.nii.gz"), "-d", str(t2), "-w",
               str(st / "warp_straight2curve.nii.gz"), "-x", "linear", "-o", str(tmp_path / "seg_back.nii.gz")])
    assert rc == 0
    back = load_image(tmp_path / "seg_back.nii.gz").data > 0.5
    ref = load_image(seg).data > 0.5
    dice = 2 * (back & ref).sum() / (back.sum() + ref.sum())
    assert dice > 0.997, dice  # measured 0.9986 (two linear resamplings of a 1 mm binary mask)


def test_4d_series_and_seg_on_another_grid(sct_data, tmp_path):
    t2 = load_image(sct_data / "t2" / "t2.nii.gz")
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    ref = straighten_image(t2, seg, tmp_path / "a", interp="linear")
    series = _save(t2.with_data(np.stack([t2.data, 2 * t2.data], axis=-1)), tmp_path / "t2_4d.nii.gz")
    out = straighten_image(series, seg, tmp_path / "b", interp="linear")
    a = load_image(ref.files["straight"]).data
    b = load_image(out.files["straight"]).data
    assert b.shape == a.shape + (2,)
    assert np.allclose(b[..., 0], a, atol=1e-3 * a.max()) and np.allclose(b[..., 1], 2 * a, atol=2e-3 * a.max())
    # the segmentation on a grid of 0.5 mm voxels covering the same world (resampled here with scipy)
    from scipy import ndimage

    fine = ndimage.zoom(np.asarray(seg.data, float), 2.0, order=1)
    aff = seg.affine.copy()
    aff[:3, :3] /= 2.0
    aff[:3, 3] -= seg.affine[:3, :3] @ np.full(3, 0.25)
    other = _save(type(seg)(fine.astype(np.float32), aff), tmp_path / "seg_fine.nii.gz")
    out2 = straighten_image(t2, other, tmp_path / "c", interp="linear")
    c = load_image(out2.files["straight"]).data
    assert c.shape == a.shape
    err = np.abs(c - a)[a > 0.2 * a.max()].mean() / a[a > 0.2 * a.max()].mean()
    assert err < 0.006, err  # measured 0.0042 (mean |difference| / mean intensity in the cord's surroundings)


def test_a_segmentation_off_the_cord_is_warned(sct_data, tmp_path, capsys):
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    d = np.asarray(seg.data).copy()
    ax = int(np.argmax(np.abs(seg.affine[:3, :3])[2]))  # the S-I voxel axis
    moved = np.moveaxis(d, ax, -1)
    k = moved.shape[-1] // 2
    moved[..., k] = np.roll(moved[..., k], 6, axis=0)  # one slice's cord 6 voxels aside
    bad = _save(seg.with_data(np.moveaxis(moved, -1, ax)), tmp_path / "seg_jump.nii.gz")
    rc = main(["straighten", "-i", str(sct_data / "t2" / "t2.nii.gz"), "-s", str(bad), "-o", str(tmp_path / "o")])
    cap = capsys.readouterr()
    assert rc == 0 and "spinereg straighten: warning: the straightened segmentation's centre strays" in cap.err
    rep = json.loads(cap.out)
    assert not rep["sct_criteria_met"] and rep["max_dist_vox"] > 1.2


def test_bad_inputs_are_one_line_and_write_nothing(sct_data, tmp_path, capsys):
    t2, seg = sct_data / "t2" / "t2.nii.gz", sct_data / "t2" / "t2_seg-manual.nii.gz"
    s = load_image(seg)
    empty = _save(s.with_data(np.zeros(s.shape, np.uint8)), tmp_path / "empty.nii.gz")
    far = s.affine.copy()
    far[:3, 3] += 500.0
    elsewhere = _save(type(s)(np.asarray(s.data), far), tmp_path / "elsewhere.nii.gz")
    for bad in (empty, elsewhere):
        rc = main(["straighten", "-i", str(t2), "-s", str(bad), "-o", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0], err
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    # existing outputs are kept unless --overwrite
    assert main(["straighten", "-i", str(t2), "-s", str(seg), "-o", str(tmp_path / "k")]) == 0
    before = (tmp_path / "k" / "t2_straight.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    rc = main(["straighten", "-i", str(t2), "-s", str(seg), "-o", str(tmp_path / "k")])
    err = capsys.readouterr().err
    assert rc == 2 and "--overwrite" in err
    assert (tmp_path / "k" / "t2_straight.nii.gz").stat().st_mtime_ns == before
    assert main(["straighten", "-i", str(t2), "-s", str(seg), "-o", str(tmp_path / "k"), "--overwrite"]) == 0
    rc = main(["straighten", "-i", str(t2), "-s", str(seg), "-o", str(tmp_path / "z"), "--xy-size", "-3"])
    assert rc == 2 and "xy_size_mm" in capsys.readouterr().err


def test_same_straight_image_whatever_the_voxel_order(sct_data, tmp_path):
    from spinereg.io import reorient

    t2 = load_image(sct_data / "t2" / "t2.nii.gz")
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    ref = load_image(straighten_image(t2, seg, tmp_path / "a", interp="linear").files["straight"])
    for code in ("RAS", "LPI", "SAR"):
        out = straighten_image(reorient(t2, code), reorient(seg, code), tmp_path / code, interp="linear")
        got = load_image(out.files["straight"])
        assert got.grid.same_as(ref.grid, atol=1e-4), code
        # measured max |difference| / max intensity 3e-9 (RAS, SAR), 0 (LPI); the width was 57 x 69 for
        # PSR-stored t2 and 57 x 67 for RAS before session 42 (a strided sample in storage order)
        assert np.abs(got.data - ref.data).max() <= 1e-4 * ref.data.max(), (code, np.abs(got.data - ref.data).max())
