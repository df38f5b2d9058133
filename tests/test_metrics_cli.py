"""``spinereg metrics ...`` run in-process: JSON on stdout, -o JSON/CSV, exit codes 0 and 2."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.grid import Grid
from spinereg.metrics import CSV_COLUMNS
from spinereg.transforms import DisplacementField, write_displacement


def _save(path, data, aff=None):
    aff = np.diag([1.0, 1.0, 1.0, 1.0]) if aff is None else aff
    nib.save(nib.Nifti1Image(np.asarray(data), aff), str(path))
    return str(path)


@pytest.fixture
def masks(tmp_path):
    i, j, k = np.meshgrid(np.arange(20), np.arange(20), np.arange(30), indexing="ij")
    a = ((i - 9.5) ** 2 + (j - 9.5) ** 2 <= 16) & (k < 20)
    b = ((i - 11.5) ** 2 + (j - 9.5) ** 2 <= 16) & (k >= 10)   # shifted 2 mm in x
    return {
        "a": _save(tmp_path / "a.nii.gz", a.astype(np.uint8)),
        "b": _save(tmp_path / "b.nii.gz", b.astype(np.uint8)),
        "small": _save(tmp_path / "small.nii.gz", a[:, :, :25].astype(np.uint8)),
        "empty": _save(tmp_path / "empty.nii.gz", np.zeros((20, 20, 30), np.uint8)),
    }


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_dice_prints_json_and_writes_json_and_csv(capsys, tmp_path, masks):
    code, out, err = run(capsys, ["metrics", "dice", "-i", masks["a"], "-r", masks["a"]])
    assert code == 0 and json.loads(out)["dice"] == 1.0
    code, out, _ = run(capsys, ["metrics", "dice", "-i", masks["a"], "-r", masks["b"], "--zb",
                                "-o", str(tmp_path / "d.json")])
    assert code == 0
    d = json.loads(out)
    assert d["mode"] == "zb" and d["n_slices"] == 10
    assert json.loads((tmp_path / "d.json").read_text()) == d
    code, out, _ = run(capsys, ["metrics", "dice", "-i", masks["a"], "-r", masks["b"],
                                "-o", str(tmp_path / "d.csv")])
    assert code == 0
    whole = json.loads(out)["dice"]
    assert whole < d["dice"]
    with open(tmp_path / "d.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    by_q = {r["quantity"]: r for r in rows}
    assert float(by_q["dice"]["value"]) == pytest.approx(whole)
    assert by_q["volume_a_mm3"]["unit"] == "mm3" and by_q["dice"]["metric"] == "dice"


def test_existing_output_needs_overwrite(capsys, tmp_path, masks):
    out = tmp_path / "d.json"
    out.write_text("old")
    code, stdout, err = run(capsys, ["metrics", "dice", "-i", masks["a"], "-r", masks["b"], "-o", str(out)])
    assert code == 2 and "output exists" in err and "--overwrite" in err and stdout == ""
    assert out.read_text() == "old"
    code, _, _ = run(capsys, ["metrics", "dice", "-i", masks["a"], "-r", masks["b"], "-o", str(out),
                              "--overwrite"])
    assert code == 0 and json.loads(out.read_text())["metric"] == "dice"


def test_input_errors_exit_2_with_one_line(capsys, tmp_path, masks):
    code, out, err = run(capsys, ["metrics", "dice", "-i", masks["a"], "-r", masks["small"]])
    assert code == 2 and "a.nii.gz" in err and "small.nii.gz" in err and "spinereg apply" in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    code, _, err = run(capsys, ["metrics", "hausdorff", "-i", masks["a"], "-r", masks["empty"]])
    assert code == 2 and "empty" in err
    code, _, err = run(capsys, ["metrics", "labels", "-i", masks["a"], "-r", masks["empty"]])
    assert code == 2 and "no labels" in err
    code, _, err = run(capsys, ["metrics", "dice", "-i", masks["a"], "-r", masks["b"], "-o",
                                str(tmp_path / "x.txt")])
    assert code == 2 and ".json or .csv" in err
    code, _, err = run(capsys, ["metrics", "dice", "-i", str(tmp_path / "nope.nii.gz"), "-r", masks["b"]])
    assert code == 2 and "not found" in err
    assert main(["metrics"]) == 2  # usage error: one line, exit 2, no SystemExit out of main
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "METRIC" in err and "fix" in err


def test_hausdorff_centerline_labels(capsys, tmp_path, masks):
    code, out, _ = run(capsys, ["metrics", "hausdorff", "-i", masks["a"], "-r", masks["a"]])
    assert code == 0 and json.loads(out)["hausdorff_mm"] == 0.0
    code, out, _ = run(capsys, ["metrics", "centerline", "-i", masks["a"], "-r", masks["b"],
                                "-o", str(tmp_path / "c.csv")])
    assert code == 0
    c = json.loads(out)
    assert c["rms_mm"] == pytest.approx(2.0) and c["n_slices"] == 10 and c["n_outside"] == 10
    rows = list(csv.DictReader((tmp_path / "c.csv").read_text().splitlines()))
    per_slice = [r for r in rows if r["quantity"] == "slice_distance_mm"]
    assert [float(r["z_mm"]) for r in per_slice] == list(range(10, 20))
    la = np.zeros((20, 20, 30), np.uint8)
    lb = np.zeros((20, 20, 30), np.uint8)
    la[5, 5, 5], lb[5, 5, 8], lb[1, 1, 1] = 3, 3, 4
    fa, fb = _save(tmp_path / "la.nii.gz", la), _save(tmp_path / "lb.nii.gz", lb)
    code, out, _ = run(capsys, ["metrics", "labels", "-i", fa, "-r", fb])
    lab = json.loads(out)
    assert code == 0 and lab["max_mm"] == pytest.approx(3.0) and lab["only_in_b"] == [4]


def test_jacobian_and_inverse_consistency(capsys, tmp_path, masks):
    grid = Grid((20, 20, 30), np.eye(4))
    fwd = DisplacementField(grid, np.broadcast_to(np.float32([1, 0, 0]), (20, 20, 30, 3)).copy())
    inv = DisplacementField(grid, np.broadcast_to(np.float32([-1, 0, 0]), (20, 20, 30, 3)).copy())
    wrong = DisplacementField(grid, np.broadcast_to(np.float32([-0.75, 0, 0]), (20, 20, 30, 3)).copy())
    fw, iw, ww = (str(write_displacement(f, tmp_path / n)) for f, n in
                  ((fwd, "fwd.nii.gz"), (inv, "inv.nii.gz"), (wrong, "wrong.nii.gz")))
    code, out, _ = run(capsys, ["metrics", "jacobian", "-w", fw, "-m", masks["a"],
                                "--out-map", str(tmp_path / "jac")])
    assert code == 0
    j = json.loads(out)
    assert j["min"] == pytest.approx(1.0) and j["max"] == pytest.approx(1.0) and j["masked"]
    saved = nib.load(str(tmp_path / "jac.nii.gz"))
    assert saved.shape == (20, 20, 30) and np.allclose(saved.get_fdata(), 1.0)
    code, _, err = run(capsys, ["metrics", "jacobian", "-w", fw, "-m", masks["small"]])
    assert code == 2 and "spinereg apply" in err
    code, _, err = run(capsys, ["metrics", "jacobian", "-w", masks["a"]])
    assert code == 2 and "displacement field" in err
    code, out, _ = run(capsys, ["metrics", "inverse-consistency", "-w", fw, "-winv", iw])
    ic = json.loads(out)
    assert code == 0 and ic["forward"]["max_mm"] == pytest.approx(0.0, abs=1e-6)
    assert ic["backward"]["n_points"] == 19 * 20 * 30
    code, out, _ = run(capsys, ["metrics", "inverse-consistency", "-w", fw, "-winv", ww, "--one-way",
                                "-o", str(tmp_path / "ic.csv")])
    ic = json.loads(out)
    assert code == 0 and ic["forward"]["mean_mm"] == pytest.approx(0.25) and ic["backward"] is None
    rows = {r["quantity"]: r for r in csv.DictReader((tmp_path / "ic.csv").read_text().splitlines())}
    assert float(rows["forward_p95_mm"]["value"]) == pytest.approx(0.25)
    assert rows["forward_p95_mm"]["unit"] == "mm"


def test_real_data_cli(capsys, sct_data):
    t2 = sct_data / "t2"
    seg = str(t2 / "t2_seg-manual.nii.gz")
    code, out, _ = run(capsys, ["metrics", "dice", "-i", seg, "-r", seg, "--zb"])
    assert code == 0 and json.loads(out)["dice"] == 1.0
    code, out, _ = run(capsys, ["metrics", "jacobian", "-w", str(t2 / "warp_template2anat.nii.gz")])
    j = json.loads(out)
    assert code == 0 and j["min"] == pytest.approx(0.662, abs=0.003) and j["pct_nonpositive"] == 0.0  # measured 0.6623


def test_distance_metrics_refuse_an_intensity_image_or_point_labels(capsys, tmp_path, masks):
    """hausdorff / centerline / jacobian -m thresholded whatever they were given: an intensity image
    was a mask filling the field of view (t2.nii.gz against t2's cord: Hausdorff 36 mm, centerline
    RMS 1.5 mm; jacobian "masked": true over every voxel) and a point-label file a two-point mask
    (centerline RMS 1.05 mm), each exit 0."""
    rng = np.random.default_rng(0)
    img = _save(tmp_path / "img.nii.gz", rng.normal(500, 100, (20, 20, 30)).astype(np.float32))
    lab = np.zeros((20, 20, 30), np.uint8)
    lab[9, 9, 5], lab[9, 9, 15] = 3, 5
    lab = _save(tmp_path / "lab.nii.gz", lab)
    for metric in ("hausdorff", "centerline"):
        for bad, opt in ((["-i", img, "-r", masks["a"]], "-i"), (["-i", masks["a"], "-r", lab], "-r")):
            code, out, err = run(capsys, ["metrics", metric, *bad])
            assert code == 2 and out == "" and "not a mask" in err and f"({opt})" in err, (metric, err)
            assert len(err.strip().splitlines()) == 1
    grid = Grid((20, 20, 30), np.eye(4))
    fw = str(write_displacement(DisplacementField(grid, np.zeros((20, 20, 30, 3), np.float32)),
                                tmp_path / "fwd.nii.gz"))
    code, out, err = run(capsys, ["metrics", "jacobian", "-w", fw, "-m", img])
    assert code == 2 and out == "" and "not a mask" in err and "img.nii.gz" in err


def test_mask_stored_in_another_orientation_is_the_same_mask(capsys, tmp_path, masks):
    """dice / hausdorff / jacobian -m refused a mask stored with its voxel axes reordered and
    flipped (same voxel centres in world space: t2's cord as RAS against itself as PSR) with "not
    on the same grid"; now it is reordered and gives the same numbers."""
    img = nib.load(masks["a"])
    aff = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    aff[:3, 3] = (3.0, -2.0, 5.0)
    a = _save(tmp_path / "a2.nii.gz", np.asanyarray(img.dataobj), aff)
    # the same voxels stored IRP: axes permuted and two of them flipped, the affine to match
    data = np.asanyarray(nib.load(a).dataobj)
    a_img = nib.load(a)
    tr = nib.orientations.ornt_transform(nib.orientations.io_orientation(a_img.affine),
                                         nib.orientations.axcodes2ornt(("I", "R", "P")))
    t_aff = a_img.affine @ nib.orientations.inv_ornt_aff(tr, a_img.shape)
    turned = nib.orientations.apply_orientation(data, tr)
    b = _save(tmp_path / "a_turned.nii.gz", turned, t_aff)
    assert nib.load(b).shape != a_img.shape
    code, out, err = run(capsys, ["metrics", "dice", "-i", a, "-r", b])
    assert code == 0 and json.loads(out)["dice"] == 1.0, err
    code, out, err = run(capsys, ["metrics", "hausdorff", "-i", a, "-r", b])
    assert code == 0 and json.loads(out)["hausdorff_mm"] == 0.0, err
    grid = Grid((20, 20, 30), aff)
    fw = str(write_displacement(DisplacementField(grid, np.zeros((20, 20, 30, 3), np.float32)), tmp_path / "w.nii.gz"))
    code, out, err = run(capsys, ["metrics", "jacobian", "-w", fw, "-m", b])
    assert code == 0 and json.loads(out)["n_voxels"] == int((data > 0.5).sum()), err
    # a grid that is not a reordering is still refused
    code, _, err = run(capsys, ["metrics", "dice", "-i", a, "-r", masks["a"]])
    assert code == 2 and "not on the same grid" in err
