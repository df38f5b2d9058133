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
scaling and squaring (``exp(v)``, :class:`~spinereg.transforms.displacement.VelocityField`), so
the result is a diffeomorphism whose inverse is ``exp(-v)`` on the same grid
(:class:`PolyRigidField`), which is what :func:`spinereg.register.engine.invert_step` uses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.linalg import expm, logm

from spinereg.errors import InputError
from spinereg.io.box import box_slices, mask_box, pad_voxels
from spinereg.io.grid import Grid
from spinereg.transforms.displacement import DisplacementField, VelocityField

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.register.steps import Step

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
    lo, hi = mask_box(mask, pad_voxels(shell_mm, grid.zooms, 1))
    sl = box_slices(lo, hi)
    dist = ndimage.distance_transform_edt(~mask[sl], sampling=grid.zooms)
    w = np.clip(1.0 - dist / shell_mm, 0.0, 1.0) if shell_mm > 0 else (dist == 0).astype(float)
    w[(labels[sl] > 0) & ~mask[sl]] = 0.0
    keep = np.argwhere(w > 0)
    return keep + lo, w[tuple(keep.T)]


class _Level:
    """Smoothed fixed/moving arrays and the moving image's world gradient at one resolution."""

    def __init__(self, fixed: np.ndarray, moving: np.ndarray, grid: Grid, sigma_mm: float,
                 valid: np.ndarray | None = None):
        sig = sigma_mm / grid.zooms
        self.f = ndimage.gaussian_filter(fixed, sig) if sigma_mm > 0 else fixed
        self.m = ndimage.gaussian_filter(moving, sig) if sigma_mm > 0 else moving
        gv = np.stack(np.gradient(self.m), -1)  # d/d(voxel)
        self.g = (gv @ np.linalg.inv(grid.affine[:3, :3])).astype(np.float32)  # d/d(world)
        # cubic B-spline values: linear interpolation blurs edges unevenly with the sub-voxel
        # position, which biases the fit (towards shrinking, for a stretch); gradients only steer
        self.coef = ndimage.spline_filter(self.m.astype(np.float64), order=3, mode="nearest")
        self.valid = None if valid is None else np.asarray(valid, np.float32)
        self.grid = grid

    def sample(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.grid.world_to_voxel(y).T
        val = ndimage.map_coordinates(self.coef, c, order=3, mode="nearest", prefilter=False)
        grad = np.stack([ndimage.map_coordinates(self.g[..., k], c, order=1, mode="nearest") for k in range(3)], -1)
        hi = np.array(self.grid.shape)[:, None] - 0.5
        ok = np.all((c >= -0.5) & (c <= hi), axis=0)
        if self.valid is not None:
            ok &= ndimage.map_coordinates(self.valid, c, order=1, mode="constant", cval=0.0) > 0.99
        return val, grad, ok.astype(float)


#: prior SDs of the parameters (tx ty tz mm | rotation vector rad | log-scales)
PRIOR_SD = np.array([5.0, 5.0, 5.0, *np.radians([10.0, 10.0, 10.0]), 0.1, 0.1, 0.1])


def _evaluate(lev: _Level, q: np.ndarray, centre: np.ndarray, rel: np.ndarray, fv: np.ndarray, w: np.ndarray,
              cc: bool, prior: float, var: float, min_valid: float) -> tuple:
    """Cost and residuals at parameters ``q`` (tx ty tz | rotvec | log-scales): weighted mean
    squared residual over the samples that land inside the moving image's coverage, plus the
    prior ``prior * var * sum (q / PRIOR_SD)^2``; infinite when less than ``min_valid`` of the
    weight lands inside."""
    lin = _rotation(q[3:6]) @ np.diag(np.exp(q[6:9]))
    y = centre + rel @ lin.T + q[:3]
    mv, gr, ok = lev.sample(y)
    we = w * ok
    if we.sum() <= 0 or we.sum() < min_valid:
        return np.inf, None, 0.0, None, y, lin, we
    gain, off = 1.0, 0.0
    if cc:  # intensities matched linearly (either sign) within the region
        a = np.stack([mv, np.ones_like(mv)], -1)
        (gain, off), *_ = np.linalg.lstsq(a * np.sqrt(we)[:, None], fv * np.sqrt(we), rcond=None)
    r = gain * mv + off - fv
    cost = float((we * r * r).sum() / we.sum()) + prior * var * float(((q / PRIOR_SD) ** 2).sum())
    return cost, r, gain, gr, y, lin, we


def _search_si(lev: _Level, ijk: np.ndarray, w: np.ndarray, centre: np.ndarray, cc: bool) -> np.ndarray:
    """Exhaustive search of an S-I shift (+-4 mm) and S-I scale (0.8-1.5) along the grid's world
    z: a start for bodies whose size differs from the template's (a local fit would lock onto the
    neighbouring disc)."""
    rel = lev.grid.voxel_to_world(ijk) - centre
    fv = lev.f[tuple(ijk.T)].astype(float)
    best, start = np.inf, np.zeros(9)
    for tz in np.arange(-4.0, 4.01, 0.5):
        for sz in np.log(np.arange(0.8, 1.501, 0.025)):
            q = np.zeros(9)
            q[2], q[8] = tz, sz
            cost = _evaluate(lev, q, centre, rel, fv, w, cc, 0.0, 1.0, 0.8 * float(w.sum()))[0]
            if cost < best:
                best, start = cost, q
    return start


def _fit_one(levels: list[_Level], ijk: np.ndarray, w: np.ndarray, centre: np.ndarray, free: np.ndarray,
             cc: bool, iterations: int, prior: float = 0.0, start: np.ndarray | None = None
             ) -> tuple[np.ndarray, dict]:
    """Levenberg-Marquardt over the pyramid; returns the parameters and the costs."""
    rel = levels[0].grid.voxel_to_world(ijk) - centre
    p = np.zeros(9) if start is None else start.copy()
    info: dict = {"cost0": None, "cost": None}
    inv_var = 1.0 / PRIOR_SD[free] ** 2
    for lev in levels:
        fv = lev.f[tuple(ijk.T)].astype(float)
        var = float(np.var(fv)) or 1.0
        lam = 1e-3
        cost, r, gain, gr, y, lin, we = _evaluate(lev, p, centre, rel, fv, w, cc, prior, var, 0.0)
        if not np.isfinite(cost):
            break
        min_valid = 0.9 * float(we.sum())
        if info["cost0"] is None:
            info["cost0"] = cost
        for _ in range(iterations):
            # d y / d params: translation I; rotation (y - c - t) x .; scale_k lin[:, k] rel_k
            arm = y - centre - p[:3]
            jac = gain * np.concatenate([gr, np.cross(arm, gr), (gr @ lin) * rel], axis=1)[:, free]
            sw = float(we.sum())
            h = (jac * we[:, None]).T @ jac / sw + prior * var * np.diag(inv_var)
            b = (jac * we[:, None]).T @ r / sw + prior * var * p[free] * inv_var
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
                new = _evaluate(lev, q, centre, rel, fv, w, cc, prior, var, min_valid)
                if new[0] < cost:
                    p, (cost, r, gain, gr, y, lin, we) = q, new
                    lam = max(lam / 3, 1e-6)
                    improved = True
                    break
                lam *= 10
            if not improved or np.abs(delta).max() < 1e-5:
                break
    info["cost"] = cost
    if len(levels) > 1:  # the finest level's cost at the identity, to check the fit against
        fv = levels[-1].f[tuple(ijk.T)].astype(float)
        var = float(np.var(fv)) or 1.0
        info["cost_identity"] = _evaluate(levels[-1], np.zeros(9), centre, rel, fv, w, cc, prior, var, 0.0)[0]
    else:
        info["cost_identity"] = info["cost0"]
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
                     shell_mm: float = 0.0, dof: str = "Tx_Ty_Tz_Rx_Ry_Rz", min_voxels: int = 50,
                     moving_valid: np.ndarray | None = None, prior: float = 1e-3,
                     pyramid: tuple[float, ...] = (2.0, 1.0, 0.0), min_gain: float = 0.0,
                     search_si: bool = False) -> tuple[dict[int, np.ndarray], dict[int, dict]]:
    """Per-vertebra pull matrices (4x4, world mm) taking fixed points to moving points.

    ``moving_valid``: where the moving image has data (> 0.99; e.g. its field of view pulled onto
    the grid): samples elsewhere are left out, and a step that would leave out more than a tenth
    of the region is refused. ``prior``: weight of a Gaussian prior on the parameters (SD 5 mm,
    10 degrees, 10 % scale) relative to the fixed intensities' variance; it only keeps ill-posed
    fits (a vertebra half outside the image) from running away. ``pyramid``: Gaussian smoothing
    of the resolution levels, in voxels. A vertebra whose fit lowers the finest level's cost
    (prior included) by less than ``min_gain`` (a fraction) keeps the identity. ``search_si``:
    start each fit from the best S-I shift and scale of an exhaustive search (for vertebral bodies
    of another size than the template's; needs ``Tz`` and ``Sz`` in ``dof``).
    Vertebrae with fewer than ``min_voxels`` voxels get their nearest fitted neighbour's motion.
    Returns the matrices and a report per vertebra (voxels, costs before/after, params)."""
    free = _dof_mask(dof)
    if not free.any():
        raise InputError(f"dof={dof} leaves nothing to fit", None, "use e.g. dof=Tx_Ty_Tz_Rx_Ry_Rz")
    vox = float(np.min(grid.zooms))
    f = np.asarray(fixed, np.float32)
    m = np.asarray(moving, np.float32)
    levels = [_Level(f, m, grid, float(np.hypot(s * vox, smooth_mm)), moving_valid) for s in pyramid]
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
        start = _search_si(levels[0], ijk, w, centre, cc) if search_si else None
        p, info = _fit_one(levels, ijk, w, centre, free, cc, iterations, prior, start)
        gain = 1.0 - info["cost"] / info["cost_identity"] if info["cost_identity"] > 0 else 0.0
        used = bool(np.isfinite(info["cost"]) and gain >= min_gain)
        if not used:  # no better than where the earlier steps put it: keep that
            p = np.zeros(9)
        out[v] = similarity_matrix(centre, p[3:6], p[:3], p[6:9])
        report[v] = {"voxels": n_bone, "region_voxels": len(ijk), "cost_identity": info["cost_identity"],
                     "cost_after": info["cost"], "used": used, "translation_mm": p[:3].round(4).tolist(),
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
class PolyRigidField(VelocityField):
    """The exponential of a poly-rigid velocity field (:class:`~spinereg.transforms.displacement.
    VelocityField`); its inverse ``exp(-v)`` is computed once and kept (the rigidity projection
    of a following step pulls many points back through it)."""

    def __init__(self, grid: Grid, velocity: np.ndarray):
        super().__init__(grid, velocity)
        self._inv: VelocityField | None = None

    def inverse(self, grid: Grid | None = None, iterations: int = 50, tol_mm: float = 1e-3) -> DisplacementField:
        if grid is None or grid.same_as(self.grid):
            if self._inv is None:
                self._inv = VelocityField(self.grid, -self.velocity)
            return self._inv
        return super().inverse(grid, iterations, tol_mm)

    def inverse_map(self, points: np.ndarray, iterations: int = 60, tol_mm: float = 1e-3) -> np.ndarray:
        return self.inverse().map(points)


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
def polyrigid(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid,
              step: Step, fixed_mask: np.ndarray | None = None, *,
              vertebrae: np.ndarray | None = None,
              spine: np.ndarray | None = None, moving_valid: np.ndarray | None = None,
              **_: object) -> PolyRigidField:
    """The ``algo=polyrigid`` step: ``vertebrae`` are per-vertebra labels on ``fixed_grid``;
    ``spine`` (optional) replaces the fixed image of image steps (a template's spine contrast,
    :mod:`spinereg.register.spine_contrast`).

    Step keys used: ``metric``, ``iter`` (Levenberg-Marquardt iterations per resolution, x3),
    ``smooth`` (mm, added to the pyramid's smoothing), ``dof`` (rigid by default; add Sx_Sy_Sz for
    per-vertebra scaling). ``moving_valid``: the voxels where the moving image has data (the
    engine's; False where it was pulled from outside its field): the fits leave the others out."""
    if vertebrae is None or not np.any(vertebrae):
        raise InputError("algo=polyrigid needs per-vertebra masks", None,
                         "register to a template with a spine mask (PAM50) or give a vertebra segmentation")
    lab = np.asarray(vertebrae).astype(np.int32)
    if spine is not None and getattr(step, "type", "im") in ("im", "imseg"):
        fixed = spine
    dof = getattr(step, "dof", "Tx_Ty_Tz_Rx_Ry_Rz")
    # against a synthesised template (another subject's anatomy, a tissue model) the fits are kept
    # near the earlier steps' placement and dropped when they gain little
    synthetic = spine is not None
    valid = np.isfinite(moving) & (np.abs(np.asarray(moving)) > 0) if synthetic else None
    if moving_valid is not None and not np.all(moving_valid):
        valid = np.asarray(moving_valid, bool) if valid is None else valid & np.asarray(moving_valid, bool)
    motions, report = estimate_motions(fixed, moving, fixed_grid, lab, metric=getattr(step, "metric", "MeanSquares"),
                                       moving_valid=valid, prior=0.02 if synthetic else 1e-3,
                                       min_gain=0.02 if synthetic else 0.0,
                                       iterations=max(5, 3 * int(getattr(step, "iter", 10))),
                                       smooth_mm=float(getattr(step, "smooth", 0.0) or 0.0), dof=dof)
    field = fuse(motions, lab, fixed_grid)
    field.motions = motions
    field.report_vertebrae = report
    log.info("polyrigid: %d vertebrae", len(motions))
    return field


polyrigid.needs = ("vertebrae", "spine", "moving_valid")  # inputs the engine passes (see engine.run_steps)
