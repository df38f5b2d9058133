"""Distance between the centerlines of two cord segmentations or centerline masks (mm).

Each mask is reduced to one point per slice: the centre of mass (world RAS+ mm) of its voxels
``> threshold`` in that slice, slices being taken along the voxel axis most aligned with world
S-I. For every slice of A, B's centerline is interpolated linearly at the same S-I position and
the in-plane distance between the two points is reported.

"S-I position" is measured along A's slice normal (the world direction of A's slice axis, pointed
superior). For the usual non-oblique images this is the world z coordinate; for oblique
acquisitions it follows the slices, so the result is unchanged when the whole scene is rotated.
Slices of A beyond B's S-I extent are not compared (counted in ``n_outside``).

Being a comparison of world-space points, A and B may be on different grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.metrics.overlap import ImageLike, as_image, binary_mask, si_axis
from spinereg.metrics.report import MetricResult


def slice_centers(img: Image, threshold: float = 0.5, what: str = "mask") -> np.ndarray:
    """Per-slice centres of mass (n_slices, 3), world mm, of ``img > threshold``."""
    mask = binary_mask(img, threshold, what)
    ax = si_axis(img.affine)
    idx = np.argwhere(mask)
    slices, inverse = np.unique(idx[:, ax], return_inverse=True)
    counts = np.bincount(inverse).astype(float)
    com = np.stack([np.bincount(inverse, weights=idx[:, d]) for d in range(3)], axis=1)
    return img.grid.voxel_to_world(com / counts[:, None])


def slice_normal(affine: np.ndarray) -> np.ndarray:
    """Unit world direction of the S-I slice axis of ``affine``, pointing superior."""
    m = np.asarray(affine, dtype=float)[:3, :3]
    n = m[:, si_axis(affine)]
    n = n / np.linalg.norm(n)
    return n if n[2] >= 0 else -n


@dataclass
class SliceDistance:
    """Distance at one slice of A: ``z_mm`` is the world S (z) coordinate of A's centre."""

    z_mm: float
    distance_mm: float


@dataclass
class CenterlineResult(MetricResult):
    """In-plane distances between centerlines (mm); ``slices`` lists them slice by slice."""

    metric = "centerline"
    rms_mm: float
    mean_mm: float
    max_mm: float
    n_slices: int
    n_outside: int
    threshold: float
    a: str
    b: str
    slices: list[SliceDistance] = field(default_factory=list)

    def item_rows(self) -> list[dict]:
        return [self._row("slice_distance_mm", s.distance_mm, z_mm=s.z_mm) for s in self.slices]


def centerline_distance(a: ImageLike, b: ImageLike, *, threshold: float = 0.5) -> CenterlineResult:
    """Per-slice in-plane distance from A's centerline to B's, with RMS and max (mm)."""
    ia, ib = as_image(a, "mask"), as_image(b, "mask")
    pa = slice_centers(ia, threshold)
    pb = slice_centers(ib, threshold)
    n = slice_normal(ia.affine)
    ta, tb = pa @ n, pb @ n
    order = np.argsort(tb, kind="stable")
    tb, pb = tb[order], pb[order]
    tol = 1e-6 * max(1.0, float(np.abs(tb).max()))
    inside = (ta >= tb[0] - tol) & (ta <= tb[-1] + tol)
    if not inside.any():
        raise InputError(
            f"the centerlines of {ia.name} (S-I {ta.min():.1f}..{ta.max():.1f} mm) and {ib.name} "
            f"(S-I {tb.min():.1f}..{tb.max():.1f} mm) do not overlap along S-I",
            ib.name, "check that both files cover the same cord levels")
    t = np.clip(ta[inside], tb[0], tb[-1])
    q = np.stack([np.interp(t, tb, pb[:, d]) for d in range(3)], axis=1)
    diff = pa[inside] - q
    diff -= np.outer(diff @ n, n)
    dist = np.linalg.norm(diff, axis=1)
    z = pa[inside, 2]
    sort = np.argsort(ta[inside], kind="stable")
    return CenterlineResult(
        rms_mm=float(np.sqrt(np.mean(dist**2))),
        mean_mm=float(dist.mean()),
        max_mm=float(dist.max()),
        n_slices=int(inside.sum()),
        n_outside=int((~inside).sum()),
        threshold=float(threshold),
        a=ia.name, b=ib.name,
        slices=[SliceDistance(float(zz), float(dd)) for zz, dd in zip(z[sort], dist[sort], strict=True)],
    )
