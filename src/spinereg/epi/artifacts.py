"""Artifact scores of EPI series, per slice and per volume: signal dropout, N/2 ghosting and
outlier motion.

Every score is an array ``(n_volumes, n_slices)`` (slices along the third voxel axis) or
``(n_volumes,)``; :class:`ArtifactScores` holds them with the flags that
:func:`spinereg.epi.moco.motion_correct` uses to exclude volumes/slices from its reference mean and
from the regularisation along z, and writes them as the ``per_volume`` list of ``metrics.json``.

* **dropout**: mean signal in a cord mask per slice, relative to the median of that slice over
  the volumes of the same class (b=0 / b>0 for DWI); ``static_dropout`` is each slice's median
  signal relative to the median over slices (a slice where z-shimming failed is low in every
  volume). Flag below ``dropout`` (default 0.7).
* **ghosting**: mean signal in the object mask shifted by N/2 along the phase-encode axis (outside
  the dilated object), minus the remaining background, relative to the object signal. Flag above
  ``ghosting`` (default 0.15). A slice whose remaining background has fewer than
  ``GHOST_MIN_BACKGROUND`` voxels (the body fills the field of view) scores 0: no evidence.
* **outlier motion**: framewise displacement (sum of absolute in-plane translation changes from
  the previous volume, mm, averaged over slices) above ``fd_mm`` (default 0.5 mm); and the robust
  z-score (median / 1.4826 MAD over volumes of the same class, per slice) of the slice-wise
  residual after correction above ``residual_z`` (default 5).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.robust import robust_sd

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "GHOST_MIN_BACKGROUND",
    "ArtifactScores",
    "Thresholds",
    "cord_means",
    "dropout_scores",
    "framewise_displacement",
    "ghosting_scores",
    "object_mask",
    "robust_z",
]

_INPLANE = np.zeros((3, 3, 3), bool)
_INPLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Thresholds:
    """Flag thresholds (see the module docstring)."""

    dropout: float = 0.7
    ghosting: float = 0.15
    fd_mm: float = 0.5
    residual_z: float = 5.0

    def as_dict(self) -> dict:
        return {"dropout": self.dropout, "ghosting": self.ghosting, "fd_mm": self.fd_mm,
                "residual_z": self.residual_z}


def object_mask(volume: np.ndarray, frac: float = 0.2) -> np.ndarray:
    """Per-slice object (body) mask: smoothed signal above ``frac`` of the slice's 99th
    percentile, holes filled in-plane."""
    v = ndimage.gaussian_filter(np.asarray(volume, float), (1.0, 1.0, 0.0))
    hi = np.percentile(v, 99, axis=(0, 1))
    m = v > frac * np.maximum(hi, 1e-12)[None, None, :]
    return ndimage.binary_fill_holes(m, structure=_INPLANE)


def cord_means(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Weighted mean signal per slice within ``mask`` (weights; NaN where a slice has none)."""
    w = np.clip(np.asarray(mask, float), 0.0, None)
    den = w.sum(axis=(0, 1))
    num = (w * np.asarray(volume, float)).sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _per_class(values: np.ndarray, classes: np.ndarray,
               fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.empty_like(values, dtype=float)
    for c in np.unique(classes):
        sel = classes == c
        out[sel] = fn(values[sel])
    return out


def dropout_scores(means: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(relative, static)``: cord signal of each slice and volume relative to the median of
    that slice over volumes of the same class ``(nvol, nz)``; each slice's median signal relative
    to the median over slices ``(nz,)`` (first class only). NaN means become 1 (no evidence)."""
    with warnings.catch_warnings():  # slices outside the cord mask have NaN means
        warnings.simplefilter("ignore", RuntimeWarning)
        return _dropout(np.asarray(means, float), classes)


def _dropout(m: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    cls = np.zeros(len(m), int) if classes is None else np.asarray(classes)

    def rel(x: np.ndarray) -> np.ndarray:
        med = np.nanmedian(x, axis=0) if np.isfinite(x).any() else np.ones(x.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            return x / np.where(np.abs(med) > 0, med, np.nan)[None, :]

    relative = np.nan_to_num(_per_class(m, cls, rel), nan=1.0)
    first = m[cls == cls[0]]
    med_slice = np.nanmedian(first, axis=0) if np.isfinite(first).any() else np.ones(m.shape[1])
    ref = np.nanmedian(med_slice) if np.isfinite(med_slice).any() else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        static = np.nan_to_num(med_slice / ref if ref > 0 else np.ones_like(med_slice), nan=1.0)
    return relative, static


#: fewest voxels of background outside the ghost band for a ghosting score (below: score 0)
GHOST_MIN_BACKGROUND = 20


def ghosting_scores(volume: np.ndarray, pe_axis: int = 1, obj: np.ndarray | None = None) -> np.ndarray:
    """N/2 ghost level per slice ``(nz,)``: (mean in the ghost band - mean in the rest of the
    background) / mean in the object. The ghost band is the object mask rolled by half the
    matrix along ``pe_axis`` (0 or 1), outside the object dilated by 3 voxels.

    A slice with fewer than :data:`GHOST_MIN_BACKGROUND` voxels of remaining background scores 0
    (the ghost band cannot be told from the background level). Before, an empty remainder
    counted as background 0, so the ghost band's whole tissue/noise level read as ghost: SCT's
    fmri slice 2 (no remaining background, the body fills the 68x68 field of view) scored 0.32
    in its 30 volumes, was flagged for ghosting in all of them and so never registered (moco
    gave it the value interpolated along z). Now 0; its band (mean 104) is at the background
    level of the other slices (89-97), i.e. no ghost.
    """
    v = np.asarray(volume, float)
    o = object_mask(v) if obj is None else np.asarray(obj, bool)
    grown = ndimage.binary_dilation(o, structure=_INPLANE, iterations=3)
    ghost = np.roll(o, v.shape[pe_axis] // 2, axis=pe_axis) & ~grown
    rest = ~grown & ~ghost
    n_o, n_g, n_r = (m.sum(axis=(0, 1)) for m in (o, ghost, rest))
    s_o, s_g, s_r = ((v * m).sum(axis=(0, 1)) for m in (o, ghost, rest))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_o = s_o / np.maximum(n_o, 1)
        mean_g = s_g / np.maximum(n_g, 1)
        mean_r = s_r / np.maximum(n_r, 1)
        score = np.where((n_o > 0) & (n_g > 0) & (n_r >= GHOST_MIN_BACKGROUND) & (mean_o > 0),
                         (mean_g - mean_r) / mean_o, 0.0)
    return np.maximum(score, 0.0)


def framewise_displacement(shifts_mm: np.ndarray) -> np.ndarray:
    """Framewise displacement (mm) ``(nvol,)``: sum over world axes of the absolute change of the
    slice-averaged translation from the previous volume (0 for the first)."""
    s = np.asarray(shifts_mm, float).mean(axis=1)
    fd = np.zeros(len(s))
    if len(s) > 1:
        fd[1:] = np.abs(np.diff(s, axis=0)).sum(axis=1)
    return fd


def robust_z(values: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Robust z-score along volumes, per slice and class: (x - median) / (1.4826 MAD)."""
    x = np.asarray(values, float)
    cls = np.zeros(len(x), int) if classes is None else np.asarray(classes)

    def z(a: np.ndarray) -> np.ndarray:
        if len(a) < 3:
            return np.zeros_like(a)
        med = np.median(a, axis=0)
        mad = robust_sd(a, axis=0, centre=med)
        scale = np.maximum(mad, 1e-6 * np.maximum(np.abs(med), 1e-12))
        return (a - med) / scale

    return _per_class(x, cls, z)


@dataclass
class ArtifactScores:
    """Scores and flags of a series (``(nvol, nz)`` arrays unless noted)."""

    dropout: np.ndarray
    static_dropout: np.ndarray  # (nz,)
    ghosting: np.ndarray
    fd_mm: np.ndarray  # (nvol,)
    residual_z: np.ndarray
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def slice_flags(self) -> np.ndarray:
        """Slices flagged for dropout, ghosting or residual outlier ``(nvol, nz)``."""
        t = self.thresholds
        return (self.dropout < t.dropout) | (self.ghosting > t.ghosting) | (self.residual_z > t.residual_z)

    @property
    def static_flags(self) -> np.ndarray:
        """Slices with low signal in every volume ``(nz,)``."""
        return self.static_dropout < self.thresholds.dropout

    @property
    def volume_flags(self) -> np.ndarray:
        """Volumes with outlier motion, or with more than half of their slices flagged."""
        return (self.fd_mm > self.thresholds.fd_mm) | (self.slice_flags.mean(axis=1) > 0.5)

    def reasons(self, t: int) -> list[str]:
        th = self.thresholds
        out = []
        if np.any(self.dropout[t] < th.dropout):
            out.append("dropout")
        if np.any(self.ghosting[t] > th.ghosting):
            out.append("ghosting")
        if self.fd_mm[t] > th.fd_mm:
            out.append("motion_fd")
        if np.any(self.residual_z[t] > th.residual_z):
            out.append("residual_outlier")
        return out

    def per_volume(self) -> list[dict]:
        """One record per volume (the ``per_volume`` list of metrics.json)."""
        flags_s = self.slice_flags
        flags_v = self.volume_flags
        rows = []
        for t in range(len(self.fd_mm)):
            rows.append({
                "volume": t,
                "fd_mm": round(float(self.fd_mm[t]), 4),
                "dropout_min": round(float(self.dropout[t].min()), 4),
                "ghosting_max": round(float(self.ghosting[t].max()), 4),
                "residual_z_max": round(float(self.residual_z[t].max()), 3),
                "flagged": bool(flags_v[t]),
                "reasons": self.reasons(t),
                "flagged_slices": np.flatnonzero(flags_s[t]).tolist(),
                "per_slice": {
                    "dropout": np.round(self.dropout[t], 4).tolist(),
                    "ghosting": np.round(self.ghosting[t], 4).tolist(),
                    "residual_z": np.round(self.residual_z[t], 3).tolist(),
                },
            })
        return rows

    def summary(self) -> dict:
        return {
            "n_flagged_volumes": int(self.volume_flags.sum()),
            "flagged_volumes": np.flatnonzero(self.volume_flags).tolist(),
            "n_flagged_slices": int(self.slice_flags.sum()),
            "static_dropout_slices": np.flatnonzero(self.static_flags).tolist(),
            "static_dropout": np.round(self.static_dropout, 4).tolist(),
            "fd_mm_mean": round(float(self.fd_mm.mean()), 4),
            "fd_mm_max": round(float(self.fd_mm.max()), 4),
            "ghosting_median": round(float(np.median(self.ghosting)), 4),
            "thresholds": self.thresholds.as_dict(),
        }
