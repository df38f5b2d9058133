"""Robust statistics shared by every layer (no spinereg imports): the robust standard deviation
from the median absolute deviation, as the detectors, the outline refinement, the artefact
z-scores and the centerline's outlier test use it."""

from __future__ import annotations

import numpy as np

#: MAD -> standard deviation of a normal distribution
MAD_TO_SD = 1.4826


def robust_sd(x: np.ndarray, axis: int | None = None, centre: float | np.ndarray | None = None) -> np.ndarray | float:
    """``MAD_TO_SD`` times the median absolute deviation of ``x`` from ``centre`` (default: its
    median along ``axis``); a float when ``axis`` is None. Computed in ``x``'s own precision (a
    float32 image's deviations are not cast up: the callers' figures were measured so)."""
    x = np.asarray(x)
    c = np.median(x, axis=axis, keepdims=axis is not None) if centre is None else centre
    mad = np.median(np.abs(x - c), axis=axis)
    return MAD_TO_SD * float(mad) if axis is None else MAD_TO_SD * mad
