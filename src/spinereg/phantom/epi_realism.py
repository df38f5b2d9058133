"""Realistic acquisitions around the EPI phantom: a measured-like field map and rigid 3D motion.

Both draw on the analytic truth of :func:`spinereg.phantom.epi.make_epi_phantom`
(``EPIPhantom.field_at`` / ``signal_at``: field and undistorted signal at any world point of the
reference position) and share no code with the correction methods.

:func:`measured_fieldmap`: the field map a scanner would give, not the exact field: acquired on
its own grid (another resolution, each voxel the mean of 3 x 3 x 3 samples), with the subject
displaced by a rigid offset since the EPI (rotation about the field of view's centre plus a
translation), phase noise inversely proportional to the magnitude, Gaussian smoothing as
field-map preparation applies, and zero outside the body. Returns the field (Hz), the magnitude
and a record of the degradations.

:func:`rigid_motion_series`: a 4D EPI series with motion that is not moco's model: every slice
is acquired at its own time (interleaved ``SliceTiming``) and sees the subject moved by a smooth
rigid 3D trajectory (three rotations up to ``rotation_deg``, three translations up to
``translation_mm``, through-plane included), sampled through the slice profile (3 samples
across the slice thickness), distorted along the phase-encode axis by the field that moves with
the subject, with Rician noise. The truth is the in-plane displacement of the cord centre of
each slice at its acquisition time (``displacement_mm``, what a slice-wise translation can
correct) and the full trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.phantom.spine_deformation import rotation_matrix

if TYPE_CHECKING:
    from collections.abc import Sequence

    from spinereg.phantom.epi import EPIPhantom


def _axial_grid(shape: np.ndarray, voxel: np.ndarray, center: np.ndarray) -> Grid:
    lin = np.diag([-voxel[0], voxel[1], voxel[2]]).astype(float)
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = np.asarray(center, float) - lin @ ((np.asarray(shape, float) - 1) / 2)
    return Grid(tuple(int(s) for s in shape), aff)


def measured_fieldmap(ph: EPIPhantom, *, seed: int = 0,
                      voxel_mm: Sequence[float] = (2.5, 2.5, 4.0), noise_hz: float = 6.0,
                      smooth_mm: float = 2.0, offset_mm: Sequence[float] = (0.5, 1.5, 1.0),
                      rotation_deg: Sequence[float] = (1.0, 0.0, 2.0)) -> tuple[Image, Image, dict]:
    """A measured-like field map of the EPI phantom ``ph`` (module docstring); returns
    ``(field_hz, magnitude, record)`` on the field map's own grid."""
    rng = np.random.default_rng(seed)
    voxel = np.asarray(voxel_mm, float)
    ext = np.array(ph.epi.shape[:3]) * ph.epi.grid.zooms
    shape = np.maximum(1, np.ceil(ext / voxel).astype(int) + 2)
    center = ph.epi.grid.center_world() + rng.uniform(-0.5, 0.5, 3) * voxel
    grid = _axial_grid(shape, voxel, center)
    rot = rotation_matrix(rotation_deg)
    c0 = ph.epi.grid.center_world()
    t = np.asarray(offset_mm, float)
    offs = np.stack(np.meshgrid(*[(np.arange(3) - 1) / 3.0] * 3, indexing="ij"), -1).reshape(-1, 3)
    x = grid.world_coords()
    hz = np.zeros(len(x))
    mag = np.zeros(len(x))
    for o in offs:
        p = x + (o * voxel) @ np.abs(grid.affine[:3, :3] / voxel).T
        a = (p - c0 - t) @ rot + c0  # the reference-position point the moved subject puts here
        hz += ph.field_at(a)
        mag += ph.signal_at(a, "t2s")
    hz = (hz / len(offs)).reshape(grid.shape)
    mag = (mag / len(offs)).reshape(grid.shape)
    ref = float(np.percentile(mag, 95))
    sigma = noise_hz * ref / np.maximum(mag, 0.05 * ref)
    hz = hz + rng.normal(0, 1, hz.shape) * np.minimum(sigma, 20 * noise_hz)
    if smooth_mm > 0:
        hz = ndimage.gaussian_filter(hz, smooth_mm / voxel)
    body = mag > 0.15 * ref
    hz = np.where(body, hz, 0.0)
    mag = mag + rng.normal(0, 0.01 * ref, mag.shape)
    record = {"voxel_mm": voxel.tolist(), "noise_hz_at_95th_percentile_signal": noise_hz, "smooth_mm": smooth_mm,
              "offset_mm": t.tolist(), "rotation_deg": list(rotation_deg), "shape": list(map(int, grid.shape))}
    return (Image(hz.astype(np.float32), grid.affine), Image(np.abs(mag).astype(np.float32), grid.affine), record)


