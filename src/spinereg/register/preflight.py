"""Checks of a registration's inputs that take well under a second and run before the long work.

:func:`check_template_inputs` (register-to-template) and :func:`check_multimodal_inputs`
(register) load the images once (the loaded images are returned, for the registration to use),
and refuse with one line naming what looks wrong: a segmentation that is not a mask, an image
that looks like a mask (image and segmentation swapped), images and segmentations on different
grids, empty segmentations, inputs that do not overlap in space (after the initial transform),
unknown step parameters or unavailable algorithms (e.g. SCT's ``algo=dl``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.errors import InputError
from spinereg.io.image import Image, load_image, on_grid_of, require_nonempty, require_same_grid
from spinereg.io.sanity import check_image_and_seg, require_mask, require_not_mask, unit_mask

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.transforms.base import Transform


@dataclass
class TemplateInputs:
    image: Image
    seg: Image


@dataclass
class MultimodalInputs:
    src: Image
    dest: Image
    iseg: Image | None
    dseg: Image | None


def check_param(param: str | None, default: str) -> None:
    """Parse the steps (``--param`` or the default preset) and check every algorithm exists."""
    from spinereg.register.engine import algorithm
    from spinereg.register.steps import parse_param

    for step in parse_param(param if param else default):
        if step.type in ("label", "rootlet"):
            continue
        try:
            algorithm(step.algo)
        except KeyError:
            what = " (SCT's deep-learning registration)" if step.algo == "dl" else ""
            raise InputError(f"registration algorithm algo={step.algo}{what} is not available in spinereg", None,
                             "use algo=centermass, centermassrot, columnwise, slicereg, demons, translation, "
                             "rigid, affine, syn or bsplinesyn in --param") from None


def check_template_inputs(image: str | Path, seg: str | Path, param: str | None = None) -> TemplateInputs:
    """Inputs of register-to-template (see module doc); the landmarks are checked by the
    registration itself, right after loading."""
    from spinereg.register.template import DEFAULT_PRESET

    check_param(param, DEFAULT_PRESET)
    img = load_image(image, ndim=3)
    # a segmentation holding the image's voxels in another axis order: exactly on the image's grid
    sg = on_grid_of(load_image(seg, ndim=3, what="segmentation"), img)
    check_image_and_seg(img, sg, "-i", "-s")
    require_same_grid(img, sg)
    require_nonempty(sg, "segmentation")
    return TemplateInputs(img, unit_mask(sg))


def check_multimodal_inputs(src: str | Path, dest: str | Path, iseg: str | Path | None = None,
                            dseg: str | Path | None = None, init_warp: Transform | None = None,
                            param: str | None = None,
                            init_name: str = "--init-warp") -> MultimodalInputs:
    """Inputs of register (see module doc). ``init_warp``: a loaded transform (src -> dest)."""
    from spinereg.register.multimodal import default_preset
    from spinereg.transforms.sanity import check_overlap

    default = default_preset(bool(iseg), bool(dseg), dest)
    check_param(param, default)
    # both images read at once (gzip decompression releases the GIL); the source's error first
    with ThreadPoolExecutor(2) as pool:
        s_fut = pool.submit(load_image, src, ndim=(3, 4), what="source image")
        d_fut = pool.submit(load_image, dest, ndim=(3, 4), what="destination image")
        s_img, d_img = s_fut.result(), d_fut.result()
    segs: list[Image | None] = []
    for img, seg, opt_i, opt_s in ((s_img, iseg, "-i", "--iseg"), (d_img, dseg, "-d", "--dseg")):
        if seg is None:
            require_not_mask(img, "image", opt_i)
            segs.append(None)
            continue
        sg = on_grid_of(load_image(seg, ndim=3, what="segmentation"), img)  # see check_template_inputs
        check_image_and_seg(img, sg, opt_i, opt_s)
        require_same_grid(img, sg)
        require_nonempty(sg, "segmentation")
        segs.append(unit_mask(sg))
    given = [init_warp] if init_warp is not None else []
    check_overlap(s_img.grid, d_img.grid, given, [init_name] if given else [], s_img.name, d_img.name, "-i", "-d")
    return MultimodalInputs(s_img, d_img, segs[0], segs[1])


def check_mask(mask: str | Path, what: str = "mask", option: str = "-m") -> Image:
    """A mask option (binary or soft)."""
    m = load_image(mask, ndim=3, what=what)
    require_mask(m, what, option)
    require_nonempty(m, what)
    return unit_mask(m)


def check_mask_covers(mask: Image, dest: Image, what: str = "mask", option: str = "-m",
                      dest_option: str = "-d") -> None:
    """Refuse a mask that, placed on the destination's grid by its world position, holds no voxel:
    it was ignored, the run otherwise identical to one without it, exit 0 and the mask listed
    among the inputs, before session 48 (a mask of another session, or a header mix-up)."""
    from spinereg.io.grid import Grid
    from spinereg.transforms.apply import apply_transforms

    grid = Grid(tuple(dest.shape[:3]), dest.affine)
    if not float(apply_transforms(mask, grid, [], "linear").data.max()) > 0:
        raise InputError(f"the {what} ({option}) lies outside {dest_option}'s field of view: placed there by "
                         "its world position it holds no voxel", mask.name,
                         f"give a {what} of the image given with {dest_option} (the same space)")
