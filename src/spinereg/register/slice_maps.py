"""Slice-wise rigid steps carried beyond the cord (:func:`extended_slice_map`).

A slice-wise step (centermass, centermassrot, slicereg) estimates one in-plane rigid map per slice
of its working grid (:class:`~spinereg.register.slicewise.SliceParams`). In the engine it becomes a
velocity field on that grid, exactly rigid over the cord's box and tapered into the identity at the
grid's in-plane edges (:func:`~spinereg.register.engine.diffeomorphic`), so that it composes with
the steps estimated on the same grid without a jump. Register-to-template works on the template
cropped to the cord plus 12 mm: beyond that crop the tapered field is the identity, so a rotation
about the cord found by centermassrot was not carried to what lies further out (the vertebral
bodies, 15-30 mm in front of the cord). Measured on sct_testing_data t2 turned by 10 / 20 deg about
S-I (its header; session 33): the template's vertebral bodies landed 2.3 / 3.5 mm in-plane from
where the unturned run put them, although the angles found differed by the turn (-13.1 / -23.0 vs
-3.2 deg).

The reported transforms now hold :func:`extended_slice_map` instead: the same per-slice maps over
the cord's box, carried rigidly over the region around it with the angle smoothed along the
slices (a neck turns as a whole; one slice's estimate is noisy: carrying per-slice angles that
jump by 15 deg between slices 50 mm out folded the thoracolumbar phantoms' warps, session 33),
then faded into the identity. One velocity field, exponentiated: a diffeomorphism whose inverse
is exact.
"""

from __future__ import annotations

import numpy as np

from spinereg.io.grid import Grid
from spinereg.register.slicewise import SliceParams, se2_log_offset
from spinereg.transforms.base import Transform

__all__ = ["extended_slice_map", "extended_slice_maps"]


#: the extended map: rigid (with the z-smoothed angle) out to this far beyond the cord's box (mm;
#: farther when the box's corners travel farther), then a cosine ramp of FAR_RAMP_MM into the
#: identity; the per-slice angle (as estimated) within NEAR_RAMP_MM of the box (plus that path),
#: blended into the smoothed one
FAR_RIGID_MM = 30.0
FAR_RAMP_MM = 25.0
NEAR_RAMP_MM = 8.0
#: SD (mm along the slices' axis) of the smoothing of the angle carried far from the cord
ANGLE_SMOOTH_MM = 10.0
#: in-plane node spacing (mm) of the extended map (its displacement is affine in-plane but in the ramps)
NODE_MM = 2.0


def _smooth_along(values: np.ndarray, valid: np.ndarray, sigma_vox: float) -> np.ndarray:
    """Normalised Gaussian smoothing of ``values`` (nz, ...) over the ``valid`` slices, constant
    beyond the first / last valid one."""
    from scipy import ndimage

    v = np.asarray(values, float)
    if not valid.any():
        return v
    w = ndimage.gaussian_filter1d(valid.astype(float), sigma_vox, axis=0, mode="nearest")
    x = ndimage.gaussian_filter1d(np.where(valid.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0.0), sigma_vox,
                                  axis=0, mode="nearest")
    out = x / np.maximum(w, 1e-9).reshape((-1,) + (1,) * (v.ndim - 1))
    idx = np.flatnonzero(valid)
    out[: idx[0]] = out[idx[0]]
    out[idx[-1] + 1:] = out[idx[-1]]
    return out


def _ramp(dist: np.ndarray, width: float) -> np.ndarray:
    """1 at distance <= 0, a cosine down to 0 at ``width``."""
    x = np.clip(dist / width, 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * x)