@dataclass
class MovingSeries:
    """A 4D series with rigid 3D motion (module docstring) and its truth."""

    epi: Image
    slice_timing: list[float]
    displacement_mm: np.ndarray  # (n_volumes, nz, 2): world x, y displacement of each slice's cord centre
    through_plane_mm: np.ndarray  # (n_volumes, nz): S-I displacement of the cord centre
    trajectory: np.ndarray  # (n_volumes, nz, 6): tx, ty, tz (mm), rx, ry, rz (deg) at each slice's time
    params: dict = field(default_factory=dict)


def _trajectory(times: np.ndarray, rng: np.random.Generator, tr_s: float, n_volumes: int,
                rotation_deg: float, translation_mm: float) -> np.ndarray:
    """Smooth random rigid motion at ``times`` (s): a drift (per-volume random walk, smoothly
    interpolated) plus breathing (4 s period, mostly A-P and S-I); zero at time 0."""
    knots = np.arange(n_volumes + 2) * tr_s
    walk = np.cumsum(rng.normal(0, 1, (len(knots), 6)), axis=0)
    walk -= walk[0]
    scale = np.array([translation_mm] * 3 + [rotation_deg] * 3)
    walk *= scale / np.maximum(np.abs(walk).max(axis=0), 1e-9)
    out = np.stack([np.interp(times, knots, walk[:, a]) for a in range(6)], axis=-1)
    period, phase = rng.uniform(3.5, 4.5), rng.uniform(0, 2 * np.pi)
    breath = np.sin(2 * np.pi * times / period + phase) - np.sin(phase)
    out += breath[..., None] * (0.4 * scale * np.array([0.2, 1.0, 0.6, 0.5, 0.2, 0.2]))
    return out


def rigid_motion_series(ph: EPIPhantom, *, n_volumes: int = 12, seed: int = 0,
                        rotation_deg: float = 1.0, translation_mm: float = 1.0, noise: float = 0.01,
                        profile_samples: int = 3) -> MovingSeries:
    """The EPI phantom's series re-acquired with rigid 3D motion and slice timing (module doc)."""
    from spinereg.epi.distortion import pe_axis

    rng = np.random.default_rng(seed)
    grid = ph.epi.grid
    nx, ny, nz = grid.shape
    tr = float(ph.params["tr_s"])
    timing = np.asarray(ph.slice_timing, float)
    times = np.arange(n_volumes)[:, None] * tr + timing[None, :]
    traj = _trajectory(times, rng, tr, n_volumes, rotation_deg, translation_mm)
    axis, sign = pe_axis(ph.pe)
    pe_vec = grid.affine[:3, axis]
    readout = float(ph.readout_s)
    c0 = grid.center_world()
    cord = np.asarray(ph.epi_seg.data) > 0
    data = np.empty((nx, ny, nz, n_volumes), np.float32)
    disp = np.zeros((n_volumes, nz, 2))
    thru = np.zeros((n_volumes, nz))
    ijk0 = grid.voxel_coords()  # C order: k varies fastest
    kk = ijk0[:, 2].astype(int)
    prof = (np.arange(profile_samples) + 0.5) / profile_samples - 0.5
    centres = {k: np.append(np.argwhere(cord[:, :, k]).mean(0), k) for k in range(nz) if cord[:, :, k].any()}
    for t in range(n_volumes):
        rots = np.stack([rotation_matrix(traj[t, k, 3:]) for k in range(nz)])  # (nz, 3, 3)
        trans = traj[t, :, :3]
        rot_p, trans_p = rots[kk], trans[kk]

        def ref_point(p: np.ndarray, rot_p: np.ndarray = rot_p,
                      trans_p: np.ndarray = trans_p) -> np.ndarray:
            # scanner point -> reference anatomy point (each slice at its own time)
            return np.einsum("nij,ni->nj", rot_p, p - c0 - trans_p) + c0

        acc = np.zeros(len(ijk0))
        for dz in prof:
            y = grid.voxel_to_world(ijk0 + np.array([0.0, 0.0, dz]))
            r = y.copy()
            for _ in range(30):  # distortion: find r with r + vsm(r) pe = y
                r_new = y - (ph.field_at(ref_point(r)) * readout * sign)[:, None] * pe_vec
                done = np.abs(r_new - r).max(initial=0.0) < 1e-6
                r = r_new
                if done:
                    break
            h = 0.01
            dv = (ph.field_at(ref_point(r + h * pe_vec)) - ph.field_at(ref_point(r - h * pe_vec))) \
                * readout * sign / (2 * h)
            acc += ph.signal_at(ref_point(r), "epi") / np.clip(1.0 + dv, 0.05, None)
        data[..., t] = (acc / len(prof)).reshape(nx, ny, nz)
        for k, ck in centres.items():
            p = grid.voxel_to_world(ck[None])[0]
            moved = rots[k] @ (p - c0) + c0 + trans[k]
            disp[t, k] = (moved - p)[:2]  # world mm (RAS x, y), as EPIPhantom.motion
            thru[t, k] = (moved - p)[2]
    if noise > 0:
        re = data + rng.normal(0, noise, data.shape)
        data = np.sqrt(re**2 + rng.normal(0, noise, data.shape) ** 2).astype(np.float32)
    params = {"n_volumes": n_volumes, "seed": seed, "rotation_deg": rotation_deg, "translation_mm": translation_mm,
              "noise": noise, "profile_samples": profile_samples,
              "max_inplane_mm": float(np.abs(disp).max()), "max_through_plane_mm": float(np.abs(thru).max())}
    return MovingSeries(Image(data, grid.affine), list(ph.slice_timing), disp, thru, traj, params)


