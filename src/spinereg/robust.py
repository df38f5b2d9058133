"""Robust statistics shared by every layer (no spinereg imports): the robust standard deviation
from the median absolute deviation, as the detectors, the outline refinement, the artefact
z-scores and the centerline's outlier test use it; and the median of a profile's neighbours, as
the segmentation's gap filling and the labeling's cord width compare a slice with its own."""

from __future__ import annotations

import warnings

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


def neighbour_median(x: np.ndarray, half: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Median of the ``valid`` entries of the 1D profile ``x`` within ``half`` places of each entry,
    the entry itself excluded; NaN where there is none (``valid`` default: ``x > 0``)."""
    x = np.asarray(x, dtype=float)
    ok = x > 0 if valid is None else np.asarray(valid, bool)
    pad = np.concatenate([np.full(half, np.nan), np.where(ok, x, np.nan), np.full(half, np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1).copy()
    win[:, half] = np.nan
    with warnings.catch_warnings():  # all-NaN windows
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(win, axis=1)
