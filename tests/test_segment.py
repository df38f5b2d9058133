"""spinereg segment: working grid, input handling, bad input, the shipped models (fast tests)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from helpers import ORIENTATIONS, folder_listing, orientation_id, reoriented, rotated_grid
from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.segment import model_summary, segment
from spinereg.segment.inputs import load_volume
from spinereg.segment.model import get_model, models_dir
from spinereg.segment.workgrid import sample_to_work, work_to_input, working_grid


def _grid(shape, zooms, origin=None) -> Grid:
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = origin if origin is not None else -(np.array(shape) - 1) / 2 * np.array(zooms)
    return Grid(shape, aff)


def _ellipse_mask(grid: Grid, a=4.5, b=3.2, slope=(0.15, -0.1)) -> np.ndarray:
    """A tilted elliptic cylinder (binary) on ``grid``, defined in world coordinates."""
    p = grid.world_coords()
    x = p[:, 0] - slope[0] * p[:, 2] - 1.3
    y = p[:, 1] - slope[1] * p[:, 2] + 0.7
    return (((x / a) ** 2 + (y / b) ** 2) <= 1).reshape(grid.shape).astype(np.float32)


# -- working grid -----------------------------------------------------------------------------
@pytest.mark.parametrize("o", ORIENTATIONS, ids=orientation_id)
@pytest.mark.parametrize("oblique", [False, True])
def test_working_grid_does_not_depend_on_voxel_order(o, oblique):
    g = _grid((30, 26, 12), (0.8, 0.9, 4.0))
    if oblique:  # a thick oblique stack: the working slices are its own planes
        g = rotated_grid(g, (20.0, -12.0, 7.0))
    img = Image(np.zeros(g.shape, np.float32), g.affine)
    ref = working_grid(g, 0.5)
    other = working_grid(reoriented(img, *o).grid, 0.5)
    assert (other.nx, other.ny, other.nz) == (ref.nx, ref.ny, ref.nz)
    assert np.allclose(other.affine(), ref.affine())


@pytest.mark.parametrize("case", ["axial_thick", "sagittal_1mm", "oblique_25deg", "sagittal_thick",
                                  "oblique_thick_axial"])
def test_work_grid_round_trip_preserves_a_mask(case):
    """Sampling onto the working grid and averaging back over voxel footprints returns the mask."""
    g = {"axial_thick": _grid((40, 40, 8), (0.6, 0.6, 5.0)),
         "sagittal_1mm": _grid((20, 40, 40), (1.0, 1.0, 1.0)),
         "oblique_25deg": rotated_grid(_grid((36, 36, 30), (0.9, 0.9, 1.2)), (25.0, 10.0, -5.0)),
         "sagittal_thick": _grid((8, 60, 60), (3.0, 0.5, 0.5)),
         "oblique_thick_axial": rotated_grid(_grid((40, 40, 8), (0.6, 0.6, 5.0)), (25.0, -10.0, 30.0))}[case]
    mask = _ellipse_mask(g)
    wg = working_grid(g, 0.5)
    work, inside = sample_to_work(mask, g, wg)
    back = work_to_input(work, wg, g)
    out = back >= 0.5
    # voxels of the field of view's outer shell see outside pixels: compare the interior
    core = np.zeros(g.shape, bool)
    core[1:-1, 1:-1, 1:-1] = True
    m = mask > 0
    dice = 2 * (out & m & core).sum() / ((out & core).sum() + (m & core).sum())
    assert dice >= 0.995, dice  # measured 1.000 in all five cases
    assert inside.any()


# -- inputs ---------------------------------------------------------------------------------------
def test_4d_mean_and_dwi_mean(tmp_path):
    g = _grid((10, 10, 4), (1.0, 1.0, 3.0))
    data = np.stack([np.full(g.shape, v, np.float32) for v in (100, 10, 20, 30)], axis=-1)
    data[0, 0, 0] = 0  # not constant
    img = Image(data, g.affine)
    vol, what = load_volume(img)
    assert np.isclose(vol.data[5, 5, 1], 40.0) and "mean of its 4 volumes" in what
    vol, what = load_volume(img, np.array([0, 800, 800, 800]))
    assert np.isclose(vol.data[5, 5, 1], 20.0) and "3 diffusion-weighted" in what
    bv = tmp_path / "bvals"
    bv.write_text("0 800 800\n")
    with pytest.raises(InputError, match="3 b-values for 4 volumes"):
        load_volume(img, bv)


@pytest.mark.parametrize("kind", ["empty", "constant", "2d", "5d"])
def test_bad_input_one_line_exit_2_no_output(tmp_path, capsys, kind):
    g = _grid((16, 16, 6), (1.0, 1.0, 2.0))
    if kind == "empty":
        nimg = nib.Nifti1Image(np.zeros(g.shape, np.float32), g.affine)
    elif kind == "constant":
        nimg = nib.Nifti1Image(np.full(g.shape, 7.0, np.float32), g.affine)
    elif kind == "2d":
        nimg = nib.Nifti1Image(np.random.default_rng(0).random((16, 16)).astype(np.float32), g.affine)
    else:
        # (x, y, z, 1, t) is a series stored 5D (read as 4D); two non-singleton trailing axes are not
        nimg = nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 6, 2, 3)).astype(np.float32), g.affine)
    path = tmp_path / "img.nii.gz"
    nib.save(nimg, str(path))
    before = folder_listing(tmp_path)
    rc = main(["segment", "-i", str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "fix:" in lines[0]
    assert {"empty": "empty", "constant": "constant", "2d": "2D", "5d": "5D"}[kind] in lines[0]
    assert folder_listing(tmp_path) == before


NOISE_GEOMETRIES = {"stack": ((64, 64, 20), (0.8, 0.8, 2.0)), "thick": ((40, 40, 5), (0.84, 0.84, 17.0)),
                    "wide": ((160, 160, 12), (1.0, 1.0, 4.0)), "single": ((64, 64, 1), (0.5, 0.5, 5.0))}


@pytest.mark.parametrize("geometry", sorted(NOISE_GEOMETRIES))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("kind", ["white_noise", "smooth_noise"])
def test_noise_image_has_no_cord(seed, kind, geometry):
    """A noise image must raise InputError ('no spinal cord found'), never return a mask."""
    from scipy import ndimage

    shape, zooms = NOISE_GEOMETRIES[geometry]
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape).astype(np.float32)
    if kind == "smooth_noise":
        data = ndimage.gaussian_filter(data, 2.0)
    data = np.abs(data) * 100
    with pytest.raises(InputError, match="no spinal cord found"):
        segment(Image(data, np.diag([*zooms, 1.0])))


# -- shipped models -------------------------------------------------------------------------------
def test_models_ship_small_with_provenance():
    summary = model_summary()
    assert set(summary) == {"fine", "locate"}
    total = 0
    for role in summary:
        m = get_model(role)
        total += m.size_bytes
        assert m.size_bytes <= 2 * 1024 * 1024, (role, m.size_bytes)
        tr = m.info["training"]
        assert tr["seeds"] and tr["data"] and tr["provenance"], role
        prov = json.loads((models_dir() / tr["provenance"]).read_text())
        assert prov["training_images"]["real_subject_images"] == []
        assert prov["generator"]["template_files"]
    assert total <= 5 * 1024 * 1024


def test_cli_output_names_and_soft(tmp_path, capsys, sct_data):
    src = sct_data / "mt" / "mt1.nii.gz"
    img = tmp_path / "mt1.nii.gz"
    img.write_bytes(src.read_bytes())
    rc = main(["segment", "-i", str(img), "-c", "mt", "--soft"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    out = json.loads(cap.out)
    assert out["files"]["seg"] == str(tmp_path / "mt1_seg.nii.gz")
    assert out["files"]["soft"] == str(tmp_path / "mt1_seg_soft.nii.gz")
    seg = nib.load(out["files"]["seg"])
    assert seg.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(seg.dataobj))) == {0, 1}
    assert np.allclose(seg.affine, nib.load(str(img)).affine)
    soft = np.asarray(nib.load(out["files"]["soft"]).dataobj)
    assert soft.min() >= 0 and soft.max() <= 1
    assert np.array_equal(soft >= 0.5, np.asarray(seg.dataobj) > 0)
    # exists without --overwrite: exit 2, nothing changed
    rc = main(["segment", "-i", str(img)])
    assert rc == 2 and "exists" in capsys.readouterr().err


def test_cli_qc_page(tmp_path, capsys, sct_data):
    """--qc adds a 'segment' entry (axial mosaic without/with the outline, sagittal view) to the
    HTML report and leaves no hidden provenance folder behind."""
    img = tmp_path / "mt1.nii.gz"
    img.write_bytes((sct_data / "mt" / "mt1.nii.gz").read_bytes())
    qc = tmp_path / "qc"
    rc = main(["segment", "-i", str(img), "--qc", str(qc)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert json.loads(cap.out)["files"]["qc_report"] == str(qc / "index.html")
    entries = json.loads((qc / "entries.json").read_text())["entries"]
    assert [e["command"] for e in entries] == ["segment"]
    panels = entries[0]["panels"]
    assert [p["kind"] for p in panels] == ["toggle", "single"] and panels[0]["stage"] == "segmentation"
    for p in panels:
        for f in p["files"].values():
            assert (qc / f).stat().st_size > 1000
    assert sorted(x.name for x in tmp_path.iterdir()) == ["mt1.nii.gz", "mt1_seg.nii.gz", "qc"]
