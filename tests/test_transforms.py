"""Transforms: ANTs interop on real data, composition, inversion, file round trips."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.cli.main import main
from spinereg.io import Grid, load_image
from spinereg.transforms import (
    AffineTransform,
    Chain,
    DisplacementField,
    apply_transforms,
    apply_transforms_file,
    load_transform,
    read_affine,
    read_displacement,
    write_affine,
    write_displacement,
)


@pytest.fixture(scope="module")
def ants():
    """The antspyx package, imported by the tests comparing with it only (its import takes seconds:
    collecting the suite, on every worker, does not pay it)."""
    import ants as antspyx

    return antspyx


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def smooth_field(grid: Grid, rng: np.random.Generator, amplitude_vox: float = 2.0, sigma: float = 4.0) -> DisplacementField:
    """A random smooth field with max |grad u| < 0.5 (hence invertible)."""
    u = rng.standard_normal(tuple(grid.shape) + (3,))
    for d in range(3):
        u[..., d] = ndimage.gaussian_filter(u[..., d], sigma, mode="nearest")
    u *= amplitude_vox * grid.zooms.min() / np.abs(u).max()
    return DisplacementField(grid, u)


# -- real data: SCT warps through spinereg vs ANTs ----------------------------------------------
def test_apply_sct_warp_matches_sct_and_ants(sct_data, tmp_path, ants):
    cord = sct_data / "template/template/PAM50_small_cord.nii.gz"
    t2 = sct_data / "t2/t2.nii.gz"
    warp = sct_data / "t2/warp_template2anat.nii.gz"
    out = tmp_path / "cord.nii.gz"
    assert main(["apply", "-i", str(cord), "-d", str(t2), "-w", str(warp), "-x", "linear", "-o", str(out)]) == 0
    ours = load_image(out).data
    seg = load_image(sct_data / "t2/t2_seg-manual.nii.gz").data > 0
    d = dice(ours > 0.5, seg)
    assert d >= 0.95, d  # SCT's own figure: 0.951
    ref = ants.apply_transforms(ants.image_read(str(t2)), ants.image_read(str(cord)), [str(warp)],
                                interpolator="linear").numpy()
    assert np.abs(ours - ref).max() <= 1e-5  # measured 0


def test_concat_matches_sct_composed_warp(sct_data, tmp_path):
    out = tmp_path / "w.nii.gz"
    rc = main(["concat", "-d", str(sct_data / "mt/mt1.nii.gz"), "-w",
               str(sct_data / "t2/warp_template2anat.nii.gz"), str(sct_data / "mt/warp_t22mt1.nii.gz"),
               "-o", str(out)])
    assert rc == 0
    ours = read_displacement(out)
    sct = read_displacement(sct_data / "mt/warp_template2mt.nii.gz")
    diff = np.linalg.norm(ours.data - sct.data, axis=-1)
    defined = np.isfinite(diff)
    assert defined.sum() > 0.55 * diff.size  # measured 4524 of 8000
    assert np.nanmax(diff) < 1e-3  # measured 4.9e-5 mm


# -- synthetic: inversion and composition ---------------------------------------------------------
def test_field_inverse_round_trip(rng):
    grid = Grid((40, 36, 32), np.diag([1.2, 0.9, 1.5, 1.0]) @ _rot(20))
    fwd = smooth_field(grid, rng)
    inv = fwd.inverse()
    assert inv.report.mean_mm < 0.003  # measured 0.0025; the residual concentrates at the borders (points leave the domain)
    x = grid.world_coords()
    ijk = grid.world_to_voxel(x)
    interior = np.all((ijk > 5) & (ijk < np.array(grid.shape) - 6), axis=1)
    err_vox = np.linalg.norm((fwd @ inv).map(x[interior]) - x[interior], axis=1) / grid.zooms.min()
    assert np.sqrt((err_vox**2).mean()) < 1e-6  # measured 6e-8
    # and the composed field, sampled on the grid, is close to zero too
    comp = DisplacementField.from_transform(Chain([inv, fwd]), grid)
    rms = np.sqrt(np.nanmean(np.sum(comp.data.reshape(-1, 3)[interior] ** 2, axis=1))) / grid.zooms.min()
    assert rms < 0.0015  # measured 0.00106


def test_inverse_of_pure_translation_exact():
    grid = Grid((10, 10, 10), np.eye(4))
    f = DisplacementField(grid, np.broadcast_to(np.array([1.5, -2.0, 0.5], np.float32), (10, 10, 10, 3)))
    inv = f.inverse()
    centre = inv.data[3:7, 3:7, 3:7].reshape(-1, 3)
    assert np.allclose(centre, [-1.5, 2.0, -0.5], atol=1e-5)


def test_affine_inverse_and_composition(rng):
    a = AffineTransform.from_params((10, -5, 30), (3, -2, 7), (1.1, 0.9, 1.0), center=(5, 5, 5))
    b = AffineTransform.from_params((0, 20, 0), (1, 1, 1))
    p = rng.uniform(-50, 50, (100, 3))
    assert np.allclose((~a).map(a.map(p)), p, atol=1e-9)
    assert np.allclose((a @ b).map(p), a.map(b.map(p)))
    assert np.allclose(Chain([a, b]).map(p), a.map(b.map(p)))
    assert np.allclose((~Chain([a, b])).map(Chain([a, b]).map(p)), p, atol=1e-9)


def test_point_push_through_field(rng):
    grid = Grid((30, 30, 30), np.eye(4))
    f = smooth_field(grid, rng, amplitude_vox=3)
    p = rng.uniform(8, 22, (20, 3))
    x = f.inverse_map(p)
    assert np.allclose(f.map(x), p, atol=1e-3)


def test_point_push_large_displacement():
    grid = Grid((20, 20, 60), np.eye(4))
    u = np.zeros((20, 20, 60, 3), np.float32)
    u[..., 2] = 25.0 + 0.3 * np.arange(60)[None, None, :]  # large, non-contracting start
    f = DisplacementField(grid, u)
    p = np.array([[10.0, 10.0, 60.0]])
    x = f.inverse_map(p)
    assert np.allclose(f.map(x), p, atol=1e-3)


# -- files ----------------------------------------------------------------------------------------
def test_warp_write_read_identical(tmp_path, rng, ants):
    grid = Grid((12, 11, 10), _rot(15) @ np.diag([0.8, 0.8, 2.0, 1.0]))
    f = smooth_field(grid, rng)
    p = write_displacement(f, tmp_path / "warp.nii.gz")
    g = read_displacement(p)
    assert g.grid.same_as(grid)
    assert np.array_equal(g.data, f.data)
    import nibabel as nib

    img = nib.load(str(p))
    assert img.shape == (12, 11, 10, 1, 3) and int(img.header["intent_code"]) == 1007
    # ANTs reads it as a warp and moves points as we do
    moving = np.zeros((12, 11, 10), np.float32)
    moving[4:8, 3:9, 2:7] = 1
    mimg = load_image_from_array(moving, grid.affine, tmp_path / "m.nii.gz")
    ours = apply_transforms(mimg, grid, [g], "linear").data
    theirs = ants.apply_transforms(ants.image_read(str(tmp_path / "m.nii.gz")),
                                   ants.image_read(str(tmp_path / "m.nii.gz")), [str(p)],
                                   interpolator="linear").numpy()
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.mark.parametrize("suffix", [".mat", ".txt"])
def test_affine_write_read_and_ants_agree(tmp_path, suffix, sct_data, ants):
    a = AffineTransform.from_params((4, -3, 8), (2.0, -1.5, 3.0), center=(1, 2, 3))
    path = write_affine(a, tmp_path / f"aff{suffix}")
    b = read_affine(path)
    assert np.allclose(a.matrix, b.matrix, atol=1e-12)
    t2 = sct_data / "t2/t2.nii.gz"
    img = load_image(t2)
    ours = apply_transforms(img, img.grid, [b], "linear").data
    theirs = ants.apply_transforms(ants.image_read(str(t2)), ants.image_read(str(t2)), [str(path)],
                                   interpolator="linear").numpy()
    assert np.abs(ours - theirs).max() < 1e-5 * np.abs(theirs).max()  # measured 0


def test_inverse_spec_and_invert_cli(tmp_path, rng):
    grid = Grid((24, 24, 24), np.eye(4))
    f = smooth_field(grid, rng)
    w = write_displacement(f, tmp_path / "w.nii.gz")
    out = tmp_path / "winv.nii.gz"
    assert main(["invert", "-w", str(w), "-o", str(out)]) == 0
    inv_cli = read_displacement(out)
    inv_spec = load_transform(f"inv:{w}")
    # the spec's inverse is solved at the points asked (FieldInverse), the CLI's sampled on the grid
    pts = grid.voxel_to_world(np.argwhere(np.ones((20, 20, 20), bool)) + 2.0)
    assert np.abs(inv_cli.map(pts) - inv_spec.map(pts)).max() < 1e-4  # measured 3.3e-6
    assert np.allclose(load_transform(f"[{w},1]").map(pts), inv_spec.map(pts), atol=1e-9)
    assert np.abs(f.map(inv_spec.map(pts)) - pts).max() < 1e-4  # a true inverse (measured 2.4e-6)
    assert (~inv_spec) is inv_spec.field and np.allclose(inv_spec.inverse_map(pts), f.map(pts))
    # applied: the same image as through the CLI's inverse
    img = tmp_path / "img.nii.gz"
    load_image_from_array(rng.normal(size=(24, 24, 24)).astype(np.float32), np.eye(4), img)
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert main(["apply", "-i", str(img), "-d", str(img), "-w", f"inv:{w}", "-o", str(a), "-x", "linear"]) == 0
    assert main(["apply", "-i", str(img), "-d", str(img), "-w", str(out), "-o", str(b), "-x", "linear"]) == 0
    da, db = load_image(a).data, load_image(b).data
    assert np.abs(da - db)[3:-3, 3:-3, 3:-3].max() < 1e-5 * np.abs(db).max()  # measured 1.2e-7 (of 3.7)


def test_field_read_in_c_order(tmp_path, rng):
    """A field read from a file is kept in C order (trilinear_vectors reads it through a flat view:
    a Fortran-ordered field was copied whole at every evaluation, minutes for an inverse on PAM50)."""
    f = smooth_field(Grid((12, 14, 16), np.eye(4)), rng)
    import shutil

    # a copy: read_displacement remembers the fields this process wrote
    r = read_displacement(shutil.copy(write_displacement(f, tmp_path / "w.nii.gz"), tmp_path / "c.nii.gz"))
    assert r.data.flags.c_contiguous and np.array_equal(r.data, f.data)
    assert DisplacementField(f.grid, np.asfortranarray(f.data)).data.flags.c_contiguous


def load_image_from_array(data, affine, path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, affine), str(path))
    return load_image(path)


def _rot(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    m = np.eye(4)
    m[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) @ np.array(
        [[1, 0, 0], [0, np.cos(t / 2), -np.sin(t / 2)], [0, np.sin(t / 2), np.cos(t / 2)]])
    return m


def test_label_interp_pushes_points_from_outside_the_field_grid(sct_data):
    """Template disc labels lie outside t2's grid before warping; each one inside t2's field of
    view after the warp must come out as exactly one voxel (SCT's -x label)."""
    discs = load_image(sct_data / "template/template/PAM50_small_label_disc.nii.gz", check_finite=False)
    t2 = load_image(sct_data / "t2/t2.nii.gz")
    warp = read_displacement(sct_data / "t2/warp_template2anat.nii.gz")
    out = apply_transforms(discs, t2.grid, [warp], "label").data
    vals, counts = np.unique(out[out > 0], return_counts=True)
    assert set(vals.astype(int).tolist()) >= {3, 4, 5, 6}
    assert np.all(counts == 1)
    # each pushed point maps back onto its template label (pull of the pushed voxel)
    for v in (3, 4, 5):
        ijk = np.argwhere(out == v)[0]
        back = warp.map(t2.grid.voxel_to_world(ijk[None].astype(float)))
        src = discs.grid.voxel_to_world(np.argwhere(np.asarray(discs.data) == v).mean(0)[None])
        # rounding to t2's 1 mm voxel: at most 0.87 mm; measured 0.55 / 0.33 / 0.51
        assert np.linalg.norm(back - src) < 0.9


def test_per_volume_transforms_in_4d_apply(tmp_path, rng):
    """Motion parameters join the chain per volume: one interpolation, same as chaining by hand."""
    import nibabel as nib

    grid = Grid((16, 18, 6), np.diag([1.0, 1.0, 3.0, 1.0]))
    data = rng.random((16, 18, 6, 4)).astype(np.float32)
    path = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(data, grid.affine), str(path))
    moves = [AffineTransform.from_params(translation=(0.3 * t, -0.2 * t, 0.0)) for t in range(4)]
    common = AffineTransform.from_params((0, 0, 5), (1.0, 0.5, 0.0), center=(8, 9, 7))
    out = apply_transforms_file(path, grid, [common], tmp_path / "out.nii.gz", interp="linear", per_volume=moves)
    got = load_image(out).data
    series = load_image(path)
    for t in range(4):
        vol = series.with_data(data[..., t])
        ref = apply_transforms(vol, grid, [moves[t], common], "linear").data
        assert np.allclose(got[..., t], ref, atol=1e-5)
    with pytest.raises(Exception, match="per-volume"):
        apply_transforms_file(path, grid, [common], tmp_path / "bad.nii.gz", per_volume=moves[:2])


