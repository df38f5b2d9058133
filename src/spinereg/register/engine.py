"""Run a list of registration steps between a fixed and a moving image on one grid.

Each step is dispatched by name through the algorithm registry (slice-wise algorithms and ANTs
stages), never through if/elif chains. After each step the moving images are resampled again
from the originals through the whole chain, so data are interpolated once per step. Voxels that
the steps so far moved out of a moving image take its nearest value (:func:`moved_out_filled`),
not 0; algorithms that leave out missing data themselves (``needs`` ``moving_valid``) get the
mask of what the moving image covers instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from spinereg.io.box import mask_box, pad_voxels
from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.base import Transform
from spinereg.transforms.displacement import VelocityField

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable

    from spinereg.register.steps import Step

log = logging.getLogger(__name__)


def _ants_algo(fixed: np.ndarray, moving: np.ndarray, fixed_grid: Grid, moving_grid: Grid,
               step: Step, fixed_mask: np.ndarray | None = None):
    from spinereg.register.ants_steps import ants_step  # ANTs loads only when a step needs it

    return ants_step(fixed, moving, fixed_grid, step, fixed_mask)


def _takes_segs(name: str) -> bool:
    """Algorithms that use the segmentations next to the images in ``type=imseg`` steps."""
    from spinereg.register import slicewise

    return name in slicewise.ALGORITHMS or name == "demons"


def algorithm(name: str) -> Callable:
    """The function implementing algorithm ``name`` (slice-wise or ANTs)."""
    from spinereg.register import slicewise
    from spinereg.register.demons import demons

    table = dict(slicewise.ALGORITHMS)
    table.setdefault("demons", demons)
    from spinereg.register.polyrigid import polyrigid
    from spinereg.register.tps import tps_step

    table.setdefault("polyrigid", polyrigid)
    table.setdefault("tps", tps_step)
    for algo in ("translation", "rigid", "affine", "syn", "bsplinesyn"):
        table.setdefault(algo, _ants_algo)
    if name not in table:
        raise KeyError(name)
    return table[name]


@dataclass
class StepRecord:
    step: str
    seconds: float
    kind: str
    report: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {"step": self.step, "seconds": round(self.seconds, 3), "transform": self.kind}
        if self.report:
            d["report"] = self.report
        return d


@dataclass
class EngineResult:
    transforms: list[Transform]
    records: list[StepRecord] = field(default_factory=list)


def run_steps(
    steps: Sequence,
    grid: Grid,
    fixed: dict[str, np.ndarray],
    moving_src: dict[str, Image],
    initial: Sequence[Transform],
    fixed_mask: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    image_check_only: bool = False,
    require_gain: bool = False,
) -> EngineResult:
    """Estimate one transform per step; the moving images are pulled through ``initial`` + steps.

    ``require_gain``: image-only steps (``type=im``; demons or a CC metric) must raise the normalised cross-correlation
    of the images in ``fixed_mask`` (else where both images have signal) that the step record
    reports; a step that does not is replaced by the identity and its record says so. ``image_check_only``: the fixed
    image is not a real image of the subject's contrast (a template synthesised from tissue
    maps): image-driven demons steps only check and report whether the moving image carries
    information, they do not deform.

    ``fixed`` holds arrays on ``grid`` by type (``"seg"``, ``"im"``); ``moving_src`` the original
    moving images by type. Returns the step transforms (pull, on ``grid``), in order.
    Anatomical constraints: ``fixed["vertebrae"]`` (per-vertebra labels on ``grid``) feeds
    ``algo=polyrigid`` and ``rigidity=W``; ``fixed["landmarks"]`` feeds label steps with ``algo=tps``.
    """
    found: list[Transform] = []
    records: list[StepRecord] = []
    covered: dict[str, np.ndarray] = {}  # by kind: the grid voxels the moving image covers through ``initial``
    roi = region_of_interest(grid, [fixed.get("seg"), fixed_mask])
    work = [s for s in steps if s.type not in ("label", "rootlet") or s.algo == "tps"]
    for n, step in enumerate(work):
        t0 = time.perf_counter()
        chain = list(initial) + found

        cache: dict[str, np.ndarray] = {}
        raw: dict[str, np.ndarray] = {}  # NaN where the moving image's source lies outside it

        def pulled(kind: str, fill: bool = True, _chain: list[Transform] = chain, _first: bool = not found,
                   _cache: dict[str, np.ndarray] = cache, _raw: dict[str, np.ndarray] = raw) -> np.ndarray:
            if kind not in _raw:
                data = pull_unfilled(moving_src[kind], grid, _chain)
                if _first:
                    covered[kind] = np.isfinite(data)
                elif kind not in covered:
                    covered[kind] = np.isfinite(pull_unfilled(moving_src[kind], grid, list(initial)))
                _raw[kind] = data
            if not fill:
                return np.nan_to_num(_raw[kind], nan=0.0)
            if kind not in _cache:  # kept for the similarity check below (the step gets a copy)
                _cache[kind] = moved_out_filled(_raw[kind], covered[kind], grid)
            return _cache[kind].copy()

        fn = algorithm(step.algo)
        extra = {k: fixed[k] for k in getattr(fn, "needs", ()) if k in fixed}
        if "chain" in getattr(fn, "needs", ()):
            extra["chain"] = chain
        if image_check_only and step.algo == "demons" and step.type in ("im", "imseg"):
            extra["check_only"] = True
        both = all(k in fixed and k in moving_src for k in ("im", "seg"))
        if step.type == "imseg" and both and _takes_segs(step.algo):
            mseg = pulled("seg")
            if step.algo == "demons":
                # the fixed-grid voxels the moving image covers: beyond them the pulled image is
                # filled, an edge the fixed image does not have, which the image term's local
                # correlation aligned (the cord stretched along S-I near the source's ends)
                extra["moving_valid"] = np.isfinite(raw["seg"])
                extra["moving_zooms"] = moving_src["seg"].grid.zooms  # its own sampling (thick slices)
            t = fn(fixed["im"], pulled("im"), grid, grid, step, fixed_mask,
                   fixed_seg=fixed["seg"], moving_seg=mseg, **extra)
        else:
            kind = "im" if step.type == "im" else "seg"
            if kind not in fixed or kind not in moving_src:
                kind = "seg" if "seg" in fixed and "seg" in moving_src else "im"
            if "moving_valid" in getattr(fn, "needs", ()):  # it leaves out what the moving image lacks itself
                moving = pulled(kind, fill=False)
                extra["moving_valid"] = np.isfinite(raw[kind])
            else:
                moving = pulled(kind)
            t = fn(fixed[kind], moving, grid, grid, step.replace(type=kind) if step.type == "imseg" else step,
                   fixed_mask, **extra)
        if getattr(step, "rigidity", 0):
            from spinereg.register.rigidity import constrain

            t = constrain(t, step, fixed.get("vertebrae"), chain)
        t = diffeomorphic(t, grid, roi)
        if require_gain and step.type == "im" and (step.algo == "demons" or getattr(step, "metric", "") == "CC") \
                and "im" in fixed and "im" in moving_src:
            if isinstance(t, VelocityField):  # its inverse is computed beside the check
                t.start_inverse()
            t = _must_raise_similarity(t, fixed["im"], moving_src["im"], grid, chain, fixed_mask, covered["im"],
                                       cache.get("im"))
        found.append(t)
        records.append(StepRecord(str(step), time.perf_counter() - t0, type(t).__name__,
                                  dict(getattr(t, "report", None) or {})))
        log.info("step %s done in %.2f s", step, records[-1].seconds)
        if progress:
            progress(n + 1, len(work))
    return EngineResult(found, records)


def pull_unfilled(moving: Image, grid: Grid, transforms: Sequence[Transform]) -> np.ndarray:
    """``moving`` pulled (linear) through ``transforms`` onto ``grid``: NaN where its source lies
    outside the moving image (the input of :func:`moved_out_filled`; ``np.isfinite`` of it is the
    coverage mask)."""
    return apply_transforms(moving, grid, list(transforms), "linear", cval=np.nan).data


def moved_out_filled(data: np.ndarray, covered: np.ndarray, grid: Grid) -> np.ndarray:
    """A moving image pulled onto ``grid`` (NaN where its source lies outside the moving image)
    with the voxels that ``covered`` marks (those the moving image covered through the initial
    transforms) but that the steps found so far moved out of it given their nearest covered
    value (mm), and 0 elsewhere outside, as before any step.

    A step that moves content across the field's edge (a vertebra turned by ``polyrigid``, a
    shift) would otherwise leave a rim of zeros there: an edge the fixed image does not have,
    which the next step's image term aligns. On the articulated phantom (MR seed 6) that rim
    brought the cord error of ``polyrigid`` + SyN from 0.38 to 0.65 mm and made a following
    demons step diverge. ANTs leaves such points out of its metric; filling them with the nearest
    value the moving image has is the same for the forces along the edge's normal (zero
    gradient there). Voxels the initial transforms never covered (a smaller field of view) stay 0."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return data
    fill = bad & covered
    if fill.any() and not bad.all():
        from scipy import ndimage

        idx = ndimage.distance_transform_edt(bad, sampling=grid.zooms, return_distances=False, return_indices=True)
        data = np.where(fill, data[tuple(idx)], data)
    return np.where(np.isfinite(data), data, 0.0).astype(data.dtype, copy=False)


