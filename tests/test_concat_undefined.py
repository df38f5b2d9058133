"""``spinereg concat`` through SCT warps that hold their 'no value' marker (FLT_MAX).

SCT's ``mt/warp_template2mt`` is undefined (3.4e38) on mt1's slices 0 and 4, ``mt/warp_t22mt1`` on
its last row. ``apply`` of those warps gives 0 there; ``concat`` wrote the undefined voxels of the
composition as 0, the identity, so applying the concatenated warp read the input at the
reference's own coordinates: 59 and 62 template cord voxels on slices 0 and 4 (before session 49).
References here do not come from spinereg's composition: the warp itself applied (checked against a
scipy resampling of the ITK field, max |diff| 7e-5, in session 49) and SCT's marker in the file."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image
from spinereg.transforms import itk

pytestmark = pytest.mark.realdata

_AFFINE = """#Insight Transform File V1.0
#Transform 0
Transform: AffineTransform_double_3_3
Parameters: 0.98106026219040687 -0.17364817766693033 0.085831651177431273 0.17298739392508944 \
0.98480775301220802 0.01513443590133862 -0.087155742747658166 0 0.99619469809174555 2 -3 4
FixedParameters: 1 -5 10
"""


def _run(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 0, err


def test_concat_keeps_sct_undefined_slices(sct_data, tmp_path, capsys):
    mt, tpl = sct_data / "mt", sct_data / "template" / "template"
    cat = tmp_path / "cat.nii.gz"
    _run(["concat", "-d", str(mt / "mt1.nii.gz"), "-w", str(mt / "warp_template2mt.nii.gz"), "-o", str(cat)], capsys)
    outs = {}
    for name, w in (("direct", mt / "warp_template2mt.nii.gz"), ("concat", cat)):
        o = tmp_path / f"{name}.nii.gz"
        _run(["apply", "-i", str(tpl / "PAM50_small_cord.nii.gz"), "-d", str(mt / "mt1.nii.gz"), "-w", str(w),
              "-o", str(o), "-x", "nn"], capsys)
        outs[name] = load_image(o).data
    per_slice = outs["concat"].sum(axis=(0, 1))
    # measured: [0, 100, 103, 111, 0] both ways (concat gave [59, 100, 103, 111, 62] before session 49)
    assert per_slice[0] == 0 and per_slice[4] == 0, per_slice
    np.testing.assert_array_equal(per_slice, [0, 100, 103, 111, 0])
    np.testing.assert_array_equal(outs["concat"], outs["direct"])
    # the file holds SCT's marker where the warp was undefined, read back as undefined, from this
    # process's memory and from disk alike
    mem = itk.read_displacement(cat).data
    itk._WRITTEN.clear()
    field = itk.read_displacement(cat)
    np.testing.assert_array_equal(mem, field.data)
    undefined = np.isnan(field.data).any(axis=-1)
    np.testing.assert_array_equal(undefined, np.isnan(itk.read_displacement(mt / "warp_template2mt.nii.gz").data).any(-1))
    assert undefined[:, :, [0, 4]].all() and undefined.sum() == 3476  # 2 x 1600 slices + 2 x 118 + 40


def test_concat_affine_and_warp_equals_applying_both(sct_data, tmp_path, capsys):
    mt = sct_data / "mt"
    aff = tmp_path / "aff.txt"
    aff.write_text(_AFFINE)
    for k, ws in enumerate(([str(aff), str(mt / "warp_t22mt1.nii.gz")], [str(mt / "warp_t22mt1.nii.gz"), f"inv:{aff}"])):
        cat = tmp_path / f"warp{k}.nii.gz"
        _run(["concat", "-d", str(mt / "mt1.nii.gz"), "-w", *ws, "-o", str(cat)], capsys)
        res = {}
        for name, w in (("seq", ws), ("cat", [str(cat)])):
            o = tmp_path / f"{name}{k}.nii.gz"
            _run(["apply", "-i", str(sct_data / "t2" / "t2.nii.gz"), "-d", str(mt / "mt1.nii.gz"), "-w", *w,
                  "-o", str(o), "-x", "linear"], capsys)
            res[name] = load_image(o).data
        # measured max |diff| 1.8e-4 and 1.2e-4 (539 and 463 on 276 / 196 voxels before session 49)
        assert np.abs(res["cat"] - res["seq"]).max() < 2e-3, k


def test_register_through_an_sct_init_warp_keeps_its_undefined_voxels(sct_data, tmp_path, capsys):
    """``register --init-warp mt/warp_t22mt1`` (SCT's warp, undefined on 276 voxels of mt1's grid):
    the output warp is undefined on 358 voxels (the init warp's, as the steps move the points) and
    was written as the identity there before session 49: t2 applied through it put t2's values on
    all 276 voxels where the init warp alone puts none."""
    d, mt = sct_data / "t2", sct_data / "mt"
    out = tmp_path / "reg"
    _run(["register", "-i", str(d / "t2.nii.gz"), "-d", str(mt / "mt1.nii.gz"), "--iseg", str(d / "t2_seg-manual.nii.gz"),
          "--dseg", str(mt / "mt1_seg.nii.gz"), "--init-warp", str(mt / "warp_t22mt1.nii.gz"), "-o", str(out)], capsys)
    itk._WRITTEN.clear()
    field = itk.read_displacement(out / "warp_t22mt1.nii.gz")
    undefined = np.isnan(field.data).any(-1)
    assert undefined.sum() == 354, undefined.sum()  # measured 354 (358 before session 50's imseg fix; 0 before session 49)
    moved = tmp_path / "t2_on_mt1.nii.gz"
    _run(["apply", "-i", str(d / "t2.nii.gz"), "-d", str(mt / "mt1.nii.gz"), "-w", str(out / "warp_t22mt1.nii.gz"),
          "-o", str(moved), "-x", "linear"], capsys)
    assert not np.asarray(load_image(moved).data)[undefined].any()