def extended_slice_map(grid: Grid, params: SliceParams, box: tuple[np.ndarray, np.ndarray]) -> Transform:
    """The per-slice rigid maps of a slice-wise step estimated on ``grid`` (its last axis the
    slices), carried beyond the voxel box ``box`` (the cord's, where they are exactly what the
    step found) over the region around it: within :data:`NEAR_RAMP_MM` blended into the same maps
    with the angle smoothed along the slices (:data:`ANGLE_SMOOTH_MM`; what a whole neck turns by,
    not the noise of one slice's estimate), kept rigid out to :data:`FAR_RIGID_MM`, then faded into
    the identity over :data:`FAR_RAMP_MM`. One velocity field exponentiated (a diffeomorphism, its
    inverse exact) on nodes :data:`NODE_MM` apart in-plane, the slices' own spacing along them."""
    from spinereg.transforms.displacement import VelocityField

    dx, dy, dz = (float(z) for z in grid.zooms)
    lo, hi = (np.asarray(b, float) for b in box)
    c_mm, t_mm = params.center * [dx, dy], params.shift * [dx, dy]
    th = np.asarray(params.angle, float)
    # a point of the box flows to its image through the field: keep that whole path on the
    # per-slice maps (the farthest any corner of the box moves)
    corners = np.array([[x, y] for x in (lo[0] * dx, hi[0] * dx) for y in (lo[1] * dy, hi[1] * dy)])
    rel = corners[None] - c_mm[:, None]
    cos, sin = np.cos(th)[:, None], np.sin(th)[:, None]
    moved = np.stack([cos * rel[..., 0] - sin * rel[..., 1], sin * rel[..., 0] + cos * rel[..., 1]], -1) - rel
    path = float(np.linalg.norm(moved + t_mm[:, None], axis=-1).max()) if len(th) else 0.0
    rigid_to = max(FAR_RIGID_MM, path + NEAR_RAMP_MM)
    reach = rigid_to + FAR_RAMP_MM + 2 * NODE_MM  # the fade ends inside the node grid
    # the node grid: the slice grid's axes, in-plane from the box's edges out to ``reach``
    q_lo = np.array([lo[0] * dx, lo[1] * dy]) - reach
    q_hi = np.array([hi[0] * dx, hi[1] * dy]) + reach
    n_ij = np.ceil((q_hi - q_lo) / NODE_MM).astype(int) + 1
    aff = grid.affine.copy()
    aff[:3, 0] = grid.affine[:3, 0] / dx * NODE_MM
    aff[:3, 1] = grid.affine[:3, 1] / dy * NODE_MM
    aff[:3, 3] = grid.voxel_to_world(np.array([[q_lo[0] / dx, q_lo[1] / dy, 0.0]]))[0]
    nodes = Grid((int(n_ij[0]), int(n_ij[1]), int(grid.shape[2])), aff)
    qx = (q_lo[0] + NODE_MM * np.arange(n_ij[0]))[:, None, None]
    qy = (q_lo[1] + NODE_MM * np.arange(n_ij[1]))[None, :, None]
    # distance (mm, per axis, the larger) from the box in-plane
    dist = np.maximum(np.maximum(lo[0] * dx - qx, qx - hi[0] * dx).clip(0), np.maximum(lo[1] * dy - qy, qy - hi[1] * dy).clip(0))
    w_near = _ramp(dist - path, NEAR_RAMP_MM)
    w_far = _ramp(dist - rigid_to, FAR_RAMP_MM)
    th_s = _smooth_along(th, np.asarray(params.valid, bool), ANGLE_SMOOTH_MM / dz)
    u, u_s = se2_log_offset(th, c_mm, t_mm), se2_log_offset(th_s, c_mm, t_mm)
    vx = w_near * (-th * qy + u[:, 0]) + (1 - w_near) * w_far * (-th_s * qy + u_s[:, 0])
    vy = w_near * (th * qx + u[:, 1]) + (1 - w_near) * w_far * (th_s * qx + u_s[:, 1])
    v = np.zeros(tuple(nodes.shape) + (3,), np.float32)
    v[..., 0] = vx / NODE_MM
    v[..., 1] = vy / NODE_MM
    return VelocityField.from_voxel_velocity(nodes, v)


def extended_slice_maps(transforms: list[Transform], box: tuple[np.ndarray, np.ndarray] | None) -> list[Transform]:
    """``transforms`` with every slice-wise step (one carrying ``slice_params`` on its ``grid``)
    replaced by :func:`extended_slice_map` about ``box`` (voxels of that grid); the others, and
    all of them when ``box`` is None, unchanged."""
    if box is None:
        return list(transforms)
    out: list[Transform] = []
    for t in transforms:
        params = getattr(t, "slice_params", None)
        grid = getattr(t, "grid", None)
        out.append(extended_slice_map(grid, params, box) if params is not None and grid is not None else t)
    return out
