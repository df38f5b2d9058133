"""Rigid bone in deformable steps (``rigidity=WEIGHT`` on any step that returns a field).

After a deformable step (demons, SyN, B-spline SyN...) has produced its pull field ``u`` on the
fixed grid, the *total* transform (the steps before it, then this one) is fitted inside each
vertebra (masks on the fixed grid) by its closest rigid motion ``R_v`` (Kabsch / Procrustes fit
over the vertebra's voxels), and the step's field there is replaced by the one that makes the
total equal ``R_v``: ``u <- u + b(x) (u_rigid,v - u)``, ``u_rigid,v(x) = before^-1(R_v x) - x``,
with ``b = WEIGHT`` inside the vertebra and one voxel around it, falling smoothly to 0 over
``falloff_mm`` outside, so that discs and soft tissue keep the deformable result. With ``rigidity=1`` the local Jacobian inside every vertebra is a rotation
(``J^T J = I``, ``det J = 1``): the following (or this) deformable step cannot bend bone. A weight
below 1 (0.1-1 as the literature's penalty weights) moves the field only that fraction of the way,
so ``|J^T J - I|`` inside bone shrinks by about ``1 - WEIGHT``.

Unlike a penalty inside the optimiser (elastix's rigidity penalty), the projection costs one fit
per vertebra and one pass over the grid, so a constrained step takes about as long as the
unconstrained one. Measure with :func:`rigidity_error` (mean Frobenius norm of ``J^T J - I`` over
a mask).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.box import pad_voxels
from spinereg.io.grid import Grid
from spinereg.transforms.base import Transform
from spinereg.transforms.displacement import DisplacementField

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.register.steps import Step

log = logging.getLogger(__name__)

__all__ = ["constrain", "kabsch", "project_rigid", "rigidity_error", "rigidity_map"]


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """4x4 rigid matrix ``M`` minimising ``sum w |M src + t - dst|^2`` (proper rotation)."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    cs, cd = w @ src, w @ dst
    h = ((src - cs) * w[:, None]).T @ (dst - cd)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = cd - r @ cs
    return m