def degrade_fieldmap(fieldmap_hz: Image, *, seed: int = 0,
                     voxel_mm: Sequence[float] = (2.5, 2.5, 4.0), noise_hz: float = 6.0,
                     smooth_mm: float = 2.0, offset_mm: Sequence[float] = (0.5, 1.5, 1.0),
                     rotation_deg: Sequence[float] = (1.0, 0.0, 2.0),
                     body: np.ndarray | None = None) -> tuple[Image, dict]:
    """A measured-like field map made from an exact one (any phantom): the field moved by a rigid
    offset (the subject moved since the EPI), re-sampled on a coarser grid of ``voxel_mm`` (mean of
    3 x 3 x 3 trilinear samples per voxel), with Gaussian noise of ``noise_hz`` and smoothing of
    ``smooth_mm``; zero outside ``body`` (a mask on the exact map's grid; default: where the exact
    field is non-zero). Returns the field (Hz) on its own grid and a record."""
    from spinereg.io.resample import VolumeSampler

    rng = np.random.default_rng(seed)
    src = fieldmap_hz.grid
    voxel = np.asarray(voxel_mm, float)
    ext = np.array(src.shape) * src.zooms
    shape = np.maximum(1, np.ceil(ext / voxel).astype(int) + 2)
    grid = _axial_grid(shape, voxel, src.center_world() + rng.uniform(-0.5, 0.5, 3) * voxel)
    rot, t, c0 = rotation_matrix(rotation_deg), np.asarray(offset_mm, float), src.center_world()
    mask = (np.asarray(fieldmap_hz.data) != 0) if body is None else np.asarray(body, bool)
    s_f = VolumeSampler(np.asarray(fieldmap_hz.data, np.float32), "linear", cval=0.0)
    s_m = VolumeSampler(mask.astype(np.float32), "linear", cval=0.0)
    offs = np.stack(np.meshgrid(*[(np.arange(3) - 1) / 3.0] * 3, indexing="ij"), -1).reshape(-1, 3)
    x = grid.world_coords()
    hz, inside = np.zeros(len(x)), np.zeros(len(x))
    for o in offs:
        p = x + (o * voxel) @ np.abs(grid.affine[:3, :3] / voxel).T
        a = (p - c0 - t) @ rot + c0
        ijk = src.world_to_voxel(a)
        hz += s_f.at_voxels(ijk)
        inside += s_m.at_voxels(ijk)
    hz, inside = (hz / len(offs)).reshape(grid.shape), (inside / len(offs)).reshape(grid.shape)
    hz = hz + rng.normal(0, noise_hz, hz.shape)
    if smooth_mm > 0:
        hz = ndimage.gaussian_filter(hz, smooth_mm / voxel)
    hz = np.where(inside > 0.5, hz, 0.0)
    record = {"voxel_mm": voxel.tolist(), "noise_hz": noise_hz, "smooth_mm": smooth_mm, "offset_mm": t.tolist(),
              "rotation_deg": list(rotation_deg)}
    return Image(hz.astype(np.float32), grid.affine), record
