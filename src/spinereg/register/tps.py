"""Thin-plate splines on landmarks (``algo=tps``): approximating with per-landmark error
covariance (Rohr et al. 2001), interpolating as the zero-error limit.

The spline ``f(x) = x + A x + b + sum_i U(|x - p_i|) w_i`` with the 3D biharmonic kernel
``U(r) = -r / (8 pi)`` minimises

    sum_i (q_i - f(p_i))^T S_i^-1 (q_i - f(p_i)) + lam * J(f)

(``J`` the bending energy; ``S_i`` the 3x3 error covariance of landmark pair i, mm^2). The
solution solves ``(K + lam W^-1) w + P a = q - p``, ``P^T w = 0`` with ``K = U(|p_i - p_j|) (x) I_3``
and ``W^-1`` the block diagonal of the ``S_i``: a landmark known precisely in-plane but poorly
along S-I (a disc label on 5 mm slices) pulls the spline hard in-plane and softly along S-I. With
all ``S_i = 0`` the system is the interpolating spline exactly (same code path, same numbers).

Default covariances (``sigma=auto``): a point label is uniform within its voxel, so its error
covariance is ``R diag(z^2 / 12) R^T`` (``z`` the voxel size, ``R`` the voxel axes' directions);
the covariances of the two images of a pair add. ``sigma=S`` or ``SXxSYxSZ`` (e.g. ``0.5x0.5x2``) gives the SD per
world axis (R-L, A-P, S-I) instead; ``sigma=0`` interpolates.

In the step language a label step with ``algo=tps`` (``step=N,type=label,algo=tps``) fits the
spline between the fixed landmarks and the moving landmarks pulled back through the steps so far
(``fixed["landmarks"]`` in :func:`spinereg.register.engine.run_steps`, a :class:`LandmarkPairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.transforms.base import Transform

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable, Sequence

    from spinereg.cord.landmarks import Landmarks
    from spinereg.register.steps import Step

__all__ = ["LandmarkPairs", "ThinPlateSpline", "fit_tps", "sigma_covariances", "tps_step", "voxel_covariance"]

_C = 1.0 / (8.0 * np.pi)


def _kernel(r: np.ndarray) -> np.ndarray:
    return -_C * r


class ThinPlateSpline(Transform):
    """``map(x) = x + A x + b + sum_i U(|x - p_i|) w_i`` (pull, world mm): the spline models the
    displacement, so directions the landmarks do not span keep the identity."""

    def __init__(self, centres: np.ndarray, weights: np.ndarray, affine: np.ndarray):
        self.centres = np.asarray(centres, float)
        self.weights = np.asarray(weights, float)
        self.affine = np.asarray(affine, float)  # (4, 3): rows 1, x, y, z
        self._inverse: Transform | None = None

    def map(self, points: np.ndarray) -> np.ndarray:
        x = np.asarray(points, float).reshape(-1, 3)
        out = x + self.affine[0] + x @ self.affine[1:]
        for c, w in zip(self.centres, self.weights, strict=True):
            out += _kernel(np.sqrt(((x - c) ** 2).sum(1)))[:, None] * w
        return out

    def inverse(self) -> Transform:
        if self._inverse is None:
            self._inverse = _InverseTPS(self)
        return self._inverse

    def bending_energy(self) -> float:
        k = _kernel(np.linalg.norm(self.centres[:, None] - self.centres[None], axis=-1))
        return float(np.einsum("id,ij,jd->", self.weights, k, self.weights)) if len(k) else 0.0

    def __repr__(self) -> str:
        return f"ThinPlateSpline({len(self.centres)} landmarks)"


class _InverseTPS(Transform):
    """Numerical inverse: Newton-like fixed point ``x <- x - (f(x) - y)`` from a spline fitted the
    other way round."""

    def __init__(self, forward: ThinPlateSpline, iterations: int = 30, tol_mm: float = 1e-4):
        self.forward = forward
        q = forward.map(forward.centres)
        self.start = fit_tps(q, forward.centres)
        self.iterations = iterations
        self.tol = tol_mm

    def map(self, points: np.ndarray) -> np.ndarray:
        y = np.asarray(points, float).reshape(-1, 3)
        x = self.start.map(y)
        for _ in range(self.iterations):
            r = self.forward.map(x) - y
            x = x - r
            if np.abs(r).max(initial=0.0) < self.tol:
                break
        return x

    def inverse(self) -> Transform:
        return self.forward


def _poly_basis(p: np.ndarray, min_sd_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Centre and axes (rows) of the linear part: the principal directions along which the
    landmarks spread (SD > ``min_sd_mm``). Landmarks on one curve in the mid-sagittal plane (SCT's
    labels) span no L-R direction: the spline is then affine only in their plane."""
    centre = p.mean(0)
    if len(p) < 2:
        return centre, np.zeros((0, 3))
    _, sv, vt = np.linalg.svd(p - centre, full_matrices=False)
    return centre, vt[sv / np.sqrt(max(len(p) - 1, 1)) > min_sd_mm]


