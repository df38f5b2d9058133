"""Analytic mapping between two cords through their centerlines and landmark correspondence.

Each point is written in its cord's frame: arc length ``s`` along the centerline plus in-plane
offsets ``(a, b)`` along the binormal (left-right) and normal (anterior-posterior). The mapping
keeps ``(a, b)`` and maps arc length through a piecewise-linear correspondence fixed by the
landmarks: one landmark gives a translation along the cord, two add S-I scaling, more give a
nonlinear (piecewise) alignment of every level. This combines straightening and label alignment
into one transform, so nothing is interpolated twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.transforms.base import Transform
from spinereg.transforms.displacement import DisplacementField

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.cord.centerline import Centerline


class PiecewiseLinear:
    """Monotonic piecewise-linear map through knots, extrapolated with the end slopes."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        order = np.argsort(x)
        x, y = x[order], y[order]
        if len(x) == 1:
            x = np.array([x[0], x[0] + 1.0])
            y = np.array([y[0], y[0] + 1.0])
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) <= 0):
            raise InputError("landmarks are not in the same order along the cord as in the template", None,
                             "check the label values (a label is probably on the wrong level)")
        self.x, self.y = x, y

    def __call__(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        out = np.interp(v, self.x, self.y)
        lo, hi = v < self.x[0], v > self.x[-1]
        s0 = (self.y[1] - self.y[0]) / (self.x[1] - self.x[0])
        s1 = (self.y[-1] - self.y[-2]) / (self.x[-1] - self.x[-2])
        out[lo] = self.y[0] + (v[lo] - self.x[0]) * s0
        out[hi] = self.y[-1] + (v[hi] - self.x[-1]) * s1
        return out

    def inverse(self) -> PiecewiseLinear:
        return PiecewiseLinear(self.y, self.x)

    def as_dict(self) -> dict:
        return {"x": self.x.round(4).tolist(), "y": self.y.round(4).tolist()}


class CordMapping(Transform):
    """Pull transform from the reference cord (e.g. template) to the source cord (subject).

    ``map`` takes reference points to source points: ``s_src = arc(s_ref)``, offsets kept.
    """

    def __init__(self, ref_centerline: Centerline, src_centerline: Centerline,
                 arc: PiecewiseLinear):
        self.ref = ref_centerline
        self.src = src_centerline
        self.arc = arc

    def map(self, points: np.ndarray) -> np.ndarray:
        """Points undefined on the way in (NaN: e.g. where an SCT warp earlier in a chain holds its
        'no value' marker, 3.4e38) stay undefined; before session 40 the centreline's KD-tree
        refused them and ``chain`` ended in an internal error."""
        pts = np.asarray(points, dtype=float)
        ok = np.all(np.isfinite(pts), axis=1)
        if not ok.all():
            out = np.full_like(pts, np.nan)
            if ok.any():
                out[ok] = self.map(pts[ok])
            return out
        out = np.empty_like(pts)
        step = 500_000
        for i in range(0, len(pts), step):
            local = self.ref.local_coords(pts[i:i + step])
            local[:, 2] = self.arc(local[:, 2])
            out[i:i + step] = self.src.from_local(local)
        return out

    def inverse(self) -> CordMapping:
        return CordMapping(self.src, self.ref, self.arc.inverse())

    def inverse_map(self, points: np.ndarray) -> np.ndarray:
        return self.inverse().map(points)

    def __repr__(self) -> str:
        return f"CordMapping(arc={self.arc.as_dict()})"


class SampledMapping(Transform):
    """A transform sampled as a displacement field on a grid (fast trilinear evaluation there),
    falling back to the exact transform outside that grid, so chains through it stay defined
    beyond the image it was sampled for (e.g. a target image larger than the anatomical one)."""

    def __init__(self, exact: Transform, field: DisplacementField):
        self.exact = exact
        self.field = field

    @property
    def grid(self) -> Grid:
        return self.field.grid

    def map(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=float)
        ijk = self.field.grid.world_to_voxel(pts)
        inside = np.all((ijk >= -0.5) & (ijk <= np.array(self.field.grid.shape) - 0.5), axis=1)
        out = np.empty_like(pts)
        if inside.any():
            out[inside] = self.field.map(pts[inside])
        if (~inside).any():
            out[~inside] = self.exact.map(pts[~inside])
        return out

    def inverse(self) -> Transform:
        return self.exact.inverse()

    def __repr__(self) -> str:
        return f"SampledMapping({self.exact!r} on {self.field.grid!r})"