def masked_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> float:
    """Normalised cross-correlation of ``a`` and ``b`` over ``mask`` (> 0.5; where both are non-zero
    without a mask)."""
    sel = (np.asarray(mask) > 0.5) if mask is not None else (np.asarray(a) != 0) & (np.asarray(b) != 0)
    if sel.sum() < 8:
        return float("nan")
    x = np.asarray(a, float)[sel]
    y = np.asarray(b, float)[sel]
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def _must_raise_similarity(t: Transform, fixed_im: np.ndarray, moving: Image, grid: Grid, chain: list,
                           mask: np.ndarray | None, covered: np.ndarray,
                           before: np.ndarray | None = None) -> Transform:
    """``t`` if it raises the masked NCC of the images, else the identity (reported either way).
    ``covered``: the voxels the moving image covered before any step; both pulls fill the voxels
    moved out of it as the steps see them (:func:`moved_out_filled`). ``before``: ``moving``
    already pulled so through ``chain`` onto ``grid``, if at hand."""
    if before is None:
        before = moved_out_filled(pull_unfilled(moving, grid, chain), covered, grid)
    after = moved_out_filled(pull_unfilled(moving, grid, [*chain, t]), covered, grid)
    sim0 = masked_ncc(fixed_im, before, mask)
    sim1 = masked_ncc(fixed_im, after, mask)
    where = "in the mask" if mask is not None else "where both images have signal"
    report = dict(getattr(t, "report", None) or {})
    report.update(similarity="NCC " + where, similarity_before=round(sim0, 4), similarity_after=round(sim1, 4))
    box = report.get("cord_box") or {}
    reason = None
    if np.isfinite(sim0) and not (sim1 > sim0):
        reason = f"the step did not raise the image similarity ({where}: NCC {sim0:.4f} -> {sim1:.4f})"
    elif "ncc_before" in box and not (box["ncc_after"] > box["ncc_before"]):
        # the cord the model found: the step must raise the similarity there too
        reason = (f"the step did not raise the image similarity around the cord ({box.get('ncc_region')}: NCC "
                  f"{box['ncc_before']:.4f} -> {box['ncc_after']:.4f})")
    if reason is not None:
        report.update(used=False, reason=reason + "; the transform before it is kept")
        z = np.zeros(tuple(grid.shape) + (3,), np.float32)
        t = VelocityField(grid, z, z)
    t.report = report  # type: ignore[attr-defined]
    return t


