"""Cord shape per slice, in the plane perpendicular to the cord: diameters, eccentricity, orientation, solidity.

The metrics of SCT's ``sct_process_segmentation`` beside the CSA, measured in world coordinates
(RAS+ mm) on the section perpendicular to the cord's tangent ``t`` at the slice (the centerline
the CSA's angle correction uses; the slice normal with ``angle_correction=False``):

* **Section plane axes.** AP = the subject's anterior direction (world +y in RAS+) projected onto
  the plane perpendicular to ``t``; RL = ``AP x t`` (world +x, right, for a vertical cord). Each
  voxel of the slice is placed at its world centre and projected along ``t`` onto that plane: the
  oblique cut of a cylinder projects onto its perpendicular section, uniformly (an affine map).
* **Second moments.** Weighted covariance ``C`` (2 x 2, mm2) of the projected voxel centres (weights:
  the binary mask, or a soft mask's values). A soft mask is read as a partial-volume map (each
  voxel's share of cord): its values are the section blurred by the voxel box, whose covariance
  ``P (L L^T / 12) P^T`` (``L`` the voxel's three world edges, ``P`` the projection onto the plane)
  adds to the section's, so it is subtracted. A binary mask samples the section at the voxel
  centres, which on average over the section's position in the grid gives its moments unbiased: no
  correction. (Adding the voxel's ``size^2 / 12`` to a partial-volume map, as a voxel "filled
  uniformly" would, biases the diameters up: on a 1 mm grid +2.4 % / +2.8 % on the 8 / 6 mm axes of
  the test ellipses, against -0.9 % .. +0.3 % with the subtraction.)
* **Diameters.** Those of the ellipse with the same second moments: ``4 sqrt(lambda)`` for the
  eigenvalues ``lambda_major >= lambda_minor`` of ``C`` (a filled ellipse of semi-axes ``a`` has
  variance ``a^2 / 4`` along that axis: diameter ``2 a``), as skimage's ``regionprops``
  ``major/minor_axis_length`` that SCT reports.
* **Orientation** (deg, 0-90): the angle between the ellipse's major axis and the RL axis, folded
  to 0-90 (SCT's convention: 0 = major axis along RL, the usual cord). **AP/RL assignment** as
  SCT: orientation < 45 deg: RL = major diameter, AP = minor; else AP = major, RL = minor.
  ``compression_ratio`` = AP / RL (below 1 for the usual, flattened cord).
* **Eccentricity** of that ellipse, ``sqrt(1 - lambda_minor / lambda_major)``: 0 = circle.
* **Solidity**: area of the section's outline over the area of its convex hull. The outline is the
  0.5 iso-line of the slice (marching squares, linear interpolation along voxel edges:
  :mod:`contourpy`, matplotlib's contouring), holes subtracted; the hull is
  :class:`scipy.spatial.ConvexHull` of the outline's vertices. Both areas are taken in the slice's
  voxel-index plane: their ratio is unchanged by the affine map onto the perpendicular plane.
  A convex ellipse reads about 0.998 from a partial-volume map and about 0.97 from a binary mask
  (the 0.5 iso-line of a binary mask is a chamfered staircase), at 0.5 and 1 mm voxels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

_ANTERIOR = np.array([0.0, 1.0, 0.0])
_RIGHT = np.array([1.0, 0.0, 0.0])


@dataclass(frozen=True)
class SectionShape:
    """Shape of one cord section (mm, deg); NaN where it cannot be measured."""

    diameter_ap_mm: float
    diameter_rl_mm: float
    compression_ratio: float
    eccentricity: float
    orientation_deg: float
    solidity: float

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


SHAPE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SectionShape))
NAN_SHAPE = SectionShape(*([float("nan")] * len(SHAPE_FIELDS)))


def section_axes(tangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World unit vectors (RL, AP) of the plane perpendicular to ``tangent``: AP = world anterior
    projected onto the plane, RL = AP x tangent (world right for a vertical cord)."""
    t = np.asarray(tangent, float) / np.linalg.norm(tangent)
    if t[2] < 0:  # the cord's direction, not its sense: keep RL pointing right
        t = -t
    ap = _ANTERIOR - (_ANTERIOR @ t) * t
    if np.linalg.norm(ap) < 1e-3:  # a cord running A-P: take RL from world right instead
        rl = _RIGHT - (_RIGHT @ t) * t
        rl /= np.linalg.norm(rl)
        return rl, np.cross(t, rl)
    ap /= np.linalg.norm(ap)
    return np.cross(ap, t), ap