def _poly(x: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(x)), (x - centre) @ axes.T])


def _system(p: np.ndarray, cov: np.ndarray | None, lam: float,
            basis: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    n = len(p)
    centre, axes = _poly_basis(p) if basis is None else basis
    m = 1 + len(axes)
    k = _kernel(np.linalg.norm(p[:, None] - p[None], axis=-1))
    big = np.zeros((3 * n + 3 * m, 3 * n + 3 * m))
    big[: 3 * n, : 3 * n] = np.kron(k, np.eye(3))
    if cov is not None:
        for i in range(n):
            big[3 * i: 3 * i + 3, 3 * i: 3 * i + 3] += lam * cov[i]
    pk = np.kron(_poly(p, centre, axes), np.eye(3))  # (3n, 3m)
    big[: 3 * n, 3 * n:] = pk
    big[3 * n:, : 3 * n] = pk.T
    return big


def choose_lambda(p: np.ndarray, q: np.ndarray, cov: np.ndarray,
                  grid: np.ndarray | None = None) -> float:
    """``lam`` minimising Stein's unbiased estimate of the mean squared error of the fitted
    landmark positions (mm^2) under the known covariances ``C``:
    ``|q - f(p)|^2 + 2 tr(H C) - tr(C)`` (``H`` the hat matrix ``q -> f(p)``)."""
    n = len(p)
    big_c = _block(cov)
    m = 1 + len(_poly_basis(p)[1])
    rhs = np.zeros((3 * n + 3 * m, 3 * n))
    rhs[: 3 * n] = np.eye(3 * n)
    best, best_lam = np.inf, 1.0
    for lam in np.logspace(-2, 2, 17) if grid is None else grid:
        w_op = np.linalg.solve(_system(p, cov, lam), rhs)[: 3 * n]  # q -> spline weights w
        resid_op = lam * big_c @ w_op  # q - f(p) = lam C w
        r = resid_op @ (q - p).ravel()
        hat = np.eye(3 * n) - resid_op
        risk = float(r @ r) + 2.0 * float(np.trace(hat @ big_c)) - float(np.trace(big_c))
        if risk < best:
            best, best_lam = risk, float(lam)
    return best_lam


def _block(cov: np.ndarray) -> np.ndarray:
    n = len(cov)
    out = np.zeros((3 * n, 3 * n))
    for i in range(n):
        out[3 * i: 3 * i + 3, 3 * i: 3 * i + 3] = cov[i]
    return out


def fit_tps(source: np.ndarray, target: np.ndarray, cov: np.ndarray | None = None,
            lam: float | str = "auto") -> ThinPlateSpline:
    """Spline with ``f(source_i) ~ target_i``; ``cov`` (N, 3, 3) error covariances (mm^2) or None
    (interpolating). ``lam="auto"`` picks the smoothing weight by Stein's unbiased risk estimate
    (:func:`choose_lambda`). The linear part spans the directions the landmarks spread along
    (all three for landmarks around the spine; the sagittal plane for SCT's labels on the cord),
    translation only across them."""
    p = np.asarray(source, float).reshape(-1, 3)
    q = np.asarray(target, float).reshape(-1, 3)
    n = len(p)
    if n != len(q):
        raise ValueError("source and target landmarks differ in number")
    basis = _poly_basis(p)
    m = 1 + len(basis[1])
    if n < 2 or n < m:
        raise InputError(f"a thin-plate spline needs >= 2 landmarks (got {n})", None,
                         "give more landmarks (e.g. discs and vertebral bodies) or use a label step without tps")
    c = None if cov is None else np.asarray(cov, float).reshape(n, 3, 3)
    if c is not None and not np.any(c):
        c = None
    if c is not None and lam == "auto":
        lam = choose_lambda(p, q, c)
    lam = 1.0 if lam == "auto" else float(lam)
    sol = np.linalg.solve(_system(p, c, lam, basis), np.concatenate([(q - p).ravel(), np.zeros(3 * m)]))
    lin = np.zeros((4, 3))
    coef = sol[3 * n:].reshape(m, 3)  # rows: constant, then one per basis axis
    lin[1:] = basis[1].T @ coef[1:]
    lin[0] = coef[0] - basis[0] @ lin[1:]
    spline = ThinPlateSpline(p, sol[: 3 * n].reshape(n, 3), lin)
    spline.lam = lam if c is not None else 0.0
    return spline


def voxel_covariance(grid: Grid) -> np.ndarray:
    """3x3 world covariance (mm^2) of a point uniform within one voxel of ``grid``."""
    a = grid.affine[:3, :3]
    return a @ np.diag(np.full(3, 1.0 / 12.0)) @ a.T


def sigma_covariances(sigma: str, n: int, grids: tuple[Grid | None, ...] = ()) -> np.ndarray | None:
    """Covariances (n, 3, 3) for the step key ``sigma``: ``auto`` (sum of the voxel covariances of
    ``grids``), ``0`` (None: interpolating), ``S`` or ``SXxSYxSZ`` (SD per world axis, mm)."""
    text = str(sigma).strip().lower()
    if text in ("0", "0.0"):
        return None
    if text == "auto":
        c = sum((voxel_covariance(g) for g in grids if g is not None), np.zeros((3, 3)))
        return np.broadcast_to(c, (n, 3, 3)).copy()
    sd = np.array([float(s) for s in text.split("x")])
    sd = np.broadcast_to(sd, (3,)) if sd.size == 1 else sd
    if sd.size != 3:
        raise InputError(f"bad sigma {sigma!r}", None, "use sigma=auto, 0, S or SXxSYxSZ in mm (e.g. 0.5x0.5x2)")
    return np.broadcast_to(np.diag(sd**2), (n, 3, 3)).copy()


@dataclass
class LandmarkPairs:
    """Matching landmarks: ``fixed[i]`` (fixed space) corresponds to ``moving[i]`` (moving space).
    ``fixed_grid``/``moving_grid``: the images the labels came from (for ``sigma=auto``);
    ``cov``: explicit per-landmark covariances (N, 3, 3), overriding ``sigma``."""

    fixed: np.ndarray
    moving: np.ndarray
    values: np.ndarray | None = None
    fixed_grid: Grid | None = None
    moving_grid: Grid | None = None
    cov: np.ndarray | None = None

    @classmethod
    def from_landmarks(cls, fixed_lm: Landmarks, moving_lm: Landmarks,
                       fixed_grid: Grid | None = None,
                       moving_grid: Grid | None = None) -> LandmarkPairs:
        """Pairs of two :class:`~spinereg.cord.landmarks.Landmarks` by common value."""
        common = np.intersect1d(fixed_lm.values, moving_lm.values)
        return cls(np.array([fixed_lm.point(v) for v in common]), np.array([moving_lm.point(v) for v in common]),
                   common, fixed_grid, moving_grid)

    def covariances(self, sigma: str) -> np.ndarray | None:
        if self.cov is not None and str(sigma).lower() == "auto":
            return np.asarray(self.cov, float)
        return sigma_covariances(sigma, len(self.fixed), (self.fixed_grid, self.moving_grid))


def tps_step(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid, step: Step,
             fixed_mask: np.ndarray | None = None, *, landmarks: LandmarkPairs | None = None,
             chain: Sequence[Transform] | None = None, **_: object) -> ThinPlateSpline:
    """The ``algo=tps`` step: the moving landmarks are pushed back through ``chain`` (the steps so
    far) into the fixed space, and the spline takes each fixed landmark to its match there."""
    if landmarks is None or len(landmarks.fixed) == 0:
        raise InputError("algo=tps needs landmarks", None, "give label files (-l/--ldisc) for a tps step")
    q = np.asarray(landmarks.moving, float)
    if chain:
        from spinereg.transforms.base import Chain

        q = Chain(list(chain)).inverse_map(q)
    return fit_tps(landmarks.fixed, q, landmarks.covariances(getattr(step, "sigma", "auto")))


tps_step.needs = ("landmarks", "chain")  # inputs the engine passes (see engine.run_steps)


def template_landmark_inputs(steps: Iterable[Step], template_landmarks: Landmarks,
                             subject_landmarks: Landmarks, template_grid: Grid,
                             subject_grid: Grid) -> dict:
    """``fixed["landmarks"]`` for a template-space registration whose steps include
    ``algo=tps``: the template's labels (fixed) and the subject's (moving), as placed in their
    files (not projected on the cord), with the voxel sizes of both images for ``sigma=auto``."""
    if not any(getattr(s, "algo", None) == "tps" for s in steps):
        return {}
    common = subject_landmarks.values[np.isin(subject_landmarks.values, template_landmarks.values)]
    return {"landmarks": LandmarkPairs.from_landmarks(template_landmarks.subset(common), subject_landmarks,
                                                      template_grid, subject_grid)}
