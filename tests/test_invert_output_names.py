"""``spinereg invert -o``: the output name is checked against the kind of inverse before the work.

Before session 39, ``invert -w WARP -o inv.txt`` (or ``.mat``, ``.h5``, or ``-o inv`` without a
suffix) solved the whole inverse (2 minutes for a PAM50-grid warp) and then ended on
``internal error (ImageFileError: Cannot work out file type ...)``; an affine's inverse given
``-o inv`` or ``-o inv.h5`` was ITK text written under that name, exit 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import folder_listing
from spinereg.cli.main import main
from spinereg.io import Grid
from spinereg.transforms import AffineTransform, write_affine
from spinereg.transforms.displacement import DisplacementField
from spinereg.transforms.itk import read_affine, read_displacement, write_displacement


@pytest.fixture
def files(tmp_path):
    grid = Grid((10, 10, 10), np.eye(4))
    data = np.zeros((10, 10, 10, 3), np.float32)
    data[..., 0] = 1.5
    w = write_displacement(DisplacementField(grid, data), tmp_path / "in" / "w.nii.gz")
    a = write_affine(AffineTransform.from_params((0, 0, 0), (5, 0, 0)), tmp_path / "in" / "a.txt")
    out = tmp_path / "out"
    out.mkdir()
    return w, a, out


@pytest.mark.parametrize("name", ["inv.txt", "inv.mat", "inv.tfm", "inv.h5"])
def test_warp_inverse_named_as_affine_refused_before_the_work(files, capsys, monkeypatch, name):
    w, _, out = files
    solved = []
    monkeypatch.setattr(DisplacementField, "inverse", lambda *a, **k: solved.append(1))
    rc = main(["invert", "-w", str(w), "-o", str(out / name)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "internal error" not in err, err
    assert "displacement field" in err and "inv.nii.gz" in err and name in err, err
    assert not solved and folder_listing(out) == set()


def test_warp_inverse_without_suffix_gets_nii_gz(files, capsys):
    w, _, out = files
    assert main(["invert", "-w", str(w), "-o", str(out / "inv")]) == 0, capsys.readouterr().err
    assert folder_listing(out) == {"inv.nii.gz"}
    assert np.allclose(read_displacement(out / "inv.nii.gz").data[3:-3, 3:-3, 3:-3, 0], -1.5, atol=1e-3)


@pytest.mark.parametrize("name", ["inv", "inv.h5"])
def test_affine_inverse_needs_an_affine_name(files, capsys, name):
    _, a, out = files
    rc = main(["invert", "-w", str(a), "-o", str(out / name)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and ".txt or .mat" in err, err
    assert folder_listing(out) == set()
    assert main(["invert", "-w", str(a), "-o", str(out / "inv.txt")]) == 0
    assert np.allclose(read_affine(out / "inv.txt").matrix[:3, 3], [-5, 0, 0])