def section_shape(weights: np.ndarray, inplane_edges: np.ndarray, voxel_edges: np.ndarray,
                  tangent: np.ndarray, *, soft: bool) -> SectionShape:
    """Shape of one slice's cord section, perpendicular to ``tangent`` (see the module docstring).

    ``weights``: the slice (2D, its two in-plane voxel axes, values in [0, 1]); ``inplane_edges``:
    3 x 2 world vectors of one step along those axes; ``voxel_edges``: 3 x 3 linear part of the
    image affine (the voxel's three edges); ``soft``: read the weights as a partial-volume map.
    """
    w = np.asarray(weights, np.float64)
    nz = np.argwhere(w > 0)
    if nz.size == 0:
        return NAN_SHAPE
    lo = np.maximum(nz.min(0) - 1, 0)
    hi = nz.max(0) + 2
    w = w[lo[0]:hi[0], lo[1]:hi[1]]
    rl, ap = section_axes(tangent)
    proj = np.stack([rl, ap])  # 2 x 3: world -> section plane
    m2 = proj @ np.asarray(inplane_edges, float)  # 2 x 2: voxel index step -> section plane (mm)
    ii, jj = np.nonzero(w > 0)
    ww = w[ii, jj]
    mass = ww.sum()
    ij = np.stack([ii, jj], 1).astype(np.float64)
    ij -= (ww[:, None] * ij).sum(0) / mass
    uv = ij @ m2.T
    cov = (uv * ww[:, None]).T @ uv / mass
    if soft:
        lin = np.asarray(voxel_edges, float)
        cov = cov - proj @ (lin @ lin.T / 12.0) @ proj.T
    lam, vec = np.linalg.eigh(cov)
    lam = np.clip(lam, 0.0, None)
    major, minor = 4.0 * np.sqrt(lam[1]), 4.0 * np.sqrt(lam[0])
    v = vec[:, 1]
    orient = float(np.degrees(np.arctan2(abs(v[1]), abs(v[0]))))
    d_ap, d_rl = (minor, major) if orient < 45.0 else (major, minor)
    ecc = float(np.sqrt(1.0 - lam[0] / lam[1])) if lam[1] > 0 else float("nan")
    ratio = d_ap / d_rl if d_rl > 0 else float("nan")
    return SectionShape(float(d_ap), float(d_rl), float(ratio), ecc, orient, _solidity(w))


def _ring_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)))


def _solidity(w: np.ndarray) -> float:
    """Area of the 0.5 iso-line's polygons (holes subtracted) over their convex hull's, index plane."""
    import contourpy
    from scipy.spatial import ConvexHull, QhullError

    z = np.pad(w, 1)
    gen = contourpy.contour_generator(z=z, fill_type=contourpy.FillType.OuterOffset, corner_mask=True)
    points, offsets = gen.filled(0.5, np.inf)
    area, rings = 0.0, []
    for pts, off in zip(points, offsets, strict=True):
        for n, (a, b) in enumerate(zip(off[:-1], off[1:], strict=True)):
            ring = pts[a:b]
            area += _ring_area(ring) if n == 0 else -_ring_area(ring)
            rings.append(ring)
    if not rings:
        return float("nan")
    try:
        hull = ConvexHull(np.concatenate(rings)).volume
    except (QhullError, ValueError):
        return float("nan")
    return float(area / hull) if hull > 0 else float("nan")
