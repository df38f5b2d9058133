"""Poly-rigid registration (``algo=polyrigid``): one rigid transform per vertebra, fused into one
smooth invertible field.

Estimation: each vertebra's rigid pull transform ``A_v`` (fixed point -> moving point; rotation
about the vertebra's centroid, then translation; ``dof`` with ``Sx``/``Sy``/``Sz`` adds scalings
along the grid's world axes, a per-vertebra similarity for measuring) is fitted by
Levenberg-Marquardt on the voxels of the vertebra's mask (its boundary voxels carry the edge; a
shell of soft tissue around it, ``shell_mm``, is off by default: that tissue moves with the
neighbours too and biases the fit towards their motion), coarse to fine (Gaussian smoothing of 2,
1 and 0 voxels, plus the step's ``smooth``). ``metric=MeanSquares`` compares
intensities as they are; ``CC`` (and ``MI``) first fits the moving intensities to the fixed ones
linearly within the region, with either sign, so that a synthetic template and a real image of
another contrast still align.

Fusion (log-Euclidean poly-rigid, Arsigny et al. 2005/2009): the matrix logarithms ``L_v`` of
the transforms are blended into one stationary velocity field
``v(x) = sum_v w_v(x) L_v [x; 1]`` with weights ``w_v = softmax_v(-dist_v(x) / s(x))``,
``dist_v`` the distance (mm) to vertebra v and ``s(x) = sigma_mm + 0.5 min_v dist_v(x)``: inside
and near a vertebra its own transform dominates (a neighbour 4 mm away weighs e^-8 with the
default 0.5 mm), while far from the spine the weights vary slowly. The field is integrated by
scaling and squaring (``exp(v)``: ``v / 2^N`` composed with itself N times), so the result is a
diffeomorphism; its inverse is ``exp(-v)`` on the same grid (:class:`PolyRigidField`), which is
what :func:`spinereg.register.engine.invert_step` uses.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from scipy.linalg import expm, logm

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.transforms.displacement import DisplacementField

log = logging.getLogger(__name__)

__all__ = ["PolyRigidField", "estimate_motions", "fuse", "polyrigid", "similarity_matrix"]


# -- transforms ---------------------------------------------------------------------------------
def _hat(w: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _rotation(w: np.ndarray) -> np.ndarray:
    return expm(_hat(w))


def similarity_matrix(centre: np.ndarray, rotvec: np.ndarray, translation: np.ndarray,
                      log_scale: np.ndarray | None = None) -> np.ndarray:
    """4x4 pull matrix ``x -> c + R S (x - c) + t`` (``S = diag(exp(log_scale))``)."""
    lin = _rotation(np.asarray(rotvec, float))
    if log_scale is not None:
        lin = lin @ np.diag(np.exp(log_scale))
    m = np.eye(4)
    m[:3, :3] = lin
    m[:3, 3] = centre - lin @ centre + translation
    return m


def _dof_mask(dof: str) -> np.ndarray:
    """Which of (tx, ty, tz, rx, ry, rz, sx, sy, sz) are free."""
    names = ("Tx", "Ty", "Tz", "Rx", "Ry", "Rz", "Sx", "Sy", "Sz")
    given = set(str(dof).split("_"))
    return np.array([n in given for n in names])


# -- estimation ---------------------------------------------------------------------------------
def _region(labels: np.ndarray, v: int, grid: Grid, shell_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices and weights of vertebra ``v`` plus its shell (other vertebrae excluded)."""
    mask = labels == v
    pad = np.ceil(shell_mm / grid.zooms).astype(int) + 1
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, labels.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    dist = ndimage.distance_transform_edt(~mask[sl], sampling=grid.zooms)
    w = np.clip(1.0 - dist / shell_mm, 0.0, 1.0) if shell_mm > 0 else (dist == 0).astype(float)
    w[(labels[sl] > 0) & ~mask[sl]] = 0.0
    keep = np.argwhere(w > 0)
    return keep + lo, w[tuple(keep.T)]


