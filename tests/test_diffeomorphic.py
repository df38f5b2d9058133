"""No output warp folds: diffeomorphic by construction, where warps are built and composed.

* every dense registration step is the exponential of a stationary velocity field
  (:class:`~spinereg.transforms.displacement.VelocityField`; scaling and squaring), tapered to
  zero at the edge of its grid, so its inverse is exactly ``exp(-v)`` and the identity beyond the
  grid continues it (before: chains through a step's grid jumped at its edge);
* per-slice rigid steps become the exponential of their SE(2) logarithm (exactly rigid over the
  cord and the path it travels, fading to the identity at the grid's in-plane edges);
* demons are compositive, then written as ``exp(log(d))``;
* the centerlines the cord mapping is built on are smoothed at >= 6 mm (sub-centimetre wiggles
  bent the frames and folded points a few centimetres away), and a per-slice rotation is not
  trusted where the principal axes may have swapped (> 45 degrees, tiny sections: the conus).

Measured before -> now (% of folded voxels over the whole output grid): t2 -> PAM50_small
0.17 / 0.12 -> 0 / 0; register t2 -> t2s (7.5 mm slices) 0.07 / 1.43 -> 0 / 0, t2 -> t1w
0 / 1.71 -> 0 / 0, t2 -> mt1 (17 mm) 0 / 0.02 -> 0 / 0; thoracolumbar phantom with the conus
label (discs 17 and 60), seeds 0-2: up to 0.80 % (Jacobian min -13) -> 0 (min 0.06).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.io.grid import Grid
from spinereg.metrics.jacobian import determinant_map
from spinereg.register.slicewise import (
    SliceParams,
    centermassrot,
    field_from_params,
    rigid_velocity,
)
from spinereg.register.steps import parse_step
from spinereg.transforms.displacement import DisplacementField, VelocityField, taper_window


def _fold_pct(w: DisplacementField) -> tuple[float, float]:
    d = determinant_map(w)
    fin = np.isfinite(d)
    return float(100 * np.mean(d[fin] <= 0)), float(np.nanmin(d))


def test_velocity_field_is_a_diffeomorphism_with_exact_inverse():
    g = Grid((40, 42, 30), np.diag([1.0, 1.0, 2.0, 1.0]))
    rng = np.random.default_rng(0)
    v = np.stack([ndimage.gaussian_filter(rng.normal(size=g.shape), 4) * 60 for _ in range(3)], -1)
    v *= taper_window(g.shape, g.zooms, (0, 1, 2))[..., None]
    assert np.abs(v).max() > 3.0  # several voxels: a single-step map would fold
    f = VelocityField(g, v)
    assert determinant_map(f).min() > 0
    x = g.world_coords()
    err = np.linalg.norm(f.inverse().map(f.map(x)) - x, axis=1)
    assert np.sqrt((err**2).mean()) < 0.05 and np.percentile(err, 99) < 0.15  # measured 0.033 / 0.127 mm
    # zero at the edge: the identity beyond the grid continues it
    assert np.abs(f.data[0]).max() < 1e-6 and np.abs(f.data[:, :, -1]).max() < 1e-6


def test_rigid_velocity_is_rigid_over_the_cord_and_fades_out():
    g = Grid((60, 50, 10), np.diag([0.8, 0.8, 3.0, 1.0]))
    nz = 10
    rng = np.random.default_rng(0)
    p = SliceParams(shift=rng.normal(0, 2, (nz, 2)), angle=rng.normal(0, 0.2, nz),
                    center=np.tile([30.0, 25.0], (nz, 1)), valid=np.ones(nz, bool), raw_shift=None, raw_angle=None)
    keep = (np.array([22, 17, 0]), np.array([38, 33, 9]))
    v = rigid_velocity(g, p, keep=keep)
    exact = field_from_params(g, p)
    box = tuple(slice(a, b + 1) for a, b in zip(*keep, strict=True))
    assert np.linalg.norm(v.data[box] - exact.data[box], axis=-1).max() < 0.035  # measured 0.014 mm
    assert np.abs(v.data[0]).max() < 1e-6 and np.abs(v.data[:, -1]).max() < 1e-6
    assert determinant_map(v).min() > 0
    x = g.world_coords()
    assert np.abs(v.inverse().map(v.map(x)) - x).max() < 0.27  # measured 0.242 mm


def test_pca_rotation_not_trusted_where_the_axes_may_have_swapped():
    """The conus: small, round-ish sections whose principal axes swap give no +-90 degree turn."""
    from helpers import synth_grid

    g = synth_grid((40, 40, 12), (0.5, 0.5, 2.0), (0.0, 0.0, 0.0))
    ii, jj = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
    fixed = np.zeros(g.shape, np.float32)
    moving = np.zeros(g.shape, np.float32)
    for k in range(12):
        fixed[..., k] = ((ii - 20) / 6.0) ** 2 + ((jj - 20) / 4.0) ** 2 <= 1  # L-R wider
        moving[..., k] = ((ii - 20) / 4.0) ** 2 + ((jj - 20) / 6.0) ** 2 <= 1  # A-P wider: 90 deg
    f = centermassrot(fixed, moving, g, g, parse_step("step=1,type=seg,algo=centermassrot"))
    assert np.all(np.abs(f.slice_params.angle) < 1e-9)


def test_demons_compression_has_an_exact_fold_free_inverse():
    """A cord section that must shrink to half its radius (the conus, a thin subject cord)."""
    from spinereg.register.demons import demons

    g = Grid((48, 48, 20), np.diag([0.5, 0.5, 1.0, 1.0]))
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in g.shape], indexing="ij")
    r = np.hypot(ii - 24, jj - 24) * 0.5
    rad = 3.0 + 0.05 * kk
    fixed = (r <= rad).astype(np.float32)
    moving = (r <= 0.5 * rad).astype(np.float32)
    f = demons(fixed, moving, g, g, parse_step("step=1,type=seg,algo=demons,smooth=1"))
    assert isinstance(f, VelocityField)
    assert determinant_map(f).min() > 0 and determinant_map(f.inverse()).min() > 0
    cord = np.argwhere(fixed > 0)
    x = g.voxel_to_world(cord)
    assert np.linalg.norm(f.inverse().map(f.map(x)) - x, axis=1).mean() < 0.05


def test_template_warps_do_not_fold_anywhere(sct_data):
    from spinereg.register.template import register_to_template

    t2 = sct_data / "t2"
    reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz",
                               template="PAM50_small")
    for w in (reg.warp_template2anat(), reg.warp_anat2template()):
        pct, lo = _fold_pct(w)
        assert pct == 0.0 and lo > 0, (pct, lo)


@pytest.mark.parametrize("dest,dseg", [("t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz"), ("mt/mt1.nii.gz", "mt/mt1_seg.nii.gz"),
                                       ("t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz")])
def test_register_warps_do_not_fold_anywhere(sct_data, dest, dseg):
    from spinereg.register.multimodal import register_multimodal

    reg = register_multimodal(sct_data / "t2/t2.nii.gz", sct_data / dest, iseg=sct_data / "t2/t2_seg-manual.nii.gz",
                              dseg=sct_data / dseg)
    for w in (reg.warp_src2dest(), reg.warp_dest2src()):
        pct, lo = _fold_pct(w)
        assert pct == 0.0 and lo > 0, (dest, pct, lo)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lumbar_conus_case(seed):
    """The thoracolumbar independent phantom (T9-L1, 1 mm, cord ending in the conus) registered
    to the full PAM50 with disc label 17 (T9/T10) and the conus tip (60). Seed 1 is the one that
    folded through its centerline wiggles and a 90-degree PCA turn at the conus. Measured
    (bench/register_robustness.py --lumbar 0,1,2): Jacobian min in the cord 0.761 / 0.728 / 0.807,
    folding 0.000 % of both output grids for seeds 0-2 (again in session 32: 0.759 / 0.728 / 0.807,
    0 %; asserted within 0.05 and exactly)."""
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import register_to_template

    ph = make_independent_subject("thoracolumbar", seed=seed)
    reg = register_to_template(ph.image, ph.seg, ldisc=ph.labels("disc", (17, 60)), template="PAM50",
                               contrast=ph.contrast)
    inv = reg.warp_template2anat()
    d = determinant_map(inv)
    jmin = float(d[np.asarray(ph.seg.data) > 0].min())
    assert jmin >= {0: 0.759, 1: 0.728, 2: 0.807}[seed] - 0.05, jmin
    for w in (inv, reg.warp_anat2template()):
        pct, _ = _fold_pct(w)
        assert pct == 0.0, pct
