"""Template-space intensity sources for the independent phantom (not the solver's contrast).

Two sources, both returned as a float32 volume on a template-space grid (voxel -> template
world) with a background value for points outside it:

* ``average``: ``PAM50_small_t2`` -- a real T2-weighted average (SCT's testing data, 1 x 1 x 2
  mm) that predates PAM50's 2018 realignment; it is placed in the current PAM50 space by the
  translation ``SMALL_TO_PAM50_MM`` (18 disc labels agree within +-1.3 mm S-I, RMS 0.6 mm; the
  cord centres within 0.3 mm in-plane). Intensities are divided by their 99.5th percentile.
* ``tissue``: a tissue mixture on the template's own 0.5 mm grid with per-tissue rules of this
  module (table ``contrasts`` of ``spinereg/data/phantom_variants.json``): cord white and grey
  matter from the probabilistic maps, CSF, vertebral marrow with a smooth and a fine random
  texture, a 1 mm cortical rim, intervertebral discs (gaps between vertebral bodies), posterior
  ligaments, epidural fat around the CSF and textured soft tissue. Partial volume comes from the
  0.5 mm maps (the subject samples them through its own voxel footprint).

Neither shares code or intensity values with :func:`spinereg.register.contrast.synthesize_contrast`.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.io.resample import slice_like

if TYPE_CHECKING:
    from collections.abc import Sequence

    from spinereg.io.template import Template

#: a slice whose white and grey matter maps hold less than this share of its cord mask is painted
#: without them (see :func:`tissue_image`)
ATLAS_MIN_SHARE = 0.5
#: current PAM50 (RAS mm) = PAM50_small (RAS mm) + this (from 18 disc labels, see module doc)
SMALL_TO_PAM50_MM = np.array([0.0, -46.22, -287.5])


@cache
def _table_text() -> str:
    return resources.files("spinereg").joinpath("data/phantom_variants.json").read_text()


def phantom_table() -> dict:
    """The variants and contrast tables (``spinereg/data/phantom_variants.json``)."""
    return json.loads(_table_text())


def average_t2(region: Grid | None = None) -> tuple[np.ndarray, Grid, float]:
    """``PAM50_small_t2`` normalised (99.5th percentile = 1), its grid in current PAM50 world,
    and the background value (0). ``region``: crop to the part covering it (plus 6 mm)."""
    from spinereg.io.template import load_template

    small = load_template("PAM50_small")
    img = load_image(small.path("t2"), ndim=3, check_finite=False, what="PAM50_small_t2")
    aff = img.affine.copy()
    aff[:3, 3] += SMALL_TO_PAM50_MM
    grid = Grid(img.shape[:3], aff)
    data = np.asarray(img.data, np.float32)
    scale = float(np.percentile(data[data > 0], 99.5))
    if region is not None:
        corners = region.voxel_to_world(np.array(np.meshgrid(*[[0, n - 1] for n in region.shape],
                                                             indexing="ij")).reshape(3, -1).T)
        sub = grid.bounding_subgrid(corners, margin_mm=6.0)
        if sub is not None:
            data, grid = slice_like(Image(data, grid.affine), sub), sub
    return np.asarray(data, np.float32) / scale, grid, 0.0


@lru_cache(maxsize=10)
def template_volume(path: str) -> Image:
    """A template file loaded once per process (templates do not change during a run)."""
    img = load_image(path, ndim=3, check_finite=False, what="template file")
    img.data.setflags(write=False)
    return img


def _part(tpl: Template, role: str, region: Grid) -> np.ndarray:
    return np.clip(slice_like(template_volume(str(tpl.path(role))), region), 0, 1)


def _texture(shape: Sequence[int], rng: np.random.Generator, sigma_vox: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise; smooth textures are drawn on a coarser grid
    (a quarter of the filter width per node) and interpolated."""
    shape = tuple(int(n) for n in shape)
    f = max(1, int(sigma_vox // 4))
    small = tuple(-(-n // f) + 1 if f > 1 else n for n in shape)
    n = ndimage.gaussian_filter(rng.standard_normal(small, dtype=np.float32), sigma_vox / f, mode="reflect")
    for axis, size in enumerate(shape if f > 1 else ()):
        pos = np.arange(size) / f
        i0 = np.minimum(pos.astype(int), n.shape[axis] - 2)
        w = (pos - i0).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
        n = np.take(n, i0, axis=axis) * (1 - w) + np.take(n, i0 + 1, axis=axis) * w
    return (n - n.mean()) / max(float(n.std()), 1e-6)


def tissue_image(tpl: Template, region: Grid, contrast: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, float, dict]:
    """The tissue-mixture image on ``region`` (a voxel-aligned sub-grid of the template), the
    value outside it (soft tissue), and the tissue fractions' volumes (for the record)."""
    table = phantom_table()["contrasts"]
    if contrast not in table:
        raise ValueError(f"unknown phantom contrast {contrast!r} (use one of {', '.join(table)})")
    val = table[contrast]
    vox = float(np.min(region.zooms))
    cord = _part(tpl, "cord", region)
    csf = _part(tpl, "csf", region) if tpl.has("csf") else np.zeros_like(cord)
    spine = _part(tpl, "spine", region) > 0.5 if tpl.has("spine") else np.zeros(cord.shape, bool)
    si = int(np.argmax(np.abs(region.affine[2, :3])))
    if tpl.has("wm") and tpl.has("gm"):
        wm, gm = _part(tpl, "wm", region), _part(tpl, "gm", region)
        # PAM50's white and grey matter maps stop 20 mm above the end of its cord mask (the conus
        # and its tip): on slices where they hold under ATLAS_MIN_SHARE of the cord, the cord is
        # painted as on a template without the maps, not as CSF (before session 21 the image showed
        # no cord over the last 20 mm of the cord the phantom's truth marks)
        axes = tuple(a for a in range(3) if a != si)
        bare = (wm + gm).sum(axis=axes) < ATLAS_MIN_SHARE * cord.sum(axis=axes)
        shape = [1, 1, 1]
        shape[si] = -1
        bare = bare.reshape(shape)
        wm, gm = np.where(bare, cord * 0.75, wm), np.where(bare, cord * 0.25, gm)
    else:
        wm, gm = cord * 0.75, cord * 0.25

    soft = val["soft"] * (1 + val["soft_texture"] * _texture(cord.shape, rng, 2.5 / vox))
    out = soft.astype(np.float32)
    if spine.any():
        tex = 0.7 * _texture(cord.shape, rng, 4.0 / vox) + 0.5 * _texture(cord.shape, rng, 0.6 / vox)
        marrow = val["marrow"] * (1 + val["marrow_texture"] * tex)
        # ~1 mm cortical shell: the outer voxel layers (0.5 mm each) of the spine mask
        inner1 = ndimage.binary_erosion(spine)
        inner2 = ndimage.binary_erosion(inner1)
        rim = np.where(inner2, 0.0, np.where(inner1, 0.5, 1.0)).astype(np.float32)
        bone = rim * val["cortical"] + (1 - rim) * marrow
        out = np.where(spine, bone, out)
        # gaps between vertebrae closed along S-I: discs in front of the canal, ligaments behind
        size = int(round(12.0 / region.zooms[si])) | 1
        closed = ndimage.minimum_filter1d(ndimage.maximum_filter1d(spine.view(np.uint8), size, axis=si),
                                          size, axis=si).astype(bool)
        gap = closed & ~spine & (csf < 0.5) & (cord < 0.5)
        ap = int(np.argmax(np.abs(region.affine[1, :3])))
        yw = region.voxel_to_world(np.zeros((1, 3)))[0, 1] + np.arange(cord.shape[ap]) * region.affine[1, ap]
        shape = [1, 1, 1]
        shape[ap] = -1
        ycord = float(region.voxel_to_world(np.argwhere(cord > 0.5)).mean(0)[1]) if cord.any() else 0.0
        anterior = (yw > ycord + 6.0).reshape(shape)
        out = np.where(gap & anterior, val["disc"] * (1 + 0.05 * tex), out)
        out = np.where(gap & ~anterior, val["ligament"], out)
    near_csf = ndimage.binary_dilation(csf > 0.5, iterations=max(1, int(round(1.5 / vox))))
    fat = near_csf & (csf < 0.5) & (cord < 0.5) & ~spine
    out = np.where(fat, val["fat"], out)
    out = out * (1 - csf) + csf * val["csf"]
    inside = np.clip(cord, 0, 1)
    matter = np.clip(wm + gm, 1e-6, None)
    frac = np.clip(matter, 0, 1)
    cord_val = (wm * val["wm"] + gm * val["gm"]) / matter
    out = out * (1 - inside) + inside * (frac * cord_val + (1 - frac) * val["csf"])
    stats = {"spine_ml": float(spine.sum() * np.prod(region.zooms) / 1000),
             "csf_ml": float(csf.sum() * np.prod(region.zooms) / 1000)}
    return out.astype(np.float32), float(val["soft"]), stats
