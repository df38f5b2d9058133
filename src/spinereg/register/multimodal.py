"""Subject-to-subject registration (``spinereg register``): one contrast onto another.

The same step language and algorithms as register-to-template run in the destination's space
(axial slices along the last voxel axis, whatever the file's axis order). An optional initial
warp (e.g. from a previous registration or SCT) starts the chain; the result is written as
SCT-named warps in both directions, the source resampled onto the destination (one
interpolation), metrics and provenance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image, onto_grid_of, require_nonempty
from spinereg.io.orientation import reorient, si_last_code
from spinereg.io.sanity import unit_mask
from spinereg.register.engine import invert_step, run_steps
from spinereg.register.steps import Step, parse_param
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.base import Chain, Transform
from spinereg.transforms.displacement import DisplacementField
from spinereg.transforms.itk import load_transform

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

DEFAULT_SEG_PRESET = "multimodal_spinereg_imseg"
DEFAULT_IM_PRESET = "multimodal_spinereg_im"
DEFAULT_SRC_SEG_PRESET = "multimodal_epi"
#: the source-segmentation default for a diffusion-weighted destination (:func:`default_preset`)
DEFAULT_DWI_PRESET = "multimodal_dwi"
#: lower-cased file-name tokens of a diffusion-weighted image (BIDS ``_dwi``, SCT's ``dmri``)
DIFFUSION_TOKENS = ("dwi", "dmri")
#: dilation (mm) of the source segmentation when it serves as the destination's metric mask
MASK_DILATION_MM = 5.0


@dataclass
class MultimodalRegistration:
    """Result of :func:`register_multimodal`: pull chains in both directions."""

    src: Image
    dest: Image
    iseg: Image | None
    dseg: Image | None
    steps: list[Step]
    initial: list[Transform]
    initial_inverse: list[Transform]
    step_transforms: list[Transform]
    step_inverses: list[Transform]
    timings: dict[str, float] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    @property
    def src2dest(self) -> Chain:
        """Pull chain on the destination grid: destination points -> source points."""
        return Chain([*self.initial, *self.step_transforms])

    @property
    def dest2src(self) -> Chain:
        """Pull chain on the source grid: source points -> destination points."""
        return Chain([*reversed(self.step_inverses), *self.initial_inverse])

    def warp_src2dest(self) -> DisplacementField:
        return DisplacementField.from_transform(self.src2dest, self.dest.grid)

    def warp_dest2src(self) -> DisplacementField:
        return DisplacementField.from_transform(self.dest2src, self.src.grid)


def default_preset(iseg: bool, dseg: bool, dest_name: str | Path | None = None) -> str:
    """The preset ``register`` runs without ``--param``: both segmentations
    ``multimodal_spinereg_imseg``; the source's only ``multimodal_epi`` (slice-wise correlation),
    or ``multimodal_dwi`` (the same by mutual information) when the destination's file name marks
    it diffusion-weighted (:data:`DIFFUSION_TOKENS`); none ``multimodal_spinereg_im``. Before
    session 49 a DWI destination got correlation, which moved t2's cord 5.4 mm off the DWI's cord
    (tests/test_epi_link_preset.py)."""
    if iseg and dseg:
        return DEFAULT_SEG_PRESET
    if not iseg:
        return DEFAULT_IM_PRESET
    name = Path(str(dest_name or "")).name.lower()
    return DEFAULT_DWI_PRESET if any(tok in name for tok in DIFFUSION_TOKENS) else DEFAULT_SRC_SEG_PRESET


def _load(obj: str | Path | Image, what: str, ndim: int | tuple[int, ...] = 3) -> Image:
    return obj if isinstance(obj, Image) else load_image(obj, ndim=ndim, what=what)


def _mean_if_4d(img: Image) -> Image:
    if img.ndim == 3:
        return img
    # the path is kept: outputs are named after the file (t2_4d_reg.nii.gz; before session 37 the
    # mean had no name and the outputs were src_reg.nii.gz, warp_src2t2.nii.gz)
    mean = np.asarray(img.data, np.float32).reshape(img.shape[:3] + (-1,), order="F").mean(-1)
    return Image(mean, img.affine, img.header, img.path)


def register_multimodal(
    src: str | Path | Image,
    dest: str | Path | Image,
    *,
    iseg: str | Path | Image | None = None,
    dseg: str | Path | Image | None = None,
    mask: str | Path | Image | None = None,
    init_warp: str | Path | Transform | None = None,
    init_warp_inv: str | Path | Transform | None = None,
    param: str | None = None,
    identity: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MultimodalRegistration:
    """Register ``src`` onto ``dest`` (4D inputs are registered through their mean volume).

    ``iseg``/``dseg``: cord segmentations of source and destination (used by ``type=seg``
    steps and for the Dice metrics). ``mask``: a binary or soft mask on the destination that
    restricts the image metric. ``init_warp``: a transform (or chain element) src -> dest
    applied before the steps; its inverse is ``init_warp_inv`` or computed. ``identity``: no
    estimation at all (header-based resampling only).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    s_img = _mean_if_4d(_load(src, "source image", (3, 4)))
    d_img = _mean_if_4d(_load(dest, "destination image", (3, 4)))
    s_seg = _load(iseg, "source segmentation") if iseg is not None else None
    d_seg = _load(dseg, "destination segmentation") if dseg is not None else None
    segs: list[Image | None] = []
    for img, seg in ((s_img, s_seg), (d_img, d_seg)):  # both loaded first: load errors come before grid errors
        if seg is not None:
            # a segmentation holding its image's voxels in another axis order: exactly on the image's grid
            seg = unit_mask(onto_grid_of(seg, img))
            require_nonempty(seg)
        segs.append(seg)
    s_seg, d_seg = segs
    m_img = _load(mask, "mask") if mask is not None else None
    initial = [_as_transform(init_warp)] if init_warp is not None else []
    if init_warp_inv is not None:
        initial_inv = [_as_transform(init_warp_inv)]
    else:
        initial_inv = [invert_step(t) if not isinstance(t, DisplacementField) else t.inverse(s_img.grid)
                       for t in reversed(initial)]
    timings["load"] = time.perf_counter() - t0
    if identity:
        return MultimodalRegistration(s_img, d_img, s_seg, d_seg, [], initial, initial_inv, [], [], timings)

    has_segs = s_seg is not None and d_seg is not None
    default = default_preset(s_seg is not None, d_seg is not None, d_img.path)
    steps = parse_param(param if param else default)
    if not has_segs and any(st.type in ("seg", "imseg") for st in steps):
        raise InputError("type=seg steps need both segmentations", None,
                         "give --iseg and --dseg, or use type=im steps")
    t0 = time.perf_counter()
    code = si_last_code(d_img.affine)
    wd = reorient(d_img, code)
    grid: Grid = wd.grid
    fixed = {"im": np.asarray(wd.data, np.float32)}
    moving = {"im": s_img}
    if has_segs:
        fixed["seg"] = (np.asarray(reorient(d_seg, code).data) > 0.5).astype(np.float32)
        moving["seg"] = s_seg
    fmask = None
    if m_img is not None:
        fmask = apply_transforms(m_img, grid, [], "linear").data
    elif s_seg is not None and d_seg is None:
        fmask = derived_mask(s_seg, grid, initial)
        fmask, dropped = exclude_dropout_slices(fixed["im"], fmask)
        timings["excluded_slices"] = float(len(dropped))
    res = run_steps(steps, grid, fixed, moving, initial, fixed_mask=fmask, progress=progress, require_gain=True)
    timings["steps"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    inverses = [invert_step(t) for t in res.transforms]
    timings["invert"] = time.perf_counter() - t0
    return MultimodalRegistration(s_img, d_img, s_seg, d_seg, steps, initial, initial_inv, res.transforms,
                                  inverses, timings, [r.as_dict() for r in res.records])


def derived_mask(seg: Image, grid: Grid, initial: list[Transform], dilation_mm: float = MASK_DILATION_MM) -> np.ndarray:
    """A cord mask on ``grid`` from another image's segmentation carried through ``initial``
    (the chain so far, or the headers), dilated by ``dilation_mm``."""
    from scipy import ndimage

    m = apply_transforms(seg, grid, list(initial), "linear").data > 0.5
    if not m.any():
        raise InputError("the source segmentation does not overlap the destination image", seg.name,
                         "check the images belong to the same subject/session, or give --init-warp")
    r = np.maximum(1, np.round(dilation_mm / grid.zooms)).astype(int)
    struct = np.zeros(tuple(2 * r + 1), bool)
    c = np.indices(struct.shape) - r[:, None, None, None]
    struct[((c / r[:, None, None, None]) ** 2).sum(0) <= 1.0] = True
    return ndimage.binary_dilation(m, struct).astype(np.float32)


def exclude_dropout_slices(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Zero the mask in slices (last axis) whose cord signal drops below the artifact threshold
    relative to the other slices (EPI signal dropout where z-shim fails): those slices then take
    no part in the image metric and their motion comes from the regularisation along z."""
    from spinereg.epi.artifacts import Thresholds, cord_means, dropout_scores

    means = cord_means(image, mask)[None, :]
    _, static = dropout_scores(means)
    bad = [int(k) for k in np.flatnonzero(static < Thresholds().dropout)]
    if bad and len(bad) < image.shape[2]:
        mask = mask.copy()
        mask[:, :, bad] = 0.0
    return mask, bad


def _as_transform(obj: str | Path | Transform) -> Transform:
    return obj if isinstance(obj, Transform) else load_transform(str(obj))
