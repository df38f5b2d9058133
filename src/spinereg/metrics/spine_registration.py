"""Vertebral bodies placed on a subject by a template registration, for the spine measures
(:mod:`spinereg.metrics.spine`: heights and ratios, endplate tilts and segmental angles, VBQ,
trabecular HU) on real images without a vertebra segmentation.

The template's spine mask is split by level (:func:`~spinereg.cord.vertebra_masks.
template_vertebrae`) and each vertebra reduced to its body (its part more than 5 mm anterior to
the cord, :func:`~spinereg.cord.vertebra_masks.vertebral_bodies`). A registration's
``warp_template2anat`` (subject grid: subject point -> template point, SCT's file) then labels
every subject voxel with the body it falls in (nearest neighbour at the template's 0.5 mm, on the
subject's grid refined by ``supersample``).

What this measures: the template's bodies where the registration puts them (for the subject's
own heights and endplates located in the image inside them, see :func:`subject_endplates`). A registration
driven by the cord and two to a few landmarks places the levels (S-I position, tilt) but keeps the
template's body shapes and sizes, scaled with the spine between the landmarks: heights and ratios
are the template's, not the subject's, unless a per-vertebra step (``algo=polyrigid`` with
``dof=..._Sx_Sy_Sz``) adapts them. VBQ and trabecular HU only need the bodies' positions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

import numpy as np

from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.transforms.base import Transform

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.template import Template
    from spinereg.metrics.endplates import BodyEndplates
    from spinereg.metrics.overlap import ImageLike


def template_bodies(tpl: Template) -> Image:
    """The template's vertebral bodies labelled by level (cached on disk by file identity)."""
    from spinereg.cord.vertebra_masks import template_vertebrae, vertebral_bodies
    from spinereg.io.image import load_image, save_image
    from spinereg.io.registry import cache_dir

    vert = template_vertebrae(tpl)
    paths = [tpl.path("spine"), tpl.path("levels"), tpl.path("cord")]
    ident = "|".join(f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in paths)
    key = hashlib.sha256(f"{ident}|bodies-v1".encode()).hexdigest()[:24]
    cache = cache_dir() / "vertebrae" / f"{key}.nii.gz"
    try:
        cached = load_image(cache, ndim=3)
        if cached.grid.same_as(vert.grid):
            return Image(np.asarray(cached.data).astype(np.int16), vert.affine, vert.header)
    except (OSError, ValueError, Exception):  # noqa: BLE001 - any unreadable cache is recomputed
        pass
    cord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    out = Image(vertebral_bodies(np.asarray(vert.data), np.asarray(cord.data), vert.grid, offset_mm=5.0),
                vert.affine, vert.header)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{key}.{os.getpid()}.nii.gz")
        save_image(Image(out.data.astype(np.uint8), out.affine, out.header), tmp, overwrite=True)
        os.replace(tmp, cache)
    except OSError:
        pass
    return out


def on_template_lattice(grid: Grid, template: str = "PAM50", tol_vox: float = 1e-3) -> bool:
    """Whether ``grid`` is the template's own grid or a crop of it (same voxel axes and size, voxel
    centres on the template's lattice, inside it): where SCT's ``warp_anat2template`` lives. A
    ``warp_template2anat`` lives on the subject's grid. Given in its place to ``spine-metrics -w``,
    warp_anat2template placed the bodies on PAM50's grid, every one "cut", 135 NaN rows, exit 0,
    before session 48."""
    from spinereg.io.image import read_grid
    from spinereg.io.template import load_template

    tg = read_grid(load_template(template).path("cord"), what="template")
    a, b = np.asarray(grid.affine, float), np.asarray(tg.affine, float)
    if not np.allclose(a[:3, :3], b[:3, :3], atol=1e-4 * float(np.max(tg.zooms))):
        return False
    corner = tg.world_to_voxel(np.asarray(grid.voxel_to_world(np.zeros((1, 3)))))[0]
    if np.max(np.abs(corner - np.rint(corner))) > tol_vox:
        return False
    far = corner + np.asarray(grid.shape[:3], float) - 1
    return bool(np.all(corner >= -tol_vox) and np.all(far <= np.asarray(tg.shape[:3], float) - 1 + tol_vox))


