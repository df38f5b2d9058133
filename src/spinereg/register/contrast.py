"""Template contrasts synthesised from tissue maps when the intensity template is absent.

Relative intensities per tissue for each contrast (CSF, white matter, grey matter, cord if no
WM/GM maps, vertebral bone from the spine mask, background); the result is smoothed by half a
voxel to mimic partial volume. The vertebrae matter: their alternation with the discs is the
S-I pattern that real T1w/T2w images (and the real PAM50 templates) show along the whole spine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

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

    maps = {}
    for role in ("csf", "wm", "gm"):
        if tpl.has(role):
            maps[role] = np.clip(part(load_image(tpl.path(role), ndim=3, check_finite=False)), 0, 1)
    c = np.clip(part(cord), 0, 1)
    out = np.full(c.shape, table["background"], np.float32)
    if tpl.has("spine"):
        bone = np.clip(part(load_image(tpl.path("spine"), ndim=3, check_finite=False)), 0, 1)
        out += bone * (table["bone"] - table["background"])
    if "csf" in maps:
        out += maps["csf"] * (table["csf"] - table["background"])
    if "wm" in maps and "gm" in maps:
        out = out * (1 - c) + maps["wm"] * table["wm"] + maps["gm"] * table["gm"] + c * 0
    else:
        out = out * (1 - c) + c * table["cord"]
    out = ndimage.gaussian_filter(out, 0.5)
    affine = cord.affine if region is None else region.affine
    return Image(out, affine, cord.header)

