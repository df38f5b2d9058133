"""The articulated-spine phantom: PAM50's vertebrae moved rigidly one by one (Shepard blending of
displacements, numerical inverse), with an exact truth."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.metrics.jacobian import determinant_map
from spinereg.phantom.articulated import make_articulated_phantom

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def phantom(pam50_dir):
    return make_articulated_phantom((3, 5), seed=3, contrast="mr", margin_mm=12.0, noise=0.0)


def _rotation_deg(m: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(m[:3, :3]) - 1) / 2, -1, 1))))


def test_vertebrae_move_exactly_rigidly(phantom):
    lab = np.asarray(phantom.vertebrae.data)
    rigid = np.asarray(phantom.rigid.data) > 0
    assert rigid.sum() > 0.99 * (lab > 0).sum()  # measured 0.993 (19725 of 19867)
    grid = phantom.grid
    for v, m in phantom.motions.items():
        idx = np.argwhere((lab == v) & rigid)
        x = grid.voxel_to_world(idx)
        want = x @ m[:3, :3].T + m[:3, 3] - x
        assert np.abs(phantom.truth_anat2template.data[tuple(idx.T)] - want).max() < 1e-6, v  # measured <= 1.2e-7


def test_segment_motions_as_specified(phantom):
    segs = phantom.params["segments"]
    assert len(segs) >= 4
    for s in segs:
        assert 2.0 <= abs(s["flexion_deg"]) <= 6.0 and 2.0 <= abs(s["bending_deg"]) <= 6.0
        t = np.array(s["translation_mm"])
        assert 1.0 - 1e-6 <= np.linalg.norm(t) <= 3.0 + 1e-6 and t[2] == 0.0
    # consecutive vertebrae of C3-C5 really move relative to each other
    m3, m4 = phantom.motions[3], phantom.motions[4]
    assert _rotation_deg(np.linalg.inv(m3) @ m4) > 2.0


def test_truth_is_invertible_and_consistent(phantom):
    push, pull = phantom.truth_anat2template, phantom.truth_template2anat
    assert np.nanmin(determinant_map(push)) >= 0.05
    res = phantom.params["truth_inverse_residual_mm"]
    assert res["mean"] < 1e-5 and res["max"] < 0.03  # measured 3.3e-6 / 0.0101 mm
    grid = phantom.grid
    y = grid.voxel_to_world(np.argwhere(np.ones(grid.shape, bool))[::7])
    y = y[np.all(np.abs(grid.world_to_voxel(y) - (np.array(grid.shape) - 1) / 2) < np.array(grid.shape) / 2 - 5, 1)]
    assert np.abs(push.map(pull.map(y)) - y).max() < 0.03  # measured 0.0086 mm; the pull field solves push(x) = y at its nodes
    inner = grid.voxel_to_world(np.argwhere(np.asarray(phantom.rigid.data) > 0))
    # the subject shows the template's content where the truth says (noise-free phantom)
    from spinereg.io.resample import sample_world

    subj = sample_world(np.asarray(phantom.subject.data), grid.affine, push.map(inner))
    tmpl = sample_world(np.asarray(phantom.template.data), grid.affine, inner)
    assert np.corrcoef(subj, tmpl)[0, 1] > 0.94  # measured 0.949 (trilinear sampling of a 1 mm cortex)


def test_deterministic_and_contrasts(pam50_dir, phantom):
    again = make_articulated_phantom((3, 5), seed=3, contrast="mr", margin_mm=12.0, noise=0.0)
    assert np.array_equal(again.subject.data, phantom.subject.data)
    ct = make_articulated_phantom((3, 5), seed=3, contrast="ct", margin_mm=12.0, noise=0.0)
    assert np.array_equal(ct.truth_anat2template.data, phantom.truth_anat2template.data)
    lab = np.asarray(ct.vertebrae.data) > 0
    assert np.asarray(ct.template.data)[lab].mean() > 200  # bone bright in CT (HU) ...
    assert np.asarray(phantom.template.data)[lab].mean() < 0.6  # ... mid-grey in the MR contrast
