"""Straightening: SCT's criteria on sct_testing_data/t2, round trips, sign conventions, caching."""

from __future__ import annotations

import time

import numpy as np
import pytest

from spinereg.cord import Centerline, straight_grid_for, straighten, straightening_fields
from spinereg.cord.straighten import clear_cache
from spinereg.io import Image, load_image, reorient, sample_world
from spinereg.transforms import apply_transforms, read_displacement
from test_centerline import tube


@pytest.fixture(scope="module")
def t2_seg(sct_data) -> Image:
    return load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")


@pytest.fixture(scope="module")
def t2_result(t2_seg):
    clear_cache()
    return straighten(t2_seg)


def _straight_centres(res, seg: Image) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice (voxel) distances of the straightened, thresholded cord to the centre line."""
    g = res.straight_grid
    m = apply_transforms(seg, g, [res.curve2straight], "linear").data > 0.5
    centre = g.world_to_voxel([[0.0, 0.0, g.affine[2, 3]]])[0]
    d = []
    for k in range(g.shape[2]):  # loop over slices
        if m[:, :, k].any():
            i, j = np.nonzero(m[:, :, k])
            d.append(np.hypot(i.mean() - centre[0], j.mean() - centre[1]))
    return np.array(d), m


def test_t2_sct_straightening_criteria(t2_result, t2_seg):
    d, m = _straight_centres(t2_result, t2_seg)
    assert len(d) >= 50
    inner = d[2:-2]  # SCT leaves out the two slices at each end
    # SCT's criteria: MSE < 0.8 voxel^2, max < 1.2 voxel; measured 0.053 and 0.408
    assert (inner**2).mean() < 0.06
    assert inner.max() < 0.45
    # we also meet it on every slice (measured 0.057, 0.510)
    assert (d**2).mean() < 0.065 and d.max() < 0.55
    met = t2_result.metrics
    assert met["mse_vox2"] == pytest.approx((inner**2).mean(), abs=1e-9)
    assert met["max_dist_vox"] == pytest.approx(inner.max(), abs=1e-9)
    assert met["max_dist_vox_all"] < 0.55  # measured 0.510
    # the straightened cord keeps its volume (measured 4209 voxels of 4275, -1.5 %)
    assert m.sum() == pytest.approx((t2_seg.data > 0.5).sum(), rel=0.025)


def test_t2_round_trip_on_cord_voxels(t2_result, t2_seg):
    res = t2_result
    p = t2_seg.grid.voxel_to_world(np.argwhere(t2_seg.data > 0.5).astype(float))
    q = res.straight2curve.map(p)
    ijk = res.straight_grid.world_to_voxel(q)
    inside = np.all((ijk >= -0.5) & (ijk <= np.array(res.straight_grid.shape) - 0.5), axis=1)
    assert inside.mean() > 0.995  # only half end slices beyond the centerline's ends (measured 0.9977)
    back = res.curve2straight.map(q[inside])
    assert np.linalg.norm(back - p[inside], axis=1).max() < 0.12  # 1 mm voxels; measured 0.104
    # and the other way round on the straight cord region
    g = res.straight_grid
    x = g.world_coords()
    near = np.hypot(x[:, 0], x[:, 1]) < 8.0
    y = res.curve2straight.map(x[near])
    ijk = t2_seg.grid.world_to_voxel(y)  # keep what lands in the curved field of view
    inside = np.all((ijk >= -0.5) & (ijk <= np.array(t2_seg.shape) - 0.5), axis=1)
    assert inside.mean() > 0.99  # measured 0.9943
    back2 = res.straight2curve.map(y[inside])
    assert np.linalg.norm(back2 - x[near][inside], axis=1).max() < 0.12  # measured 0.106
    assert res.metrics["roundtrip_max_vox"] < 0.12  # measured 0.104


def test_fields_consistent_with_apply_transforms(t2_result, t2_seg):
    res = t2_result
    g = res.straight_grid
    out = apply_transforms(t2_seg, g, [res.curve2straight], "linear").data
    x = g.world_coords()
    local = np.column_stack([x[:, 0], x[:, 1], x[:, 2]])  # identity z map: z = s
    direct = sample_world(t2_seg.data, t2_seg.affine, res.centerline.from_local(local), "linear")
    assert np.abs(out.ravel() - direct).max() < 1e-5  # measured 7e-7
    # straight -> curved brings the straightened cord back onto the original
    straight = res.to_straight(t2_seg)
    back = res.to_curved(straight).data > 0.5
    ref = t2_seg.data > 0.5
    dice = 2 * (back & ref).sum() / (back.sum() + ref.sum())
    assert dice > 0.995  # measured 0.9986
    assert np.all(np.isfinite(res.curve2straight.data)) and np.all(np.isfinite(res.straight2curve.data))


def test_t2_timing_and_metrics(t2_seg):
    clear_cache()
    t0 = time.perf_counter()
    res = straighten(t2_seg, qc=False)
    elapsed = time.perf_counter() - t0
    print(f"straighten t2: {elapsed:.3f} s {res.metrics}")
    assert elapsed < 3.0  # typically ~0.3 s; generous for loaded CI machines
    assert res.straight_grid.axcodes == ("L", "A", "S")
    assert np.allclose(res.straight_grid.zooms, 1.0)
    assert res.straight_grid.affine[2, 3] == 0.0
    assert (res.straight_grid.shape[2] - 1) == int(np.floor(res.centerline.length + 1e-6))


def test_no_flip_with_reoriented_input(t2_seg, t2_result):
    ref = apply_transforms(t2_seg, t2_result.straight_grid, [t2_result.curve2straight]).data
    for code in ("RAS", "LPI"):
        seg = reorient(t2_seg, code)
        res = straighten(seg, straight_grid=t2_result.straight_grid, qc=False)
        out = apply_transforms(seg, res.straight_grid, [res.curve2straight]).data
        assert np.abs(out - ref).max() < 1e-3, code


def test_left_right_anterior_posterior_preserved():
    img = tube()
    cl = Centerline.from_mask(img)
    # markers 8 mm right (+x) and 6 mm anterior (+y) of the cord at mid height
    data = np.zeros(img.shape, np.float32)
    z = 0.0
    c = cl.points(cl.project(np.array([[0.0, 0.0, z]]))[0])[0]
    for off, val in (([8.0, 0, 0], 1.0), ([0, 6.0, 0], 2.0)):
        ijk = np.rint(img.grid.world_to_voxel((c + off)[None])[0]).astype(int)
        data[tuple(ijk)] = val
    markers = img.with_data(data)
    for code in ("LAS", "RPI", "ASR"):
        seg_o, mk_o = reorient(img, code), reorient(markers, code)
        res = straighten(seg_o, qc=False)
        out = apply_transforms(mk_o, res.straight_grid, [res.curve2straight], "label").data
        g = res.straight_grid
        right = g.voxel_to_world(np.argwhere(out == 1).astype(float))
        ant = g.voxel_to_world(np.argwhere(out == 2).astype(float))
        assert len(right) == 1 and len(ant) == 1, code
        assert right[0, 0] == pytest.approx(8.0, abs=1.0) and abs(right[0, 1]) < 1.0, code
        assert ant[0, 1] == pytest.approx(6.0, abs=1.0) and abs(ant[0, 0]) < 1.0, code


def test_z_mapping_and_center(t2_seg):
    cl = Centerline.from_mask(t2_seg)

    def z_of_s(s):
        return 2.0 * s + 10.0

    res = straighten(t2_seg, centerline=cl, z_of_s=z_of_s, center_xy=(3.0, -2.0),
                     voxel_size=(1.0, 1.0, 2.0))
    g = res.straight_grid
    assert g.affine[2, 3] == pytest.approx(10.0)
    assert g.shape[2] == int(np.floor(cl.length)) + 1
    x = np.array([[3.0, -2.0, 10.0 + 2.0 * 20.0], [4.0, -2.0, 10.0 + 2.0 * 20.0]])
    y = res.curve2straight.map(x)
    assert np.allclose(y[0], cl.points(20.0), atol=0.05)
    assert np.allclose(y[1] - y[0], cl.binormal(20.0), atol=0.05)
    assert res.metrics["max_dist_vox"] < 0.45  # measured 0.408
    # 2 mm straight slices: the trilinear fields are coarser along z near the ends (measured 0.519)
    assert res.metrics["roundtrip_max_vox"] < 0.57
    with pytest.raises(Exception, match="increase"):
        straighten(t2_seg, centerline=cl, z_of_s=lambda s: -s)


def test_cache_memory_and_disk(t2_seg, tmp_path):
    cl = Centerline.from_mask(t2_seg)
    grid = straight_grid_for(cl, t2_seg.grid)
    clear_cache()
    a = straightening_fields(cl, t2_seg.grid, grid, cache_dir=tmp_path)
    b = straightening_fields(cl, t2_seg.grid, grid, cache_dir=tmp_path)
    assert a[0] is b[0] and a[1] is b[1]
    files = list(tmp_path.glob("straighten-*.npz"))
    assert len(files) == 1
    clear_cache()
    c = straightening_fields(cl, t2_seg.grid, grid, cache_dir=tmp_path)
    assert c[0] is not a[0]
    assert np.array_equal(c[0].data, a[0].data) and np.array_equal(c[1].data, a[1].data)


def test_thick_slices_and_far_voxels():
    img = tube(shape=(48, 48, 5), zooms=(0.5, 0.5, 5.0),
               fx=lambda z: 0.01 * np.asarray(z) ** 2, fy=lambda z: 0.1 * np.asarray(z))
    res = straighten(img)
    assert res.straight_grid.shape[2] == 5
    assert np.all(np.isfinite(res.straight2curve.data))
    assert res.metrics["max_dist_vox"] < 0.2  # measured 0.180
    # a wide field of view around a strongly curved cord: every voxel maps somewhere finite
    big = tube(shape=(120, 120, 90), zooms=(1.0, 1.0, 1.0),
               fx=lambda z: 25 * np.sin(np.asarray(z) / 20.0), fy=lambda z: 0 * np.asarray(z))
    res = straighten(big, qc=False)
    assert np.all(np.isfinite(res.straight2curve.data))
    assert np.all(np.abs(res.straight2curve.data) < 1e3)


def test_save(t2_result, tmp_path):
    paths = t2_result.save(tmp_path)
    w = read_displacement(paths["warp_curve2straight"])
    assert w.grid.same_as(t2_result.straight_grid)
    assert np.allclose(w.data, t2_result.curve2straight.data, atol=1e-5)
    assert paths["centerline"].exists() and paths["straight_ref"].exists()
    with pytest.raises(Exception, match="exists"):
        t2_result.save(tmp_path)
