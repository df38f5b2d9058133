"""Centerline fitting: synthetic tubes with known centerline, outliers, reorientation, thick slices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinereg.cord import Centerline, centerline_from_seg, slice_centres_of_mass
from spinereg.errors import InputError
from spinereg.io import Grid, Image, load_image, reorient


def _fx(z):
    return 4.0 * np.sin(2 * np.pi * np.asarray(z) / 90.0) - 2.0


def _fy(z):
    return 0.002 * np.asarray(z) ** 2 + 5.0


def tube(shape=(64, 64, 80), zooms=(0.8, 0.8, 1.0), radius=4.0, fx=_fx, fy=_fy, sub=3) -> Image:
    """Soft tube (in-plane partial volume by supersampling) whose slice centres are (fx, fy)(z)."""
    aff = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    aff[:3, 3] = [zooms[0] * (shape[0] - 1) / 2, -zooms[1] * (shape[1] - 1) / 2,
                  -zooms[2] * (shape[2] - 1) / 2]
    g = Grid(shape, aff)
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    acc = np.zeros(shape)
    for oi in offs:  # loop over sub-voxel offsets
        for oj in offs:
            x = g.voxel_to_world(g.voxel_coords() + np.array([oi, oj, 0.0]))
            r = np.hypot(x[:, 0] - fx(x[:, 2]), x[:, 1] - fy(x[:, 2]))
            acc += (r <= radius).reshape(shape)
    return Image((acc / sub**2).astype(np.float32), aff)


def _max_error(cl: Centerline, z: np.ndarray, fx=_fx, fy=_fy) -> float:
    pts = np.column_stack([fx(z), fy(z), z])
    _, d = cl.project(pts)
    return float(d.max())


def test_synthetic_tube_centerline_accuracy():
    img = tube()
    cl = Centerline.from_mask(img)
    z0, z1 = img.grid.voxel_to_world([[0, 0, 0], [0, 0, img.shape[2] - 1]])[:, 2]
    z = np.linspace(z0, z1, 400)
    assert _max_error(cl, z) < 0.05  # measured 0.029 mm
    # binary mask too
    binary = img.with_data((img.data > 0.5).astype(np.uint8))
    assert _max_error(Centerline.from_mask(binary), z) < 0.1  # measured 0.079 mm
    # arc length matches the analytic curve
    zf = np.linspace(z0, z1, 20001)
    pf = np.column_stack([_fx(zf), _fy(zf), zf])
    length = np.linalg.norm(np.diff(pf, axis=0), axis=1).sum()
    assert abs(cl.length - length) < 0.04  # measured 0.019 mm of 80.65
    assert cl.z_range == pytest.approx((z0, z1), abs=1e-6)
    assert cl.fit.method == "pspline" and cl.fit.n_outliers == 0


def test_frame_orthonormal_right_handed_and_oriented():
    cl = Centerline.from_mask(tube())
    s = np.linspace(-5, cl.length + 5, 97)
    f = cl.frame(s)
    eye = np.einsum("nij,nik->njk", f, f)
    assert np.allclose(eye, np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(f), 1.0)
    assert np.all(f[:, 0, 0] > 0.9)  # binormal ~ +x (right)
    assert np.all(f[:, 1, 1] > 0.9)  # normal ~ +y (anterior)
    assert np.all(f[:, 2, 2] > 0.9)  # tangent ~ +z (superior)
    assert np.allclose(cl.binormal(s), np.cross(cl.normal(s), cl.tangent(s)))
    # a straight vertical cord has the world axes as frame
    straight = Centerline.from_mask(tube(fx=lambda z: 0 * z + 1.0, fy=lambda z: 0 * z - 2.0))
    assert np.allclose(straight.frame(np.linspace(0, straight.length, 11)), np.eye(3), atol=1e-6)


def test_rotation_minimising_frame_has_no_twist_for_planar_curve():
    # curve in the sagittal plane: the binormal must stay exactly +x
    z = np.linspace(-60, 60, 241)
    cl = Centerline.from_points(np.column_stack([0 * z, 10 * np.sin(z / 30), z]))
    b = cl.binormal(np.linspace(0, cl.length, 50))
    assert np.allclose(b, [1, 0, 0], atol=1e-6)


def test_project_and_local_coordinates_round_trip(rng):
    cl = Centerline.from_mask(tube())
    s_true = rng.uniform(0, cl.length, 2000)
    ab = rng.uniform(-6, 6, (2000, 2))
    local = np.column_stack([ab, s_true])
    p = cl.from_local(local)
    back = cl.local_coords(p)
    assert np.allclose(back, local, atol=1e-4)
    s, d = cl.project(p)
    assert np.allclose(d, np.hypot(ab[:, 0], ab[:, 1]), atol=1e-4)
    # beyond the ends: straight extension
    below = cl.points(0.0) - 3.0 * cl.tangent(0.0)
    s_b, d_b = cl.project(below[None])
    assert s_b[0] == pytest.approx(-3.0, abs=1e-6) and d_b[0] < 1e-6
    s_c, d_c = cl.project(below[None], extend=False)
    assert s_c[0] == 0.0 and d_c[0] == pytest.approx(3.0, abs=1e-6)
    # far points stay finite
    far = rng.uniform(-300, 300, (500, 3))
    assert np.all(np.isfinite(cl.local_coords(far)))


def test_outlier_end_slices_are_rejected():
    img = tube()
    data = img.data.copy()
    shift = int(round(5.0 / 0.8))  # 5 mm along x
    data[:, :, -2:] = np.roll(data[:, :, -2:], shift, axis=0)
    bad = img.with_data(data)
    cl = Centerline.from_mask(bad)
    z_top = img.grid.voxel_to_world([[0, 0, img.shape[2] - 2], [0, 0, img.shape[2] - 1]])[:, 2]
    assert cl.fit.n_outliers >= 2
    assert np.allclose(sorted(cl.fit.outlier_z)[-2:], z_top)
    z0 = img.grid.voxel_to_world([[0, 0, 0]])[0, 2]
    assert _max_error(cl, np.linspace(z0, z_top[-1], 300)) < 0.13  # measured 0.110 mm
    # without rejection the fit is pulled toward the corrupt slices
    naive = Centerline.from_mask(bad, outlier_mad=0)
    assert naive.fit.n_outliers == 0
    assert _max_error(naive, z_top) > 1.0


def test_reorientation_invariance_real_seg(sct_data):
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    ref = Centerline.from_mask(seg)
    s = np.linspace(0, ref.length, 60)
    for code in ("RAS", "LPI", "SAR", "IPL"):
        other = Centerline.from_mask(reorient(seg, code))
        # measured 0 / <= 1.5e-15 / <= 7.5e-16: the same fit, whatever the voxel order
        assert abs(other.length - ref.length) < 1e-6, code
        assert np.abs(other.points(s) - ref.points(s)).max() < 1e-6, code
        assert np.abs(other.frame(s) - ref.frame(s)).max() < 1e-6, code


def test_real_seg_centerline(sct_data):
    cl = centerline_from_seg(sct_data / "t2" / "t2_seg-manual.nii.gz")
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    com, axis, spacing = slice_centres_of_mass(seg)
    assert axis == 1 and spacing == pytest.approx(1.0) and len(com) == 55
    _, d = cl.project(com)
    assert d.max() < 0.22  # the fit follows the cord's centres of mass (measured 0.195 mm)
    assert cl.length == pytest.approx(54.18, abs=0.1)  # measured 54.18 mm
    f = cl.frame(np.linspace(0, cl.length, 20))
    assert np.all(f[:, 0, 0] > 0.9) and np.all(f[:, 1, 1] > 0.9)


def test_five_thick_slices():
    img = tube(shape=(48, 48, 5), zooms=(0.5, 0.5, 5.0), radius=4.0,
               fx=lambda z: 0.01 * np.asarray(z) ** 2, fy=lambda z: 0.1 * np.asarray(z))
    cl = Centerline.from_mask(img)
    assert cl.fit.method == "poly2"
    z = np.linspace(-10, 10, 41)
    assert _max_error(cl, z, lambda z: 0.01 * z**2, lambda z: 0.1 * z) < 1e-4  # measured 1.2e-5 (exact quadratic)
    assert cl.z_range == pytest.approx((-10.0, 10.0))
    # and with one slice of cord only: a short vertical segment
    one = img.data.copy()
    one[:, :, [0, 1, 3, 4]] = 0
    cl1 = Centerline.from_mask(img.with_data(one))
    assert cl1.fit.method == "poly0" and cl1.length == pytest.approx(5.0)
    # two slices: a line
    two = img.data.copy()
    two[:, :, [0, 1, 4]] = 0
    assert Centerline.from_mask(img.with_data(two)).fit.method == "poly1"


def test_dict_round_trip_and_points():
    cl = Centerline.from_mask(tube())
    d = json.loads(json.dumps(cl.to_dict()))
    back = Centerline.from_dict(d)
    s = np.linspace(-2, cl.length + 2, 77)
    assert np.allclose(back.points(s), cl.points(s), atol=1e-5)
    assert np.allclose(back.frame(s), cl.frame(s), atol=1e-5)
    a, b = back.fit.summary(), cl.fit.summary()
    assert a["method"] == b["method"] and a["n_points"] == b["n_points"]
    assert a["rms_residual_mm"] == pytest.approx(b["rms_residual_mm"], abs=1e-4)
    # exact interpolation of given points (e.g. a template centerline), in any order
    z = np.linspace(-30, 30, 61)
    pts = np.column_stack([_fx(z), _fy(z), z])
    interp = Centerline.from_points(pts[::-1])
    _, dist = interp.project(pts)
    assert dist.max() < 1e-5  # measured 9.2e-7
    smoothed = Centerline.from_points(pts, smooth_mm=None)
    assert smoothed.fit.method == "pspline"


def test_errors(tmp_path):
    empty = Image(np.zeros((10, 10, 10), np.uint8), np.eye(4))
    with pytest.raises(InputError, match="empty"):
        Centerline.from_mask(empty)
    with pytest.raises(InputError, match="not found"):
        centerline_from_seg(tmp_path / "missing.nii.gz")