def region_of_interest(grid: Grid, masks: Iterable[np.ndarray | None],
                       margin_mm: float = 3.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Voxel box (lo, hi) of the union of ``masks`` (> 0.5) grown by ``margin_mm``; None if empty."""
    union = None
    for m in masks:
        if m is not None:
            b = np.asarray(m) > 0.5
            union = b if union is None else union | b
    if union is None or not union.any():
        return None
    lo, hi = mask_box(union, pad_voxels(margin_mm, grid.zooms))
    return lo, hi - 1


def diffeomorphic(t: Transform, grid: Grid,
                  roi: tuple[np.ndarray, np.ndarray] | None = None) -> Transform:
    """A step's transform in a form that composes without folding: per-slice rigid fields become
    the exponential of their logarithm (:func:`~spinereg.register.slicewise.rigid_velocity`),
    exactly rigid over ``roi`` and tapered into the identity at the edge of the grid (the identity
    beyond the grid then continues them without a jump); velocity fields and affines are kept."""
    from spinereg.register.slicewise import rigid_velocity

    params = getattr(t, "slice_params", None)
    if params is not None and hasattr(t, "grid") and not isinstance(t, VelocityField):
        out = rigid_velocity(t.grid, params, keep=roi)
        out.slice_params = params  # type: ignore[attr-defined]
        out.report = getattr(t, "report", None)  # type: ignore[attr-defined]
        return out
    return t


def invert_step(t: Transform) -> Transform:
    """Inverse of a step transform: exact for velocity fields (``exp(-v)``) and affines,
    numerical for other fields."""
    return t.inverse()
