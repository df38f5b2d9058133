"""rigidity=W: the field of a deformable step made rigid inside vertebrae (Kabsch projection)."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.register.engine import run_steps
from spinereg.register.polyrigid import similarity_matrix
from spinereg.register.rigidity import (
    constrain,
    kabsch,
    project_rigid,
    rigidity_error,
    rigidity_map,
)
from spinereg.register.steps import parse_param, parse_step
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.base import Chain
from spinereg.transforms.displacement import DisplacementField


def _grid() -> Grid:
    aff = np.diag([1.0, 1.2, 1.0, 1.0])
    aff[:3, 3] = (-20.0, -18.0, -25.0)
    return Grid((41, 31, 51), aff)


def _labels(grid: Grid) -> np.ndarray:
    x = grid.world_coords().reshape(*grid.shape, 3)
    lab = np.zeros(grid.shape, np.int16)
    lab[(np.abs(x[..., 0]) < 8) & (np.abs(x[..., 1]) < 6) & (np.abs(x[..., 2] + 10) < 5)] = 1
    lab[(np.abs(x[..., 0]) < 8) & (np.abs(x[..., 1]) < 6) & (np.abs(x[..., 2] - 8) < 5)] = 2
    return lab


def _wobbly(grid: Grid) -> DisplacementField:
    """A smooth non-rigid field (sines: stretch, shear and bend)."""
    x = grid.world_coords().reshape(*grid.shape, 3)
    u = np.stack([1.5 * np.sin(x[..., 2] / 9.0) + 0.05 * x[..., 1],
                  0.8 * np.cos(x[..., 0] / 7.0) * np.sin(x[..., 2] / 11.0),
                  0.04 * x[..., 2] + 0.6 * np.sin(x[..., 0] / 6.0)], -1)
    return DisplacementField(grid, u.astype(np.float32))


def test_kabsch_recovers_a_rigid_motion(rng):
    m = similarity_matrix(np.array([3.0, -2.0, 5.0]), np.radians([7.0, -4.0, 12.0]), np.array([1.0, 2.0, -3.0]))
    src = rng.normal(size=(50, 3)) * 10
    dst = src @ m[:3, :3].T + m[:3, 3]
    assert np.allclose(kabsch(src, dst), m, atol=1e-9)


def test_projection_makes_bone_rigid_and_keeps_soft_tissue():
    grid = _grid()
    lab = _labels(grid)
    u = _wobbly(grid)
    out = project_rigid(u, lab, 1.0, falloff_mm=3.0)
    r0, r1 = rigidity_map(u), rigidity_map(out)
    bone = lab > 0
    assert np.nanmean(r0[bone]) > 0.25  # measured 0.277
    assert np.nanmax(r1[bone]) < 1e-6  # J^T J = I inside (central differences stay in the margin); measured 1.4e-7
    from spinereg.metrics.jacobian import determinant_map

    assert np.allclose(determinant_map(out)[bone], 1.0, atol=1e-6)  # measured 1.2e-7
    from scipy import ndimage

    far = ndimage.distance_transform_edt(~bone, sampling=grid.zooms) > 3.0 + 1.2 + 1e-6
    assert np.array_equal(out.data[far], u.data[far])
    # each vertebra moves by the rigid motion closest to the field there
    for v, m in out.rigid_fits.items():
        idx = np.argwhere(lab == v)
        x = grid.voxel_to_world(idx)
        assert np.allclose(out.data[tuple(idx.T)], x @ m[:3, :3].T + m[:3, 3] - x, atol=1e-4)


def test_weight_below_one_moves_part_of_the_way():
    grid = _grid()
    lab = _labels(grid)
    u = _wobbly(grid)
    full = project_rigid(u, lab, 1.0)
    half = project_rigid(u, lab, 0.5)
    bone = lab > 0
    assert np.allclose(half.data[bone], 0.5 * (u.data[bone] + full.data[bone]), atol=1e-5)
    assert 0.46 < rigidity_error(half, bone) / rigidity_error(u, bone) < 0.52  # measured 0.491


def test_total_transform_rigid_after_earlier_steps():
    """With the earlier steps given, the chain (earlier o this step) is rigid in bone, even when
    an earlier step is not."""
    grid = _grid()
    lab = _labels(grid)
    earlier = _wobbly(grid)
    step = DisplacementField(grid, 0.3 * _wobbly(grid).data[..., ::-1].copy())
    out = constrain(step, parse_step("step=2,type=im,algo=demons,rigidity=1"), lab, [earlier])
    total = DisplacementField.from_transform(Chain([earlier, out]), grid)
    bone = lab > 0
    assert rigidity_error(total, bone) < 1e-6  # measured 2.2e-7
    assert rigidity_error(DisplacementField.from_transform(Chain([earlier, step]), grid), bone) > 0.3  # 0.341


def test_rigidity_error_of_known_fields():
    grid = _grid()
    rot = AffineTransform.from_params(rotation_deg=(10, 20, 30))
    assert rigidity_error(rot, np.ones(grid.shape, bool), grid) < 1e-6  # float32 fields; measured 4.8e-7
    scale = AffineTransform.from_params(scale=(1.1, 1.0, 1.0))
    assert rigidity_error(scale, np.ones(grid.shape, bool), grid) == pytest.approx(1.1**2 - 1, rel=1e-4)


def test_step_language_and_engine_errors():
    s = parse_step("step=2,type=im,algo=demons,rigidity=0.5")
    assert s.rigidity == 0.5 and "rigidity=0.5" in str(s)
    with pytest.raises(InputError):
        parse_step("step=2,type=im,algo=demons,rigidity=-1")
    grid = _grid()
    lab = _labels(grid)
    f = np.zeros(grid.shape, np.float32)
    f[lab > 0] = 1.0
    img = Image(f, grid.affine)
    with pytest.raises(InputError, match="per-vertebra masks"):
        run_steps(parse_param("step=1,type=seg,algo=demons,rigidity=1"), grid, {"seg": f}, {"seg": img}, [])
    with pytest.raises(InputError, match="above 1"):
        constrain(_wobbly(grid), parse_step("step=1,type=im,algo=demons,rigidity=2"), lab)
    # linear transforms are rigid or affine by construction: left as they are
    a = AffineTransform.identity()
    assert constrain(a, parse_step("step=1,type=im,algo=rigid,rigidity=1"), lab) is a
