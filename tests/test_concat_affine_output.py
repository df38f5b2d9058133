"""``spinereg concat -o NAME.txt/.mat``: the composition written as an affine when every transform
is one; a composition holding a displacement field is refused (exit 2, one line naming the output
and the fix, nothing written). Before session 38 ``-o w.txt`` wrote the field to ``w.txt.nii.gz``
(exit 0), and an affine-only chain too (a field, not the .txt asked for)."""

from __future__ import annotations

import numpy as np

from helpers import folder_listing
from spinereg.cli.main import main
from spinereg.io.image import read_grid
from spinereg.transforms import AffineTransform, write_affine
from spinereg.transforms.itk import read_affine, read_displacement


def _run(capsys, argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_concat_field_into_affine_name_refused(capsys, tmp_path, sct_data):
    t2 = sct_data / "t2" / "t2.nii.gz"
    aff = write_affine(AffineTransform.from_params(translation=(1.5, -2.0, 3.0)), tmp_path / "aff.txt")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("w.txt", "w.mat"):
        rc, _, err = _run(capsys, ["concat", "-d", t2, "-w", aff, sct_data / "t2" / "warp_template2anat.nii.gz",
                                   "-o", out / name])
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert name in lines[0] and "fix" in lines[0] and ".nii.gz" in lines[0], lines[0]
        assert "warp_template2anat.nii.gz" in lines[0], lines[0]
    assert folder_listing(out) == set()  # no output, no temporary file


def test_concat_affines_into_affine_name(capsys, tmp_path, sct_data):
    t2 = sct_data / "t2" / "t2.nii.gz"
    a = AffineTransform.from_params(rotation_deg=(0, 0, 4), translation=(1.5, -2.0, 3.0))
    b = AffineTransform.from_params(rotation_deg=(3, 0, 0), scale=(1.0, 1.1, 1.0), translation=(0.0, 1.0, 0.0))
    fa, fb = write_affine(a, tmp_path / "a.txt"), write_affine(b, tmp_path / "b.mat")
    for name in ("ab.txt", "ab.mat"):
        rc, out, err = _run(capsys, ["concat", "-d", t2, "-w", fa, fb, "-o", tmp_path / name])
        assert rc == 0, err
        assert out.strip() == str(tmp_path / name)
        assert not (tmp_path / f"{name}.nii.gz").exists()
        got = read_affine(tmp_path / name).matrix
        np.testing.assert_allclose(got, (a @ b).matrix, atol=1e-9)
    # the same mapping as the field concat writes for the same chain
    rc, _, err = _run(capsys, ["concat", "-d", t2, "-w", fa, fb, "-o", tmp_path / "ab.nii.gz"])
    assert rc == 0, err
    field = read_displacement(tmp_path / "ab.nii.gz")
    grid = read_grid(t2)
    pts = grid.voxel_to_world(np.argwhere(np.ones(grid.shape[:3], bool))[::97])
    np.testing.assert_allclose(field.map(pts), read_affine(tmp_path / "ab.txt").map(pts), atol=1e-3)
