"""Run a list of registration steps between a fixed and a moving image on one grid.

Each step is dispatched by name through the algorithm registry (slice-wise algorithms and ANTs
stages), never through if/elif chains. After each step the moving images are resampled again
from the originals through the whole chain, so data are interpolated once per step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.base import Transform

log = logging.getLogger(__name__)


def _ants_algo(fixed, moving, fixed_grid, moving_grid, step, fixed_mask=None):
    from spinereg.register.ants_steps import ants_step  # ANTs loads only when a step needs it

    return ants_step(fixed, moving, fixed_grid, step, fixed_mask)


def _is_slicewise(name: str) -> bool:
    from spinereg.register import slicewise

    return name in slicewise.ALGORITHMS


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

    def as_dict(self) -> dict:
        return {"step": self.step, "seconds": round(self.seconds, 3), "transform": self.kind}


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
) -> EngineResult:
    """Estimate one transform per step; the moving images are pulled through ``initial`` + steps.

    ``fixed`` holds arrays on ``grid`` by type (``"seg"``, ``"im"``); ``moving_src`` the original
    moving images by type. Returns the step transforms (pull, on ``grid``), in order.
    Anatomical constraints: ``fixed["vertebrae"]`` (per-vertebra labels on ``grid``) feeds
    ``algo=polyrigid`` and ``rigidity=W``; ``fixed["landmarks"]`` feeds label steps with ``algo=tps``.
    """
    found: list[Transform] = []
    records: list[StepRecord] = []
    work = [s for s in steps if s.type not in ("label", "rootlet") or s.algo == "tps"]
    for n, step in enumerate(work):
        t0 = time.perf_counter()
        chain = list(initial) + found

        def pulled(kind: str, _chain=chain) -> np.ndarray:
            return apply_transforms(moving_src[kind], grid, _chain, "linear").data

        fn = algorithm(step.algo)
        extra = {k: fixed[k] for k in getattr(fn, "needs", ()) if k in fixed}
        if "chain" in getattr(fn, "needs", ()):
            extra["chain"] = chain
        both = all(k in fixed and k in moving_src for k in ("im", "seg"))
        if step.type == "imseg" and both and _is_slicewise(step.algo):
            t = fn(fixed["im"], pulled("im"), grid, grid, step, fixed_mask,
                   fixed_seg=fixed["seg"], moving_seg=pulled("seg"), **extra)
        else:
            kind = "im" if step.type == "im" else "seg"
            if kind not in fixed or kind not in moving_src:
                kind = "seg" if "seg" in fixed and "seg" in moving_src else "im"
            t = fn(fixed[kind], pulled(kind), grid, grid, step.replace(type=kind) if step.type == "imseg" else step,
                   fixed_mask, **extra)
        if getattr(step, "rigidity", 0):
            from spinereg.register.rigidity import constrain

            t = constrain(t, step, fixed.get("vertebrae"), chain)
        found.append(t)
        records.append(StepRecord(str(step), time.perf_counter() - t0, type(t).__name__))
        log.info("step %s done in %.2f s", step, records[-1].seconds)
        if progress:
            progress(n + 1, len(work))
    return EngineResult(found, records)


def invert_step(t: Transform) -> Transform:
    """Inverse of a step transform: exact for per-slice rigid fields and affines, numerical else."""
    from spinereg.register.slicewise import field_from_params, invert_params

    params = getattr(t, "slice_params", None)
    if params is not None and hasattr(t, "grid"):
        return field_from_params(t.grid, invert_params(params))
    return t.inverse()
