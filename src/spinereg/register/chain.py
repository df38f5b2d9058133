"""Chains through intermediate references: target -> ... -> anatomical -> template.

The anatomical image (last of the chain) is registered to the template with its landmarks.
Each other image is reached from its neighbour towards the anatomy by a subject-to-subject
registration (segmentation-driven when both segmentations exist, image-driven otherwise), or by
warps the user already has (from SCT or spinereg). Then, for every image of the chain:

* if it has its own cord segmentation, the landmarks are carried into it through the chain and
  the template is registered to it directly (its own centerline covers its whole field of view,
  which a composition through a smaller anatomical image cannot);
* otherwise the template->image warp is the composition of the links, sampled once on the
  image's grid (so the data are interpolated once when the warp is applied).

:func:`order_images` implements the documented rule for choosing intermediates by contrast.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.cord.landmarks import Landmarks
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image, on_grid_of, require_same_grid
from spinereg.io.sanity import require_segmentation
from spinereg.register.multimodal import MultimodalRegistration, register_multimodal
from spinereg.register.template import TemplateRegistration, register_to_template
from spinereg.transforms.base import Chain, Transform
from spinereg.transforms.displacement import DisplacementField
from spinereg.transforms.itk import load_transform

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from spinereg.vertebrae.result import VertebralLabeling


@dataclass
class ChainLink:
    """How image ``index`` relates to image ``index + 1`` (its neighbour towards the anatomy)."""

    index: int
    kind: str  # "registered" | "given"
    to_next: Transform  # pull on image index's grid: its points -> neighbour's points
    from_next: Transform  # pull on the neighbour's grid: neighbour's points -> this image's points
    registration: MultimodalRegistration | None = None

    def as_dict(self) -> dict:
        d = {"index": self.index, "kind": self.kind}
        if self.registration is not None:
            d["steps"] = [str(s) for s in self.registration.steps]
            d["timings_s"] = {k: round(v, 3) for k, v in self.registration.timings.items()}
        return d


@dataclass
class ChainResult:
    images: list[Image]
    segs: list[Image | None]
    anat: TemplateRegistration
    links: list[ChainLink]
    #: per image: how its template warp was obtained ("anatomical", "direct", "composed")
    modes: list[str] = field(default_factory=list)
    direct: dict[int, TemplateRegistration] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def template2image(self, k: int) -> Transform:
        """Pull chain on image ``k``'s grid: its points -> template points."""
        if k == len(self.images) - 1:
            return self.anat.template2anat
        if k in self.direct:
            return self.direct[k].template2anat
        return Chain([self.template2image(k + 1), self.links[k].to_next])

    def composed_template2image(self, k: int) -> Transform:
        """Image ``k``'s points -> template points through the links and the anatomical
        registration only (ignores a direct registration of image ``k``; the last image's own)."""
        if k == len(self.images) - 1:
            return self.anat.template2anat
        return Chain([self.composed_template2image(k + 1), self.links[k].to_next])

    def image2template(self, k: int) -> Transform:
        """Pull chain on the template grid: template points -> image ``k``'s points."""
        if k == len(self.images) - 1:
            return self.anat.anat2template
        if k in self.direct:
            return self.direct[k].anat2template
        return Chain([self.links[k].from_next, self.image2template(k + 1)])

    def warp_template2image(self, k: int) -> DisplacementField:
        return DisplacementField.from_transform(self.template2image(k), self.images[k].grid)

    def warp_image2template(self, k: int) -> DisplacementField:
        return DisplacementField.from_transform(self.image2template(k), self.anat.template_grid)

    def provenance(self) -> dict:
        return {
            "images": [str(im.path) for im in self.images],
            "segmentations": [None if s is None else str(s.path) for s in self.segs],
            "links": [lk.as_dict() for lk in self.links],
            "template_warp_modes": self.modes,
            "anatomical_steps": [str(s) for s in self.anat.steps],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _contrast_table() -> dict:
    text = resources.files("spinereg").joinpath("data/contrast_order.json").read_text()
    return json.loads(text)


def contrast_rank(path: str | Path) -> int:
    """Position of an image's contrast between EPI (0) and the T2w anatomy (highest), from its
    file name (BIDS suffix or common tokens), following ``data/contrast_order.json``."""
    name = Path(path).name.lower()
    table = _contrast_table()
    for family in table["families"]:
        if any(tok in name for tok in family["tokens"]):
            return int(family["rank"])
    return int(table["unknown_rank"])


def order_images(target: str | Path, anatomical: str | Path, candidates: list[str | Path]) -> list[str]:
    """The documented rule for choosing the intermediate: among the candidates whose contrast
    rank lies strictly between the target's and the anatomical image's, take the one closest
    to the target (lowest rank; ties broken by file name). Ranks: EPI/BOLD/DWI 0, T2*w/GRE/MT 1,
    T1w 2, T2w 3. No such candidate means a direct link target -> anatomical.
    """
    r0, r1 = contrast_rank(target), contrast_rank(anatomical)
    between = sorted((c for c in candidates if r0 < contrast_rank(c) < r1),
                     key=lambda c: (contrast_rank(c), str(c)))
    return [str(target), *([str(between[0])] if between else []), str(anatomical)]


def check_chain_inputs(images: list, segs: list, given: dict | None = None) -> None:
    """Raise :class:`InputError` for a chain that cannot be run as asked, before any work: a
    segmentation count that differs from the images', no segmentation for the anatomical image (an
    internal error in the labeling, before session 37), a --link-warp for a link the chain does not
    have (ignored, exit 0), two images of one name (their warps would overwrite each other)."""
    from spinereg.io.image import path_stem

    if len(images) < 1 or len(segs) != len(images):
        raise InputError("give one segmentation (or 'none') per image of the chain", None,
                         "use --seg with as many entries as -i (write 'none' where there is none)")
    if segs[-1] is None:
        raise InputError("the anatomical image (last of the chain) needs a cord segmentation", None,
                         "give its segmentation (or 'auto') as the last --seg")
    bad = sorted(k for k in (given or {}) if not 0 <= int(k) < len(images) - 1)
    if bad:
        raise InputError(f"--link-warp for link(s) {bad}: the chain of {len(images)} images has links "
                         f"0..{len(images) - 2}" if len(images) > 1 else f"--link-warp for link(s) {bad}: "
                         "a chain of one image has no link", None,
                         "number link K between image K and K+1 of -i, from 0")
    names = [path_stem(im.path if isinstance(im, Image) else im) for im in images
             if not isinstance(im, Image) or im.path is not None]
    dup = sorted({nm for nm in names if names.count(nm) > 1})
    if dup:
        raise InputError(f"two images of the chain are named {dup[0]!r}: their warps (warp_template2{dup[0]}) "
                         "would overwrite each other", None, "give each image of the chain once, with its own name")


def _given_link(k: int, paths: tuple[str, str], imgs: list[Image]) -> tuple[Transform, Transform]:
    """``--link-warp K WARP_K2NEXT WARP_NEXT2K`` loaded and checked against the two images. SCT
    naming: warp_<k>2<next> lives on the neighbour's grid (pulls its points into k), warp_<next>2<k>
    on k's grid. A warp from another space (t2's warp_template2anat as mt1 -> t2: the template cord
    on mt1 at Dice 0.39) and the pair given the other way round (0.76, against 0.89) ran with exit
    0 and only a field-of-view warning, which the right pair gets too, before session 48."""
    from spinereg.io.grid import Grid
    from spinereg.io.image import path_stem
    from spinereg.transforms.sanity import check_overlap

    cur, nxt = (Grid(tuple(im.shape[:3]), im.affine) for im in (imgs[k], imgs[k + 1]))
    names = (Path(str(imgs[k].name)).name, Path(str(imgs[k + 1].name)).name)
    stems = tuple(path_stem(n) for n in names)
    from_next, to_next = load_transform(paths[0]), load_transform(paths[1])
    for warp, path, home, other in ((from_next, paths[0], nxt, cur), (to_next, paths[1], cur, nxt)):
        g = getattr(warp, "grid", None)
        if isinstance(g, Grid) and g.same_as(other, atol=1e-3) and not g.same_as(home, atol=1e-3):
            raise InputError(f"the warps of --link-warp {k} look swapped: {Path(path).name} lives on the grid of "
                             f"{names[0] if other is cur else names[1]}", path,
                             f"give warp_{stems[0]}2{stems[1]} (on {names[1]}'s grid) first, then "
                             f"warp_{stems[1]}2{stems[0]} (on {names[0]}'s grid): SCT's warp_A2B lives on B's grid")
    # each warp must carry its image's points into the other image (a warp of another space, e.g. a
    # template's, carries them nowhere near it)
    check_overlap(cur, nxt, [from_next], [str(paths[0])], names[0], names[1], f"image {k}", f"image {k + 1}")
    check_overlap(nxt, cur, [to_next], [str(paths[1])], names[1], names[0], f"image {k + 1}", f"image {k}")
    return from_next, to_next


def register_chain(
    images: list[str | Path | Image],
    segs: list[str | Path | Image | None],
    *,
    labels: str | Path | Image | Landmarks | None = None,
    ldisc: str | Path | Image | Landmarks | None = None,
    lrootlet: str | Path | Image | Landmarks | None = None,
    template: str | Path = "PAM50",
    contrast: str = "t2",
    given: dict[int, tuple[str, str]] | None = None,
    link_param: str | list[str | None] | None = None,
    direct: bool = True,
    labeling: VertebralLabeling | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ChainResult:
    """Register a chain ``images[0] -> images[1] -> ... -> images[-1] (anatomical) -> template``.

    ``segs[k]`` is image k's cord segmentation or None. Landmarks (``labels``/``ldisc``/
    ``lrootlet``) belong to the anatomical image. ``given[k] = (warp_k2next, warp_next2k)`` uses
    existing warps (SCT names: ``warp_<k>2<next>`` lives on the neighbour's grid) for link k.
    ``link_param``: steps for every link, or a list with one entry (or None: the default) per link.
    ``labeling``: the anatomical image's automatic vertebral labeling, passed to
    :func:`~spinereg.register.template.register_to_template` (its measured discs join the given
    labels when their levels agree); None: the given labels alone.
    """
    check_chain_inputs(images, segs, given)
    t0 = time.perf_counter()
    imgs = [im if isinstance(im, Image) else load_image(im, ndim=(3, 4), lazy=True) for im in images]
    sgs = [None if s is None else (s if isinstance(s, Image) else load_image(s, ndim=3, what="segmentation"))
           for s in segs]
    # a segmentation holding its image's voxels in another axis order: exactly on the image's grid
    sgs = [None if sg is None else on_grid_of(sg, im) for sg, im in zip(sgs, imgs, strict=True)]
    n = len(imgs)
    for sg, im in zip(sgs, imgs, strict=True):  # t2s.nii.gz as a --seg was read as a cord filling its
        if sg is not None:  # field of view, exit 0
            require_segmentation(sg, "segmentation", "--seg")
            # before the work; an image whose links are all given (--link-warp, --no-direct) had
            # its segmentation used unchecked: an internal IndexError after the anatomical run
            require_same_grid(im, sg)
    given = given or {}
    given_links = {k: _given_link(k, given[k], imgs) for k in sorted(given)}  # checked before the work
    anat = register_to_template(imgs[-1], sgs[-1], labels=labels, ldisc=ldisc, lrootlet=lrootlet,
                                template=template, contrast=contrast, labeling=labeling, progress=progress)
    timings = {"anatomical": time.perf_counter() - t0}
    links: list[ChainLink] = []
    for k in range(n - 1):
        t1 = time.perf_counter()
        if k in given_links:
            from_next, to_next = given_links[k]
            links.append(ChainLink(k, "given", to_next, from_next))
        else:
            # the neighbour (towards the anatomy) is moved onto image k
            param = link_param[k] if isinstance(link_param, list | tuple) else link_param
            reg = register_multimodal(imgs[k + 1], imgs[k], iseg=sgs[k + 1], dseg=sgs[k], param=param or None)
            links.append(ChainLink(k, "registered", reg.src2dest, reg.dest2src, reg))
        timings[f"link{k}"] = time.perf_counter() - t1
    result = ChainResult(imgs, sgs, anat, links, timings=timings)
    modes = ["composed"] * n
    modes[-1] = "anatomical"
    lm = anat.landmarks
    for k in range(n - 2, -1, -1):
        # carry the landmarks one link down (kept as world points for the next link too)
        pts = links[k].from_next.map(lm.points)
        lm = Landmarks(lm.kind, lm.values, pts, lm.source)
        if direct and sgs[k] is not None:
            t1 = time.perf_counter()
            thick = float(imgs[k].grid.zooms.max()) > 3.0
            img3d = mean_image(imgs[k])
            # the carried landmarks stay world points: snapping them to voxels of a thick-slice
            # image would move them by up to half a slice along S-I
            kw = {{"body": "labels", "disc": "ldisc", "rootlet": "lrootlet"}[lm.kind]: lm}
            result.direct[k] = register_to_template(img3d, sgs[k], template=template, contrast=contrast,
                                                    ref="subject" if thick else "template", **kw)
            modes[k] = "direct"
            timings[f"direct{k}"] = time.perf_counter() - t1
    result.modes = modes
    return result


def mean_image(img: Image) -> Image:
    """``img`` itself (3D) or the mean of its volumes (a series)."""
    if img.ndim == 3:
        return img
    data = np.stack([np.asarray(img.volume(t), np.float32) for t in range(img.nvols)], axis=-1)
    return Image(data.mean(-1), img.affine, img.header, img.path)
