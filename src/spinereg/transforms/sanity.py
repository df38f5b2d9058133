"""Geometric checks before resampling: do the given transforms bring the reference grid onto the
input image at all?

Points of a coarse lattice over the reference grid are pulled through the transforms (last
first, as resampling does). Three ways to fail, each named in the error: a displacement field
whose grid none of the points reaches (a warp for another space, or the wrong reference), points
that all land outside the input's field of view (no common extent), and the same with input and
reference exchanged fitting (``-i``/``-d`` swapped). A few thousand points: milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.transforms.base import Transform

#: below this fraction of reference points landing in the input, nothing useful can come out
MIN_COVERAGE = 0.002
#: without -d an inverse is sampled on the warp's own grid: below this fraction of that grid in the
#: warp's image (:func:`mapped_box`) the warp maps between two spaces and the grid is the wrong one
MIN_OWN_GRID_IMAGE = 0.5


def lattice(grid: Grid, n: int = 14) -> np.ndarray:
    """World points of an ``n``-per-axis lattice over ``grid`` (voxel centres, edges included)."""
    axes = [np.linspace(0, s - 1, min(n, s)) for s in grid.shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return grid.voxel_to_world(ijk)


def inside(grid: Grid, points: np.ndarray) -> np.ndarray:
    """Which world points lie in ``grid``'s field of view (within half a voxel of its nodes)."""
    ijk = grid.world_to_voxel(points)
    return np.all((ijk >= -0.5) & (ijk <= np.array(grid.shape) - 0.5), axis=1)


def _box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points.min(0), points.max(0)


