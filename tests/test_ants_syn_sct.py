"""ANTs SyN / BSplineSyN steps against SCT's own mt0 -> mt1 reference (session 50).

sct_testing_data/mt holds SCT's results of ``sct_register_multimodal -i mt0 -d mt1 -x linear``
with ``-param step=1,algo=syn,type=im,iter=1,smooth=1,shrink=2,metric=MI``
(mt0_reg_syn_goldstandard, SCT's testing/cli/test_cli_sct_register_multimodal.py). Two faults
of the 3D ANTs steps (register/ants_steps.py) showed there:

* ``shrink`` > 1: ANTs writes the warp of its last level, on the shrunk grid (20 x 20 x 5 for
  mt1's 40 x 40 x 5); it was laid on the full grid as is: ValueError, the run failed (the same
  for ``template_fast``'s bsplinesyn shrink=2 step, and for ``slicewise=1`` 2D stages). The warp
  is now interpolated onto the full grid as antsApplyTransforms does.
* SyN holds its field at zero on the border of its domain. SCT pads the destination with 5
  empty slices at both ends (sct_register_multimodal -z 5, "because ants doesn't deform the
  extremities"); spinereg did not, so on mt1's 5 slices the first and last did not move: NCC of
  our result with SCT's per slice 0.900 / 0.990 / 0.988 / 0.989 / 0.872; now 0.9995 / 0.9979 /
  0.9966 / 0.9963 / 0.9995.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

pytestmark = pytest.mark.realdata

#: SCT's test steps, with its sct_register_multimodal -z 5 default as spinereg's step key pad=5
SCT_SYN = "step=1,algo=syn,type=im,iter=1,smooth=1,shrink=2,metric=MI,pad=5"


def _cord(mt):
    s1 = nib.load(mt / "mt1_seg.nii.gz").get_fdata() > 0.5
    return ndimage.binary_dilation(s1, np.ones((3, 3, 1), bool), iterations=3)


def _ncc(a, b, m):
    return float(np.corrcoef(a[m], b[m])[0, 1])


def test_sct_syn_param_mt0_to_mt1_matches_sct_goldstandard(sct_data, tmp_path):
    from spinereg.cli.main import main

    mt = sct_data / "mt"
    rc = main(["register", "-i", str(mt / "mt0.nii.gz"), "-d", str(mt / "mt1.nii.gz"), "-o", str(tmp_path / "r"),
               "-x", "linear", "--param", SCT_SYN, "--allow-fail"])
    assert rc == 0  # before: internal error (field shape (20, 20, 5, 3) does not match grid)
    ours = nib.load(tmp_path / "r" / "mt0_reg.nii.gz").get_fdata()
    gold = nib.load(mt / "mt0_reg_syn_goldstandard.nii.gz").get_fdata()
    mt1 = nib.load(mt / "mt1.nii.gz").get_fdata()
    cord = _cord(mt)
    per_slice = [_ncc(ours[..., k], gold[..., k], cord[..., k]) for k in range(5)]
    # measured 0.9995 / 0.9979 / 0.9966 / 0.9963 / 0.9995 (without SCT's padding: 0.900 ... 0.872)
    assert min(per_slice) > 0.995, per_slice
    assert _ncc(ours, gold, cord) > 0.996  # measured 0.9975 (unpadded 0.9631)
    # the images' NCC in the cord: ours 0.8751 (unpadded 0.8268), SCT's 0.8805, before 0.6795
    assert _ncc(ours, mt1, cord) == pytest.approx(0.8751, abs=0.01)
    assert _ncc(ours, mt1, cord) > _ncc(gold, mt1, cord) - 0.01


def test_sct_default_syn_preset_mt0_to_mt1(sct_data, tmp_path):
    """multimodal_default (SCT's default: SyN MeanSquares, 10 iterations): the end slices move too."""
    from spinereg.cli.main import main

    mt = sct_data / "mt"
    rc = main(["register", "-i", str(mt / "mt0.nii.gz"), "-d", str(mt / "mt1.nii.gz"), "-o", str(tmp_path / "r"),
               "-x", "linear", "--param", "multimodal_default", "--allow-fail"])
    assert rc == 0
    ours = nib.load(tmp_path / "r" / "mt0_reg.nii.gz").get_fdata()
    mt1 = nib.load(mt / "mt1.nii.gz").get_fdata()
    # measured 0.9215 (before the padding 0.8190; SCT's slicereg goldstandard 0.9220)
    assert _ncc(ours, mt1, _cord(mt)) == pytest.approx(0.9215, abs=0.01)


def _ellipses(shift_per_slice):
    """The ellipse pair of tests/test_ants_steps.py (one definition)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_ants_steps import _ellipses as ellipses

    return ellipses(shift_per_slice)


@pytest.mark.parametrize("param,measured", [
    ("step=1,type=seg,algo=syn,iter=20,pad=5", 0.9685),
    ("step=1,type=seg,algo=syn,iter=20", 0.812),  # unpadded (the default): end slices held still
    ("step=1,type=seg,algo=bsplinesyn,iter=20,pad=5", 0.9988),  # 0.866 unpadded
    ("step=1,type=seg,algo=syn,iter=20,shrink=2,pad=5", 0.9598),  # ValueError before
    ("step=1,type=seg,algo=bsplinesyn,iter=20,shrink=2,pad=5", 0.8605),  # ValueError before
    ("step=1,type=seg,algo=syn,slicewise=1,iter=20,shrink=2", 0.9494),  # ValueError before (2D warp)
])
def test_ants_syn_padding_and_shrink_on_ellipses(param, measured):
    from spinereg.io import Image
    from spinereg.register.ants_steps import ants_step
    from spinereg.register.steps import parse_step
    from spinereg.transforms import apply_transforms

    g, fixed, moving = _ellipses([1, 2, 3, 2, 1, 0])
    t = ants_step(fixed, moving, g, parse_step(param))
    out = apply_transforms(Image(moving, g.affine), g, [t], "linear").data
    a, b = out > 0.5, fixed > 0.5
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice == pytest.approx(measured, abs=0.01)


def test_slicewise_shrink_warp_keeps_its_geometry():
    """The 2D shrunk warp is read with its own origin (half a coarse voxel in): a constant shift
    estimated at shrink=2 is the same at the full grid's voxels."""
    from spinereg.register.ants_steps import _upsample_2d

    w = np.zeros((20, 20, 2), np.float32)
    w[..., 0] = np.arange(20)[:, None] * 1.6 + 0.4  # LPS x of each coarse node: a linear field
    aff = np.array([[-1.6, 0, 0, -0.4], [0, -1.6, 0, -0.4], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    up = _upsample_2d(w, aff, 40, 40, np.array([0.8, 0.8, 5.0]))
    x = np.arange(40) * 0.8
    inner = slice(1, 39)  # beyond the outer coarse nodes: their value (as ITK)
    np.testing.assert_allclose(up[inner, 5, 0], x[inner], atol=1e-5)
    assert up[0, 5, 0] == pytest.approx(0.4) and up[39, 5, 0] == pytest.approx(30.8)


def test_template_fast_preset_runs(sct_data, tmp_path):
    """template_fast's bsplinesyn shrink=2 step raised ValueError (field (19, 17, 42, 3) on the
    (39, 34, 42) grid) before; cord Dice in subject space now 0.9366 (template_default 0.9687)."""
    from spinereg.pipelines.template_outputs import write_outputs
    from spinereg.register.template import register_to_template

    t2 = sct_data / "t2"
    reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz",
                               template="PAM50_small", param="template_fast")
    write_outputs(reg, tmp_path)
    assert reg.metrics["cord_dice_subject_space"] == pytest.approx(0.9366, abs=0.01)
