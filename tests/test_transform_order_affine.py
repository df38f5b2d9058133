"""An affine listed after a warp on the reference's grid: ``antsRegistration``'s outputs copied in
the order ``antsApplyTransforms -t`` takes them (``-w 1Warp.nii.gz 0GenericAffine.mat``), where
spinereg's application order is ``0GenericAffine.mat 1Warp.nii.gz``. The two-warp rule of
``transforms.sanity.order_warning`` did not see it (one field only): before session 40 the cord
below landed with Dice 0.02 instead of 0.95, exit 0, no word.

The case: PAM50_small's cord moved into a space Y by a known rigid affine A (8 deg about its
centre, 3 / -4 / 6 mm), so that A then SCT's ``t2/warp_template2anat`` (on t2's grid) brings it
onto t2; truth is t2's manual segmentation, which no step used."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image, save_image
from spinereg.transforms import apply_transforms
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.itk import load_transform, write_affine
from spinereg.transforms.sanity import ORDER_AFFINE_MM, order_warning

pytestmark = pytest.mark.realdata


def _rigid(centre: np.ndarray, deg: float, shift: tuple[float, float, float]) -> AffineTransform:
    a = np.radians(deg)
    r = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, centre - r @ centre + np.asarray(shift)
    return AffineTransform(m)


def _case(sct_data, deg: float, shift: tuple[float, float, float]):
    cord = load_image(sct_data / "template" / "template" / "PAM50_small_cord.nii.gz")
    warp = load_transform(sct_data / "t2" / "warp_template2anat.nii.gz")
    centre = cord.grid.voxel_to_world((np.array(cord.shape) - 1)[None] / 2)[0]
    a = _rigid(centre, deg, shift)
    moved = apply_transforms(cord, cord.grid, [AffineTransform(np.linalg.inv(a.matrix))], "linear")
    return moved, a, warp


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_affine_after_warp_is_warned(sct_data, tmp_path, capsys):
    moved, a, _ = _case(sct_data, 8.0, (3.0, -4.0, 6.0))
    src = save_image(moved, tmp_path / "cord_in_y.nii.gz")
    aff = write_affine(a, tmp_path / "0GenericAffine.txt")
    warp = sct_data / "t2" / "warp_template2anat.nii.gz"
    t2, seg = sct_data / "t2" / "t2.nii.gz", load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    dice = {}
    for name, ws in (("application", [aff, warp]), ("ants", [warp, aff])):
        out = tmp_path / f"{name}.nii.gz"
        assert main(["apply", "-i", str(src), "-d", str(t2), "-w", *map(str, ws), "-x", "linear", "-o", str(out)]) == 0
        err = capsys.readouterr().err
        assert ("look listed in ANTs' order" in err) is (name == "ants"), err
        dice[name] = _dice(load_image(out).data, seg.data)
    assert dice["application"] >= 0.945, dice  # measured 0.953
    assert dice["ants"] <= 0.03, dice  # measured 0.022
    # concat says it too
    assert main(["concat", "-d", str(t2), "-w", str(warp), str(aff), "-o", str(tmp_path / "w.nii.gz")]) == 0
    assert "comes last" in capsys.readouterr().err


def test_order_that_hardly_matters_is_not_warned(sct_data):
    """A 0.5 mm translation commutes with the smooth warp: either order lands the cord alike
    (Dice 0.954 / 0.950), so nothing is said."""
    _, a, warp = _case(sct_data, 0.0, (0.5, 0.0, 0.0))
    grid = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz").grid
    assert order_warning(grid, [warp, a], ["warp", "affine"]) is None
    assert order_warning(grid, [a, warp], ["affine", "warp"]) is None
    _, a8, _ = _case(sct_data, 8.0, (3.0, -4.0, 6.0))
    w = order_warning(grid, [warp, a8], ["warp", "affine"])
    assert w is not None and "move by" in w and ORDER_AFFINE_MM == 1.0
