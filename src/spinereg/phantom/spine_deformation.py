"""A random template->subject deformation of the spine, independent of the solver's models.

:class:`SpineDeformation` is a *push* ``P`` (template point -> subject point, world RAS+ mm)
built from, in order:

1. **cord size and shape**: in each template cross-section, points near the cord are scaled
   about the cord centre by ``1 + e_x(t)`` (L-R) and ``1 + e_y(t)`` (A-P), blended to no scaling
   beyond about twice the cord's radius (``w = 1 / (1 + (rho/1.6)^4)``, ``rho`` the elliptic
   radius in units of the cord's semi-axes); ``e`` is a per-subject offset (cord 12% larger or
   smaller) plus random smooth modes along S-I. The whole cross-section is also scaled by
   ``body_scale`` (body size);
2. a small **axial twist** of the cross-sections (random smooth angle along S-I);
3. a **piecewise S-I stretch**: every template segment between two consecutive disc labels gets
   its own rate ``length_scale * (1 + d_i)`` (``length_scale`` 0.85-1.15, ``d_i`` +-7%),
   smoothed over 3 mm and integrated into the subject arc ``s = S(t)``;
4. a **random cubic B-spline displacement** (control points 25-40 mm apart, about 1 mm) in
   the cord-local coordinates (in-plane offsets and arc);
5. a **curved centreline** ``(b_x(s), b_y(s))``: lordosis/kyphosis (6-14 mm) and a small
   scoliosis, each cross-section rotated by the minimal rotation taking S-I to the curve's
   tangent, the angle fading as ``1 / (1 + (r / R_b)^2)`` with the distance ``r`` from the cord;
6. a global **rotation** (a few degrees per axis) and a translation into scanner coordinates.

None of this is shared with :mod:`spinereg.phantom.template_subject` (sums of sines, Gaussian
bend taper, fixed-point inverse) nor with the solver (centerline frames, landmark arcs).

:func:`invert` solves ``P(y) = x`` by Newton's method with a finite-difference Jacobian from an
approximate analytic inverse, vectorised over points; its residual is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from collections.abc import Callable


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation about x, then y, then z (degrees), as a 3x3 matrix."""
    a = np.deg2rad(np.asarray(angles_deg, float))
    c, s = np.cos(a), np.sin(a)
    rx = np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
    ry = np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
    rz = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
    return rz @ ry @ rx


def _modes(t: np.ndarray, modes: Sequence[Sequence[float]]) -> np.ndarray:
    """Sum of ``amp * cos(2 pi t / wavelength + phase)`` over ``(amp, wavelength, phase)``."""
    out = np.zeros_like(t, dtype=float)
    for amp, wl, ph in modes:
        out += amp * np.cos(2 * np.pi * t / wl + ph)
    return out


def _modes_slope(t: np.ndarray, modes: Sequence[Sequence[float]]) -> np.ndarray:
    out = np.zeros_like(t, dtype=float)
    for amp, wl, ph in modes:
        w = 2 * np.pi / wl
        out -= amp * w * np.sin(w * t + ph)
    return out


