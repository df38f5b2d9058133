"""Template spine contrasts for per-vertebra steps: vertebral bodies with their cortex, discs,
cord and CSF, synthesised from the template's spine mask and tissue maps.

The generic synthetic template (:mod:`spinereg.register.contrast`) paints every vertebra with one
bone intensity. Fitting a vertebra to an image (``algo=polyrigid``, and the body placement of the
spine measures) needs what a real image shows around it: the dark cortical endplates, the discs
between the bodies (bright on T2w), the bright CSF behind them on T2w. Relative intensities per
contrast (read from sct_testing_data's T2w and usual T1w/CT values; only their order and contrast
matter to ``metric=CC``, which fits intensities linearly per vertebra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.io.grid import Grid
from spinereg.io.image import Image

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable, Sequence

    from spinereg.io.template import Template
    from spinereg.register.steps import Step

SPINE_INTENSITY: dict[str, dict[str, float]] = {
    "t2": {"background": 0.10, "csf": 1.0, "cord": 0.30, "disc": 0.22, "marrow": 0.13, "cortex": 0.05},
    "t1": {"background": 0.45, "csf": 0.15, "cord": 0.78, "disc": 0.40, "marrow": 0.70, "cortex": 0.10},
    "t2s": {"background": 0.15, "csf": 0.90, "cord": 0.45, "disc": 0.35, "marrow": 0.20, "cortex": 0.05},
    "ct": {"background": 40.0, "csf": 10.0, "cord": 35.0, "disc": 90.0, "marrow": 250.0, "cortex": 900.0},
}


def synthesize_spine(tpl: Template, region: Grid, contrast: str, vertebrae: np.ndarray) -> Image:
    """The spine contrast ``contrast`` on ``region`` (a voxel-aligned sub-grid of the template;
    ``vertebrae``: the template's vertebra labels there), blurred by half a voxel."""
    from spinereg.cord.vertebra_masks import spine_tissues

    tab = SPINE_INTENSITY.get(contrast, SPINE_INTENSITY["t2"])
    t = spine_tissues(tpl, region, vertebrae)
    out = np.full(region.shape, tab["background"], np.float32)
    for tissue, value in (("disc", "disc"), ("csf", "csf"), ("cord", "cord"), ("bone", "marrow"),
                          ("cortex", "cortex")):
        out[t[tissue]] = tab[value]
    return Image(ndimage.gaussian_filter(out, 0.5), region.affine)


def needs_spine(steps: Iterable[Step]) -> bool:
    """Whether any step needs per-vertebra masks (``algo=polyrigid`` or ``rigidity > 0``)."""
    return any(s.algo == "polyrigid" or float(getattr(s, "rigidity", 0) or 0) > 0 for s in steps)


def spine_inputs(steps: Sequence[Step], tpl: Template, contrast: str, region: Grid,
                 grid: Grid) -> dict[str, np.ndarray]:
    """What per-vertebra steps need in a template-space registration on ``grid`` (``region``: the
    template sub-grid it covers): ``vertebrae`` (the template's spine mask split by level) and
    ``spine`` (the spine contrast, the fixed image of ``algo=polyrigid`` steps on images)."""
    if not needs_spine(steps):
        return {}
    from spinereg.cord.vertebra_masks import template_vertebrae, vertebrae_on_grid
    from spinereg.io.resample import slice_like
    from spinereg.transforms.apply import apply_transforms

    labels = template_vertebrae(tpl)
    vert_r = slice_like(labels, region, dtype=None).astype(np.int16)
    out = {"vertebrae": vertebrae_on_grid(Image(vert_r, region.affine), grid)}
    if any(s.algo == "polyrigid" and s.type in ("im", "imseg") for s in steps):
        out["spine"] = apply_transforms(synthesize_spine(tpl, region, contrast, vert_r), grid, [], "linear").data
    return out