def test_inverse_on_a_grid_the_field_maps_far_away_to(rng):
    """A warp between two spaces 100 mm apart (as warp_anat2template: template grid -> subject
    points): its inverse on the other space's grid. Started at v = -u(y), every point there (off the
    field's grid, where u is continued by 0) stayed at the identity with residual 0: an all-zero
    field (spinereg invert warp_anat2template -d t2, before session 37; t2: now within 0.008 mm mean
    of the registration's own warp_template2anat)."""
    a = Grid((24, 24, 24), np.eye(4))
    f = smooth_field(a, rng)
    f = DisplacementField(a, f.data + np.array([100.0, 0.0, 0.0], np.float32))
    b_aff = np.eye(4)
    b_aff[:3, 3] = [104.0, 4.0, 4.0]
    b = Grid((16, 16, 16), b_aff)
    inv = f.inverse(b)
    y = b.world_coords()
    assert np.abs(f.map(inv.map(y)) - y).max() < 1e-4  # a true inverse (measured 7.6e-6) ...
    assert np.abs(inv.data[..., 0]).min() > 99.5  # ... that moves every point back by ~100 mm (99.66)
    assert inv.report.max_mm < 1e-4  # measured 7.7e-6


def test_invert_cli_refuses_an_affine_as_nifti_and_no_iterations(tmp_path, capsys):
    """invert of an affine with -o X.nii.gz wrote ITK text under the .nii.gz name (no reader opens
    it), and --iterations -5 ran as 0 iterations; both exit 0."""
    aff = write_affine(AffineTransform.from_params((5, 0, 0), (0, 0, 0)), tmp_path / "a.txt")
    assert main(["invert", "-w", str(aff), "-o", str(tmp_path / "inv.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "name the output .txt or .mat" in err and not (tmp_path / "inv.nii.gz").exists()
    grid = Grid((8, 8, 8), np.eye(4))
    w = write_displacement(DisplacementField(grid, np.zeros((8, 8, 8, 3), np.float32)), tmp_path / "w.nii.gz")
    assert main(["invert", "-w", str(w), "-o", str(tmp_path / "winv.nii.gz"), "--iterations", "-5"]) == 2
    assert "--iterations -5" in capsys.readouterr().err and not (tmp_path / "winv.nii.gz").exists()
    assert main(["invert", "-w", str(aff), "-o", str(tmp_path / "inv.txt")]) == 0