@dataclass
class CordProfile:
    """The template cord along S-I: centre (x, y) and semi-axes (L-R, A-P) per template z (mm),
    from the template's cord mask (per-slice moments, smoothed); interpolated (clamped ends)."""

    z: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    ax: np.ndarray
    ay: np.ndarray

    @classmethod
    def from_mask(cls, data: np.ndarray, affine: np.ndarray, smooth_mm: float = 4.0) -> CordProfile:
        """Per-slice centroid and 2-sigma semi-axes of a cord mask whose last voxel axis is S-I."""
        lin = np.asarray(affine, float)[:3, :3]
        if np.argmax(np.abs(lin[2])) != 2 or np.abs(lin[:2, 2]).max() > 1e-6:
            raise ValueError("the template's last voxel axis must be its S-I axis")
        m = np.asarray(data, np.float32) > 0.5
        nk = m.shape[2]
        i, j = np.arange(m.shape[0], dtype=float), np.arange(m.shape[1], dtype=float)
        cnt = m.sum(axis=(0, 1)).astype(float)
        keep = cnt >= 4
        if keep.sum() < 2:
            raise ValueError("the template cord mask is (nearly) empty")
        si = (m.sum(1) * i[:, None]).sum(0)
        sj = (m.sum(0) * j[:, None]).sum(0)
        sii = (m.sum(1) * (i**2)[:, None]).sum(0)
        sjj = (m.sum(0) * (j**2)[:, None]).sum(0)
        k = np.arange(nk)[keep]
        ci, cj = si[keep] / cnt[keep], sj[keep] / cnt[keep]
        vi = np.maximum(sii[keep] / cnt[keep] - ci**2, 0.25)
        vj = np.maximum(sjj[keep] / cnt[keep] - cj**2, 0.25)
        world = np.column_stack([ci, cj, k]) @ lin.T + np.asarray(affine, float)[:3, 3]
        zoom = np.sqrt((lin**2).sum(0))
        sig = max(smooth_mm / zoom[2], 0.5)
        sm = [ndimage.gaussian_filter1d(v, sig, mode="nearest") for v in
              (world[:, 0], world[:, 1], 2 * np.sqrt(vi) * zoom[0], 2 * np.sqrt(vj) * zoom[1])]
        return cls(world[:, 2], *sm)

    def at(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        order = np.argsort(self.z)
        zz = self.z[order]
        return tuple(np.interp(z, zz, v[order]) for v in (self.cx, self.cy, self.ax, self.ay))


@dataclass
class SpineDeformation:
    """Parameters of the push ``P`` (module docstring); lengths mm, angles degrees."""

    profile: CordProfile
    z_center: float
    length_scale: float
    disc_z: list[float]
    segment_rates: list[float]
    body_scale: float
    cord_scale: tuple[float, float]
    cord_modes: tuple[list, list]
    twist_modes: list
    bend_x: list
    bend_y: list
    bend_radius: float
    spline_spacing: float
    spline_coef: np.ndarray
    spline_origin: np.ndarray
    rotation_deg: tuple[float, float, float]
    translation: np.ndarray
    _table: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    # -- drawing ---------------------------------------------------------------------------------
    @classmethod
    def random(cls, profile: CordProfile, z_center: float, disc_z: Sequence[float], rng: np.random.Generator, *,
               length_scale: float | None = None, segment_jitter: float = 0.07, cord_size: float = 0.12,
               body_size: float = 0.06, twist_deg: float = 3.0, bend_mm: tuple[float, float] = (6.0, 14.0),
               scoliosis_mm: float = 3.0, field_mm: float = 1.0, rotation_deg: float = 5.0,
               extent_mm: float = 320.0) -> SpineDeformation:
        """Draw every parameter from ``rng``; ``length_scale`` None draws it in 0.85-1.15."""
        ls = float(rng.uniform(0.85, 1.15)) if length_scale is None else float(length_scale)
        dz = sorted(float(v) for v in disc_z)
        rates = [float(ls * (1 + rng.uniform(-segment_jitter, segment_jitter))) for _ in range(max(len(dz) - 1, 0))]

        def modes(n: int, amp: float,
                  wl: tuple[float, float]) -> list[tuple[float, float, float]]:
            return [(float(rng.uniform(0.3, 1.0) * amp), float(rng.uniform(*wl)), float(rng.uniform(0, 2 * np.pi)))
                    for _ in range(n)]

        cs = tuple(float(v) for v in rng.uniform(-cord_size, cord_size, 2))
        spacing = float(rng.uniform(25.0, 40.0))
        n_in = int(np.ceil(2 * 90.0 / spacing)) + 4
        n_si = int(np.ceil(extent_mm / spacing)) + 4
        coef = rng.normal(0.0, field_mm, (3, n_in, n_in, n_si)).astype(np.float32)
        origin = np.array([-(n_in - 1) / 2 * spacing, -(n_in - 1) / 2 * spacing, -(n_si - 1) / 2 * spacing])
        by = [(float(rng.uniform(*bend_mm)), float(rng.uniform(260.0, 420.0)), float(rng.uniform(0, 2 * np.pi))),
              *modes(1, 2.0, (120.0, 200.0))]
        return cls(
            profile=profile, z_center=float(z_center), length_scale=ls, disc_z=dz, segment_rates=rates,
            body_scale=float(1 + rng.uniform(-body_size, body_size)), cord_scale=cs,
            cord_modes=(modes(2, 0.05, (40.0, 120.0)), modes(2, 0.05, (40.0, 120.0))),
            twist_modes=modes(2, twist_deg, (100.0, 260.0)), bend_x=modes(1, scoliosis_mm, (150.0, 300.0)),
            bend_y=by, bend_radius=float(rng.uniform(25.0, 45.0)), spline_spacing=spacing, spline_coef=coef,
            spline_origin=origin, rotation_deg=tuple(float(v) for v in rng.uniform(-rotation_deg, rotation_deg, 3)),
            translation=rng.uniform([-8.0, 10.0, 120.0], [8.0, 40.0, 220.0]),
        )

    # -- S-I arc -----------------------------------------------------------------------------------
    def _arc_table(self) -> tuple[np.ndarray, np.ndarray]:
        if self._table is None:
            step = 0.25
            t = np.arange(-900.0, 900.0 + step, step)
            rate = np.full(t.shape, self.length_scale)
            z = t + self.z_center
            for z0, z1, r in zip(self.disc_z[:-1], self.disc_z[1:], self.segment_rates, strict=True):
                rate[(z >= z0) & (z < z1)] = r
            rate = ndimage.gaussian_filter1d(rate, 3.0 / step, mode="nearest")
            s = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * step)])
            s -= np.interp(0.0, t, s)
            self._table = (t, s)
        return self._table

    def arc(self, t: np.ndarray) -> np.ndarray:
        """Subject arc ``s`` (mm from the centre) of template S-I offset ``t``."""
        tt, ss = self._arc_table()
        return np.interp(t, tt, ss)

    def arc_inverse(self, s: np.ndarray) -> np.ndarray:
        tt, ss = self._arc_table()
        return np.interp(s, ss, tt)

    # -- pieces ------------------------------------------------------------------------------------
    @property
    def rotation(self) -> np.ndarray:
        return rotation_matrix(self.rotation_deg)

    def _spline(self, q: np.ndarray) -> np.ndarray:
        """Cubic B-spline displacement (N, 3) at cord-local points ``q`` (qx, qy, s)."""
        c = ((q - self.spline_origin) / self.spline_spacing).T
        return np.stack([ndimage.map_coordinates(self.spline_coef[a], c, order=3, mode="grid-constant", cval=0.0,
                                                 prefilter=False) for a in range(3)], axis=1)

    def centreline(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Subject cord centre (local in-plane offsets) at arc ``s``, and its tangent (unit)."""
        b = np.stack([_modes(s, self.bend_x), _modes(s, self.bend_y)], axis=1)
        d = np.stack([_modes_slope(s, self.bend_x), _modes_slope(s, self.bend_y), np.ones_like(s)], axis=1)
        return b, d / np.linalg.norm(d, axis=1, keepdims=True)

    def push(self, points: np.ndarray) -> np.ndarray:
        """Template points (N, 3) -> subject points (N, 3), world mm."""
        y = np.asarray(points, float)
        t = y[:, 2] - self.z_center
        cx, cy, ax, ay = self.profile.at(y[:, 2])
        qx, qy = y[:, 0] - cx, y[:, 1] - cy
        ex = self.cord_scale[0] + _modes(t, self.cord_modes[0])
        ey = self.cord_scale[1] + _modes(t, self.cord_modes[1])
        rho4 = ((qx / ax) ** 2 + (qy / ay) ** 2) ** 2
        w = 1.0 / (1.0 + rho4 / 1.6**4)
        qx = self.body_scale * qx * (1 + ex * w)
        qy = self.body_scale * qy * (1 + ey * w)
        a = np.deg2rad(_modes(t, self.twist_modes))
        qx, qy = np.cos(a) * qx - np.sin(a) * qy, np.sin(a) * qx + np.cos(a) * qy
        q = np.stack([qx, qy, self.arc(t)], axis=1)
        q += self._spline(q)
        b, tan = self.centreline(q[:, 2])
        # minimal rotation taking +z to the tangent, faded away from the cord
        r = np.hypot(q[:, 0], q[:, 1])
        theta = np.arccos(np.clip(tan[:, 2], -1, 1)) / (1 + (r / self.bend_radius) ** 2)
        kn = np.hypot(tan[:, 0], tan[:, 1])
        kx = np.where(kn > 1e-12, -tan[:, 1] / np.maximum(kn, 1e-12), 1.0)
        ky = np.where(kn > 1e-12, tan[:, 0] / np.maximum(kn, 1e-12), 0.0)
        c, s = np.cos(theta), np.sin(theta)
        kv = kx * q[:, 0] + ky * q[:, 1]
        vx = q[:, 0] * c + kx * kv * (1 - c)
        vy = q[:, 1] * c + ky * kv * (1 - c)
        vz = (kx * q[:, 1] - ky * q[:, 0]) * s
        local = np.stack([b[:, 0] + vx, b[:, 1] + vy, q[:, 2] + vz], axis=1)
        return local @ self.rotation.T + self.translation

    def approx_pull(self, points: np.ndarray) -> np.ndarray:
        """A rough inverse of :meth:`push` (initial guess of :func:`invert`)."""
        local = (np.asarray(points, float) - self.translation) @ self.rotation
        b, _ = self.centreline(local[:, 2])
        t = self.arc_inverse(local[:, 2])
        z = t + self.z_center
        cx, cy, _, _ = self.profile.at(z)
        return np.stack([cx + (local[:, 0] - b[:, 0]) / self.body_scale,
                         cy + (local[:, 1] - b[:, 1]) / self.body_scale, z], axis=1)

    def as_dict(self) -> dict:
        return {
            "z_center": self.z_center, "length_scale": self.length_scale, "disc_z": list(self.disc_z),
            "segment_rates": list(self.segment_rates), "body_scale": self.body_scale,
            "cord_scale": list(self.cord_scale), "cord_modes": [list(map(list, m)) for m in self.cord_modes],
            "twist_modes": [list(m) for m in self.twist_modes], "bend_x": [list(m) for m in self.bend_x],
            "bend_y": [list(m) for m in self.bend_y], "bend_radius": self.bend_radius,
            "spline_spacing": self.spline_spacing, "spline_rms_mm": float(np.sqrt((self.spline_coef**2).mean())),
            "rotation_deg": list(self.rotation_deg), "translation": [float(v) for v in self.translation],
        }


def invert(fun: Callable[[np.ndarray], np.ndarray], guess: np.ndarray, target: np.ndarray,
           iterations: int = 30, tol_mm: float = 1e-5, h: float = 0.05) -> tuple[np.ndarray, float]:
    """Solve ``fun(y) = target`` for each row by Newton's method (finite-difference Jacobian),
    iterating only on the rows not yet converged. Returns the solutions and the largest residual
    ``|fun(y) - target|`` (mm)."""
    target = np.asarray(target, float)
    y = np.asarray(guess, float).copy()
    eye = np.eye(3) * h
    active = np.arange(len(y))
    f = fun(y)
    for _ in range(iterations):
        res = target[active] - f
        ok = np.abs(res).max(axis=1) < tol_mm
        active, res, f = active[~ok], res[~ok], f[~ok]
        if not len(active):
            break
        ya = y[active]
        jac = np.stack([(fun(ya + eye[i]) - f) / h for i in range(3)], axis=2)
        try:
            step = np.linalg.solve(jac, res[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = res
        y[active] = ya + np.clip(step, -20.0, 20.0)
        f = fun(y[active])
    worst = float(np.abs(fun(y) - target).max(initial=0.0)) if len(y) else 0.0
    return y, worst
