"""The PAM50 phantom subject with a known deformation, and the mapping error against its truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.io.template import load_template
from spinereg.metrics import dice, jacobian
from spinereg.phantom import TemplateDeformation, make_template_subject, mapping_error
from spinereg.transforms import apply_transforms, read_displacement
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.displacement import DisplacementField

#: short S-I coverage keeps the phantom small (64 x 320 x ~70 voxels) and the tests fast
SMALL = {"voxel_mm": 0.8, "levels": ("C3", "C5"), "seed": 0}


@pytest.fixture(scope="module")
def phantom(data_root):
    return make_template_subject(**SMALL)


def test_shape_and_orientation(phantom):
    g = phantom.grid
    assert "".join(g.axcodes) == "LPI"
    assert np.allclose(g.zooms, 0.8)
    assert g.shape[:2] == (64, 320)
    assert 55 <= g.shape[2] <= 90  # C3-C5 (+ 9 mm margins) is ~54 mm S-I in the template
    assert phantom.seg.data.dtype == np.uint8 and phantom.seg.data.sum() > 500
    assert phantom.params["inverse_residual_mm"] < 1e-2


def test_labels_land_inside_the_cord(phantom):
    lab = phantom.labels.data
    idx = np.argwhere(lab > 0)
    assert sorted(lab[tuple(idx.T)].tolist()) == [3, 5]
    assert np.all(phantom.seg.data[tuple(idx.T)] == 1)
    # C3 is superior to C5 in the subject too
    z = {int(lab[tuple(i)]): phantom.grid.voxel_to_world(i[None].astype(float))[0, 2] for i in idx}
    assert z[3] > z[5] + 20


def test_truth_maps_the_seg_back_onto_the_template_cord(phantom):
    tpl = load_template("PAM50")
    region = phantom.template_region.coarsened(2)  # 1 mm
    tcord = apply_transforms(load_image(tpl.path("cord"), ndim=3, check_finite=False), region, [], "linear")
    push = phantom.true_template2subject(region)
    seg_in_tpl = apply_transforms(phantom.seg, region, [push], "linear")
    # two binarised resamplings (0.5 -> 0.8 -> 1 mm) alone cost ~0.05 Dice on a 7 mm cord
    good = dice(seg_in_tpl, tcord, zb=True).dice
    assert good >= 0.95, good  # measured 0.9559
    off = DisplacementField(push.grid, push.data + np.array([1.5, 0, 0], np.float32))
    # measured 0.829 with the 1.5 mm offset (0.127 below the truth's)
    assert dice(apply_transforms(phantom.seg, region, [off], "linear"), tcord, zb=True).dice < good - 0.10


def test_push_and_pull_are_inverse(phantom):
    rng = np.random.default_rng(3)
    y = phantom.deformation.center + rng.uniform(-30, 30, (500, 3))
    assert np.abs(phantom.deformation.pull(phantom.deformation.push(y)) - y).max() < 1e-3


def test_true_deformation_has_positive_jacobian(phantom):
    jac = jacobian(phantom.true_subject2template)
    assert jac.min > 0.73 and jac.max < 1.25, (jac.min, jac.max)  # measured 0.775 / 1.191
    # the deformation is not trivial: local S-I stretch/compression of several percent (range 0.416)
    assert jac.max - jac.min > 0.37


def test_deterministic_for_a_seed(phantom):
    again = make_template_subject(**SMALL)
    for name in ("t2", "seg", "levels", "labels"):
        assert np.array_equal(getattr(again, name).data, getattr(phantom, name).data), name
    assert np.array_equal(again.true_subject2template.data, phantom.true_subject2template.data)
    other = TemplateDeformation.random(phantom.deformation.center, np.random.default_rng(1))
    assert other.as_dict() != phantom.deformation.as_dict()


def test_mapping_error_of_truth_and_identity(phantom):
    truth = phantom.true_subject2template
    same = mapping_error(truth, truth, phantom.seg, levels=phantom.levels)
    assert same["mean_mm"] == pytest.approx(0.0, abs=1e-4)
    assert same["max_mm"] == pytest.approx(0.0, abs=1e-4)
    assert same["fov"]["max_mm"] == pytest.approx(0.0, abs=1e-4)
    assert set(same["per_level"]) <= set(range(1, 8)) and len(same["per_level"]) >= 3
    # the identity is far off (the subject is in scanner coordinates), and a pure S-I shift
    # of 2 mm from the truth has error 2 mm everywhere
    ident = mapping_error(AffineTransform(np.eye(4)), truth, phantom.seg)
    assert ident["mean_mm"] > 1.0 and ident["fov"]["mean_mm"] > 1.0
    shifted = DisplacementField(truth.grid, truth.data + np.array([0, 0, 2.0], np.float32))
    err = mapping_error(shifted, truth, phantom.seg)
    assert err["mean_mm"] == pytest.approx(2.0, abs=1e-3) and err["p95_mm"] == pytest.approx(2.0, abs=1e-3)


def test_save_writes_images_warps_and_parameters(phantom, tmp_path):
    files = phantom.save(tmp_path)
    for name in ("t2", "seg", "labels", "levels", "true_warp_template2anat", "true_warp_anat2template"):
        assert files[name].is_file(), name
    meta = json.loads(files["json"].read_text())
    assert meta["seed"] == 0 and meta["template"] == "PAM50" and meta["body_labels"] == [3, 5]
    back = read_displacement(files["true_warp_template2anat"])
    assert back.grid.same_as(phantom.grid)
    assert np.allclose(back.data, phantom.true_subject2template.data, atol=1e-4)
