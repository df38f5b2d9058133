"""Field-map-less distortion correction: EPI -> anatomy registration along the PE axis only.

The anatomy (T2*w or T2w; undistorted) is resampled onto the EPI grid through the headers and an
optional transform (pull, EPI points -> anatomy points: e.g. the rigid/affine part of an
EPI -> anatomy registration). The EPI's voxel shift map is then estimated by the reverse-PE solver
of :mod:`spinereg.epi.topup` with the anatomy as a fixed target: displacement only along PE,
Jacobian-modulated prediction, coarse to fine, windowed (smooth) updates, the target's contrast
mapped to the EPI's each few iterations (so T2*w/T2w -> EPI contrast differences do not bias the
shift). The metric is weighted by the cord mask dilated by ``dilate_mm`` (the focus), with a small
weight elsewhere so the field stays defined over the whole slice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from spinereg.epi.distortion import field_from_vsm, pe_axis, vsm_to_field
from spinereg.epi.fieldmap import (
    SDCResult,
    _as_image,
    epi_img_3d,
    mean_volume,
    object_shift_p99,
    require_signal,
    unwarp_image,
)
from spinereg.epi.sidecar import epi_params, read_sidecar
from spinereg.epi.topup import DEFAULT_LEVELS, solve_pe_shift
from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.io.sanity import require_mask, require_not_mask
from spinereg.transforms.base import Transform


def cord_weight(mask: np.ndarray, zooms: np.ndarray, dilate_mm: float = 6.0, floor: float = 0.05) -> np.ndarray:
    """Metric weight: 1 in the cord mask dilated by ``dilate_mm`` (in-plane), soft edge, ``floor``
    elsewhere."""
    m = np.asarray(mask) > 0.5
    if not m.any():
        raise InputError("cord mask is empty on the EPI grid", None,
                         "check that the mask overlaps the EPI (same subject, same space)")
    dist = ndimage.distance_transform_edt(~m, sampling=(*zooms[:2], 1e6))
    w = np.clip(1.0 - (dist - dilate_mm) / 2.0, 0.0, 1.0)
    return floor + (1.0 - floor) * w


#: below this image structure (:func:`spinereg.io.structure.image_structure`) -d is noise
#: (phantom and real images 0.30-0.90, noise 0.02-0.03)
MIN_ANAT_STRUCTURE = 0.1


def _check_anat(anat: Image, dilate_mm: float) -> None:
    """Refuse a destination the EPI cannot be registered to: a mask or label file, or noise. Before
    session 37 the phantom's EPI "corrected" to pure noise (max shift 81 voxels) or to its cord
    segmentation (48 voxels) ended 3x further from the truth than uncorrected, exit 0."""
    from spinereg.io.structure import image_structure

    if not np.isfinite(dilate_mm) or dilate_mm < 0:
        raise InputError(f"mask dilation {dilate_mm} mm is not a distance", None, "give --dilate 0 or more (mm)")
    require_not_mask(anat, "anatomical image", "-d")
    s = image_structure(anat)
    if s["empty"] or s["structure"] < MIN_ANAT_STRUCTURE:
        raise InputError(f"the anatomical image (-d) shows no structure (structure {s['structure']:.3f} < "
                         f"{MIN_ANAT_STRUCTURE}: noise, or empty)", anat.name,
                         "give the subject's undistorted anatomical image (T2*w or T2w)")


def correct_fieldmapless(
    epi: str | Path | Image,
    anat: str | Path | Image,
    *,
    mask: str | Path | Image | None = None,
    init: Transform | Sequence[Transform] | None = None,
    pe: str | None = None,
    readout_s: float | None = None,
    sidecar: str | Path | None = None,
    dilate_mm: float = 6.0,
    levels: Sequence[tuple[float, float, int]] = DEFAULT_LEVELS,
    jacobian_mod: bool = True,
) -> SDCResult:
    """Estimate the EPI's voxel shift map by registering it to ``anat`` along PE and correct.

    ``mask``: cord mask (any grid in the same space as ``anat``; resampled like it). ``init``: pull
    transform(s) EPI points -> anatomy points. ``readout_s`` is only needed for the field in Hz
    (without it the field image holds NaN-free zeros and ``info['field_hz'] = False``).
    """
    from spinereg.transforms.apply import apply_transforms

    t0 = time.perf_counter()
    epi_img = require_signal(_as_image(epi, "EPI"), "EPI", "-i")
    anat_img = _as_image(anat, "anatomical image", 3)
    _check_anat(anat_img, dilate_mm)
    meta = read_sidecar(sidecar, epi_img.path)
    have_readout = readout_s is not None or "TotalReadoutTime" in meta
    # without a readout time the field in Hz is not made: a stand-in (0.5 s) passes the range check (the
    # 1.0 s it was was refused, "total readout time 1.0 s is out of range", a time nobody gave)
    par = epi_params(meta, pe, readout_s if have_readout else 0.5, epi_img.path)
    axis, _ = pe_axis(par.pe)
    if axis == 2:
        raise InputError("phase encoding along the slice axis is not supported", epi_img.path, "use i/j data")
    grid = epi_img.grid
    transforms = [] if init is None else ([init] if isinstance(init, Transform) else list(init))
    target = np.asarray(apply_transforms(anat_img, grid, transforms, interp="linear").data, dtype=np.float64)
    # an anatomy the headers place off the EPI was a target of zeros: "max shift 21.44 voxels", exit 0
    ones = Image(np.ones(anat_img.shape[:3], np.float32), anat_img.affine)
    if not np.any(np.asarray(apply_transforms(ones, grid, transforms, interp="linear", cval=0.0).data) > 0.5):
        raise InputError("the anatomical image (-d) does not overlap the EPI (their headers place them apart)",
                         anat_img.name, "give the same subject's image in the same scanner space (or -w EPI -> anatomy)")
    if mask is not None:
        m_img = _as_image(mask, "cord mask", 3)
        require_mask(m_img, "mask", "-m")  # the T2*w itself as -m was a "mask" of every voxel
        m = np.asarray(apply_transforms(m_img, grid, transforms, interp="linear").data) > 0.5
        weight = cord_weight(m, grid.zooms, dilate_mm)
    else:
        weight = np.ones(grid.shape)
    d1 = mean_volume(epi_img)
    vsm, costs = solve_pe_shift(d1, axis, target=target, weight=weight, levels=levels)
    corrected = unwarp_image(epi_img, vsm, axis, jacobian_mod)
    field_hz = field_from_vsm(vsm, par.readout_s, par.pe) if have_readout else np.zeros_like(vsm)
    info = {"method": "fieldmapless", "cost_per_level": costs, "dilate_mm": dilate_mm,
            "field_hz": bool(have_readout), "max_abs_shift_vox": float(np.abs(vsm).max(initial=0.0)),
            "object_p99_shift_vox": object_shift_p99(d1, vsm), "seconds": round(time.perf_counter() - t0, 3)}
    if not have_readout:
        info["warning"] = ("no readout time (--readout-time / TotalReadoutTime): the field map output holds zeros, "
                           "not a field in Hz (the shift map and the corrected EPI do not need it)")
    return SDCResult(corrected=corrected, field_hz=epi_img_3d(epi_img, field_hz),
                     vsm=epi_img_3d(epi_img, vsm), transform=vsm_to_field(vsm, grid, axis),
                     pe=par.pe, readout_s=par.readout_s if have_readout else float("nan"), info=info)
