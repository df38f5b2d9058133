"""``spinereg apply`` / ``concat``'s checks live in the library
(:mod:`spinereg.transforms.apply_checks`): a caller of :func:`apply_checked` / :func:`concat_checked`
gets the same refusals and warnings as the command line (before, they ran in the CLI modules only).

Synthetic files: a reference grid R (20 mm cube at the origin), a warp on R shifting by +40 mm
(warp_X2R: lives on R's grid) and a warp on a grid G (x from 15 mm) with no displacement.
Application order is [G-warp, R-warp] (the one on R's grid last); listed the other way round is
ANTs' order."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.transforms import DisplacementField, apply_checked, concat_checked, write_displacement


def _affine(x0: float) -> np.ndarray:
    a = np.eye(4)
    a[0, 3] = x0
    return a


@pytest.fixture
def files(tmp_path):
    ref_grid, g_grid = Grid((20, 20, 20), _affine(0.0)), Grid((56, 20, 20), _affine(15.0))
    shift = np.zeros((20, 20, 20, 3))
    shift[..., 0] = 40.0
    w_r = write_displacement(DisplacementField(ref_grid, shift), tmp_path / "warp_on_ref.nii.gz")
    w_g = write_displacement(DisplacementField(g_grid, np.zeros((56, 20, 20, 3))), tmp_path / "warp_on_g.nii.gz")
    ref = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.float32), ref_grid.affine), str(ref))
    labels = np.zeros((80, 20, 20), np.uint8)  # a label image over x 0..80 mm: levels 1..4, 10 mm slabs
    for k in range(4):
        labels[40 + 5 * k:45 + 5 * k, 5:15, 5:15] = k + 1
    src = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(src))
    return {"src": src, "ref": ref, "w_r": w_r, "w_g": w_g, "tmp": tmp_path}


def test_apply_checked_returns_the_ants_order_and_interp_warnings(files):
    f = files
    res = apply_checked(f["src"], f["ref"], [f["w_r"], f["w_g"]], f["tmp"] / "ants", interp="linear")
    assert res.path == f["tmp"] / "ants.nii.gz" and res.path.is_file()  # .nii.gz added, as the CLI
    assert len(res.warnings) == 2, res.warnings
    assert "look listed in ANTs' order" in res.warnings[0] and str(f["w_r"]) in res.warnings[0]
    assert "looks like a label image" in res.warnings[1] and "-x nn" in res.warnings[1]
    assert res.all_zero is False
    # application order and nn: nothing to say
    res = apply_checked(f["src"], f["ref"], [f["w_g"], f["w_r"]], f["tmp"] / "app.nii.gz", interp="nn")
    assert res.warnings == [] and res.all_zero is False
    out = np.asanyarray(nib.load(str(res.path)).dataobj)
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}


def test_cli_prints_the_library_warnings(files, capsys):
    f = files
    res = apply_checked(f["src"], f["ref"], [f["w_r"], f["w_g"]], f["tmp"] / "lib.nii.gz", interp="spline")
    assert main(["apply", "-i", str(f["src"]), "-d", str(f["ref"]), "-w", str(f["w_r"]), str(f["w_g"]),
                 "-o", str(f["tmp"] / "cli.nii.gz")]) == 0
    out, err = capsys.readouterr()
    assert err == "".join(f"spinereg apply: warning: {w}\n" for w in res.warnings)
    assert out == f"{f['tmp'] / 'cli.nii.gz'}\n"
    assert np.array_equal(np.asanyarray(nib.load(str(res.path)).dataobj),
                          np.asanyarray(nib.load(str(f["tmp"] / "cli.nii.gz")).dataobj))


def test_apply_checked_refuses_before_any_work(files):
    f = files
    far = f["tmp"] / "far.nii.gz"  # a reference 500 mm away: no common extent
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.float32), _affine(500.0)), str(far))
    with pytest.raises(InputError, match="no common extent"):
        apply_checked(f["src"], far, [], f["tmp"] / "none.nii.gz")
    assert not (f["tmp"] / "none.nii.gz").exists()


def test_concat_checked_returns_the_ants_order_warning(files):
    f = files
    res = concat_checked(f["ref"], [f["w_r"], f["w_g"]], f["tmp"] / "w_ants")
    assert res.path == f["tmp"] / "w_ants.nii.gz" and res.path.is_file()
    assert len(res.warnings) == 1 and "look listed in ANTs' order" in res.warnings[0]
    res = concat_checked(f["ref"], [f["w_g"], f["w_r"]], f["tmp"] / "w_app.nii.gz")
    assert res.warnings == []
    with pytest.raises(InputError, match="no transform given"):
        concat_checked(f["ref"], [], f["tmp"] / "w_none.nii.gz")
    with pytest.raises(InputError, match="holds a displacement field"):
        concat_checked(f["ref"], [f["w_g"]], f["tmp"] / "w.txt")
