"""``spinereg invert``'s last check (cli/invert.py, transforms.sanity.inverse_defined_fraction):
an inverse that leaves the points where it is defined unmoved is refused, exit 3. The solver bug it
guarded (an all-zero field with "residual 0" for ``invert warp_anat2template -d t2``) was fixed in
305fd5d, so the check is exercised here with that bug's output put back; it costs 3-9 ms of a
4.5-5.2 s invert (session 38)."""

from __future__ import annotations

import numpy as np

from spinereg.cli.main import main
from spinereg.transforms.displacement import DisplacementField


def test_invert_refuses_an_identity_passed_off_as_the_inverse(monkeypatch, capsys, tmp_path, sct_data):
    def zero_inverse(self, grid=None, iterations=50, tol_mm=1e-3):
        g = self.grid if grid is None else grid
        return DisplacementField(g, np.zeros(tuple(g.shape) + (3,), np.float32))

    monkeypatch.setattr(DisplacementField, "inverse", zero_inverse)
    out = tmp_path / "inv.nii.gz"
    rc = main(["invert", "-w", str(sct_data / "t2" / "warp_template2anat.nii.gz"),
               "-d", str(sct_data / "template" / "template" / "PAM50_small_cord.nii.gz"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "FAIL" in err and "unmoved" in err and "inv:WARP" in err, err


def _stretch_field(tmp_path):
    """z -> 1.5 z + 30 mm on a 40 mm grid: the pre-images of the grid's top 10 mm lie at its bottom,
    but the plain fixed point v = -u(y + v) started at -u(y) jumps off the grid (u = 0 there) and
    back, never settling: it stops at 0 or -u(y) by the parity of --iterations."""
    from spinereg.io import Grid
    from spinereg.transforms.itk import write_displacement

    data = np.zeros((40, 40, 40, 3), np.float32)
    data[..., 2] = 30 + 0.5 * np.arange(40, dtype=np.float32)
    return write_displacement(DisplacementField(Grid((40, 40, 40), np.eye(4)), data), tmp_path / "stretch.nii.gz")


def test_invert_refuses_a_fixed_point_that_never_settled(capsys, tmp_path):
    """With --iterations 49 the unsettled points ended at v = 0: still on the grid, so counted as
    'defined', exit 0 with a mean residual of 40 mm (before session 39). Now a point counts only if
    the warp maps its inverse back within a voxel: exit 3, whatever the parity."""
    import nibabel as nib

    w = _stretch_field(tmp_path)
    own = tmp_path / "own_grid.nii.gz"  # -d on the warp's own grid: past the no -d check below
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 40), np.float32), np.eye(4)), str(own))
    for it in ("49", "50"):
        rc = main(["invert", "-w", str(w), "-d", str(own), "-o", str(tmp_path / f"inv{it}.nii.gz"),
                   "--iterations", it])
        err = capsys.readouterr().err
        assert rc == 3 and "FAIL" in err and "off their pre-image" in err, (it, err)


def test_invert_without_dest_refuses_a_warp_between_two_spaces(capsys, tmp_path, monkeypatch):
    """No -d: the inverse is sampled on the warp's own grid. ``invert -w warp_anat2template`` (from
    register-to-template on SCT's t2) solved for 2 min and wrote an 'inverse' with a mean residual of
    116 mm, exit 0: the warp maps only 31% of its (PAM50) grid near itself, the inverse is undefined
    on the rest. Now refused before the work (exit 2, '-d A'); the stretch field maps 29%."""
    from helpers import folder_listing

    w = _stretch_field(tmp_path)
    solved = []
    monkeypatch.setattr(DisplacementField, "inverse", lambda *a, **k: solved.append(1))
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["invert", "-w", str(w), "-o", str(out / "inv.nii.gz")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "undefined on most of the warp's own grid" in err and "-d A" in err and "stretch.nii.gz" in err, err
    assert not solved and folder_listing(out) == set()