def template_lattice_of(grid: Grid) -> str | None:
    """The named template (of those present locally: nothing is downloaded) on whose own grid, or a
    crop of it, ``grid`` lies (:func:`on_template_lattice`); None when it lies on none."""
    from spinereg.errors import SpineregError
    from spinereg.io.registry import locate, templates_table

    for name, row in templates_table().items():
        try:
            if locate(row["dataset"]) is not None and on_template_lattice(grid, name):
                return name
        except (SpineregError, OSError):  # a template folder without a cord file: not this check's business
            continue
    return None


def bodies_from_warp(template2anat: Transform, grid: Grid, template: str = "PAM50", supersample: int = 1,
                     levels: Iterable[int] | None = None) -> Image:
    """Body labels on ``grid`` (the subject's; refined ``supersample`` times per axis) through the
    pull transform ``template2anat`` (subject point -> template point); none where the transform
    is not defined (:func:`_defined`)."""
    return placed_bodies(template2anat, grid, template, supersample, levels)[0]


def placed_bodies(template2anat: Transform, grid: Grid, template: str = "PAM50", supersample: int = 1,
                  levels: Iterable[int] | None = None) -> tuple[Image, set[int]]:
    """:func:`bodies_from_warp`'s bodies and, from the same pass over the grid, the levels that the
    warp's own field of view cuts inside it: body voxels next to voxels where ``template2anat`` is
    not defined (beyond a displacement field's grid, or its undefined values). The grid's own edge
    is judged by :func:`spinereg.metrics.spine.vertebral_heights`; on a grid larger than the warp's
    (an image zero-padded along S-I, or another image of the subject) C2 cut at the warp's edge
    measured 0.19 mm tall, unflagged, before session 40."""
    from scipy import ndimage

    from spinereg.io.resample import VolumeSampler
    from spinereg.io.template import load_template

    bodies = template_bodies(load_template(template))
    lab = np.asarray(bodies.data)
    if levels is not None:
        lab = np.where(np.isin(lab, list(levels)), lab, 0).astype(np.int16)
    g = grid if supersample <= 1 else grid.with_voxel_size(grid.zooms / supersample)
    sampler = VolumeSampler(lab, "nn")
    out = np.zeros(g.shape, np.int16)
    undefined = np.zeros(g.shape, bool)
    for k0, k1 in g.chunks():
        p = g.world_coords(k0, k1)
        x = template2anat.map(p)
        ok = _defined(template2anat, p, x)
        vals = np.zeros(len(p), np.int16)
        vals[ok] = sampler.at_voxels(bodies.grid.world_to_voxel(x[ok]))
        out[:, :, k0:k1] = vals.reshape(g.shape[0], g.shape[1], k1 - k0)
        undefined[:, :, k0:k1] = ~ok.reshape(g.shape[0], g.shape[1], k1 - k0)
    cut: set[int] = set()
    if undefined.any():
        near = ndimage.binary_dilation(undefined) & (out > 0)
        cut = {int(v) for v in np.unique(out[near])}
    return Image(out, g.affine), cut


def _defined(template2anat: Transform, points: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """Where a pull transform is defined: a finite image, and for a displacement field (a
    ``grid``) the points on its grid (within half a voxel of its nodes). Beyond it the field is
    continued by the identity: the template's bodies would be read at the subject's own
    coordinates."""
    from spinereg.transforms.sanity import inside

    ok = np.all(np.isfinite(mapped), axis=1)
    field_grid = getattr(template2anat, "grid", None)
    if isinstance(field_grid, Grid):
        ok &= inside(field_grid, points)
    return ok


def subject_endplates(image: ImageLike, template2anat: Transform, contrast: str = "t2",
                      template: str = "PAM50", levels: Collection[int] | None = None,
                      supersample: int = 2) -> list[BodyEndplates]:
    """The subject's vertebral heights and endplate tilts measured in ``image``
    (:func:`spinereg.metrics.endplates.measure_endplates`) inside the template's bodies placed by
    the registration (:func:`bodies_from_warp`, on the image's grid refined ``supersample``
    times): the registration says which level is where; the endplates come from the image."""
    from spinereg.metrics.endplates import measure_endplates
    from spinereg.metrics.overlap import as_image

    img = as_image(image, "image")
    bodies, cut = placed_bodies(template2anat, img.grid, template=template, supersample=supersample, levels=levels)
    return measure_endplates(img, bodies, contrast, levels, cut_levels=cut)