def _smooth_step(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


def project_rigid(field: DisplacementField, labels: np.ndarray, weight: float = 1.0,
                  falloff_mm: float = 3.0, before: Transform | None = None) -> DisplacementField:
    """The field made rigid inside each labelled vertebra (see the module doc).

    ``before``: the transforms that precede this step (pull chain ``before o field``). Then the
    *total* transform is made rigid inside each vertebra: the rigid motion ``R_v`` is fitted to
    ``before(field(x))`` and the field there becomes ``before^-1(R_v(x))``, so that the earlier
    steps' own deviations from rigidity inside bone are corrected too."""
    if not 0.0 < weight <= 1.0:
        raise InputError(f"rigidity={weight} is outside (0, 1]", None, "use rigidity=0.1 ... 1 (1: rigid bone)")
    grid = field.grid
    lab = np.asarray(labels)
    if lab.shape != tuple(grid.shape):
        raise ValueError(f"vertebra labels {lab.shape} do not match the field's grid {grid.shape}")
    u = np.asarray(field.data, np.float64)
    margin = float(grid.zooms.max())
    blend = np.zeros(grid.shape, np.float64)
    target = np.zeros(grid.shape + (3,), np.float64)
    fits = {}
    zones = []  # per vertebra: voxel offsets in its box, box origin, weights, rigidly moved points
    for v in [int(k) for k in np.unique(lab) if k > 0]:
        idx = np.argwhere(lab == v)
        if len(idx) < 4:
            continue
        x = grid.voxel_to_world(idx)
        y = x + u[tuple(idx.T)]
        if before is not None:
            y = before.map(y)
        ok = np.all(np.isfinite(y), axis=1)
        if ok.sum() < 4:
            continue
        m = kabsch(x[ok], y[ok])
        fits[v] = m
        pad = pad_voxels(margin + falloff_mm, grid.zooms, extra=1)
        lo = np.maximum(idx.min(0) - pad, 0)
        hi = np.minimum(idx.max(0) + pad + 1, grid.shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        dist = ndimage.distance_transform_edt(lab[sl] != v, sampling=grid.zooms)
        b = weight * _smooth_step((dist - margin) / max(falloff_mm, 1e-6))
        sub = np.argwhere(b > 0)
        pts = grid.voxel_to_world(sub + lo)
        zones.append((sub, lo, b[tuple(sub.T)], pts, pts @ m[:3, :3].T + m[:3, 3]))
    if zones:
        moved = np.concatenate([z[4] for z in zones])
        if before is not None:
            # one inversion of the earlier steps for all vertebrae (each numerical inverse
            # starts with a search over the whole grid: once, not once per vertebra)
            moved = _pull_back(before, moved)
        parts = np.split(moved, np.cumsum([len(z[4]) for z in zones])[:-1])
        for (sub, lo, bi, pts, _), mv in zip(zones, parts, strict=True):
            rig = mv - pts
            good = np.all(np.isfinite(rig), axis=1)
            gi = tuple((sub[good] + lo).T)
            blend[gi] += bi[good]
            target[gi] += bi[good][:, None] * rig[good]
    over = blend > 1.0
    if over.any():  # two vertebrae's zones overlap: share the weight
        target[over] /= blend[over][:, None]
        blend[over] = 1.0
    out = u * (1.0 - blend[..., None]) + target
    res = DisplacementField(grid, out.astype(np.float32), outside=field.outside)
    res.rigid_fits = fits
    return res


def _pull_back(before: Transform, points: np.ndarray) -> np.ndarray:
    """``before.inverse_map(points)``, with the exact inverse ``exp(-v)`` of velocity fields
    (one scaling and squaring on their grid) instead of a fixed-point inversion per point."""
    from spinereg.transforms.base import Chain
    from spinereg.transforms.displacement import VelocityField

    pts = np.asarray(points, float)
    for t in before.transforms if isinstance(before, Chain) else [before]:
        pts = t.inverse().map(pts) if isinstance(t, VelocityField) else t.inverse_map(pts)
    return pts


def rigidity_map(field: DisplacementField) -> np.ndarray:
    """``|J^T J - I|_F`` per voxel of the pull map ``x -> x + u(x)`` (world Jacobian, central
    differences; NaN where undefined)."""
    grid = field.grid
    u = np.asarray(field.data, np.float64)
    jac = np.zeros(u.shape[:3] + (3, 3))
    for j in range(3):
        if u.shape[j] >= 2:
            jac[..., :, j] = np.gradient(u, axis=j)
    jac = jac @ np.linalg.inv(grid.affine[:3, :3]) + np.eye(3)
    g = np.swapaxes(jac, -1, -2) @ jac - np.eye(3)
    return np.sqrt((g**2).sum((-1, -2)))


def rigidity_error(field: DisplacementField | Transform, mask: np.ndarray, grid: Grid | None = None) -> float:
    """Mean ``|J^T J - I|_F`` over ``mask`` (a transform is sampled on ``grid`` first)."""
    if not isinstance(field, DisplacementField) or (grid is not None and not field.grid.same_as(grid)):
        if grid is None:
            raise ValueError("give the grid on which to sample the transform")
        field = DisplacementField.from_transform(field, grid)
    r = rigidity_map(field)[np.asarray(mask, bool)]
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else float("nan")


def constrain(transform: Transform, step: Step, vertebrae: np.ndarray | None,
              before: list[Transform] | None = None) -> Transform:
    """Engine hook: apply the step's ``rigidity`` to its result (fields only); ``before``: the
    transforms of the chain so far, so that the total transform is rigid inside bone."""
    weight = float(getattr(step, "rigidity", 0.0) or 0.0)
    if weight <= 0:
        return transform
    if vertebrae is None or not np.any(vertebrae):
        raise InputError(f"rigidity={weight} needs per-vertebra masks", None,
                         "register to a template with a spine mask (PAM50) or give a vertebra segmentation")
    if weight > 1.0:
        raise InputError(f"rigidity={weight} is above 1", None, "use rigidity=0.1 ... 1 (1: rigid bone)")
    if not isinstance(transform, DisplacementField):
        log.info("rigidity ignored for %s (a linear transform is already rigid or affine)", type(transform).__name__)
        return transform
    from spinereg.transforms.base import Chain

    chain = Chain(list(before)) if before else None
    return project_rigid(transform, vertebrae, weight, before=chain)
