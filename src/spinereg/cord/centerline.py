"""Spinal cord centerline: robust fit from a segmentation, arc-length curve with a stable frame.

The centerline is a smooth 3D curve in world space (RAS+ mm) parametrised by arc length ``s``
(mm), ``s = 0`` at the inferior end and ``s = length`` at the superior end, so the tangent points
superior-ish. Beyond its ends the curve continues as straight lines along the end tangents (with
the end frame), which makes every map built on it defined everywhere.

Frame convention (rotation-minimising, i.e. parallel transport along the curve, initialised at
``s = 0`` with the normal pointing to world anterior):

* ``tangent(s)``  ~ +z (Superior)
* ``normal(s)``   ~ +y (Anterior)
* ``binormal(s)`` ~ +x (Right) = ``normal x tangent``

``(binormal, normal, tangent)`` is a right-handed orthonormal frame that equals the world axes
for a straight vertical cord, so local in-plane coordinates ``(a, b) = (d . binormal, d . normal)``
keep world right/left and anterior/posterior: no flips.

Fitting (:meth:`Centerline.from_mask`): per-slice centre of mass (slices along the voxel axis most
aligned with world S-I, empty slices skipped), then x(z) and y(z) fitted by a penalised cubic
B-spline (P-spline) whose smoothing is chosen by generalised cross-validation within
``[min_smooth_mm, max_smooth_mm]`` (kernel scale in mm), with outlier rejection on leave-one-out
residuals (points beyond 3 robust standard deviations -- MAD based -- are dropped, iteratively,
starting from a stiff fit so that a few bad end slices cannot pull the fit toward them). With
fewer than ``8`` slices a low-order polynomial is fitted instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.interpolate import BSpline, CubicSpline
from scipy.spatial import cKDTree

from spinereg.errors import InputError
from spinereg.io.box import box_slices, mask_box
from spinereg.io.image import Image, load_image
from spinereg.robust import robust_sd

_ANTERIOR = np.array([0.0, 1.0, 0.0])
_RIGHT = np.array([1.0, 0.0, 0.0])
_SUPERIOR = np.array([0.0, 0.0, 1.0])

#: Fewer fitted slices than this: polynomial fallback instead of a smoothing spline.
MIN_SPLINE_POINTS = 8


# ---------------------------------------------------------------------------------------------
# fit report
# ---------------------------------------------------------------------------------------------
@dataclass
class CenterlineFit:
    """How a centerline was fitted from per-slice centres of mass (world mm)."""

    method: str  # "pspline", "poly0/1/2", "interp"
    smooth_mm: float
    slice_axis: int | None
    com: np.ndarray  # (n, 3) per-slice centres of mass, sorted by z
    inlier: np.ndarray  # (n,) bool
    residual_mm: np.ndarray  # (n,) in-plane distance of each centre of mass to the fit
    iterations: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return int(len(self.com))

    @property
    def n_outliers(self) -> int:
        return int((~self.inlier).sum())

    @property
    def outlier_z(self) -> list[float]:
        return [float(z) for z in self.com[~self.inlier, 2]]

    def summary(self) -> dict:
        r = self.residual_mm[self.inlier]
        return {
            "method": self.method,
            "smooth_mm": float(self.smooth_mm),
            "slice_axis": self.slice_axis,
            "n_points": self.n_points,
            "n_outliers": self.n_outliers,
            "outlier_z_mm": self.outlier_z,
            "rms_residual_mm": float(np.sqrt(np.mean(r**2))) if r.size else 0.0,
            "max_residual_mm": float(r.max()) if r.size else 0.0,
            "iterations": self.iterations,
        }

    def to_dict(self) -> dict:
        d = self.summary()
        d["com"] = np.round(self.com, 5).tolist()
        d["inlier"] = self.inlier.astype(bool).tolist()
        d["residual_mm"] = np.round(self.residual_mm, 5).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CenterlineFit:
        return cls(
            method=d["method"],
            smooth_mm=float(d["smooth_mm"]),
            slice_axis=d.get("slice_axis"),
            com=np.asarray(d.get("com", np.zeros((0, 3))), float).reshape(-1, 3),
            inlier=np.asarray(d.get("inlier", []), bool),
            residual_mm=np.asarray(d.get("residual_mm", []), float),
            iterations=int(d.get("iterations", 0)),
        )


# ---------------------------------------------------------------------------------------------
# the curve
# ---------------------------------------------------------------------------------------------
class Centerline:
    """Arc-length parametrised curve in world space (RAS+ mm) with a rotation-minimising frame.

    Built from dense samples ``points`` at arc lengths ``s`` (strictly increasing, ``s[0] = 0``)
    through a cubic spline. Use :meth:`from_mask`, :meth:`from_points` or :meth:`from_dict`.
    """

    def __init__(self, s: np.ndarray, points: np.ndarray, fit: CenterlineFit | None = None):
        s = np.asarray(s, dtype=float).ravel()
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        if len(s) != len(p) or len(s) < 2:
            raise ValueError("a centerline needs at least 2 points and one arc length per point")
        if not np.all(np.isfinite(p)) or not np.all(np.diff(s) > 0):
            raise ValueError("centerline arc lengths must increase strictly and points be finite")
        self._s = s - s[0]
        self._p = p
        self.fit = fit
        self._spline = CubicSpline(self._s, p, axis=0, bc_type="natural")
        self._d1 = self._spline.derivative(1)
        self._d2 = self._spline.derivative(2)
        t = self._d1(self._s)
        self._t = t / np.linalg.norm(t, axis=1, keepdims=True)
        self._n = _rotation_minimising_normals(p, self._t)
        self._tree: cKDTree | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_mask(
        cls,
        img: Image,
        *,
        smooth_mm: float | None = None,
        min_smooth_mm: float = 2.0,
        max_smooth_mm: float = 40.0,
        outlier_mad: float = 3.0,
        extend_mm: float | None = None,
        step_mm: float = 0.5,
    ) -> Centerline:
        """Fit the centerline of a cord segmentation (binary or soft, values in [0, 1]).

        ``smooth_mm``: smoothing kernel scale (mm); ``None`` chooses it by generalised
        cross-validation within ``[min_smooth_mm, max_smooth_mm]`` (the lower bound is raised to
        1.5 slice spacings). ``outlier_mad``: rejection threshold in robust standard deviations
        (0 disables rejection). ``extend_mm``: length added beyond the first and last centres of
        mass along S-I (default: half the slice spacing, so that the end slices are covered).
        ``step_mm``: spacing of the stored arc-length samples.
        """
        name = img.name
        if img.ndim != 3:
            raise InputError(f"segmentation must be 3D, got shape {img.shape}", name,
                             "give a 3D cord segmentation")
        com, axis, spacing, idx = slice_centres_of_mass(img, return_slices=True)
        if len(com) == 0:
            raise InputError("segmentation is empty (no voxel > 0)", name,
                             "give a spinal cord segmentation (e.g. from sct_deepseg spinalcord)")
        if extend_mm is None:
            # half a slice beyond each end slice, unless it is the last slice of the image
            # (nothing to sample beyond the field of view)
            edge = (0, img.shape[axis] - 1)
            ext = (0.0 if idx[0] in edge else 0.5 * spacing, 0.0 if idx[-1] in edge else 0.5 * spacing)
        else:
            ext = (float(extend_mm), float(extend_mm))
        zooms = img.grid.zooms
        inplane = float(np.min(np.delete(zooms, axis)))
        lo = max(min_smooth_mm, 1.5 * spacing)
        return cls._fit(com, smooth_mm, lo, max(lo, max_smooth_mm), outlier_mad, ext, step_mm,
                        axis, inplane, spacing)

    @classmethod
    def from_points(
        cls,
        points: np.ndarray,
        *,
        smooth_mm: float | None = 0.0,
        min_smooth_mm: float = 2.0,
        max_smooth_mm: float = 40.0,
        outlier_mad: float = 3.0,
        extend_mm: float = 0.0,
        step_mm: float = 0.5,
    ) -> Centerline:
        """Centerline through world points (N, 3), e.g. a template's centerline, ordered by z.

        ``smooth_mm=0`` interpolates the points exactly; ``None`` fits them as :meth:`from_mask`
        does (data-chosen smoothing, outlier rejection); a positive value smooths by that scale.
        """
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if len(pts) == 0:
            raise InputError("no finite centerline points given", None, "give an (N, 3) array")
        pts = pts[np.argsort(pts[:, 2], kind="stable")]
        spacing = float(np.median(np.diff(pts[:, 2]))) if len(pts) > 1 else 1.0
        spacing = spacing if spacing > 0 else 1.0
        if smooth_mm is not None and smooth_mm <= 0:
            # exact interpolation: merge points sharing a z, then spline x(z), y(z)
            z, inv = np.unique(np.round(pts[:, 2], 6), return_inverse=True)
            xy = np.stack([np.bincount(inv, pts[:, c]) / np.bincount(inv) for c in (0, 1)], 1)
            if len(z) == 1:
                return cls._vertical(np.array([xy[0, 0], xy[0, 1], z[0]]), max(extend_mm, 0.5),
                                     CenterlineFit("interp", 0.0, None, pts, np.ones(len(pts), bool),
                                                   np.zeros(len(pts))))
            fx = CubicSpline(z, xy, axis=0, bc_type="natural") if len(z) > 2 else None
            if fx is None:
                def fx(zz: np.ndarray, _z: np.ndarray = z, _xy: np.ndarray = xy) -> np.ndarray:
                    return np.stack([np.interp(zz, _z, _xy[:, c]) for c in (0, 1)], -1)
            fit = CenterlineFit("interp", 0.0, None, np.column_stack([xy, z]), np.ones(len(z), bool),
                                np.zeros(len(z)))
            return cls._from_function(fx, z[0] - extend_mm, z[-1] + extend_mm, step_mm, fit)
        lo = max(min_smooth_mm, 1.5 * spacing)
        return cls._fit(pts, smooth_mm, lo, max(lo, max_smooth_mm), outlier_mad,
                        (extend_mm, extend_mm), step_mm, None, 1.0, spacing)

    @classmethod
    def from_dict(cls, d: dict) -> Centerline:
        """Inverse of :meth:`to_dict`."""
        fit = CenterlineFit.from_dict(d["fit"]) if d.get("fit") else None
        return cls(np.asarray(d["s"], float), np.asarray(d["points"], float), fit)

    def to_dict(self) -> dict:
        """JSON-serialisable form (arc lengths, points, fit report)."""
        return {
            "type": "spinereg.centerline",
            "version": 1,
            "s": np.round(self._s, 6).tolist(),
            "points": np.round(self._p, 6).tolist(),
            "fit": None if self.fit is None else self.fit.to_dict(),
        }

    @classmethod
    def _fit(cls, com: np.ndarray, smooth_mm: float | None, lo: float, hi: float,
             outlier_mad: float, ext: tuple[float, float], step_mm: float, axis: int | None,
             inplane: float, spacing: float) -> Centerline:
        z = com[:, 2]
        xy = com[:, :2]
        za, zb = float(z.min()) - ext[0], float(z.max()) + ext[1]
        if len(com) == 1:
            fit = CenterlineFit("poly0", 0.0, axis, com, np.ones(1, bool), np.zeros(1))
            return cls._vertical(com[0], max(0.5 * spacing, 0.25), fit)
        if len(com) < MIN_SPLINE_POINTS:
            deg = 2 if len(com) >= 4 else 1
            zm = float(z.mean())
            coef = np.polyfit(z - zm, xy, deg)

            def f(zz: np.ndarray, _c: np.ndarray = coef, _m: float = zm) -> np.ndarray:
                zz = np.asarray(zz, float) - _m
                return np.stack([np.polyval(_c[:, 0], zz), np.polyval(_c[:, 1], zz)], -1)

            res = np.linalg.norm(f(z) - xy, axis=1)
            fit = CenterlineFit(f"poly{deg}", 0.0, axis, com, np.ones(len(com), bool), res)
            return cls._from_function(f, za, zb, step_mm, fit)
        ps = _PSpline(z, za, zb, knot_mm=max(0.5 * lo, (zb - za) / 400.0))
        f, inl, res, L, it = ps.robust_fit(xy, smooth_mm, lo, hi, outlier_mad,
                                           sigma_floor=inplane / 3.0)
        fit = CenterlineFit("pspline", L, axis, com, inl, np.linalg.norm(res, axis=1), it)
        return cls._from_function(f, za, zb, step_mm, fit)

    @classmethod
    def _from_function(cls, fxy: Callable, za: float, zb: float, step_mm: float,
                       fit: CenterlineFit | None) -> Centerline:
        """Arc-length resampling of the curve (x(z), y(z), z) for z in [za, zb]."""
        if zb - za < 1e-6:
            return cls._vertical(np.array([*np.asarray(fxy(np.array([za])))[0], za]), 0.25, fit)
        nf = int(np.ceil((zb - za) / 0.05)) + 1
        zf = np.linspace(za, zb, nf)
        pf = np.column_stack([fxy(zf), zf])
        sf = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pf, axis=0), axis=1))])
        length = sf[-1]
        ns = max(2, int(np.ceil(length / step_mm)) + 1)
        s = np.linspace(0.0, length, ns)
        zs = np.interp(s, sf, zf)
        return cls(s, np.column_stack([fxy(zs), zs]), fit)

    @classmethod
    def _vertical(cls, p: np.ndarray, half: float, fit: CenterlineFit | None) -> Centerline:
        s = np.array([0.0, 2 * half])
        pts = np.stack([p - half * _SUPERIOR, p + half * _SUPERIOR])
        return cls(s, pts, fit)

    # -- geometry ----------------------------------------------------------------------------
    @property
    def length(self) -> float:
        """Arc length (mm)."""
        return float(self._s[-1])

    @property
    def z_range(self) -> tuple[float, float]:
        """World S-I coordinates (mm) of the two ends (``s = 0`` first)."""
        return float(self._p[0, 2]), float(self._p[-1, 2])

    @property
    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored samples: arc lengths (n,) and points (n, 3)."""
        return self._s.copy(), self._p.copy()

    def points(self, s: np.ndarray | float) -> np.ndarray:
        """World points (..., 3) at arc lengths ``s``; straight extension beyond the ends."""
        s = np.asarray(s, dtype=float)
        flat = s.ravel()
        sc = np.clip(flat, 0.0, self.length)
        out = self._spline(sc)
        below, above = flat < 0, flat > self.length
        if below.any():
            out[below] = self._p[0] + flat[below, None] * self._t[0]
        if above.any():
            out[above] = self._p[-1] + (flat[above, None] - self.length) * self._t[-1]
        return out.reshape(s.shape + (3,))

    def tangent(self, s: np.ndarray | float) -> np.ndarray:
        """Unit tangent (..., 3), pointing toward increasing ``s`` (superior-ish)."""
        s = np.asarray(s, dtype=float)
        t = self._d1(np.clip(s.ravel(), 0.0, self.length))
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        return t.reshape(s.shape + (3,))

    def normal(self, s: np.ndarray | float) -> np.ndarray:
        """Unit normal (..., 3) of the rotation-minimising frame, anterior-ish."""
        return self.frame(s)[..., :, 1]

    def binormal(self, s: np.ndarray | float) -> np.ndarray:
        """Unit binormal (..., 3) = normal x tangent, toward world right (+x)-ish."""
        return self.frame(s)[..., :, 0]

    def frame(self, s: np.ndarray | float) -> np.ndarray:
        """Rotation matrices (..., 3, 3) with columns (binormal, normal, tangent) at ``s``."""
        s = np.asarray(s, dtype=float)
        flat = np.clip(s.ravel(), 0.0, self.length)
        t = self.tangent(flat)
        n = np.stack([np.interp(flat, self._s, self._n[:, c]) for c in range(3)], -1)
        n -= (n * t).sum(-1, keepdims=True) * t
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        b = np.cross(n, t)
        return np.stack([b, n, t], axis=-1).reshape(s.shape + (3, 3))

    def rolled(self, angle_deg: float) -> Centerline:
        """The same curve with its frame turned by ``angle_deg`` about the tangent (from the
        binormal toward the normal, so the new binormal is ``cos a binormal + sin a normal``):
        still rotation-minimising (a constant turn commutes with parallel transport). For a
        subject turned about S-I in the scanner, whose anterior is not world anterior
        (:func:`spinereg.cord.roll.cross_section_roll`)."""
        import copy

        a = np.radians(float(angle_deg))
        out = copy.copy(self)
        b = np.cross(self._n, self._t)
        out._n = np.cos(a) * self._n - np.sin(a) * b
        return out

    def curvature(self, s: np.ndarray | float) -> np.ndarray:
        """Curvature (1/mm) at ``s`` (0 beyond the ends)."""
        return np.linalg.norm(self.curvature_vector(s), axis=-1)

    def curvature_vector(self, s: np.ndarray | float) -> np.ndarray:
        """Curvature vector (..., 3; 1/mm) at ``s``: ``dT/ds``, pointing to the centre of the bend,
        its length the curvature (0 beyond the ends)."""
        s = np.asarray(s, dtype=float)
        flat = s.ravel()
        sc = np.clip(flat, 0.0, self.length)
        d1, d2 = self._d1(sc), self._d2(sc)
        speed2 = np.einsum("ij,ij->i", d1, d1)
        k = (d2 - (np.einsum("ij,ij->i", d1, d2) / speed2)[:, None] * d1) / speed2[:, None]
        k[(flat < 0) | (flat > self.length)] = 0.0
        return k.reshape(s.shape + (3,))

    # -- projection --------------------------------------------------------------------------
    def project(self, points: np.ndarray, extend: bool = True,
                iterations: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Closest curve point of each world point (N, 3): arc length ``s`` and distance (mm).

        With ``extend`` the curve continues straight beyond its ends, so ``s`` may be negative or
        exceed :attr:`length` (points below/above the ends); otherwise ``s`` is clipped to the
        curve. Exact (Newton refinement of a k-d tree guess) near the curve; far from it, beyond
        the radius of curvature, the closest point may be ambiguous but is always finite.
        """
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        if self._tree is None:
            self._tree = cKDTree(self._p)
        _, idx = self._tree.query(p, workers=-1)
        s0 = self._s[idx]
        ds = float(np.max(np.diff(self._s)))
        lo, hi = np.maximum(s0 - 2 * ds, 0.0), np.minimum(s0 + 2 * ds, self.length)
        s = s0.copy()
        for _ in range(iterations):  # Newton on (c(s) - p) . c'(s) = 0
            d = self._spline(s) - p
            d1 = self._d1(s)
            g = np.einsum("ij,ij->i", d, d1)
            t2 = np.einsum("ij,ij->i", d1, d1)
            h = t2 + np.einsum("ij,ij->i", d, self._d2(s))
            s = np.clip(s - g / np.where(h > 0.2, h, t2), lo, hi)
        # keep the k-d tree guess where Newton did not improve (far, ambiguous points)
        worse = _sqnorm(self._spline(s) - p) > _sqnorm(self._p[idx] - p)
        s[worse] = s0[worse]
        if extend:
            t0 = ((p - self._p[0]) * self._t[0]).sum(1)
            t1 = ((p - self._p[-1]) * self._t[-1]).sum(1)
            at0 = (s <= 1e-9) & (t0 < 0)
            at1 = (s >= self.length - 1e-9) & (t1 > 0)
            s[at0] = t0[at0]
            s[at1] = self.length + t1[at1]
        dist = np.linalg.norm(self.points(s) - p, axis=1)
        return s, dist

    def local_coords(self, points: np.ndarray) -> np.ndarray:
        """Local coordinates (N, 3) ``(a, b, s)``: in-plane offsets along binormal (right-ish)
        and normal (anterior-ish) from the closest curve point, and its arc length."""
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        s, _ = self.project(p, extend=True)
        d = p - self.points(s)
        f = self.frame(s)
        a = np.einsum("ni,ni->n", d, f[:, :, 0])
        b = np.einsum("ni,ni->n", d, f[:, :, 1])
        return np.column_stack([a, b, s])

    def from_local(self, abs_: np.ndarray) -> np.ndarray:
        """World points (N, 3) of local coordinates ``(a, b, s)``: c(s) + a binormal + b normal."""
        q = np.asarray(abs_, dtype=float).reshape(-1, 3)
        f = self.frame(q[:, 2])
        return self.points(q[:, 2]) + q[:, 0:1] * f[:, :, 0] + q[:, 1:2] * f[:, :, 1]

    def signature(self) -> bytes:
        """Bytes identifying the curve and its frame (for caches; a :meth:`rolled` copy differs)."""
        return (np.ascontiguousarray(np.round(self._p, 6)).tobytes() + np.round(self._s, 6).tobytes()
                + np.ascontiguousarray(np.round(self._n, 6)).tobytes())

    def __repr__(self) -> str:
        z0, z1 = self.z_range
        return f"Centerline(length={self.length:.1f} mm, z={z0:.1f}..{z1:.1f} mm, n={len(self._s)})"


def centerline_from_seg(seg: str | Path | Image, **kwargs) -> Centerline:
    """Centerline of a cord segmentation file or image (see :meth:`Centerline.from_mask`)."""
    img = seg if isinstance(seg, Image) else load_image(seg, ndim=3, what="segmentation")
    return Centerline.from_mask(img, **kwargs)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def si_axis(affine: np.ndarray) -> int:
    """Voxel axis most aligned with world S-I."""
    m = np.asarray(affine, float)[:3, :3]
    cols = m / np.linalg.norm(m, axis=0, keepdims=True)
    return int(np.argmax(np.abs(cols[2])))


def slice_centres_of_mass(
    img: Image, min_mass: float = 0.5, return_slices: bool = False
) -> tuple[np.ndarray, int, float] | tuple[np.ndarray, int, float, np.ndarray]:
    """Per-slice centres of mass (n, 3) in world mm, sorted by z; the slice axis; slice spacing.

    Slices are taken along the voxel axis most aligned with world S-I. Voxel values are weights
    (negative values ignored, values below 1e-3 of the maximum treated as 0, label images with a
    maximum above 1 rescaled); slices whose total weight is below ``min_mass`` (voxel units) are
    skipped. With ``return_slices`` the slice indices (in the same order) come fourth.
    """
    data = np.moveaxis(np.asarray(img.data), axis := si_axis(img.affine), 2)
    spacing = float(abs(img.affine[2, axis]))
    if spacing <= 1e-6:
        spacing = float(img.grid.zooms[axis])
    pos = data > 0
    found = mask_box(pos)  # only the box holding the positive voxels is read
    if found is None:
        empty = (np.zeros((0, 3)), axis, spacing)
        return (*empty, np.zeros(0, int)) if return_slices else empty
    box = box_slices(*found)
    w = np.asarray(data[box], dtype=np.float64)
    w = np.where(pos[box], w, 0.0)
    wmax = float(w.max())
    w = np.where(w >= 1e-3 * wmax, w, 0.0)
    if wmax > 1.0:  # label image with a non-unit value: normalise
        w = w / wmax
    mass = np.zeros(data.shape[2])
    ii, jj = np.zeros_like(mass), np.zeros_like(mass)
    mass[box[2]] = w.sum(axis=(0, 1))
    ii[box[2]] = (w.sum(axis=1) * np.arange(box[0].start, box[0].stop)[:, None]).sum(0)
    jj[box[2]] = (w.sum(axis=0) * np.arange(box[1].start, box[1].stop)[:, None]).sum(0)
    keep = np.nonzero(mass >= min_mass)[0]
    vox = np.empty((len(keep), 3))
    inplane_axes = [a for a in range(3) if a != axis]
    vox[:, inplane_axes[0]] = ii[keep] / mass[keep]
    vox[:, inplane_axes[1]] = jj[keep] / mass[keep]
    vox[:, axis] = keep
    com = img.grid.voxel_to_world(vox)
    order = np.argsort(com[:, 2], kind="stable")
    if return_slices:
        return com[order], axis, spacing, keep[order]
    return com[order], axis, spacing


def _sqnorm(v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", v, v)


def _rotation_minimising_normals(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Normals of the rotation-minimising frame (double reflection, Wang et al. 2008).

    Initialised with world anterior projected orthogonally to the first tangent.
    """
    n0 = _ANTERIOR - (_ANTERIOR @ t[0]) * t[0]
    if np.linalg.norm(n0) < 0.1:  # tangent along A-P: fall back to world right x tangent
        n0 = np.cross(t[0], _RIGHT)
    n = np.empty_like(p)
    n[0] = n0 / np.linalg.norm(n0)
    v1s = np.diff(p, axis=0)
    for i in range(len(p) - 1):  # loop over curve samples
        v1 = v1s[i]
        c1 = v1 @ v1
        if c1 < 1e-20:
            n[i + 1] = n[i]
            continue
        rl = n[i] - (2.0 / c1) * (v1 @ n[i]) * v1
        tl = t[i] - (2.0 / c1) * (v1 @ t[i]) * v1
        v2 = t[i + 1] - tl
        c2 = v2 @ v2
        r = rl - (2.0 / c2) * (v2 @ rl) * v2 if c2 > 1e-20 else rl
        r -= (r @ t[i + 1]) * t[i + 1]
        n[i + 1] = r / np.linalg.norm(r)
    return n


class _PSpline:
    """Penalised cubic B-spline smoother of vector data y(z) with GCV and leave-one-out residuals.

    Smoothing is expressed as a kernel scale ``L`` (mm): the penalty weight is
    ``lambda = rho L^4 / h^3`` (``rho`` points per mm, ``h`` knot spacing), which makes the
    equivalent smoothing kernel of the corresponding smoothing spline about ``L`` mm wide.
    """

    def __init__(self, z: np.ndarray, za: float, zb: float, knot_mm: float):
        self.z = z
        self.za, self.zb = za, zb
        nseg = max(4, int(np.ceil((zb - za) / knot_mm)))
        self.h = (zb - za) / nseg
        self.t = za + self.h * np.arange(-3, nseg + 4)
        self.B = self._design(z)
        m = self.B.shape[1]
        d = np.diff(np.eye(m), n=2, axis=0)
        self.P = d.T @ d

    def _design(self, z: np.ndarray) -> np.ndarray:
        # clip to the knots' own base interval: ``za + nseg * h`` can round below ``zb``, and
        # design_matrix refuses points a hair outside it ("Out of bounds")
        zc = np.clip(np.asarray(z, float), self.t[3], self.t[-4])
        return BSpline.design_matrix(zc, self.t, 3).toarray()

    def _solve(self, y: np.ndarray, w: np.ndarray, L: float) -> tuple[np.ndarray, np.ndarray]:
        rho = max(w.sum(), 1.0) / max(self.zb - self.za, 1e-6)
        lam = rho * L**4 / self.h**3
        bw = self.B * w[:, None]
        a = bw.T @ self.B + lam * self.P + 1e-9 * np.eye(self.P.shape[0])
        sol = np.linalg.solve(a, np.hstack([bw.T @ y, self.B.T]))
        coef, ainv_bt = sol[:, : y.shape[1]], sol[:, y.shape[1]:]
        lev = (self.B * ainv_bt.T).sum(1) * w  # hat-matrix diagonal (0 for excluded points)
        return coef, lev

    def _gcv(self, y: np.ndarray, w: np.ndarray,
             L: float) -> tuple[float, np.ndarray, np.ndarray]:
        coef, lev = self._solve(y, w, L)
        r = y - self.B @ coef
        n = w.sum()
        denom = (n - lev.sum()) ** 2
        return n * float((w[:, None] * r**2).sum()) / max(denom, 1e-12), coef, lev

    def fit(self, y: np.ndarray, w: np.ndarray, L: float | None, lo: float,
            hi: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Coefficients, leverages and the kernel scale used (GCV choice when ``L`` is None)."""
        if L is not None:
            coef, lev = self._solve(y, w, L)
            return coef, lev, L
        grid = np.geomspace(lo, hi, 14)
        best = None
        for cand in grid:  # loop over candidate smoothing scales
            score, coef, lev = self._gcv(y, w, cand)
            if best is None or score < best[0] * (1 - 1e-9):
                best = (score, coef, lev, cand)
        return best[1], best[2], float(best[3])

    def robust_fit(
        self, y: np.ndarray, L_fixed: float | None, lo: float, hi: float, n_mad: float,
        sigma_floor: float, max_iter: int = 6,
    ) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, np.ndarray, float, int]:
        n = len(y)
        inl = np.ones(n, bool)
        stiff = max(4.0 * (L_fixed or lo), 10.0)
        L = L_fixed if L_fixed is not None else lo
        it = 0
        if n_mad > 0:
            for it in range(max_iter):  # outlier rejection iterations
                coef, lev, L = self.fit(y, inl.astype(float), stiff if it == 0 else L_fixed, lo, hi)
                r = y - self.B @ coef
                loo = r / np.clip(1.0 - lev, 0.05, None)[:, None]
                new = ~_outliers(loo, inl, n_mad, sigma_floor)
                if np.array_equal(new, inl) and it > 0:
                    break
                inl = new
        coef, lev, L = self.fit(y, inl.astype(float), L_fixed, lo, hi)
        res = y - self.B @ coef

        def f(zz: np.ndarray, _coef: np.ndarray = coef) -> np.ndarray:
            return self._design(np.asarray(zz, float).ravel()) @ _coef

        # linear extrapolation is built in (second-difference penalty); clip to the fitted range
        return f, inl, res, float(L), it


def _outliers(r: np.ndarray, inl: np.ndarray, n_mad: float, sigma_floor: float,
              max_frac: float = 0.25) -> np.ndarray:
    """Points whose residual exceeds ``n_mad`` robust standard deviations (per component)."""
    n = len(r)
    if inl.sum() < MIN_SPLINE_POINTS:
        return np.zeros(n, bool)
    sig = np.maximum(robust_sd(r[inl], axis=0, centre=0.0), sigma_floor)
    score = np.max(np.abs(r) / sig, axis=1)
    out = score > n_mad
    cap = int(max_frac * n)
    if out.sum() > cap:
        keep = np.argsort(-score)[:cap]
        out = np.zeros(n, bool)
        out[keep] = True
    if n - out.sum() < MIN_SPLINE_POINTS:
        return np.zeros(n, bool)
    return out