class _Level:
    """Smoothed fixed/moving arrays and the moving image's world gradient at one resolution."""

    def __init__(self, fixed: np.ndarray, moving: np.ndarray, grid: Grid, sigma_mm: float):
        sig = sigma_mm / grid.zooms
        self.f = ndimage.gaussian_filter(fixed, sig) if sigma_mm > 0 else fixed
        self.m = ndimage.gaussian_filter(moving, sig) if sigma_mm > 0 else moving
        gv = np.stack(np.gradient(self.m), -1)  # d/d(voxel)
        self.g = (gv @ np.linalg.inv(grid.affine[:3, :3])).astype(np.float32)  # d/d(world)
        # cubic B-spline values: linear interpolation blurs edges unevenly with the sub-voxel
        # position, which biases the fit (towards shrinking, for a stretch); gradients only steer
        self.coef = ndimage.spline_filter(self.m.astype(np.float64), order=3, mode="nearest")
        self.grid = grid

    def sample(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.grid.world_to_voxel(y).T
        val = ndimage.map_coordinates(self.coef, c, order=3, mode="nearest", prefilter=False)
        grad = np.stack([ndimage.map_coordinates(self.g[..., k], c, order=1, mode="nearest") for k in range(3)], -1)
        return val, grad


def _evaluate(lev: _Level, q: np.ndarray, centre: np.ndarray, rel: np.ndarray, fv: np.ndarray, w: np.ndarray,
              cc: bool) -> tuple:
    """Cost and residuals at parameters ``q`` (tx ty tz | rotvec | log-scales)."""
    lin = _rotation(q[3:6]) @ np.diag(np.exp(q[6:9]))
    y = centre + rel @ lin.T + q[:3]
    mv, gr = lev.sample(y)
    gain, off = 1.0, 0.0
    if cc:  # intensities matched linearly (either sign) within the region
        a = np.stack([mv, np.ones_like(mv)], -1)
        (gain, off), *_ = np.linalg.lstsq(a * np.sqrt(w)[:, None], fv * np.sqrt(w), rcond=None)
    r = gain * mv + off - fv
    return float((w * r * r).sum() / w.sum()), r, gain, gr, y, lin


def _fit_one(levels: list[_Level], ijk: np.ndarray, w: np.ndarray, centre: np.ndarray, free: np.ndarray,
             cc: bool, iterations: int) -> tuple[np.ndarray, dict]:
    """Levenberg-Marquardt over the pyramid; returns the parameters and the costs."""
    rel = levels[0].grid.voxel_to_world(ijk) - centre
    p = np.zeros(9)
    info: dict = {"cost0": None, "cost": None}
    for lev in levels:
        fv = lev.f[tuple(ijk.T)].astype(float)
        lam = 1e-3
        cost, r, gain, gr, y, lin = _evaluate(lev, p, centre, rel, fv, w, cc)
        if info["cost0"] is None:
            info["cost0"] = cost
        for _ in range(iterations):
            # d y / d params: translation I; rotation (y - c - t) x .; scale_k lin[:, k] rel_k
            arm = y - centre - p[:3]
            jac = gain * np.concatenate([gr, np.cross(arm, gr), (gr @ lin) * rel], axis=1)[:, free]
            h = (jac * w[:, None]).T @ jac
            b = (jac * w[:, None]).T @ r
            improved, delta = False, np.zeros(int(free.sum()))
            for _ in range(6):
                try:
                    delta = -np.linalg.solve(h + lam * np.diag(np.diag(h) + 1e-12), b)
                except np.linalg.LinAlgError:
                    break
                full = np.zeros(9)
                full[free] = delta
                q = p + np.concatenate([full[:3], np.zeros(3), full[6:9]])
                q[3:6] = _rotvec(_rotation(full[3:6]) @ _rotation(p[3:6]))
                new = _evaluate(lev, q, centre, rel, fv, w, cc)
                if new[0] < cost:
                    p, (cost, r, gain, gr, y, lin) = q, new
                    lam = max(lam / 3, 1e-6)
                    improved = True
                    break
                lam *= 10
            if not improved or np.abs(delta).max() < 1e-5:
                break
    info["cost"] = cost
    return p, info


def _rotvec(r: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    ang = np.arccos(cos)
    if ang < 1e-9:
        return np.zeros(3)
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return v * ang / (2 * np.sin(ang))


def estimate_motions(fixed: np.ndarray, moving: np.ndarray, grid: Grid, labels: np.ndarray, *,
                     metric: str = "MeanSquares", iterations: int = 30, smooth_mm: float = 0.0,
                     shell_mm: float = 0.0, dof: str = "Tx_Ty_Tz_Rx_Ry_Rz", min_voxels: int = 50
                     ) -> tuple[dict[int, np.ndarray], dict[int, dict]]:
    """Per-vertebra pull matrices (4x4, world mm) taking fixed points to moving points.

    Vertebrae with fewer than ``min_voxels`` voxels get their nearest fitted neighbour's motion.
    Returns the matrices and a report per vertebra (voxels, costs before/after, params)."""
    free = _dof_mask(dof)
    if not free.any():
        raise InputError(f"dof={dof} leaves nothing to fit", None, "use e.g. dof=Tx_Ty_Tz_Rx_Ry_Rz")
    vox = float(np.min(grid.zooms))
    f = np.asarray(fixed, np.float32)
    m = np.asarray(moving, np.float32)
    levels = [_Level(f, m, grid, float(np.hypot(s * vox, smooth_mm))) for s in (2.0, 1.0, 0.0)]
    values = [int(v) for v in np.unique(labels) if v > 0]
    cc = metric in ("CC", "MI")
    out: dict[int, np.ndarray] = {}
    report: dict[int, dict] = {}
    for v in values:
        ijk, w = _region(labels, v, grid, shell_mm)
        n_bone = int((labels == v).sum())
        if n_bone < min_voxels:
            continue
        centre = grid.voxel_to_world(np.argwhere(labels == v)).mean(0)
        p, info = _fit_one(levels, ijk, w, centre, free, cc, iterations)
        out[v] = similarity_matrix(centre, p[3:6], p[:3], p[6:9])
        report[v] = {"voxels": n_bone, "region_voxels": len(ijk), "cost_before": info["cost0"],
                     "cost_after": info["cost"], "translation_mm": p[:3].round(4).tolist(),
                     "rotation_deg": np.degrees(p[3:6]).round(4).tolist(), "log_scale": p[6:9].round(5).tolist()}
    if not out:
        raise InputError("no vertebra large enough for the polyrigid step", None,
                         "give vertebra masks covering the image (--vert or the template's spine mask)")
    for v in values:
        if v not in out:
            near = min(out, key=lambda k: abs(k - v))
            out[v] = out[near]
            report[v] = {"copied_from": near}
    return out, report


# -- fusion -------------------------------------------------------------------------------------
class PolyRigidField(DisplacementField):
    """``exp(v)`` of a stationary velocity field on ``grid`` (pull, world mm); the inverse is
    ``exp(-v)`` on the same grid."""

    def __init__(self, grid: Grid, velocity: np.ndarray, steps: int | None = None):
        self.velocity = np.asarray(velocity, np.float32)
        self.steps = steps
        self._inv: PolyRigidField | None = None
        super().__init__(grid, exponential(grid, self.velocity, steps))

    def inverse(self, grid: Grid | None = None, iterations: int = 50, tol_mm: float = 1e-3) -> DisplacementField:
        if grid is None or grid.same_as(self.grid):
            if self._inv is None:
                self._inv = PolyRigidField(self.grid, -self.velocity, self.steps)
                self._inv._inv = self
            return self._inv
        return super().inverse(grid, iterations, tol_mm)

    def inverse_map(self, points: np.ndarray, iterations: int = 60, tol_mm: float = 1e-3) -> np.ndarray:
        return self.inverse().map(points)


def exponential(grid: Grid, velocity: np.ndarray, steps: int | None = None) -> np.ndarray:
    """Scaling and squaring of a stationary velocity field (world mm) -> pull displacement."""
    a = grid.affine[:3, :3]
    ainv = np.linalg.inv(a)
    vmax = float(np.sqrt((velocity.astype(np.float64) ** 2).sum(-1)).max()) if velocity.size else 0.0
    if steps is None:
        steps = max(0, int(np.ceil(np.log2(max(vmax, 1e-9) / (0.25 * float(grid.zooms.min())))))) + 1
    u = (velocity / 2.0**steps) @ ainv.T  # voxel units
    base = np.indices(grid.shape, dtype=np.float32)
    for _ in range(steps):
        coords = base + np.moveaxis(u, -1, 0)
        u = u + np.stack([ndimage.map_coordinates(u[..., k], coords, order=1, mode="nearest")
                          for k in range(3)], -1)
    return (u @ a.T).astype(np.float32)


def fusion_weights(labels: np.ndarray, grid: Grid, values: list[int], sigma_mm: float = 0.5,
                   spread: float = 0.5) -> np.ndarray:
    """Weights (K, *grid.shape) summing to 1: softmax of ``-dist_v / (sigma_mm + spread * dmin)``."""
    dist = np.stack([ndimage.distance_transform_edt(labels != v, sampling=grid.zooms) for v in values])
    scale = sigma_mm + spread * dist.min(0)
    logit = -dist / scale
    logit -= logit.max(0)
    w = np.exp(logit)
    return w / w.sum(0)


def fuse(motions: dict[int, np.ndarray], labels: np.ndarray, grid: Grid, sigma_mm: float = 0.5,
         spread: float = 0.5) -> PolyRigidField:
    """One invertible field from per-vertebra pull matrices (see the module doc)."""
    values = sorted(motions)
    logs = {}
    for v in values:
        lg = logm(np.asarray(motions[v], float))
        logs[v] = np.real(lg)
    w = fusion_weights(labels, grid, values, sigma_mm, spread)
    vel = np.zeros(tuple(grid.shape) + (3,), np.float64)
    x = grid.world_coords().reshape(*grid.shape, 3)
    for k, v in enumerate(values):
        lv = logs[v]
        vel += w[k][..., None] * (x @ lv[:3, :3].T + lv[:3, 3])
    return PolyRigidField(grid, vel.astype(np.float32))


# -- the step -----------------------------------------------------------------------------------
def polyrigid(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid, step,
              fixed_mask: np.ndarray | None = None, *, vertebrae: np.ndarray | None = None,
              **_: object) -> PolyRigidField:
    """The ``algo=polyrigid`` step: ``vertebrae`` are per-vertebra labels on ``fixed_grid``.

    Step keys used: ``metric``, ``iter`` (Levenberg-Marquardt iterations per resolution, x3),
    ``smooth`` (mm, added to the pyramid's smoothing), ``dof`` (rigid by default; add Sx_Sy_Sz for
    per-vertebra scaling)."""
    if vertebrae is None or not np.any(vertebrae):
        raise InputError("algo=polyrigid needs per-vertebra masks", None,
                         "register to a template with a spine mask (PAM50) or give a vertebra segmentation")
    lab = np.asarray(vertebrae).astype(np.int32)
    dof = getattr(step, "dof", "Tx_Ty_Tz_Rx_Ry_Rz")
    motions, report = estimate_motions(fixed, moving, fixed_grid, lab, metric=getattr(step, "metric", "MeanSquares"),
                                       iterations=max(5, 3 * int(getattr(step, "iter", 10))),
                                       smooth_mm=float(getattr(step, "smooth", 0.0) or 0.0), dof=dof)
    field = fuse(motions, lab, fixed_grid)
    field.motions = motions
    field.report_vertebrae = report
    log.info("polyrigid: %d vertebrae", len(motions))
    return field


polyrigid.needs = ("vertebrae",)  # inputs the engine passes (see engine.run_steps)
