"""Template contrasts synthesised from tissue maps when the intensity template is absent.

Relative intensities per tissue for each contrast (CSF, white matter, grey matter, cord if no
WM/GM maps, vertebral bone from the spine mask, background); the result is smoothed by half a
voxel to mimic partial volume. The vertebrae matter: their alternation with the discs is the
S-I pattern that real T1w/T2w images (and the real PAM50 templates) show along the whole spine.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.io.box import box_slices, mask_box
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.io.resample import slice_like

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.template import Template

#: relative intensities (csf, wm, gm, cord, background) by contrast
TISSUE_INTENSITY = {
    "t2": {"csf": 1.0, "wm": 0.30, "gm": 0.40, "cord": 0.33, "bone": 0.45, "background": 0.15},
    "t2s": {"csf": 0.9, "wm": 0.35, "gm": 0.65, "cord": 0.45, "bone": 0.30, "background": 0.15},
    "t1": {"csf": 0.15, "wm": 0.80, "gm": 0.70, "cord": 0.78, "bone": 0.75, "background": 0.45},
}


def synthesize_contrast(tpl: Template, contrast: str, cord: Image | None = None,
                        region: Grid | None = None) -> Image | None:
    """An intensity image for ``contrast`` from cord/wm/gm/csf maps, on the template grid or on
    ``region`` (a voxel-aligned sub-grid of it)."""
    table = TISSUE_INTENSITY.get(contrast)
    if table is None:
        return None
    cord = cord or load_image(tpl.path("cord"), ndim=3, check_finite=False)

    def part(img: Image) -> np.ndarray:
        return np.asarray(img.data if region is None else slice_like(img, region), np.float32)

    def tissue(role: str) -> np.ndarray:
        if region is not None:
            kept = _region_of_map(tpl.path(role), region)
            if kept is not None:
                return np.clip(kept, 0, 1, out=kept)
        return np.clip(part(load_image(tpl.path(role), ndim=3, check_finite=False)), 0, 1)

    # in place where the arrays are this function's own (float32 arithmetic in the same order:
    # the same values; a full-template region is ~40 MB per temporary)
    c = np.clip(part(cord), 0, 1)
    out = np.full(c.shape, table["background"], np.float32)
    for role in ("spine", "csf"):
        if tpl.has(role):
            m = tissue(role)
            out += np.multiply(m, table["bone" if role == "spine" else role] - table["background"], out=m)
            del m
    if tpl.has("wm") and tpl.has("gm"):
        out *= 1 - c
        for role in ("wm", "gm"):
            m = tissue(role)
            out += np.multiply(m, table[role], out=m)
            del m
        out += c * 0
    else:
        out = out * (1 - c) + c * table["cord"]
    out = ndimage.gaussian_filter(out, 0.5)
    affine = cord.affine if region is None else region.affine
    return Image(out, affine, cord.header)


@lru_cache(maxsize=8)
def _nonzero_box(path: str, mtime_ns: int) -> tuple[np.ndarray, tuple[int, ...], np.ndarray, np.ndarray]:
    """A template map read once per process: its grid's affine and shape, the offset of the box
    holding its non-zero voxels and that box (in the file's type), all read-only. A template job
    synthesises its contrast several times (registration passes, outputs, scores) on different
    regions; the maps are mostly zero (PAM50's wm / gm / csf / spine: 141 x 141 x 991 voxels, 80 MB
    each as float32)."""
    img = load_image(path, ndim=3, check_finite=False)
    data = np.asarray(img.data)
    found = mask_box(data)
    if found is None:
        return img.affine, data.shape, np.zeros(3, int), np.zeros((0, 0, 0), data.dtype)
    lo = found[0]
    box = np.array(data[box_slices(*found)])  # its own type (uint8 masks)
    affine, offset = np.array(img.affine), np.array(lo)
    for a in (box, affine, offset):
        a.flags.writeable = False
    return affine, data.shape, offset, box


def _region_of_map(path: Path, region: Grid) -> np.ndarray | None:
    """The template map at ``path`` on ``region`` (a voxel-aligned sub-grid of its grid), float32,
    from :func:`_nonzero_box`: the values ``slice_like`` gives; None when ``region`` is not inside
    the map's grid (the caller reads the file)."""
    path = Path(path)
    affine, shape, lo, box = _nonzero_box(str(path), path.stat().st_mtime_ns)
    grid = Grid(shape, affine)
    off = np.rint(grid.world_to_voxel(region.voxel_to_world(np.zeros((1, 3))))[0]).astype(int)
    size = np.array(region.shape[:3])
    if (off < 0).any() or (off + size > np.array(shape)).any():
        return None
    out = np.zeros(tuple(size), np.float32)
    a = np.maximum(off, lo)
    b = np.minimum(off + size, lo + np.array(box.shape))
    if (b > a).all():
        out[tuple(slice(x - o, y - o) for x, y, o in zip(a, b, off, strict=True))] = \
            box[tuple(slice(x - l0, y - l0) for x, y, l0 in zip(a, b, lo, strict=True))]
    return out
