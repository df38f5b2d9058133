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