def _grid_box(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    return _box(lattice(grid, 2))


def box_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Distance (mm) between two axis-aligned world boxes (0 when they meet)."""
    gap = np.maximum(0.0, np.maximum(a[0] - b[1], b[0] - a[1]))
    return float(np.linalg.norm(gap))


def _field_grid(t: Transform) -> Grid | None:
    grid = getattr(t, "grid", None)
    return grid if isinstance(grid, Grid) else None


def mapped_box(field: Transform, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """World box of the points a displacement field's grid maps to (``x + u(x)`` over an
    ``n``-per-axis lattice of its nodes, widened by two of its voxels): where its inverse is
    defined. Outside it the inverse's fixed point is the trivial ``x = p`` (the identity the field
    is continued with beyond its grid), a "solution" with zero residual."""
    grid = field.grid
    y = field.map(lattice(grid, n))
    y = y[np.all(np.isfinite(y), axis=1)]
    if not len(y):
        return np.full(3, np.inf), np.full(3, -np.inf)
    pad = 2.0 * float(np.max(grid.zooms))
    return y.min(0) - pad, y.max(0) + pad


def in_box(box: tuple[np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    """Which world points lie in the axis-aligned ``box`` (min, max)."""
    return np.all((points >= box[0]) & (points <= box[1]), axis=1)


def _inverse_of(t: Transform) -> Transform | None:
    from spinereg.transforms.displacement import FieldInverse

    return t.field if isinstance(t, FieldInverse) else None


def pull(points: np.ndarray, transforms: Sequence[Transform], names: Sequence[str]) -> tuple[np.ndarray, str | None]:
    """Points pulled through ``transforms`` (application order, so the last is applied first);
    also the name of the first displacement field that none of the points reaches (for an inverse
    ``inv:WARP``: none of the points lies where WARP's grid is mapped to, so every one would come
    back unmoved: ``concat -w W inv:W`` on the wrong reference was W alone, exit 0, before
    session 37)."""
    missed = None
    x = np.asarray(points, float)
    for t, name in zip(reversed(list(transforms)), reversed(list(names)), strict=True):
        grid = _field_grid(t)
        ok = np.all(np.isfinite(x), axis=1)
        if missed is None and ok.any():
            if grid is not None and not inside(grid, x[ok]).any():
                missed = name
            field = _inverse_of(t)
            if field is not None and not in_box(mapped_box(field), x[ok]).any():
                missed = name
        x = t.map(x)
    return x, missed


def inverse_defined_fraction(field: Transform, inverse: Transform, grid: Grid) -> float:
    """Fraction of ``grid``'s lattice points in ``field``'s image (:func:`mapped_box`) that
    ``inverse`` sends into ``field``'s grid onto a pre-image: ``field`` maps them back within a
    voxel of the field's grid. A true inverse sends most of them there (warp_anat2template's
    inverse on t2's grid: 99.9%, warp_template2anat's on PAM50's: 76%); one left at the identity
    (a fixed point started where the field is continued by the identity) sends none (0%) while its
    residual there is 0, and one whose fixed point never settled (warp_anat2template inverted on
    its own grid, no -d: median miss 150 mm, the points still on the grid, 71% before session 39
    counted them, exit 0) sends few. NaN when no point is in the image."""
    pts = lattice(grid, 24)
    pts = pts[in_box(mapped_box(field), pts)]
    if not len(pts):
        return float("nan")
    x = inverse.map(pts)
    ok = np.all(np.isfinite(x), axis=1)
    hit = np.zeros(len(pts), bool)
    hit[ok] = inside(field.grid, x[ok])
    if hit.any():
        miss = np.linalg.norm(field.map(x[hit]) - pts[hit], axis=1)
        hit[hit] = miss <= float(np.max(field.grid.zooms))  # NaN: no pre-image either
    return float(hit.sum() / len(pts))


def check_inverse_grid(field: Transform, grid: Grid, field_name: str, grid_name: str | None = None,
                       grid_option: str = "-d") -> None:
    """Raise :class:`InputError` when no point of ``grid`` lies where ``field``'s grid is mapped
    to: the inverse sampled there would be the identity (residual 0) or nothing (the default grid,
    the warp's own, for a warp between distant spaces), never the inverse."""
    box = mapped_box(field)
    pts = lattice(grid, 24)
    reached = in_box(box, pts)
    if grid_name is None and 0 < reached.mean() < MIN_OWN_GRID_IMAGE:
        # no -d: the warp's own grid. A warp within one space maps its grid about onto itself (~100%);
        # one between two spaces maps it mostly elsewhere, and an inverse there is undefined on most
        # of it (warp_anat2template: 28%; solved for 2 min, residual mean 116 mm, exit 0, before
        # session 39)
        raise InputError(
            f"the inverse is undefined on most of the warp's own grid (no -d): the warp maps only "
            f"{100 * reached.mean():.0f}% of it near itself (a warp between two spaces)", field_name,
            f"give {grid_option} an image in the space the warp maps to (warp_A2B lives on B's grid and maps "
            f"it to A: its inverse lives on A's grid, {grid_option} A)")
    if reached.any():
        return
    dist = box_distance(box, _box(pts)) if np.all(np.isfinite(box[0])) else float("nan")
    where = f"the grid of {grid_name} {grid_option}" if grid_name else "the warp's own grid (no -d)"
    raise InputError(
        f"the inverse is undefined on {where}: the warp maps its grid {dist:.0f} mm away from it, so no "
        "point there has a pre-image", grid_name or field_name,
        f"give {grid_option} an image in the space the warp maps to (warp_A2B lives on B's grid and maps "
        f"it to A: its inverse lives on A's grid, {grid_option} A)")


def coverage(reference: Grid, transforms: Sequence[Transform], source: Grid) -> float:
    """Fraction of reference lattice points that land in ``source`` after the transforms."""
    x, _ = pull(lattice(reference), transforms, [""] * len(transforms))
    ok = np.all(np.isfinite(x), axis=1)
    return float(inside(source, x[ok]).sum() / max(len(x), 1))


def check_overlap(source: Grid, reference: Grid, transforms: Sequence[Transform] = (),
                  names: Sequence[str] | None = None, source_name: str = "input", reference_name: str = "reference",
                  source_option: str = "-i", reference_option: str = "-d") -> float:
    """Raise :class:`InputError` when resampling ``source`` on ``reference`` through
    ``transforms`` cannot give anything (see module doc); return the coverage."""
    transforms = list(transforms)
    names = list(names) if names is not None else [f"transform {k + 1}" for k in range(len(transforms))]
    x, missed = pull(lattice(reference), transforms, names)
    ok = np.all(np.isfinite(x), axis=1)
    cov = float(inside(source, x[ok]).sum() / max(len(x), 1))
    if cov >= MIN_COVERAGE and missed is None:
        return cov
    swapped = coverage(source, transforms, reference) >= 0.05 and cov < MIN_COVERAGE
    if swapped:
        raise InputError(
            f"{source_option} and {reference_option} look swapped" + (", or the warp goes the other way" if transforms
                                                                     else "")
            + f": through the transforms no point of {reference_name} {reference_option} lands in {source_name} "
            f"{source_option}, but the other way round they fit", source_name,
            f"give the image to move with {source_option} and the image whose grid you want with "
            f"{reference_option} (warp_A2B moves A onto B: {source_option} A, {reference_option} B; "
            "to move B onto A use warp_B2A)")
    dist = box_distance(_box(x[ok]), _grid_box(source)) if ok.any() else float("nan")
    if missed is not None:
        raise InputError(
            f"the warp's grid is far from the points it is applied to: no point of {reference_name} "
            f"{reference_option} falls inside it (the result would be empty, or the input unmoved"
            + (f"; {dist:.0f} mm off)" if dist > 0.5 else ")"), missed,
            f"use the warp made for these images and this template version (warp_A2B lives on B's grid: "
            f"{reference_option} must be B or an image in B's space)")
    where = names[0] if transforms else source_name
    raise InputError(
        "no common extent: " + ("after the transforms, " if transforms else "")
        + f"{reference_name} {reference_option} lies entirely outside {source_name} {source_option} "
        f"({dist:.0f} mm apart; the result would be empty)", where,
        "check that the transforms were made for these images (and this template version), in application "
        "order A->B first" if transforms else "check the headers, or give an initial transform")


def require_invertible(t: Transform, name: str) -> None:
    """Raise :class:`InputError` naming ``name`` when ``t`` is an affine with no inverse."""
    from spinereg.transforms.affine import AffineTransform

    if isinstance(t, AffineTransform):
        det = float(np.linalg.det(t.matrix[:3, :3]))
        if not np.isfinite(det) or abs(det) < 1e-12:
            raise InputError(f"the affine is singular (determinant {det:.3g}): it has no inverse", name,
                             "check the affine file (a 3D affine with a non-zero determinant is needed)")


def check_chain_domain(reference: Grid, transforms: Sequence[Transform], names: Sequence[str],
                       reference_name: str = "reference", reference_option: str = "-d") -> None:
    """Raise :class:`InputError` when a displacement field of the chain is never reached by the
    reference's points (a warp for another space, or the wrong reference)."""
    x, missed = pull(lattice(reference), list(transforms), list(names))
    if missed is not None:
        raise InputError(
            f"the warp's grid is far from the points it is applied to: no point of {reference_name} "
            f"{reference_option} falls inside it (the composed field would be empty there)", missed,
            f"use the warp made for these images and this template version (warp_A2B lives on B's grid: "
            f"{reference_option} must be B or an image in B's space)")


def _field_hits(points: np.ndarray, transforms: Sequence[Transform]) -> float:
    """Mean over the chain's displacement fields of the fraction of ``points``, pulled through the
    transforms (last first), that lie inside each field's grid when it is applied."""
    x, hits = np.asarray(points, float), []
    for t in reversed(list(transforms)):
        grid = _field_grid(t)
        ok = np.all(np.isfinite(x), axis=1)
        if grid is not None:
            hits.append(float(inside(grid, x[ok]).sum() / max(len(x), 1)))
        x = t.map(x)
    return float(np.mean(hits)) if hits else float("nan")


def order_warning(reference: Grid, transforms: Sequence[Transform], names: Sequence[str],
                  reference_option: str = "-d") -> str | None:
    """A warning when the transforms look listed in ANTs' order (last applied first, as
    ``antsApplyTransforms -t``) instead of application order: the first listed warp lives on the
    reference's own grid (SCT writes warp_A2B on B's grid, so in application order that is the
    *last* one) while the last listed does not, and the reversed list reaches the warps' grids
    better. ``apply -i PAM50_cord -d mt1 -w warp_t22mt1 warp_template2anat`` (reversed) gave mt1's
    cord Dice 0.66 instead of 0.735 (PAM50_small's cord, linear: 0.608 / 0.677), exit 0, no word before
    session 39. A warp on the reference's grid followed only by affines (one warp and its affine
    copied from ``antsApplyTransforms``) is judged by :func:`_affine_after_field` (session 40)."""
    fields = [(k, g) for k, t in enumerate(transforms) if (g := _field_grid(t)) is not None]
    if len(transforms) >= 2 and fields and fields[-1][0] < len(transforms) - 1:
        warning = _affine_after_field(reference, transforms, names, fields[-1], reference_option)
        if warning is not None:
            return warning
    if len(transforms) < 2 or len(fields) < 2:
        return None
    (k_first, g_first), (k_last, g_last) = fields[0], fields[-1]
    if not g_first.same_as(reference, atol=1e-3) or g_last.same_as(reference, atol=1e-3):
        return None
    pts = lattice(reference)
    given, reverse = _field_hits(pts, transforms), _field_hits(pts, list(transforms)[::-1])
    if not reverse > given:
        return None
    return (f"{names[k_first]} lives on the grid of {reference_option} but is listed before {names[k_last]}: the "
            f"transforms look listed in ANTs' order (last applied first); spinereg takes them in application "
            f"order, A->B first (as sct_apply_transfo -w): reversed, the warps' grids are reached by "
            f"{100 * reverse:.0f}% of the points instead of {100 * given:.0f}%; if so, give them the other way round")


#: an affine listed after a warp on the reference's grid is warned of when taking the list the
#: other way round moves the reference's points by more than this (median, mm): below it the
#: order hardly matters (a small translation commutes with a smooth warp)
ORDER_AFFINE_MM = 1.0


def _pull(points: np.ndarray, transforms: Sequence[Transform]) -> np.ndarray:
    """``points`` pulled through ``transforms`` (last first, as resampling does)."""
    x = np.asarray(points, float)
    for t in reversed(list(transforms)):
        x = t.map(x)
    return x


def _affine_after_field(reference: Grid, transforms: Sequence[Transform], names: Sequence[str],
                        last_field: tuple[int, Grid], reference_option: str) -> str | None:
    """The ANTs-order case :func:`order_warning`'s two-warp rule cannot see: the last listed warp
    lives on the reference's grid and only affines follow it (``antsRegistration``'s outputs
    copied as ``antsApplyTransforms`` takes them, ``-w 1Warp.nii.gz 0GenericAffine.mat``, where
    application order is ``0GenericAffine.mat 1Warp.nii.gz``). In application order a warp on the
    reference's grid comes last (it maps the reference's points); an affine after it maps them to
    another space first. Warned of when the order matters: the list taken the other way round
    moves the reference's points by more than :data:`ORDER_AFFINE_MM` (median)."""
    k, grid = last_field
    if not grid.same_as(reference, atol=1e-3):
        return None
    pts = lattice(reference)
    given, reverse = _pull(pts, transforms), _pull(pts, list(transforms)[::-1])
    d = np.linalg.norm(given - reverse, axis=1)
    d = d[np.isfinite(d)]
    if not d.size or float(np.median(d)) <= ORDER_AFFINE_MM:
        return None
    after = ", ".join(names[k + 1:])
    return (f"{names[k]} lives on the grid of {reference_option} but is listed before {after}: the transforms "
            f"look listed in ANTs' order (last applied first, as antsApplyTransforms -t); spinereg takes them in "
            f"application order, A->B first (as sct_apply_transfo -w), where a warp on {reference_option}'s grid "
            f"comes last: reversed, the reference's points move by {float(np.median(d)):.1f} mm (median); if so, "
            f"give them the other way round")
