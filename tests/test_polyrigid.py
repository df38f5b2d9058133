"""algo=polyrigid: per-vertebra rigid estimation and log-Euclidean fusion into one invertible field.

Synthetic cases build the moving image by evaluating an analytic scene at the known inverse
motions (no resampling code shared with the method); the articulated-phantom cases use PAM50's
vertebrae moved by the phantom's own (Shepard, push) construction.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.metrics.jacobian import determinant_map
from spinereg.register.engine import invert_step, run_steps
from spinereg.register.polyrigid import PolyRigidField, estimate_motions, fuse, similarity_matrix
from spinereg.register.steps import format_steps, parse_param
from spinereg.transforms.base import Chain
from spinereg.transforms.displacement import DisplacementField, VelocityField

BOXES = {1: ((-14.0, 0.0, -20.0), (9.0, 7.0, 6.0)), 2: ((0.0, 0.0, 0.0), (9.0, 7.0, 6.0)),
         3: ((13.0, 0.0, 20.0), (9.0, 7.0, 6.0))}


def _grid() -> Grid:
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = (-30.0, -16.0, -34.0)
    return Grid((61, 33, 69), aff)


def _scene(x: np.ndarray) -> np.ndarray:
    """Smooth-edged boxes (bone) with an inner pattern, on a background with a gentle ramp."""
    out = 0.2 + 0.002 * x[:, 2]
    for c, half in BOXES.values():
        d = np.abs(x - c) - half
        inside = 1 / (1 + np.exp(np.clip(np.max(d, axis=1) / 0.6, -50, 50)))
        pattern = 0.15 * np.sin((x[:, 0] - c[0]) / 2.5) * np.cos((x[:, 2] - c[2]) / 3.0)
        out = out + inside * (0.6 + pattern)
    return out


def _labels(grid: Grid) -> np.ndarray:
    x = grid.world_coords()
    lab = np.zeros(len(x), np.int16)
    for v, (c, half) in BOXES.items():
        lab[np.all(np.abs(x - c) <= half, axis=1)] = v
    return lab.reshape(grid.shape)


MOTIONS = {1: ((2.0, -3.0, 1.0), (1.2, -0.8, 0.5)), 2: ((-2.5, 1.5, 0.0), (-0.6, 1.0, -0.4)),
           3: ((3.0, 2.0, -1.5), (0.9, 0.3, 1.1))}  # rotation vector (deg), translation (mm)


def _truth() -> dict[int, np.ndarray]:
    return {v: similarity_matrix(np.array(BOXES[v][0]), np.radians(r), np.array(t)) for v, (r, t) in MOTIONS.items()}


@pytest.fixture(scope="module")
def synthetic():
    grid = _grid()
    lab = _labels(grid)
    truth = _truth()
    fixed = _scene(grid.world_coords()).reshape(grid.shape).astype(np.float32)
    # moving(y) = scene(A_v^-1 y) near box v: pulled back through A_v it equals the fixed scene
    y = grid.world_coords()
    owner = np.argmin(np.stack([np.linalg.norm(y - np.array(BOXES[v][0]), axis=1) for v in (1, 2, 3)]), 0) + 1
    src = np.empty_like(y)
    for v, m in truth.items():
        sel = owner == v
        src[sel] = (y[sel] - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    moving = _scene(src).reshape(grid.shape).astype(np.float32)
    return grid, lab, fixed, moving, truth


def _mm_error(a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts @ a[:3, :3].T + a[:3, 3] - pts @ b[:3, :3].T - b[:3, 3], axis=1).max())


def test_estimates_each_rigid_motion(synthetic):
    grid, lab, fixed, moving, truth = synthetic
    found, report = estimate_motions(fixed, moving, grid, lab)
    for v, m in truth.items():
        pts = grid.voxel_to_world(np.argwhere(lab == v))
        assert _mm_error(found[v], m, pts) < 0.034, (v, report[v])  # measured 0.010 / 0.014 / 0.009


def test_cc_metric_handles_inverted_contrast(synthetic):
    grid, lab, fixed, moving, truth = synthetic
    found, _ = estimate_motions(fixed, 2.0 - 3.0 * moving, grid, lab, metric="CC")
    for v, m in truth.items():
        assert _mm_error(found[v], m, grid.voxel_to_world(np.argwhere(lab == v))) < 0.036  # measured <= 0.0157


def test_fusion_is_rigid_inside_and_invertible(synthetic):
    grid, lab, _, _, truth = synthetic
    field = fuse(truth, lab, grid)
    for v, m in truth.items():
        inner = np.argwhere(lab == v)
        x = grid.voxel_to_world(inner)
        want = x @ m[:3, :3].T + m[:3, 3] - x
        err = np.linalg.norm(field.data[tuple(inner.T)] - want, axis=1)
        assert np.median(err) < 5e-3 and err.max() < 0.05
    assert np.nanmin(determinant_map(field)) > 0.59  # measured 0.626
    inv = field.inverse()
    assert isinstance(inv, VelocityField)  # exp(-v)
    pts = grid.voxel_to_world(np.argwhere(lab > 0))
    back = inv.map(field.map(pts))
    assert np.abs(back - pts).max() < 0.028  # measured 0.008


def test_step_language_and_engine(synthetic):
    grid, lab, fixed, moving, truth = synthetic
    steps = parse_param("step=1,type=im,algo=polyrigid,iter=10")
    assert format_steps(steps) == "step=1,type=im,algo=polyrigid"
    res = run_steps(steps, grid, {"im": fixed, "vertebrae": lab}, {"im": Image(moving, grid.affine)}, [])
    (t,) = res.transforms
    assert isinstance(t, PolyRigidField)
    inv = invert_step(t)
    pts = grid.voxel_to_world(np.argwhere(lab == 2))
    assert np.abs(Chain([t, inv]).map(pts) - pts).max() < 0.025  # measured 0.0043
    with pytest.raises(InputError, match="per-vertebra masks"):
        run_steps(steps, grid, {"im": fixed}, {"im": Image(moving, grid.affine)}, [])


def test_scaling_dof_recovers_a_stretched_vertebra():
    grid = _grid()
    lab = _labels(grid)
    fixed = _scene(grid.world_coords()).reshape(grid.shape).astype(np.float32)
    c = np.array(BOXES[2][0])
    m = similarity_matrix(c, np.radians([1.0, 0.0, 0.0]), np.array([0.5, 0.0, 0.0]), np.log([1.0, 1.0, 1.08]))
    y = grid.world_coords()
    moving = _scene((y - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T).reshape(grid.shape).astype(np.float32)
    only = np.where(lab == 2, 2, 0)
    found, rep = estimate_motions(fixed, moving, grid, only, dof="Tx_Ty_Tz_Rx_Ry_Rz_Sx_Sy_Sz")
    assert rep[2]["log_scale"][2] == pytest.approx(np.log(1.08), abs=0.004)  # measured 0.0743 vs 0.0770
    assert _mm_error(found[2], m, grid.voxel_to_world(np.argwhere(only == 2))) < 0.055  # measured 0.035


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(("seed", "contrast", "claim_mm"), [(0, "mr", 0.055), (1, "mr", 0.065), (1, "ct", 0.14)])
def test_articulated_phantom_bone_error(seed, contrast, claim_mm, pam50_dir):
    """polyrigid alone on the articulated phantom (C3-C5, 1 mm): mean error in the exactly rigid
    bone of C3-C5 (measured, seeds 0/1/2: mr 0.043/0.054/0.061, ct 0.101/0.126/0.099 mm, the
    asserted ones again in session 32: 0.0437 / 0.0544 / 0.1264; claim_mm: those + ~0.01; the
    identity is 1.3-1.8 mm off)."""
    from spinereg.phantom.articulated import make_articulated_phantom

    ph = make_articulated_phantom((3, 5), seed=seed, contrast=contrast, margin_mm=12.0)
    lab = np.asarray(ph.vertebrae.data)
    bone = np.isin(lab, [3, 4, 5]) & (np.asarray(ph.rigid.data) > 0)
    res = run_steps(parse_param("step=1,type=im,algo=polyrigid"), ph.grid,
                    {"im": np.asarray(ph.template.data), "vertebrae": lab}, {"im": ph.subject}, [])
    est = DisplacementField.from_transform(Chain(res.transforms), ph.grid)
    err = np.linalg.norm(est.data[bone] - ph.truth_anat2template.data[bone], axis=1)
    before = np.linalg.norm(ph.truth_anat2template.data[bone], axis=1).mean()
    assert before > 1.0
    assert err.mean() <= claim_mm
