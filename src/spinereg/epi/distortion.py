"""Susceptibility distortion physics shared by the phantom and every correction method.

Conventions (used throughout ``spinereg.epi``):

* The phase-encode (PE) direction is a BIDS code: ``i``, ``j``, ``k`` (voxel axis 0, 1, 2) with an
  optional ``-`` (``j-``: phase encoding runs towards decreasing j).
* The voxel shift map (VSM) is signed, in voxels along the PE *voxel axis*:
  ``vsm = field_hz * total_readout_s * sign`` (sign +1 for ``j``, -1 for ``j-``). A tissue point at
  voxel ``r`` appears in the EPI at ``r + vsm(r)`` along that axis.
* Intensity is conserved along each PE line: the distorted image is
  ``D(r + vsm(r)) * (1 + d vsm/d pe (r)) = U(r)`` (Jacobian modulation); ``1 + dvsm/dpe`` must stay
  positive (no fold-over).
* The correction is a pull transform on the (undistorted) EPI grid: ``x -> x + vsm(x) * a_pe`` where
  ``a_pe`` is the PE voxel axis in world mm (column of the affine). It is an ordinary
  :class:`~spinereg.transforms.DisplacementField`, so it can open a chain
  (``[sdc, epi2t2s, t2s2t2, t22template]``) that interpolates once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.transforms.displacement import DisplacementField

if TYPE_CHECKING:
    from collections.abc import Sequence

PE_CODES = ("i", "i-", "j", "j-", "k", "k-")


def pe_axis(pe: str) -> tuple[int, float]:
    """Voxel axis (0, 1, 2) and sign (+1/-1) of a BIDS PhaseEncodingDirection (``j``, ``j-`` ...)."""
    code = str(pe).strip().lower()
    if code not in PE_CODES:
        raise InputError(f"unknown phase-encode direction {pe!r}", None,
                         "use a BIDS PhaseEncodingDirection: i, i-, j, j-, k or k-")
    return "ijk".index(code[0]), (-1.0 if code.endswith("-") else 1.0)


def reverse_pe(pe: str) -> str:
    """The opposite phase-encode direction (``j`` <-> ``j-``)."""
    axis, sign = pe_axis(pe)
    return "ijk"[axis] + ("-" if sign > 0 else "")


def vsm_from_field(field_hz: np.ndarray, readout_s: float, pe: str) -> np.ndarray:
    """Signed voxel shift map (voxels along the PE axis) of a field map in Hz."""
    if not np.isfinite(readout_s) or readout_s <= 0:
        raise InputError(f"total readout time must be > 0 s (got {readout_s})", None,
                         "give --readout-time in seconds (e.g. 0.03) or TotalReadoutTime in the sidecar")
    _, sign = pe_axis(pe)
    return np.asarray(field_hz, dtype=np.float64) * float(readout_s) * sign


def field_from_vsm(vsm: np.ndarray, readout_s: float, pe: str) -> np.ndarray:
    """Field (Hz) of a signed voxel shift map (inverse of :func:`vsm_from_field`)."""
    _, sign = pe_axis(pe)
    return np.asarray(vsm, dtype=np.float64) / (float(readout_s) * sign)


def jacobian(vsm: np.ndarray, axis: int) -> np.ndarray:
    """``1 + d vsm / d pe`` (central differences; one-sided at the ends; 1 on single-voxel axes)."""
    if vsm.shape[axis] < 2:
        return np.ones_like(vsm, dtype=np.float64)
    return 1.0 + np.gradient(np.asarray(vsm, dtype=np.float64), axis=axis)


def _shifted_coords(shape: tuple[int, ...], axis: int, shift: np.ndarray) -> np.ndarray:
    idx = np.indices(shape, dtype=np.float64)
    idx[axis] += shift
    return idx


def _sample(vol: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    return ndimage.map_coordinates(np.asarray(vol, dtype=np.float64), coords, order=order,
                                   mode="nearest")


def unwarp(distorted: np.ndarray, vsm: np.ndarray, axis: int, *, jacobian_mod: bool = True,
           order: int = 3) -> np.ndarray:
    """Undistorted image ``U(r) = D(r + vsm(r)) * (1 + dvsm/dpe)`` (one interpolation along PE).

    Samples that fall outside the field of view along PE take the nearest edge value.
    """
    out = _sample(distorted, _shifted_coords(distorted.shape, axis, vsm), order)
    if jacobian_mod:
        out *= np.clip(jacobian(vsm, axis), 0.0, None)
    return out


def invert_shift(vsm: np.ndarray, axis: int, iterations: int = 40) -> np.ndarray:
    """Inverse shift ``w`` with ``y = r + vsm(r)`` at ``r = y + w(y)``, for every voxel ``y``.

    Fixed-point iteration ``w <- -vsm(y + w)`` (linear interpolation along PE), vectorised over all
    PE lines; converges when ``|dvsm/dpe| < 1`` (no fold-over).
    """
    vsm = np.asarray(vsm, dtype=np.float64)
    w = -vsm.copy()
    base = np.indices(vsm.shape, dtype=np.float64)
    for _ in range(iterations):
        c = base.copy()
        c[axis] += w
        w_new = -ndimage.map_coordinates(vsm, c, order=1, mode="nearest")
        done = np.abs(w_new - w).max(initial=0.0) < 1e-6
        w = w_new
        if done:
            break
    return w


def distort(undistorted: np.ndarray, vsm: np.ndarray, axis: int, *, jacobian_mod: bool = True,
            order: int = 3) -> np.ndarray:
    """Forward model: the EPI ``D(y) = U(r) / (1 + dvsm/dpe(r))`` with ``r + vsm(r) = y``."""
    w = invert_shift(vsm, axis)
    coords = _shifted_coords(undistorted.shape, axis, w)
    out = _sample(undistorted, coords, order)
    if jacobian_mod:
        jac = _sample(jacobian(vsm, axis), coords, 1)
        out /= np.clip(jac, 0.05, None)
    return out


def vsm_to_field(vsm: np.ndarray, grid: Grid, axis: int) -> DisplacementField:
    """The correction as a pull :class:`DisplacementField` on the EPI grid (world mm along PE).

    Applied to the distorted EPI (``apply_transforms(epi, grid, [field])``) it gives the
    undistorted image without Jacobian modulation; chained with later warps it makes the whole
    EPI -> template path interpolate once.
    """
    vsm = np.asarray(vsm, dtype=np.float64)
    if tuple(vsm.shape) != tuple(grid.shape):
        raise ValueError(f"VSM shape {vsm.shape} does not match grid {grid.shape}")
    col = grid.affine[:3, axis]
    return DisplacementField(grid, (vsm[..., None] * col).astype(np.float32))


def field_to_vsm(field: DisplacementField, axis: int) -> np.ndarray:
    """Signed voxel shifts along ``axis`` of a displacement field built by :func:`vsm_to_field`."""
    col = field.grid.affine[:3, axis]
    return np.asarray(field.data, dtype=np.float64) @ col / float(col @ col)


def smooth_field(field_hz: np.ndarray, sigma_vox: float | Sequence[float]) -> np.ndarray:
    """Gaussian smoothing (voxels per axis); used to regularise estimated fields."""
    return ndimage.gaussian_filter(np.asarray(field_hz, dtype=np.float64), sigma_vox, mode="nearest")
