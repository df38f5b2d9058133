"""A synthetic cord EPI subject with ground truth for distortion and motion correction.

Anatomy (analytic, world RAS+ mm, smooth edges that act as partial volume): soft tissue of the
neck, vertebral bodies alternating with intervertebral discs along S-I (period 18 mm, discs 5 mm),
posterior arch and spinous process, CSF and the cord (with a gentle A-P curve). Three contrasts
are painted from the same tissues: T2w (bright CSF), T2*w and GE-EPI.

Spaces and images
-----------------
* **anatomy frame** (T2w grid, 1 mm isotropic): the canonical anatomy.
* **EPI frame** (EPI, T2*w and field-map grids, axial): the anatomy moved by a known smooth
  deformation ``w`` (in-plane translations varying with z plus a small in-plane rotation,
  about 2 mm): the EPI-frame point ``x`` shows the anatomy point ``x + w(x)``.
  ``truth/warp_t2w2epi.nii.gz`` (EPI grid) is that pull field;
  ``truth/warp_epi2t2w.nii.gz`` (T2w grid) its inverse.
* **B0 field** (Hz, attached to the anatomy): differences of Gaussians centred on the vertebral
  body/disc interfaces just in front of the canal (sign flips across each disc), plus a smooth
  A-P/S-I gradient, scaled so that its maximum magnitude in the body is ``field_max_hz``.
* **Distortion**: a point at voxel ``r`` appears at ``r + vsm(r)`` along the PE axis with
  ``vsm = field * readout_s * sign(pe)`` (see :mod:`spinereg.epi.distortion`), intensity divided by
  ``1 + dvsm/dpe`` (Jacobian). Computed analytically (no interpolation of an image).
* **Motion** (4D series only; the blip pair and field map are at the reference position): each
  slice of each volume shows the subject translated in-plane by ``(tx, ty)`` mm (world RAS): a
  smooth per-volume drift plus a breathing term that depends on the slice's acquisition time.
  Slices excited together (multiband groups: slices ``k`` and ``k + nz/MB``...) share one
  translation. Volume 0 is the reference (all zeros). The field moves with the subject, so the
  distorted slice is exactly the reference distorted slice translated by ``(tx, ty)``:
  ``epi[t](x) = epi_ref(x - m)``; correcting means sampling ``epi[t]`` at ``x + m``.

Motion table ``truth/motion.csv``: one row per (volume, slice), columns
``volume,slice,group,tx_mm,ty_mm`` (``group`` = index of the multiband excitation group, equal to
``slice`` when MB = 1; rows of one group carry identical translations).

Everything is deterministic for a given ``seed``; parameters are in ``truth/params.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from spinereg.epi.distortion import pe_axis, reverse_pe, vsm_to_field
from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, save_image
from spinereg.transforms.displacement import DisplacementField

#: tissue intensities per contrast: soft tissue, vertebral body, disc, posterior bone, CSF, cord
CONTRASTS = {
    "t2w": (0.35, 0.30, 0.75, 0.20, 1.00, 0.45),
    "t2s": (0.40, 0.15, 0.45, 0.10, 0.85, 0.60),
    "epi": (0.35, 0.20, 0.50, 0.15, 0.90, 0.55),
}
_PERIOD = 18.0  # vertebral level (mm)
_DISC = 5.0  # disc height (mm)
_EDGE = 0.35  # edge width of the soft tissue masks (mm)
ECHO_TIMES_FIELDMAP = (0.00492, 0.00738)


def _sigmoid(d: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(d / (2 * _EDGE)))


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float | np.ndarray, cy: float | np.ndarray,
             ax: float, ay: float) -> np.ndarray:
    """Soft inside-ness of an ellipse (approximate signed distance in mm through the sigmoid)."""
    r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return _sigmoid((1.0 - r) * min(ax, ay))


def _cord_y(z: np.ndarray) -> np.ndarray:
    return 1.2 * np.sin(2 * np.pi * z / 140.0 + 0.4)


def _tissues(p: np.ndarray) -> list[np.ndarray]:
    """Soft masks (soft tissue, vertebral body, disc, posterior bone, CSF, cord) at anatomy points
    ``p`` (N, 3), coordinates relative to the phantom centre (mm)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    body = _ellipse(x, y, 0.0, 2.0, 28.0, 26.0)
    column = _ellipse(x, y, 0.0, 13.0, 8.5, 6.5)
    phase = np.mod(z + 4.0, _PERIOD)  # disc where phase in [0, _DISC)
    disc_z = _sigmoid(np.minimum(phase, _DISC - phase))
    disc = column * disc_z
    vb = column * (1.0 - disc_z)
    cy = _cord_y(z)
    canal = _ellipse(x, y, 0.0, cy - 0.5, 9.5, 8.5)
    arch = canal * (1.0 - _ellipse(x, y, 0.0, cy - 0.5, 6.8, 5.8)) * _sigmoid(-(y - cy + 0.5))
    arch = np.maximum(arch, _ellipse(x, y, 0.0, cy - 15.0, 2.2, 6.5))
    csf = _ellipse(x, y, 0.0, cy - 0.5, 6.5, 5.5)
    cord = _ellipse(x, y, 0.0, cy - 0.8, 4.2, 3.0)
    return [body, vb, disc, arch, csf, cord]


