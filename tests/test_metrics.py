"""Registration metrics: analytic cases, invariance to voxel order/flips/obliquity, real data."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.metrics import (
    CSV_COLUMNS,
    centerline_distance,
    determinant_map,
    dice,
    hausdorff,
    inverse_consistency,
    jacobian,
    label_distances,
    to_csv,
    to_json,
)
from spinereg.transforms import DisplacementField, read_displacement

# -- helpers -----------------------------------------------------------------------------------


def affine(zooms=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), rot: np.ndarray | None = None) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.diag(zooms)
    a[:3, 3] = origin
    if rot is not None:
        r = np.eye(4)
        r[:3, :3] = rot
        a = r @ a
    return a


def rot_xy(deg: float = 20.0) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    ry = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return rx @ ry


def world(shape, aff) -> np.ndarray:
    return Grid(shape, aff).world_coords().reshape(tuple(shape) + (3,))


def ball(shape, aff, center, radius) -> Image:
    w = world(shape, aff)
    data = (np.linalg.norm(w - np.asarray(center), axis=-1) <= radius).astype(np.uint8)
    return Image(data, aff)


def tube(shape, aff, center_xy, radius, z_range=None) -> Image:
    """Cylinder along world S-I (z)."""
    w = world(shape, aff)
    m = np.hypot(w[..., 0] - center_xy[0], w[..., 1] - center_xy[1]) <= radius
    if z_range is not None:
        m &= (w[..., 2] >= z_range[0]) & (w[..., 2] <= z_range[1])
    return Image(m.astype(np.uint8), aff)


ORIENTATIONS = [np.array([[p, f] for p, f in zip(perm, flips, strict=True)], dtype=float)
                for perm in itertools.permutations(range(3))
                for flips in itertools.product((1, -1), repeat=3)]


def reoriented(img: Image, ornt: np.ndarray) -> Image:
    """Same image (same world content), voxel axes permuted/flipped."""
    return Image(np.ascontiguousarray(apply_orientation(img.data, ornt)),
                 img.affine @ inv_ornt_aff(ornt, img.shape[:3]))


def rotated(img: Image, rot: np.ndarray) -> Image:
    r = np.eye(4)
    r[:3, :3] = rot
    return Image(img.data, r @ img.affine)


def test_48_orientations_are_distinct_and_preserve_world():
    assert len(ORIENTATIONS) == 48
    img = Image(np.arange(24).reshape(2, 3, 4), affine((0.5, 0.7, 1.1), (3, -2, 5)))
    codes = set()
    for o in ORIENTATIONS:
        r = reoriented(img, o)
        codes.add("".join(r.grid.axcodes))
        # value 23 sits at the same world point in every copy
        ijk = np.argwhere(r.data == 23)[0]
        np.testing.assert_allclose(r.grid.voxel_to_world(ijk), img.grid.voxel_to_world([1, 2, 3]))
    assert len(codes) == 48


# -- Dice ----------------------------------------------------------------------------------------

SHAPE = (48, 44, 40)
AFF = affine((0.5, 0.6, 0.7), (-12.0, -13.0, -14.0))
CENTER = Grid(SHAPE, AFF).center_world()


def lens_dice(r: float, d: float) -> float:
    lens = math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    return lens / (4 / 3 * math.pi * r**3)


def test_dice_offset_balls_matches_analytic():
    a = ball(SHAPE, AFF, CENTER - [1.5, 0, 0], 6.0)
    b = ball(SHAPE, AFF, CENTER + [1.5, 0, 0], 6.0)
    res = dice(a, b)
    assert res.dice == pytest.approx(lens_dice(6.0, 3.0), abs=0.005)  # 0.633; measured 0.6359
    assert res.mode == "whole"
    assert res.volume_a_mm3 == pytest.approx(4 / 3 * math.pi * 6**3, rel=0.007)  # measured +0.45 %
    assert dice(a, a).dice == 1.0
    assert dice(b, a).dice == res.dice


def test_dice_threshold_and_zb():
    aff = affine((1.0, 1.0, 1.0))
    shape = (20, 20, 60)
    a = tube(shape, aff, (9.5, 9.5), 4.0, (0, 39.5))    # slices 0..39
    b = tube(shape, aff, (9.5, 9.5), 4.0, (20, 59.5))   # slices 20..59
    whole = dice(a, b)
    assert whole.dice == pytest.approx(0.5, abs=1e-12)
    assert whole.n_slices == 60
    zb = dice(a, b, zb=True)
    assert zb.dice == 1.0 and zb.mode == "zb" and zb.n_slices == 20
    # the S-I axis is found in world space: permuted copies give the same zb Dice
    for o in ORIENTATIONS[::7]:
        assert dice(reoriented(a, o), reoriented(b, o), zb=True).dice == 1.0
    # threshold: soft mask at 0.4 counts only above the threshold
    soft = Image(a.data * 0.4, aff)
    assert dice(soft, a, threshold=0.3).dice == 1.0
    with pytest.raises(InputError, match="empty"):
        dice(soft, a, threshold=0.5)


def test_dice_zb_without_common_slice_is_an_error():
    aff = affine()
    a = tube((10, 10, 30), aff, (4.5, 4.5), 2, (0, 9))
    b = tube((10, 10, 30), aff, (4.5, 4.5), 2, (15, 29))
    assert dice(a, b).dice == 0.0
    with pytest.raises(InputError, match="no slice"):
        dice(a, b, zb=True)


def test_mismatched_grids_and_empty_masks_raise(tmp_path):
    a = ball(SHAPE, AFF, CENTER, 5.0)
    a.path = tmp_path / "a.nii.gz"
    b = ball((48, 44, 41), AFF, CENTER, 5.0)
    b.path = tmp_path / "b.nii.gz"
    for fn in (dice, hausdorff):
        with pytest.raises(InputError) as ei:
            fn(a, b)
        msg = str(ei.value)
        assert "a.nii.gz" in msg and "b.nii.gz" in msg and "spinereg apply" in msg
    shifted = Image(a.data, affine((0.5, 0.6, 0.7), (-12.0, -13.0, -13.0)))
    with pytest.raises(InputError, match="same grid"):
        dice(a, shifted)
    empty = Image(np.zeros(SHAPE, np.uint8), AFF)
    with pytest.raises(InputError, match="empty"):
        dice(a, empty)
    with pytest.raises(InputError, match="empty"):
        hausdorff(empty, a)


# -- Hausdorff -------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", [(1, 0, 0), (0, 0, 1), (1, 1, 1)])
def test_hausdorff_offset_balls_is_offset(direction):
    d = np.asarray(direction, float) / np.linalg.norm(direction) * 3.0
    a = ball(SHAPE, AFF, CENTER - d / 2, 6.0)
    b = ball(SHAPE, AFF, CENTER + d / 2, 6.0)
    res = hausdorff(a, b)
    vox = float(Grid(SHAPE, AFF).zooms.max())
    # measured 3.0 / 3.5 / 3.03 (x / z / diagonal), mean surface distance 1.33 / 1.54 / 1.44
    assert abs(res.hausdorff_mm - 3.0) <= min(vox, 0.55), res.hausdorff_mm
    assert res.hausdorff95_mm <= res.hausdorff_mm
    assert 1.2 < res.mean_surface_mm < 1.7, res.mean_surface_mm
    same = hausdorff(a, a)
    assert same.hausdorff_mm == 0.0 and same.mean_surface_mm == 0.0


def test_hausdorff_concentric_balls_is_radius_difference():
    a = ball(SHAPE, AFF, CENTER, 4.0)
    b = ball(SHAPE, AFF, CENTER, 7.0)
    res = hausdorff(a, b)
    assert abs(res.hausdorff_mm - 3.0) <= 0.3, res.hausdorff_mm  # measured 3.26
    # every surface point of the small ball is ~3 mm from the big one: mean close to 3 too
    assert abs(res.directed_ab_mm - 3.0) <= 0.15, res.directed_ab_mm  # measured 3.12


# -- invariance to voxel order, flips and obliquity ----------------------------------------------


def _all_metrics(a: Image, b: Image, la: Image, lb: Image) -> np.ndarray:
    d = dice(a, b)
    dz = dice(a, b, zb=True)
    h = hausdorff(a, b)
    c = centerline_distance(a, b)
    lab = label_distances(la, lb)
    return np.array([d.dice, dz.dice, h.hausdorff_mm, h.hausdorff95_mm, h.mean_surface_mm,
                     c.rms_mm, c.max_mm, c.n_slices, lab.mean_mm, lab.max_mm])


def _invariance_inputs(aff):
    shape = (30, 26, 36)
    c = Grid(shape, aff).center_world()
    w = world(shape, aff)
    rel = w - c
    # an irregular blob (ellipsoid + tilted cylinder) and a shifted, rotated copy
    a = ((rel[..., 0] / 5) ** 2 + (rel[..., 1] / 4) ** 2 + (rel[..., 2] / 9) ** 2 <= 1)
    a |= np.hypot(rel[..., 0] - 0.2 * rel[..., 2], rel[..., 1] + 1) <= 2.5
    b = ((rel[..., 0] - 1.3) / 5) ** 2 + ((rel[..., 1] + 0.8) / 3.5) ** 2 + ((rel[..., 2] - 2) / 8) ** 2 <= 1
    la = np.zeros(shape, np.int16)
    lb = np.zeros(shape, np.int16)
    la[5, 6, 7], la[20, 10, 30], la[12, 12, 12] = 3, 5, 7
    lb[6, 8, 7], lb[18, 10, 25], lb[1, 2, 3] = 3, 5, 9
    lb[18, 11, 25] = 5  # a two-voxel label: centre of mass between them
    return (Image(a.astype(np.uint8), aff), Image(b.astype(np.uint8), aff),
            Image(la, aff), Image(lb, aff))


def test_metrics_invariant_to_48_orientations_and_obliquity():
    aff = affine((0.6, 0.8, 1.0), (-9.0, -10.0, -17.0))
    a, b, la, lb = _invariance_inputs(aff)
    ref = _all_metrics(a, b, la, lb)
    assert 0.2 < ref[0] < 0.9 and ref[2] > 1 and ref[5] > 0.3 and ref[8] > 1  # non-trivial
    for o in ORIENTATIONS:
        got = _all_metrics(*(reoriented(x, o) for x in (a, b, la, lb)))
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9, err_msg=str(o.tolist()))
    # oblique: the same data with the affine rotated 20 degrees about x and y
    rot = rot_xy(20)
    got = _all_metrics(*(rotated(x, rot) for x in (a, b, la, lb)))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    # oblique and reoriented at once
    got = _all_metrics(*(reoriented(rotated(x, rot), ORIENTATIONS[29]) for x in (a, b, la, lb)))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_centerline_and_labels_across_different_grids_are_world_based():
    aff = affine((0.6, 0.8, 1.0), (-9.0, -10.0, -17.0))
    a, _, la, _ = _invariance_inputs(aff)
    for o in ORIENTATIONS:
        lab = label_distances(la, reoriented(la, o))
        assert lab.max_mm == pytest.approx(0.0, abs=1e-9)
        assert centerline_distance(a, reoriented(a, o)).max_mm == pytest.approx(0.0, abs=1e-9)


# -- centerline --------------------------------------------------------------------------------------


def test_centerline_of_tube_shifted_2mm_is_2mm():
    aff = affine((0.5, 0.5, 1.0), (-10.0, -10.0, -20.0))
    shape = (40, 40, 41)
    a = tube(shape, aff, (0.0, 0.0), 3.0)
    b = tube(shape, aff, (2.0, 0.0), 3.0)
    res = centerline_distance(a, b)
    assert res.rms_mm == pytest.approx(2.0, abs=1e-9)
    assert res.max_mm == pytest.approx(2.0, abs=1e-9)
    assert res.n_slices == 41 and res.n_outside == 0
    assert [s.z_mm for s in res.slices] == pytest.approx(np.arange(-20.0, 21.0))
    assert all(s.distance_mm == pytest.approx(2.0) for s in res.slices)
    for o in ORIENTATIONS:
        r = centerline_distance(reoriented(a, o), reoriented(b, o))
        assert r.rms_mm == pytest.approx(2.0, abs=1e-9) and r.n_slices == 41
    r = centerline_distance(rotated(a, rot_xy(20)), rotated(b, rot_xy(20)))
    assert r.rms_mm == pytest.approx(2.0, abs=1e-9) and r.max_mm == pytest.approx(2.0, abs=1e-9)


def test_centerline_interpolates_b_and_skips_slices_outside_it():
    # A: 1 mm slices; B: 3 mm slices over half the length, same tube shifted 1 mm in y.
    a = tube((30, 30, 41), affine((0.5, 0.5, 1.0), (-7.0, -7.0, -20.0)), (0.5, 0.5), 3.0)
    b = tube((25, 25, 7), affine((0.6, 0.6, 3.0), (-7.2, -7.2, -9.0)), (0.5, 1.5), 3.0)
    res = centerline_distance(a, b)
    assert res.n_slices == 19 and res.n_outside == 22   # z in [-9, 9]
    # digitisation of the 0.6 mm disc shifts its centre of mass by < 0.1 mm
    assert res.rms_mm == pytest.approx(1.0, abs=0.01)  # measured 1.0003
    tilted = tube((30, 30, 41), affine((0.5, 0.5, 1.0), (-7.0, -7.0, -20.0)), (0.5, 0.5), 3.0)
    w = world(tilted.shape, tilted.affine)
    tilt = np.hypot(w[..., 0] - 0.5 - 0.1 * w[..., 2], w[..., 1] - 0.5) <= 3.0
    r2 = centerline_distance(a, Image(tilt.astype(np.uint8), a.affine))
    assert r2.max_mm == pytest.approx(2.0, abs=0.01)  # |0.1 z| at z = +-20, in-plane; measured 2.0
    with pytest.raises(InputError, match="do not overlap"):
        centerline_distance(a, tube((30, 30, 5), affine((0.5, 0.5, 1.0), (-7, -7, 40)), (0, 0), 3))


# -- labels --------------------------------------------------------------------------------------


def test_label_distances_analytic_and_errors():
    aff = affine((0.5, 0.8, 2.0), (10, 20, 30))
    la = np.zeros((20, 20, 20), np.uint8)
    lb = np.zeros((20, 20, 20), np.uint8)
    la[5, 5, 5], la[10, 10, 10], la[2, 2, 2] = 3, 5, 7
    lb[8, 9, 5], lb[10, 10, 12], lb[3, 3, 3] = 3, 5, 9   # 3: (1.5, 3.2, 0) -> 3.5341 mm; 5: 4 mm
    res = label_distances(Image(la, aff), Image(lb, aff))
    assert [p.label for p in res.pairs] == [3, 5]
    assert res.pairs[0].distance_mm == pytest.approx(math.hypot(1.5, 3.2))
    assert res.pairs[1].distance_mm == pytest.approx(4.0)
    assert res.max_mm == pytest.approx(4.0)
    assert res.mean_mm == pytest.approx((math.hypot(1.5, 3.2) + 4.0) / 2)
    assert res.only_in_a == [7] and res.only_in_b == [9]
    np.testing.assert_allclose(res.pairs[1].a_mm, [15, 28, 50])
    with pytest.raises(InputError, match="no labels"):
        label_distances(Image(la, aff), Image(np.zeros_like(lb), aff))
    with pytest.raises(InputError, match="non-integer"):
        label_distances(Image(la * 0.5, aff), Image(lb, aff))
    with pytest.raises(InputError, match="share no label"):
        label_distances(Image((la == 7).astype(np.uint8) * 7, aff), Image(lb, aff))


def test_label_distances_refuse_a_value_on_two_points_and_keep_blobs():
    """t2's labels with C5 relabelled 3 measured label 3 at the mean of the two points, 17.5 mm
    from either (session 36): now refused, naming the file and the value. A blob of adjacent
    voxels, and a value made of several blobs (a rootlet segmentation), are still one label."""
    aff = affine((0.5, 0.8, 2.0), (10, 20, 30))
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[5, 5, 5], ref[10, 10, 10] = 3, 5
    dup = ref.copy()
    dup[10, 10, 10] = 3
    with pytest.raises(InputError, match="label 3 is on 2 separate points") as exc:
        label_distances(Image(dup, aff, path="dup.nii.gz"), Image(ref, aff))
    assert exc.value.path is not None and "dup.nii.gz" in str(exc.value.path)
    blob = ref.copy()
    blob[4:7, 4:7, 4:7] = 3  # a 3x3x3 blob centred on the point
    assert label_distances(Image(blob, aff), Image(ref, aff)).max_mm == pytest.approx(0.0, abs=1e-9)
    roots = ref.copy()
    roots[1:3, 1:3, 1:3] = 3  # two blobs of value 3 plus the single voxel: a rootlet-like label
    roots[8:10, 8:10, 1:3] = 3
    assert label_distances(Image(roots, aff), Image(ref, aff)).n_pairs == 2


# -- Jacobian ------------------------------------------------------------------------------------


def _field(grid: Grid, fn) -> DisplacementField:
    x = grid.world_coords().reshape(tuple(grid.shape) + (3,))
    return DisplacementField(grid, fn(x))


def test_jacobian_of_linear_field_is_det_a_on_oblique_grid():
    grid = Grid((20, 24, 18), affine((0.7, 0.5, 1.2), (-6, -5, -9), rot=rot_xy(20)))
    a = np.array([[1.1, 0.05, 0.0], [0.02, 0.9, 0.1], [0.0, -0.05, 1.2]])
    f = _field(grid, lambda x: x @ (a - np.eye(3)).T + [1.0, -2.0, 0.5])
    res = jacobian(f)
    det_a = float(np.linalg.det(a))  # 1.19
    assert res.min == pytest.approx(det_a, abs=1e-4)
    assert res.max == pytest.approx(det_a, abs=1e-4)
    assert res.pct_nonpositive == 0.0 and res.n_undefined == 0 and res.n_voxels == grid.size
    assert res.det.shape == grid.shape
    # chunked computation equals the one-slab computation
    np.testing.assert_allclose(determinant_map(f, max_points=20 * 24 * 2), res.det, rtol=0, atol=0)
    # the identity field has det 1
    assert jacobian(DisplacementField.zeros(grid)).max == pytest.approx(1.0)


def test_jacobian_detects_folding_and_is_orientation_invariant():
    grid = Grid((64, 12, 10), affine((0.5, 1.0, 1.0)))
    k = 2 * np.pi / 16.0          # two periods of 16 mm along x
    amp = 2.0 / k                 # det = 1 + 2 cos(kx): <= 0 on 1/3 of the period
    f = _field(grid, lambda x: np.stack([amp * np.sin(k * x[..., 0]), 0 * x[..., 1], 0 * x[..., 2]], -1))
    res = jacobian(f)
    assert 33.3 < res.pct_nonpositive < 35.0, res.pct_nonpositive  # measured 34.375 (1/3 analytic)
    assert res.n_nonpositive == round(res.pct_nonpositive * grid.size / 100)
    assert res.min < -0.98 and res.max > 2.98, (res.min, res.max)  # measured -0.987 / 2.987 (-1 / 3)
    for o in ORIENTATIONS[::5]:
        ro = reoriented(Image(f.data, grid.affine), o)
        g2 = Grid(ro.shape[:3], ro.affine)
        r2 = jacobian(DisplacementField(g2, ro.data))
        assert r2.pct_nonpositive == res.pct_nonpositive
        assert r2.min == pytest.approx(res.min, abs=1e-6) and r2.max == pytest.approx(res.max, abs=1e-6)


def test_jacobian_excludes_undefined_voxels_and_honours_mask(tmp_path):
    grid = Grid((10, 10, 10), affine((1.0, 1.0, 1.0)))
    data = np.zeros((10, 10, 10, 3), np.float32)
    data[5, 5, 5] = np.nan
    res = jacobian(DisplacementField(grid, data))
    assert res.n_undefined == 7 and res.n_voxels == 993  # the voxel and its 6 face neighbours
    assert np.isnan(res.det[5, 5, 5]) and np.isnan(res.det[4, 5, 5]) and res.det[3, 5, 5] == 1.0
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[4:7, 4:7, 4:7] = 1
    rm = jacobian(DisplacementField(grid, data), Image(mask, grid.affine))
    assert rm.masked and rm.n_voxels == 20 and rm.n_undefined == 7
    with pytest.raises(InputError, match="spinereg apply"):
        jacobian(DisplacementField(grid, data), Image(mask[:9], grid.affine))
    with pytest.raises(InputError, match="empty"):
        jacobian(DisplacementField(grid, data), Image(mask * 0, grid.affine))
    img = res.det_image()
    assert img.data.dtype == np.float32 and img.shape == (10, 10, 10)


# -- inverse consistency -----------------------------------------------------------------------


def test_inverse_consistency_translation_pair_and_mismatch():
    grid = Grid((12, 10, 8), affine((1.0, 1.0, 1.0)))
    fwd = DisplacementField(grid, np.broadcast_to(np.float32([2, 0, 0]), grid.shape + (3,)).copy())
    inv = DisplacementField(grid, np.broadcast_to(np.float32([-2, 0, 0]), grid.shape + (3,)).copy())
    res = inverse_consistency(fwd, inv)
    assert res.forward.max_mm == pytest.approx(0.0, abs=1e-6)
    # x + 2 lies beyond the last voxel + half a voxel (i + 2 > 11.5) for i = 10, 11: undefined
    assert res.forward.n_undefined == 2 * 10 * 8 and res.forward.n_points == 10 * 10 * 8
    assert res.backward.max_mm == pytest.approx(0.0, abs=1e-6)
    assert res.backward.n_undefined == 2 * 10 * 8
    bad = DisplacementField(grid, np.broadcast_to(np.float32([-1.5, 0, 0]), grid.shape + (3,)).copy())
    rb = inverse_consistency(fwd, bad)
    for r in (rb.forward, rb.backward):
        assert r.mean_mm == pytest.approx(0.5, abs=1e-6)
        assert r.p95_mm == pytest.approx(0.5, abs=1e-6) and r.rms_mm == pytest.approx(0.5, abs=1e-6)
    assert inverse_consistency(fwd, bad, both=False).backward is None
    strided = inverse_consistency(fwd, bad, stride=2)
    assert strided.forward.n_points + strided.forward.n_undefined == 6 * 5 * 4


def test_inverse_consistency_linear_and_numerical_inverse():
    grid = Grid((24, 24, 20), affine((1.0, 1.0, 1.2), (-12, -12, -12), rot=rot_xy(20)))
    a = np.array([[1.05, 0.02, 0.0], [0.0, 0.97, 0.03], [0.01, 0.0, 1.04]])
    fwd = _field(grid, lambda x: x @ (a - np.eye(3)).T)
    inv = _field(grid, lambda x: x @ (np.linalg.inv(a) - np.eye(3)).T)
    res = inverse_consistency(fwd, inv)
    # trilinear is exact for linear fields between voxel centres; in the outer half-voxel rim
    # the field is extended as a constant (ITK), hence small residuals there only
    # measured: 94.1 % of the points, mean 0.0022, max 0.0333, backward max 0.0146 mm
    assert res.forward.n_points > 0.93 * grid.size
    assert res.forward.mean_mm < 0.0025 and 0.03 < res.forward.max_mm < 0.036, res.forward
    assert res.backward.max_mm < 0.016, res.backward
    # with the inverse on a larger grid, every round trip stays between voxel centres: exact
    big = Grid((30, 30, 26), grid.affine @ affine(origin=(-3, -3, -3)))
    inv_big = _field(big, lambda x: x @ (np.linalg.inv(a) - np.eye(3)).T)
    exact = inverse_consistency(fwd, inv_big, both=False)
    assert exact.forward.n_points == grid.size and exact.forward.max_mm < 1e-6  # measured 8.6e-8
    wrong = inverse_consistency(fwd, fwd)  # the forward warp is not its own inverse
    assert wrong.forward.mean_mm > 0.95  # measured 1.02
    # smooth nonlinear field and its numerical inverse
    smooth = _field(grid, lambda x: np.stack([1.5 * np.sin(x[..., 2] / 6), 0.8 * np.cos(x[..., 0] / 5),
                                              0.5 * np.sin(x[..., 1] / 7)], -1))
    num = smooth.inverse()
    r = inverse_consistency(smooth, num)
    # measured: mean 0.0137, p95 0.0378 mm (backward p95 4e-8, 0.0057 of the field's own round
    # trip); the max (0.77 mm) sits on the grid's rim, where the numerical inverse meets the
    # identity extension of the forward field
    assert r.forward.mean_mm < 0.015 and r.forward.p95_mm < 0.041, r.forward
    assert r.backward.p95_mm < 1e-5, r.backward
    assert r.forward.mean_mm < 0.0065 * inverse_consistency(smooth, smooth).forward.mean_mm


# -- reports -----------------------------------------------------------------------------------------


def test_reports_are_strict_json_and_stable_csv():
    aff = affine((1.0, 1.0, 1.0))
    a = tube((20, 20, 10), aff, (9.5, 9.5), 4.0)
    b = tube((20, 20, 10), aff, (10.5, 9.5), 4.0)
    res = centerline_distance(a, b)
    d = json.loads(to_json(res))
    assert d["metric"] == "centerline" and d["rms_mm"] == pytest.approx(1.0)
    assert d["slices"][0] == {"z_mm": 0.0, "distance_mm": pytest.approx(1.0)}
    lines = to_csv(res).splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    slice_rows = [ln for ln in lines if ln.startswith("centerline,slice_distance_mm")]
    assert len(slice_rows) == 10 and slice_rows[3].split(",")[3] == "3.0"
    grid = Grid((6, 6, 6), aff)
    data = np.zeros((6, 6, 6, 3), np.float32)
    data[:] = np.nan
    data[:, :, :3] = 0
    j = jacobian(DisplacementField(grid, data))
    jd = json.loads(to_json(j))
    assert "det" not in jd and "grid" not in jd and jd["min"] == 1.0
    assert jd["n_undefined"] == 6 * 6 * 4  # slices 2 (neighbour) and 3..5


# -- real data (sct_testing_data) ------------------------------------------------------------------


def test_real_dice_of_manual_seg_with_itself(sct_data):
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz", ndim=3)
    for zb in (False, True):
        res = dice(seg, seg, zb=zb)
        assert res.dice == 1.0 and res.n_a == 4275
    deep = load_image(sct_data / "t2" / "t2_seg-deepseg_sc-3d.nii.gz", ndim=3)
    res = dice(deep, seg)
    assert 0.975 < res.dice < 0.99, res.dice  # measured 0.9808
    # invariance on real data: a reoriented pair (nibabel RAS+ instead of the file's PSR)
    o = ORIENTATIONS[13]
    h0 = hausdorff(deep, seg)
    h1 = hausdorff(reoriented(deep, o), reoriented(seg, o))
    assert h1.hausdorff_mm == h0.hausdorff_mm == 1.0  # measured: 1 voxel (1 mm) at most
    assert h1.mean_surface_mm == pytest.approx(h0.mean_surface_mm, abs=1e-12)


def test_real_jacobian_of_sct_warp(sct_data):
    warp = read_displacement(sct_data / "t2" / "warp_template2anat.nii.gz")
    res = jacobian(warp)
    # measured: min 0.662, max 1.299, mean 0.968, 3758 of 171600 voxels undefined (FLT_MAX rim)
    assert res.min == pytest.approx(0.662, abs=0.003) and res.max == pytest.approx(1.299, abs=0.003), res
    assert res.pct_nonpositive == 0.0
    assert res.n_voxels + res.n_undefined == 60 * 55 * 52
    assert res.n_undefined == 3758
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz", ndim=3)
    rm = jacobian(warp, seg)
    assert rm.n_voxels + rm.n_undefined == 4275
    assert rm.mean == pytest.approx(0.919, abs=0.003)  # measured 0.9191; the template cord is shrunk into the subject's (0.85-0.95 before session 36)


def test_real_centerline_and_labels(sct_data):
    t2 = sct_data / "t2"
    c = centerline_distance(load_image(t2 / "t2_centerline-manual.nii.gz"),
                            load_image(t2 / "t2_seg-manual.nii.gz"))
    assert c.n_slices == 55 and c.rms_mm == pytest.approx(0.464, abs=0.005) and c.max_mm == pytest.approx(0.925, abs=0.005)
    lab = label_distances(load_image(t2 / "labels.nii.gz"),
                          load_image(t2 / "t2_labeled_center_manual.nii.gz"))
    assert [p.label for p in lab.pairs] == [3, 5] and lab.only_in_b == [4]
    assert lab.max_mm == pytest.approx(1.0)  # measured: both labels 1 voxel apart (R-L)


def test_round_trip_residual_is_the_same_in_any_slabs():
    """round_trip_residual evaluates whole slices of ~max_points voxels at a time (the forward field
    read off its nodes on its own grid): each point's residual alone, so the same statistics."""
    from scipy import ndimage

    from spinereg.metrics.consistency import round_trip_residual

    rng = np.random.default_rng(3)
    aff = np.array([[-0.6, 0.02, 0.1, 30.0], [0.01, 0.65, 0.3, -20.0], [0.0, -0.05, 3.5, 4.0], [0, 0, 0, 1]])
    grid = Grid((24, 20, 9), aff)
    u = ndimage.gaussian_filter(rng.normal(0, 4.0, grid.shape + (3,)), (2, 2, 1, 0)).astype(np.float32)
    fwd = DisplacementField(grid, u)
    inv = DisplacementField(grid, -u)
    ref = round_trip_residual(fwd, inv, grid, max_points=grid.size)
    assert ref.p95_mm > 0.01 and ref.n_points > 0.9 * grid.size  # not trivial
    for max_points in (1, 24 * 20 * 2, 1000):
        assert round_trip_residual(fwd, inv, grid, max_points=max_points) == ref
