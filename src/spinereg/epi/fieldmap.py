"""Field-map susceptibility distortion correction, and the result type shared by all SDC methods.

A field map in Hz (or a phase difference in radians with EchoTime1/2) is resampled onto the EPI
grid through the headers (optionally after a rigid registration of its magnitude to the EPI),
turned into a voxel shift map ``vsm = field * TotalReadoutTime`` (signed by the PE direction) and
the EPI is unwarped with Jacobian intensity modulation. The correction is also returned as a pull
:class:`~spinereg.transforms.DisplacementField` on the EPI grid (see :mod:`spinereg.epi.distortion`)
that opens the EPI -> T2*w -> T2w -> template chain.

A field map of the wrong sign, or the wrong phase-encode polarity (``j`` for ``j-``), doubles the
distortion instead of removing it. With the field map's magnitude (undistorted) the sign is checked
(:func:`polarity_check`): the mean EPI corrected, and corrected with the opposite sign, are compared
to the magnitude; when the opposite sign matches clearly better, ``info["warning"]`` says the sign or
the polarity looks reversed, and ``info["polarity_check"]`` holds the figures (tests/test_sdc_sign.py:
real images distorted by known fields, the right sign led by 0.046-0.208 local correlation, 24 of 24;
the margin is 0.03).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.epi.distortion import pe_axis, unwarp, vsm_from_field, vsm_to_field
from spinereg.epi.sidecar import epi_params, read_sidecar
from spinereg.errors import InputError
from spinereg.io.image import Image, check_writable, load_image, save_image
from spinereg.transforms.displacement import DisplacementField

if TYPE_CHECKING:
    from spinereg.io.grid import Grid


@dataclass
class SDCResult:
    """Outcome of a distortion correction (any method)."""

    corrected: Image  # unwarped EPI (3D or 4D), Jacobian-modulated unless disabled
    field_hz: Image  # field on the EPI grid
    vsm: Image  # signed voxel shifts along the PE axis
    transform: DisplacementField  # pull on the EPI grid: undistorted point -> distorted point
    pe: str
    readout_s: float
    info: dict = field(default_factory=dict)

    @staticmethod
    def outputs(out_dir: str | Path, name: str = "epi") -> dict[str, Path]:
        """The files :meth:`save` writes."""
        d = Path(out_dir)
        return {"corrected": d / f"{name}_sdc.nii.gz", "field": d / f"{name}_fieldmap_hz.nii.gz",
                "vsm": d / f"{name}_vsm.nii.gz", "warp": d / f"warp_{name}_sdc.nii.gz",
                "json": d / f"{name}_sdc.json"}

    def save(self, out_dir: str | Path, name: str = "epi", overwrite: bool = False) -> dict[str, Path]:
        """Write the corrected EPI, field, VSM, the ITK warp and a JSON summary (no partial output:
        every destination is checked first)."""
        from spinereg.io.image import atomic_write
        from spinereg.transforms.itk import write_displacement

        paths = self.outputs(out_dir, name)
        for p in paths.values():
            check_writable(p, overwrite)
        save_image(self.corrected, paths["corrected"], overwrite=overwrite, dtype=np.float32)
        save_image(self.field_hz, paths["field"], overwrite=overwrite, dtype=np.float32)
        save_image(self.vsm, paths["vsm"], overwrite=overwrite, dtype=np.float32)
        write_displacement(self.transform, paths["warp"], overwrite)
        readout = self.readout_s if np.isfinite(self.readout_s) else None  # NaN is not JSON: null
        meta = {"PhaseEncodingDirection": self.pe, "TotalReadoutTime": readout, **self.info}
        text = json.dumps(meta, indent=2, default=float) + "\n"
        atomic_write(paths["json"], lambda tmp: Path(tmp).write_text(text), overwrite)
        return paths


def _as_image(x: str | Path | Image, what: str,
              ndim: int | tuple[int, ...] = (3, 4)) -> Image:
    return x if isinstance(x, Image) else load_image(x, ndim=ndim, what=what)


def require_signal(img: Image, what: str, flag: str) -> Image:
    """Refuse an image that is zero everywhere (an all-zero EPI was "corrected", exit 0)."""
    if not np.any(img.data):
        raise InputError(f"the {what} is zero everywhere: nothing to correct or estimate from", img.path,
                         f"give the acquired image ({flag})")
    return img


def object_shift_p99(epi_mean: np.ndarray, vsm: np.ndarray) -> float:
    """99th percentile of |shift| (voxels) where the EPI shows the subject (its mean above 20 % of
    its 99th percentile): the background's shift is noise or extrapolation (up to 26 voxels on the
    EPI phantom, whose true shifts stay under 3), so the maximum alone misleads."""
    obj = epi_mean > 0.2 * np.percentile(epi_mean, 99)
    return round(float(np.percentile(np.abs(vsm[obj]), 99)), 3) if obj.any() else 0.0


def mean_volume(img: Image) -> np.ndarray:
    """The image itself (3D) or the mean over volumes (4D), float64."""
    if img.ndim == 3:
        return np.asarray(img.data, dtype=np.float64)
    acc = np.zeros(img.shape[:3])
    for t in range(img.nvols):
        acc += img.volume(t)
    return acc / img.nvols


def fieldmap_from_phasediff(phasediff: Image, echo_times: tuple[float, float]) -> Image:
    """Field (Hz) of a phase difference (radians; [0, 4096] scanner units are rescaled)."""
    te1, te2 = (float(t) for t in echo_times)
    dte = te2 - te1
    if not np.isfinite(dte) or abs(dte) < 1e-5:
        raise InputError(f"echo times {te1}, {te2} s give no usable difference", phasediff.path,
                         "give EchoTime1 < EchoTime2 in seconds (e.g. 0.00492 0.00738)")
    # before session 37: 4.92 7.38 (ms) made a field 1000x too weak ("max shift 0.00 voxels"), and
    # a swapped pair a field of the wrong sign (the EPI twice as distorted), each exit 0
    if not (0 < te1 < 1 and 0 < te2 < 1):
        raise InputError(f"echo times {te1:g}, {te2:g} out of range: seconds are expected (under 1; "
                         "milliseconds given?)", phasediff.path, "give them in seconds, e.g. 0.00492 0.00738")
    if dte < 0:
        raise InputError(f"EchoTime1 {te1:g} s is longer than EchoTime2 {te2:g} s: the pair swapped would flip "
                         "the field's sign", phasediff.path, "give the shorter echo time first (BIDS EchoTime1 < EchoTime2)")
    ph = np.asarray(phasediff.data, dtype=np.float64)
    lo, hi = float(ph.min(initial=0.0)), float(ph.max(initial=0.0))
    # the phantom's field map in Hz (-67..70) as --phasediff was read as 12-bit scanner units: a
    # field of about -200 Hz everywhere, "max shift 6.30 voxels", exit 0
    if lo < -2 * np.pi - 0.1 or hi > 4096.5:
        raise InputError(f"the phase difference spans {lo:.4g} to {hi:.4g}: neither radians (within +-2 pi) nor "
                         "scanner units (0 to 4096); a field map in Hz?", phasediff.path,
                         "pass a field map with --fieldmap; a phase difference in radians with --phasediff "
                         "(signed scanner units, -4096 to 4096: times pi / 4096 first)")
    if hi > 2 * np.pi + 0.1:  # Siemens 12-bit phase: [0, 4096) -> [-pi, pi)
        ph = ph / 4096.0 * 2 * np.pi - np.pi
    return phasediff.with_data((ph / (2 * np.pi * dte)).astype(np.float32))


def field_on_epi(fieldmap: Image, epi_grid: Grid, magnitude: Image | None = None,
                 epi_ref: Image | None = None, rigid: bool = False) -> tuple[np.ndarray, dict]:
    """Resample the field map onto the EPI grid (headers; optional rigid magnitude -> EPI)."""
    from spinereg.transforms.apply import apply_transforms

    info: dict = {"alignment": "header"}
    transforms = []
    if rigid:
        if magnitude is None or epi_ref is None:
            raise InputError("rigid alignment of the field map needs its magnitude image", None,
                             "pass --magnitude (or drop --rigid)")
        from spinereg.register.multimodal import register_multimodal

        reg = register_multimodal(magnitude, epi_ref, param="step=1,type=im,algo=rigid,metric=MI")
        transforms = [reg.src2dest]
        info["alignment"] = "rigid (magnitude -> EPI, MI)"
    out = apply_transforms(fieldmap, epi_grid, transforms, interp="linear", cval=0.0)
    ones = Image(np.ones(fieldmap.shape[:3], np.float32), fieldmap.affine)
    info["_covered"] = np.asarray(apply_transforms(ones, epi_grid, transforms, "linear", cval=0.0).data) > 0.5
    return np.asarray(out.data, dtype=np.float64), info


def _local_cc(a: np.ndarray, b: np.ndarray, region: np.ndarray, sigma: float, slice_axis: int = 2) -> float:
    """Mean local (Gaussian window, in-plane ``sigma`` voxels) correlation of ``a`` and ``b`` over ``region``."""
    from scipy import ndimage

    sig = [sigma] * 3
    sig[slice_axis] = 0.0

    def f(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sig, mode="nearest")

    ma, mb = f(a), f(b)
    va, vb, cab = f(a * a) - ma * ma, f(b * b) - mb * mb, f(a * b) - ma * mb
    cc = cab / np.sqrt(np.clip(va * vb, 1e-12 * float(np.mean(va) * np.mean(vb)) + 1e-30, None))
    return float(cc[region].mean())


#: the sign check judges only a correction that moves the subject this much (voxels, 99.5th
#: percentile of |VSM| where the magnitude shows signal): below it the two signs differ too little
#: (fields of 10-25 Hz, shifts up to 1.2 voxels: the similarity gap was -0.044 to +0.019 on right inputs)
POLARITY_MIN_SHIFT_VOX = 1.5
#: warn when the EPI corrected with the opposite sign beats the correction by this much local
#: correlation (fields of 50-150 Hz on real images: the right sign led by 0.046-0.209)
POLARITY_MARGIN = 0.03
#: the magnitude slides along the phase-encode axis by up to this (voxels, half-voxel steps) and
#: each candidate keeps its best placement: a subject that moved between the field map and the EPI
#: does not decide the sign (without it, one right input of 24 scored the opposite sign better)
POLARITY_SEARCH_VOX = 4.0


def polarity_check(epi_mean: np.ndarray, vsm: np.ndarray, axis: int, magnitude: np.ndarray,
                   covered: np.ndarray, jacobian_mod: bool = True, rad_per_s: bool = False) -> dict:
    """Does the correction's sign match an undistorted reference (the field map's magnitude)?

    ``magnitude`` is on the EPI grid (placed by the headers; ``covered`` where it has data). The
    mean EPI uncorrected, corrected with ``vsm`` and corrected with ``-vsm`` are compared to it by
    local correlation (Gaussian window of 2 voxels in-plane) over the voxels the correction moves
    (|VSM| > 0.5 voxel, dilated 3 voxels) where the magnitude shows signal, each at its best slide
    of the magnitude along PE (``POLARITY_SEARCH_VOX``). ``reversed`` is True when the opposite sign
    scores ``POLARITY_MARGIN`` more than the correction; not judged (``judged`` False, ``reason``)
    when the correction moves too little or the magnitude covers too little. ``rad_per_s`` (a field
    map whose units were assumed): also the EPI corrected with ``vsm / 2 pi`` (the map in rad/s
    read as Hz), ``units_rad_per_s`` True when it scores ``POLARITY_MARGIN`` more."""
    from scipy import ndimage

    from spinereg.io.box import box_slices, mask_box

    mag = np.asarray(magnitude, dtype=np.float64)
    vsm = np.asarray(vsm, dtype=np.float64)
    cov = covered & np.isfinite(mag)
    out: dict = {"judged": False, "reference": "field-map magnitude (header placement)",
                 "measure": "local correlation with the magnitude, best slide along PE"}
    obj = cov & (mag > 0.1 * np.percentile(mag[cov], 99)) if cov.sum() >= 200 else cov
    if obj.sum() < 200:
        out["reason"] = "the magnitude covers or shows too little of the EPI"
        return out
    shift = float(np.percentile(np.abs(vsm[obj]), 99.5))
    out["shift_p995_vox"] = round(shift, 3)
    moved = ndimage.binary_dilation(np.abs(vsm) > 0.5, iterations=3) & obj
    if shift < POLARITY_MIN_SHIFT_VOX or moved.sum() < 100:
        out["reason"] = (f"the correction moves the subject too little to tell the sign (99.5th percentile "
                         f"{shift:.2f} voxel, under {POLARITY_MIN_SHIFT_VOX})")
        return out
    # work in the box around the moved voxels (window and slide included)
    pad = [8] * 3
    pad[axis] += int(np.ceil(POLARITY_SEARCH_VOX))
    lo, hi = mask_box(moved, pad)
    box = box_slices(lo, hi)
    mag_b, vsm_b, moved_b = np.where(cov, mag, 0.0)[box], vsm[box], moved[box]
    epi_b = np.asarray(epi_mean, dtype=np.float64)[box]
    imgs = {"uncorrected": epi_b, "corrected": unwarp(epi_b, vsm_b, axis, jacobian_mod=jacobian_mod),
            "opposite_sign": unwarp(epi_b, -vsm_b, axis, jacobian_mod=jacobian_mod)}
    if rad_per_s:
        imgs["as_rad_per_s"] = unwarp(epi_b, vsm_b / (2 * np.pi), axis, jacobian_mod=jacobian_mod)
    slides = [ndimage.shift(mag_b, [sh if a == axis else 0.0 for a in range(3)], order=1, mode="nearest")
              for sh in np.arange(-POLARITY_SEARCH_VOX, POLARITY_SEARCH_VOX + 1e-9, 0.5)]
    for k, im in imgs.items():
        out[f"similarity_{k}"] = round(max(_local_cc(m, im, moved_b, 2.0) for m in slides), 4)
    gap = out["similarity_opposite_sign"] - out["similarity_corrected"]
    out.update({"judged": True, "voxels": int(moved.sum()), "gap": round(gap, 4), "margin": POLARITY_MARGIN,
                "reversed": bool(gap > POLARITY_MARGIN)})
    if rad_per_s:
        gap_units = out["similarity_as_rad_per_s"] - out["similarity_corrected"]
        out.update({"gap_as_rad_per_s": round(gap_units, 4), "units_rad_per_s": bool(gap_units > POLARITY_MARGIN)})
    return out


def correct_fieldmap(
    epi: str | Path | Image,
    fieldmap: str | Path | Image | None = None,
    *,
    phasediff: str | Path | Image | None = None,
    echo_times: tuple[float, float] | None = None,
    magnitude: str | Path | Image | None = None,
    pe: str | None = None,
    readout_s: float | None = None,
    sidecar: str | Path | None = None,
    rigid: bool = False,
    jacobian_mod: bool = True,
    smooth_mm: float = 0.0,
    fieldmap_units: str | None = None,
) -> SDCResult:
    """Correct ``epi`` (3D or 4D) with a field map in Hz or a phase difference.

    ``fieldmap_units`` (Hz, rad/s or T; default the field map's sidecar ``"Units"``, else Hz after
    a check of its values: :mod:`spinereg.epi.fieldmap_units`).

    ``pe``/``readout_s`` default to the EPI's sidecar (``sidecar`` or the ``.json`` next to the
    EPI file); ``echo_times`` default to the phase difference's sidecar (EchoTime1/2).
    ``smooth_mm``: Gaussian smoothing of the field (mm, in-plane) before use.
    ``magnitude`` (the field map's magnitude): aligned by ``rigid``, and the reference of the sign
    check (:func:`polarity_check`, ``info["polarity_check"]``; ``info["warning"]`` when reversed).
    """
    t0 = time.perf_counter()
    epi_img = require_signal(_as_image(epi, "EPI"), "EPI", "-i")
    meta = read_sidecar(sidecar, epi_img.path)
    par = epi_params(meta, pe, readout_s, epi_img.path)
    axis, _ = pe_axis(par.pe)
    if (fieldmap is None) == (phasediff is None):
        raise InputError("give either a field map in Hz or a phase difference", None,
                         "pass --fieldmap FILE (Hz) or --phasediff FILE with --echo-times TE1 TE2")
    units_info: dict = {}
    if fieldmap is not None:
        from spinereg.epi.fieldmap_units import fieldmap_in_hz

        fm, units_info = fieldmap_in_hz(_as_image(fieldmap, "field map", 3), fieldmap_units)
    else:
        pd = _as_image(phasediff, "phase difference", 3)
        if echo_times is None:
            pmeta = read_sidecar(None, pd.path)
            if "EchoTime1" not in pmeta or "EchoTime2" not in pmeta:
                raise InputError("no echo times for the phase difference (EchoTime1/2 missing from its sidecar)",
                                 pd.path, "pass --echo-times TE1 TE2 (seconds)")
            echo_times = (pmeta["EchoTime1"], pmeta["EchoTime2"])
        fm = fieldmap_from_phasediff(pd, echo_times)
    mag = _as_image(magnitude, "magnitude", (3, 4)) if magnitude is not None else None
    epi_mean = epi_img.with_data(mean_volume(epi_img).astype(np.float32)) if rigid else None
    field_hz, info = field_on_epi(fm, epi_img.grid, mag, epi_mean, rigid)
    # a field map off the EPI (another subject's, a wrong header) was a field of zeros there: "max
    # shift 0.00 voxels", the EPI left as it was, exit 0; one over part of it left the rest as it was
    covered = info.pop("_covered")
    ref = mean_volume(epi_img) if epi_mean is None else np.asarray(epi_mean.data, np.float64)
    subject = ref > 0.2 * np.percentile(ref, 99)
    outside = float(1.0 - covered[subject].mean()) if subject.any() else float(1.0 - covered.mean())
    info["fieldmap_outside_subject_fraction"] = round(outside, 4)
    if not covered.any():
        raise InputError("the field map does not overlap the EPI (their headers place them apart): it would "
                         "correct nothing", fm.path, "give the field map of this session (same scanner space)")
    coverage_warning = None
    if outside > 0.05:
        coverage_warning = (f"the field map covers only {100 * (1 - outside):.0f} % of the subject in the EPI: the "
                            "rest is left uncorrected (field 0 outside the field map)")
    if smooth_mm > 0:
        from spinereg.epi.distortion import smooth_field

        sig = [smooth_mm / z for z in epi_img.grid.zooms[:2]] + [0.0]
        field_hz = smooth_field(field_hz, sig)
    vsm = vsm_from_field(field_hz, par.readout_s, par.pe)
    corrected = unwarp_image(epi_img, vsm, axis, jacobian_mod)
    if mag is not None:
        assumed = str(units_info.get("units_from", "")).startswith("assumed")
        check = _polarity_against_magnitude(epi_img, epi_mean, mag, vsm, axis, jacobian_mod, rad_per_s=assumed)
        info["polarity_check"] = check
        if check.get("units_rad_per_s") and check["similarity_as_rad_per_s"] >= check["similarity_opposite_sign"]:
            info["warning"] = (
                "the field map looks like rad/s read as Hz: the EPI corrected with its values / 2 pi matches the "
                f"magnitude better ({check['similarity_as_rad_per_s']:.3f} vs {check['similarity_corrected']:.3f} "
                f"local correlation; uncorrected {check['similarity_uncorrected']:.3f}); give --fieldmap-units "
                "rad/s (or \"Units\" in its sidecar)")
        elif check.get("reversed"):
            info["warning"] = (
                "the field map's sign or the phase-encode polarity looks reversed: the EPI corrected with the "
                f"opposite sign matches the magnitude better ({check['similarity_opposite_sign']:.3f} vs "
                f"{check['similarity_corrected']:.3f} local correlation; uncorrected "
                f"{check['similarity_uncorrected']:.3f}); check --pe / the field map")
    if mag is not None and units_info.get("units") == "rad/s" and "warning" not in info:
        # a map in Hz stated as rad/s (a sidecar's Units, --fieldmap-units) was trusted: divided by
        # 2 pi, a sixth of its distortion corrected, silently (EPI phantom: 'max shift 0.34 voxels')
        as_hz = _polarity_against_magnitude(epi_img, epi_mean, mag, vsm * 2 * np.pi, axis, jacobian_mod,
                                            rad_per_s=True)
        info["units_check"] = as_hz
        if (as_hz.get("judged") and as_hz["similarity_corrected"] - as_hz["similarity_as_rad_per_s"] > POLARITY_MARGIN
                and as_hz["similarity_corrected"] >= as_hz["similarity_opposite_sign"]):
            info["warning"] = (
                "the field map looks like Hz stated as rad/s: the EPI corrected with its values as Hz matches the "
                f"magnitude better ({as_hz['similarity_corrected']:.3f} vs {as_hz['similarity_as_rad_per_s']:.3f} "
                f"local correlation; uncorrected {as_hz['similarity_uncorrected']:.3f}); check its units "
                "(--fieldmap-units Hz, or \"Units\" in its sidecar)")
    if coverage_warning or par.conflict:
        info["warning"] = "; ".join(w for w in (par.conflict, info.get("warning"), coverage_warning) if w)
    info.update({**units_info, "method": "fieldmap", "max_abs_shift_vox": float(np.abs(vsm).max(initial=0.0)),
                 "object_p99_shift_vox": object_shift_p99(ref, vsm), "seconds": round(time.perf_counter() - t0, 3)})
    return SDCResult(corrected=corrected, field_hz=epi_img_3d(epi_img, field_hz),
                     vsm=epi_img_3d(epi_img, vsm), transform=vsm_to_field(vsm, epi_img.grid, axis),
                     pe=par.pe, readout_s=par.readout_s, info=info)


def _polarity_against_magnitude(epi: Image, epi_mean: Image | None, mag: Image, vsm: np.ndarray, axis: int,
                                jacobian_mod: bool, rad_per_s: bool = False) -> dict:
    """:func:`polarity_check` with the magnitude placed on the EPI grid by the headers. Not the
    ``--rigid`` transform: it was fitted to the distorted EPI and carries part of the distortion
    (with it a right input of 12 scored the opposite sign 0.021 better)."""
    from spinereg.transforms.apply import apply_transforms

    mag3 = mag if mag.ndim == 3 else Image(mean_volume(mag).astype(np.float32), mag.affine)
    on = np.asarray(apply_transforms(mag3, epi.grid, [], "linear", cval=0.0).data, np.float64)
    ones = Image(np.ones(mag3.shape[:3], np.float32), mag3.affine)
    cov = np.asarray(apply_transforms(ones, epi.grid, [], "linear", cval=0.0).data) > 0.99
    ref = np.asarray(epi_mean.data, np.float64) if epi_mean is not None else mean_volume(epi)
    return polarity_check(ref, vsm, axis, on, cov, jacobian_mod, rad_per_s)


def epi_img_3d(epi: Image, data: np.ndarray) -> Image:
    """A 3D float32 image on the EPI grid."""
    out = Image(np.asarray(data, dtype=np.float32), epi.affine, epi.header)
    out.header.set_data_shape(out.shape)
    return out


def unwarp_image(epi: Image, vsm: np.ndarray, axis: int, jacobian_mod: bool = True) -> Image:
    """Unwarp every volume of ``epi`` with one VSM (cubic along PE, Jacobian-modulated)."""
    if epi.ndim == 3:
        data = unwarp(epi.data, vsm, axis, jacobian_mod=jacobian_mod).astype(np.float32)
    else:
        data = np.empty(epi.shape[:3] + (epi.nvols,), np.float32)
        for t in range(epi.nvols):
            data[..., t] = unwarp(epi.volume(t), vsm, axis, jacobian_mod=jacobian_mod)
        data = data.reshape(epi.shape)
    out = Image(data, epi.affine, epi.header)
    out.header.set_data_shape(data.shape)
    return out