def _paint(masks: list[np.ndarray], contrast: str, texture: np.ndarray | None = None) -> np.ndarray:
    vals = CONTRASTS[contrast]
    out = np.zeros_like(masks[0])
    for n, (m, v) in enumerate(zip(masks, vals, strict=True)):
        val = v * texture if (n == 0 and texture is not None) else v
        out = out * (1.0 - m) + val * m
    return out


@dataclass
class _Model:
    """The analytic subject: deformation, texture, field (all in mm relative to ``center``)."""

    center: np.ndarray
    warp_modes: list[tuple[float, float, float]]  # per axis x, y: (amp, wavelength, phase) + offset
    warp_offset: tuple[float, float]
    rot_deg: float
    texture_modes: list[tuple[float, float, float, float, float]]
    field_sources: list[tuple[float, float]]  # (z of interface, amplitude)
    field_gradient: tuple[float, float]  # Hz per mm along y and z
    field_scale: float = 1.0

    @classmethod
    def random(cls, center: np.ndarray, rng: np.random.Generator, z_extent: float) -> _Model:
        modes = [(float(rng.uniform(0.8, 1.4)), float(rng.uniform(70, 120)), float(rng.uniform(0, 2 * np.pi)))
                 for _ in range(2)]
        tex = []
        for _ in range(5):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            k = 2 * np.pi / rng.uniform(10.0, 25.0) * d
            tex.append((float(rng.uniform(0.03, 0.08)), *map(float, k), float(rng.uniform(0, 2 * np.pi))))
        sources = []
        half = z_extent / 2 + _PERIOD
        for zc in np.arange(-4.0 - _PERIOD * np.ceil(half / _PERIOD), half, _PERIOD):
            amp = float(rng.uniform(0.7, 1.0))
            # disc [zc, zc + _DISC]: opposite signs at its lower and upper interfaces
            sources.append((float(zc), amp))
            sources.append((float(zc + _DISC), -amp))
        return cls(center=np.asarray(center, float), warp_modes=modes,
                   warp_offset=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
                   rot_deg=float(rng.uniform(-3, 3)), texture_modes=tex, field_sources=sources,
                   field_gradient=(float(rng.uniform(0.3, 0.6)), float(rng.uniform(-0.15, 0.15))))

    # EPI frame (relative mm) -> anatomy frame (relative mm)
    def to_anatomy(self, q: np.ndarray) -> np.ndarray:
        z = q[:, 2]
        th = np.deg2rad(self.rot_deg) * (1.0 + 0.3 * np.sin(2 * np.pi * z / 150.0))
        c, s = np.cos(th), np.sin(th)
        out = q.copy()
        out[:, 0] = c * q[:, 0] - s * q[:, 1]
        out[:, 1] = s * q[:, 0] + c * q[:, 1]
        for ax, (amp, wl, ph) in enumerate(self.warp_modes):
            out[:, ax] += self.warp_offset[ax] + amp * np.sin(2 * np.pi * z / wl + ph)
        return out

    def to_epi(self, a: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_anatomy` (exact: z is unchanged, the in-plane part is rigid)."""
        z = a[:, 2]
        th = np.deg2rad(self.rot_deg) * (1.0 + 0.3 * np.sin(2 * np.pi * z / 150.0))
        c, s = np.cos(th), np.sin(th)
        b = a.copy()
        for ax, (amp, wl, ph) in enumerate(self.warp_modes):
            b[:, ax] -= self.warp_offset[ax] + amp * np.sin(2 * np.pi * z / wl + ph)
        out = b.copy()
        out[:, 0] = c * b[:, 0] + s * b[:, 1]
        out[:, 1] = -s * b[:, 0] + c * b[:, 1]
        return out

    def texture(self, p: np.ndarray) -> np.ndarray:
        t = np.ones(len(p))
        for amp, kx, ky, kz, ph in self.texture_modes:
            t += amp * np.sin(p @ np.array([kx, ky, kz]) + ph)
        return t

    def raw_field(self, p: np.ndarray) -> np.ndarray:
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        g_xy = np.exp(-(x**2 / (2 * 8.0**2) + (y - 6.0) ** 2 / (2 * 7.0**2)))
        f = np.zeros(len(p))
        for zc, amp in self.field_sources:
            f += amp * np.exp(-((z - zc) ** 2) / (2 * 3.5**2))
        gy, gz = self.field_gradient
        return f * g_xy + (gy * y + gz * z) / 20.0

    def field(self, p: np.ndarray) -> np.ndarray:
        """Field (Hz) at anatomy points (relative mm)."""
        return self.field_scale * self.raw_field(p)


@dataclass
class EPIPhantom:
    """Images and ground truth of :func:`make_epi_phantom` (see the module docstring)."""

    t2w: Image
    t2w_seg: Image
    t2s: Image
    t2s_seg: Image
    epi: Image  # 4D series (PE = pe, with motion)
    blip_up: Image  # 3D, PE = pe
    blip_down: Image  # 3D, PE reversed
    fieldmap_hz: Image  # on the field-map grid
    fieldmap_magnitude: Image
    fieldmap_phasediff: Image  # radians, echo times ECHO_TIMES_FIELDMAP
    field_true_hz: Image  # on the EPI grid (reference position)
    vsm_true: np.ndarray  # voxels along the PE axis, signed, for ``pe``
    epi_undistorted: Image  # reference volume without distortion or noise
    epi_seg: Image  # cord mask on the EPI grid (undistorted, reference position)
    motion: np.ndarray  # (n_volumes, nz, 2): tx, ty in mm (world RAS)
    groups: np.ndarray  # (nz,) multiband group of each slice
    slice_timing: list[float]
    true_t2w2epi: DisplacementField  # pull, EPI grid -> anatomy (T2w) points
    true_epi2t2w: DisplacementField  # pull, T2w grid -> EPI-frame points
    sidecars: dict[str, dict] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    #: the analytic truth at any world points of the EPI frame (reference position): field (Hz)
    #: and undistorted tissue signal of a contrast (``t2w``/``t2s``/``epi``), for other phantoms
    field_at: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    signal_at: Callable[[np.ndarray, str], np.ndarray] | None = field(default=None, repr=False)

    @property
    def pe(self) -> str:
        return self.params["pe"]

    @property
    def readout_s(self) -> float:
        return self.params["readout_s"]

    @property
    def sdc_true(self) -> DisplacementField:
        """True correction (pull on the EPI grid: undistorted point -> distorted point)."""
        return vsm_to_field(self.vsm_true, self.epi.grid, pe_axis(self.pe)[0])

    def motion_rows(self) -> list[tuple[int, int, int, float, float]]:
        return [(t, k, int(self.groups[k]), float(self.motion[t, k, 0]), float(self.motion[t, k, 1]))
                for t in range(self.motion.shape[0]) for k in range(self.motion.shape[1])]

    def save(self, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
        """Write every image, sidecar and truth file into ``out_dir`` (``truth/`` for ground truth)."""
        from spinereg.epi.sidecar import write_sidecar
        from spinereg.io.image import atomic_write
        from spinereg.transforms.itk import write_displacement

        d = Path(out_dir)
        images = {
            "t2w.nii.gz": self.t2w, "t2w_seg.nii.gz": self.t2w_seg,
            "t2s.nii.gz": self.t2s, "t2s_seg.nii.gz": self.t2s_seg,
            "epi.nii.gz": self.epi, "epi_blipup.nii.gz": self.blip_up,
            "epi_blipdown.nii.gz": self.blip_down,
            "fieldmap_hz.nii.gz": self.fieldmap_hz, "fieldmap_magnitude.nii.gz": self.fieldmap_magnitude,
            "fieldmap_phasediff.nii.gz": self.fieldmap_phasediff,
            "truth/field_hz.nii.gz": self.field_true_hz,
            "truth/vsm.nii.gz": self.epi_undistorted.with_data(self.vsm_true.astype(np.float32)),
            "truth/epi_undistorted.nii.gz": self.epi_undistorted,
            "truth/epi_seg.nii.gz": self.epi_seg,
        }
        paths: dict[str, Path] = {}
        # check every destination first: no partial output when one exists
        from spinereg.io.image import check_writable
        names = list(images) + [f"{n}.json" for n in self.sidecars] + [
            "truth/warp_sdc.nii.gz", "truth/warp_t2w2epi.nii.gz", "truth/warp_epi2t2w.nii.gz",
            "truth/motion.csv", "truth/params.json"]
        for n in names:
            check_writable(d / n, overwrite)
        for n, img in images.items():
            paths[n] = save_image(img, d / n, overwrite=overwrite, dtype=np.float32 if img.data.dtype.kind == "f" else None)
        for n, meta in self.sidecars.items():
            paths[f"{n}.json"] = write_sidecar(d / f"{n}.json", meta, overwrite)
        paths["truth/warp_sdc.nii.gz"] = write_displacement(self.sdc_true, d / "truth/warp_sdc.nii.gz", overwrite)
        paths["truth/warp_t2w2epi.nii.gz"] = write_displacement(self.true_t2w2epi, d / "truth/warp_t2w2epi.nii.gz", overwrite)
        paths["truth/warp_epi2t2w.nii.gz"] = write_displacement(self.true_epi2t2w, d / "truth/warp_epi2t2w.nii.gz", overwrite)
        csv = "volume,slice,group,tx_mm,ty_mm\n" + "".join(
            f"{t},{k},{g},{tx:.6f},{ty:.6f}\n" for t, k, g, tx, ty in self.motion_rows())
        paths["truth/motion.csv"] = atomic_write(d / "truth/motion.csv", lambda tmp: Path(tmp).write_text(csv), overwrite)
        text = json.dumps(self.params, indent=2) + "\n"
        paths["truth/params.json"] = atomic_write(d / "truth/params.json", lambda tmp: Path(tmp).write_text(text), overwrite)
        return paths


def read_motion_table(path: str | Path) -> np.ndarray:
    """``truth/motion.csv`` as an array (n_volumes, nz, 2) of (tx, ty) mm."""
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    nv, nz = int(rows[:, 0].max()) + 1, int(rows[:, 1].max()) + 1
    out = np.zeros((nv, nz, 2))
    out[rows[:, 0].astype(int), rows[:, 1].astype(int)] = rows[:, 3:5]
    return out


def _axial_affine(shape: Sequence[int], voxel_mm: Sequence[float], center: np.ndarray) -> np.ndarray:
    """LAS axial grid (nibabel codes; SCT's RPI) centred on ``center``."""
    lin = np.diag([-voxel_mm[0], voxel_mm[1], voxel_mm[2]]).astype(float)
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = center - lin @ ((np.asarray(shape, float) - 1) / 2)
    return aff


def _slice_timing(nz: int, multiband: int, tr_s: float) -> tuple[np.ndarray, list[float]]:
    n_groups = nz // multiband
    groups = np.arange(nz) % n_groups
    order = list(range(0, n_groups, 2)) + list(range(1, n_groups, 2))  # interleaved
    rank = np.empty(n_groups, int)
    rank[order] = np.arange(n_groups)
    times = [round(float(rank[g] * tr_s / n_groups), 6) for g in groups]
    return groups, times


def _rician(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return img.astype(np.float32)
    re = img + rng.normal(0, sigma, img.shape)
    im = rng.normal(0, sigma, img.shape)
    return np.sqrt(re**2 + im**2).astype(np.float32)


#: the largest EPI grid the phantom builds (its fields are float64 (x, y, z, 3) arrays)
MAX_EPI_VOXELS = 16_000_000


def _nifti_header(shape: Sequence[int], grid: Grid, tr_s: float) -> nib.Nifti1Header:
    """A header with units (mm, s) and, for a series, the repetition time as its 4th voxel size:
    the phantom's epi.nii.gz said pixdim[4] 1.0 and units unknown while epi.json said
    RepetitionTime 2.0, so tools reading the NIfTI (FSL, SCT, nibabel's zooms) took a TR of 1
    (in unknown units) for it. 3D images carry the same units (SCT's images say mm, sec)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(tuple(int(n) for n in shape))
    zooms = [float(z) for z in grid.zooms[:3]]
    if len(shape) > 3:
        zooms += [float(tr_s)] + [1.0] * (len(shape) - 4)
    hdr.set_zooms(zooms)
    hdr.set_xyzt_units("mm", "sec")
    return hdr


def make_epi_phantom(
    shape: Sequence[int] = (64, 64, 20),
    voxel_mm: Sequence[float] = (1.0, 1.0, 5.0),
    readout_s: float = 0.030,
    pe: str = "j",
    field_max_hz: float = 70.0,
    n_volumes: int = 10,
    motion: float = 1.0,
    multiband: int = 1,
    noise: float = 0.01,
    seed: int = 0,
    tr_s: float = 2.0,
    echo_time_s: float = 0.030,
) -> EPIPhantom:
    """Build the EPI phantom (see the module docstring).

    ``shape``/``voxel_mm``: EPI grid (axial, LAS). ``readout_s``: TotalReadoutTime. ``pe``: BIDS
    PhaseEncodingDirection of the series and blip-up image (``i``/``j`` with optional ``-``).
    ``field_max_hz``: max |field| in the body. ``motion``: amplitude (mm) of the per-volume drift
    (the breathing term is 40 % of it; 0 disables motion). ``multiband``: slices per excitation
    (must divide ``shape[2]``). ``noise``: Rician noise sigma relative to CSF (T2w) = 1.
    """
    shape = tuple(int(s) for s in shape)
    voxel = np.broadcast_to(np.asarray(voxel_mm, float), (3,)).copy()
    axis, sign = pe_axis(pe)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"EPI shape must be 3 positive ints (got {shape})", None, "e.g. --shape 64 64 20")
    if axis == 2:
        raise InputError("phase encoding along the slice axis is not supported", None, "use i, i-, j or j-")
    if int(np.prod(shape, dtype=np.int64)) > MAX_EPI_VOXELS:  # --shape 100000 100000 100000 was
        # 'internal error (MemoryError: Unable to allocate 21.3 PiB ...)', before session 37
        raise InputError(f"EPI shape {tuple(shape)} has {int(np.prod(shape, dtype=np.int64)):.3g} voxels, more than "
                         f"the phantom's {MAX_EPI_VOXELS:.0e}", None, "e.g. --shape 64 64 20")
    if multiband < 1 or shape[2] % multiband:
        raise InputError(f"multiband factor {multiband} does not divide the {shape[2]} slices", None,
                         "choose a factor that divides the number of slices")
    if n_volumes < 1:
        raise InputError("n_volumes must be >= 1", None, "e.g. --volumes 10")
    if not (0 < readout_s < 1):
        raise InputError(f"readout time {readout_s} s out of range", None, "give seconds, e.g. 0.03")
    # --field-max nan wrote all-NaN EPIs and field maps (exit 0); 100000 Hz shifted the body
    # 3000 voxels, out of a 64-voxel frame (an EPI of noise, max 0.05), before session 37
    numbers = {"--field-max": field_max_hz, "--noise": noise, "--motion": motion}
    bad = [k for k, v in numbers.items() if not np.isfinite(v)] + (["--voxel"] if not np.all(np.isfinite(voxel)) else [])
    if bad:
        raise InputError(f"{', '.join(bad)} must be a finite number", None, "e.g. --field-max 70 --noise 0.01 --motion 1")
    max_shift = abs(field_max_hz) * readout_s  # voxels along the phase-encode axis
    if max_shift > shape[axis] / 2:
        raise InputError(f"--field-max {field_max_hz:g} Hz with a {readout_s:g} s readout shifts the body by up to "
                         f"{max_shift:.0f} voxels, more than half the {shape[axis]}-voxel phase-encode axis",
                         None, f"use --field-max up to {shape[axis] / 2 / readout_s:.0f} Hz (e.g. 70)")
    rng = np.random.default_rng(seed)
    center = np.array([0.0, 0.0, 0.0])
    epi_grid = Grid(shape, _axial_affine(shape, voxel, center))
    z_extent = shape[2] * voxel[2]
    model = _Model.random(center, rng, z_extent)

    # scale the field: max |field| inside the body over the EPI frame
    probe = epi_grid.world_coords()
    a_probe = model.to_anatomy(probe - center)
    raw = model.raw_field(a_probe)
    in_body = _tissues(a_probe)[0] > 0.5
    model.field_scale = float(field_max_hz / max(np.abs(raw[in_body]).max(initial=0.0), 1e-9))

    pe_vec = epi_grid.affine[:3, axis]  # world mm per voxel step along PE

    def vsm_at(q_epi: np.ndarray, pe_sign: float) -> np.ndarray:
        return model.field(model.to_anatomy(q_epi)) * readout_s * pe_sign

    def undistorted(q_epi: np.ndarray, contrast: str) -> np.ndarray:
        a = model.to_anatomy(q_epi)
        return _paint(_tissues(a), contrast, model.texture(a))

    def distorted(y_epi: np.ndarray, contrast: str, pe_sign: float) -> np.ndarray:
        """Analytic EPI at world points ``y``: find r with r + vsm(r) a_pe = y, divide by Jacobian."""
        r = y_epi.copy()
        for _ in range(30):
            r_new = y_epi - vsm_at(r, pe_sign)[:, None] * pe_vec
            if np.abs(r_new - r).max(initial=0.0) < 1e-7:
                r = r_new
                break
            r = r_new
        h = 0.01
        dv = (vsm_at(r + h * pe_vec, pe_sign) - vsm_at(r - h * pe_vec, pe_sign)) / (2 * h)
        return undistorted(r, contrast) / np.clip(1.0 + dv, 0.05, None)

    n_vox = epi_grid.shape
    q = epi_grid.world_coords() - center

    def as_vol(v: np.ndarray, g: Grid = epi_grid) -> np.ndarray:
        return v.reshape(g.shape)

    def img(data: np.ndarray, g: Grid) -> Image:
        return Image(np.asarray(data), g.affine, _nifti_header(np.shape(data), g, tr_s))

    # ---- truth on the EPI grid
    field_epi = as_vol(model.field(model.to_anatomy(q)))
    vsm_true = field_epi * readout_s * sign
    epi_undist = as_vol(undistorted(q, "epi"))
    epi_seg = as_vol(_tissues(model.to_anatomy(q))[5] > 0.5).astype(np.uint8)

    # ---- motion and slice timing
    groups, timing = _slice_timing(shape[2], multiband, tr_s)
    t_vol = np.arange(n_volumes)[:, None] * tr_s + np.asarray(timing)[None, :]  # (nv, nz) seconds
    drift = np.cumsum(rng.normal(0, 1, (n_volumes, 2)), axis=0)
    drift -= drift[0]
    drift *= motion / max(np.abs(drift).max(initial=0.0), 1e-9) if n_volumes > 1 else 0.0
    breath_period = float(rng.uniform(3.5, 4.5))
    breath_phase = float(rng.uniform(0, 2 * np.pi))
    breath = 0.4 * motion * np.sin(2 * np.pi * t_vol / breath_period + breath_phase)  # (nv, nz)
    mot = np.zeros((n_volumes, shape[2], 2))
    mot[..., 0] = drift[:, None, 0] + 0.3 * breath
    mot[..., 1] = drift[:, None, 1] + breath
    mot -= mot[0:1]  # volume 0 is the reference

    # ---- 4D series: epi[t](x) = epi_ref(x - m_{t, slice})
    kk = epi_grid.voxel_coords()[:, 2].astype(int)
    series = np.empty(n_vox + (n_volumes,), np.float32)
    for t in range(n_volumes):
        shift = np.zeros((len(q), 3))
        shift[:, :2] = mot[t, kk]
        vol = as_vol(distorted(q - shift, "epi", sign))
        series[..., t] = _rician(vol, noise, rng)
    blip_up = _rician(as_vol(distorted(q, "epi", sign)), noise, rng)
    blip_down = _rician(as_vol(distorted(q, "epi", -sign)), noise, rng)

    # ---- T2*w (EPI frame, 2x in-plane resolution) and field map (half in-plane resolution)
    t2s_shape = (shape[0] * 2, shape[1] * 2, shape[2])
    t2s_grid = Grid(t2s_shape, _axial_affine(t2s_shape, voxel * [0.5, 0.5, 1.0], center))
    qs = t2s_grid.world_coords() - center
    a_s = model.to_anatomy(qs)
    tis = _tissues(a_s)
    t2s = _rician(as_vol(_paint(tis, "t2s", model.texture(a_s)), t2s_grid), noise, rng)
    t2s_seg = as_vol(tis[5] > 0.5, t2s_grid).astype(np.uint8)

    fm_shape = (max(1, (shape[0] + 1) // 2), max(1, (shape[1] + 1) // 2), shape[2])
    fm_grid = Grid(fm_shape, _axial_affine(fm_shape, voxel * [2.0, 2.0, 1.0], center))
    qf = fm_grid.world_coords() - center
    af = model.to_anatomy(qf)
    fm_hz = as_vol(model.field(af), fm_grid).astype(np.float32)
    fm_mag = _rician(as_vol(_paint(_tissues(af), "t2s", model.texture(af)), fm_grid), noise, rng)
    d_te = ECHO_TIMES_FIELDMAP[1] - ECHO_TIMES_FIELDMAP[0]
    phasediff = np.angle(np.exp(1j * 2 * np.pi * fm_hz * d_te)).astype(np.float32)

    # ---- T2w (anatomy frame, 1 mm isotropic, covering the EPI field of view with a margin)
    ext = (np.array(shape) - 1) * voxel
    t2w_shape = tuple(int(np.ceil(e * 1.1)) + 1 for e in ext)
    t2w_grid = Grid(t2w_shape, _axial_affine(t2w_shape, (1.0, 1.0, 1.0), center))
    a_w = t2w_grid.world_coords() - center
    tis_w = _tissues(a_w)
    t2w = _rician(as_vol(_paint(tis_w, "t2w", model.texture(a_w)), t2w_grid), noise, rng)
    t2w_seg = as_vol(tis_w[5] > 0.5, t2w_grid).astype(np.uint8)

    # ---- true deformation fields
    u = (model.to_anatomy(q) - q).reshape(n_vox + (3,))
    t2w2epi = DisplacementField(epi_grid, u.astype(np.float32))
    v = (model.to_epi(a_w) - a_w).reshape(tuple(t2w_grid.shape) + (3,))
    epi2t2w = DisplacementField(t2w_grid, v.astype(np.float32))

    te_series = float(echo_time_s)
    common = {"PhaseEncodingDirection": pe, "TotalReadoutTime": float(readout_s),
              "EchoTime": te_series, "RepetitionTime": float(tr_s), "SliceTiming": timing,
              "MultibandAccelerationFactor": int(multiband), "SliceEncodingDirection": "k"}
    sidecars = {
        "epi": dict(common),
        "epi_blipup": dict(common),
        "epi_blipdown": {**common, "PhaseEncodingDirection": reverse_pe(pe)},
        "fieldmap_hz": {"Units": "Hz", "EchoTime1": ECHO_TIMES_FIELDMAP[0], "EchoTime2": ECHO_TIMES_FIELDMAP[1]},
        "fieldmap_phasediff": {"EchoTime1": ECHO_TIMES_FIELDMAP[0], "EchoTime2": ECHO_TIMES_FIELDMAP[1],
                               "Units": "rad"},
        "fieldmap_magnitude": {"EchoTime": ECHO_TIMES_FIELDMAP[0]},
        "t2s": {"EchoTime": 0.014}, "t2w": {"EchoTime": 0.12},
    }
    cord = epi_seg > 0
    params = {
        "shape": list(shape), "voxel_mm": voxel.tolist(), "readout_s": float(readout_s), "pe": pe,
        "field_max_hz": float(field_max_hz), "n_volumes": int(n_volumes), "motion_mm": float(motion),
        "multiband": int(multiband), "noise": float(noise), "seed": int(seed), "tr_s": float(tr_s),
        "echo_time_s": te_series, "breath_period_s": breath_period,
        "field_scale": model.field_scale, "field_in_cord_hz": {
            "min": float(field_epi[cord].min()) if cord.any() else 0.0,
            "max": float(field_epi[cord].max()) if cord.any() else 0.0},
        "max_abs_vsm_vox": float(np.abs(vsm_true).max()),
        "deformation": {"rotation_deg": model.rot_deg, "offset_mm": list(model.warp_offset),
                        "modes": model.warp_modes},
        "motion_table": "truth/motion.csv: volume,slice,group,tx_mm,ty_mm (world RAS; epi[t](x) = ref(x - m))",
    }
    return EPIPhantom(
        t2w=img(t2w, t2w_grid), t2w_seg=img(t2w_seg, t2w_grid), t2s=img(t2s, t2s_grid),
        t2s_seg=img(t2s_seg, t2s_grid), epi=img(series, epi_grid), blip_up=img(blip_up, epi_grid),
        blip_down=img(blip_down, epi_grid), fieldmap_hz=img(fm_hz, fm_grid),
        fieldmap_magnitude=img(fm_mag, fm_grid), fieldmap_phasediff=img(phasediff, fm_grid),
        field_true_hz=img(field_epi.astype(np.float32), epi_grid), vsm_true=vsm_true,
        epi_undistorted=img(epi_undist.astype(np.float32), epi_grid), epi_seg=img(epi_seg, epi_grid),
        motion=mot, groups=groups, slice_timing=timing, true_t2w2epi=t2w2epi, true_epi2t2w=epi2t2w,
        sidecars=sidecars, params=params,
        field_at=lambda p: model.field(model.to_anatomy(np.asarray(p, float) - center)),
        signal_at=lambda p, contrast="epi": undistorted(np.asarray(p, float) - center, contrast),
    )
