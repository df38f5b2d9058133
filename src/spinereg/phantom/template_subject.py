"""A synthetic subject made by warping a template (PAM50) with a known, realistic deformation.

The deformation is defined analytically as a *push* ``P`` from template points to subject
points (world RAS+ mm), composed of, in order:

1. a smooth axial twist of the cross-sections (a few degrees, varying along the cord);
2. a smooth random in-plane jitter of the cross-sections along S-I (a few mm) plus a small
   3D random smooth field (sums of random Fourier modes, < 1 mm);
3. an S-I stretch along the cord: a global scale times ``1 + a(t)`` where ``a`` varies smoothly
   (+-5-8 %) so that two landmarks cannot fix the S-I correspondence far from them;
4. an A-P bend of the cord (lordosis/kyphosis, ~8-14 mm over the covered length): each
   cross-section is rotated into the plane normal to the bent centreline near the cord (a
   bending, not a shear), blending into a shear far from it (so the map never folds);
5. a small global rotation (a few degrees) and a translation into scanner coordinates.

The subject's images are resampled from the template through the *pull* field
``true_subject2template`` (subject grid, subject point -> template point), obtained by
inverting ``P`` by fixed-point iteration on a coarse grid and interpolating (the map is smooth at
the scale of centimetres). Point labels are pushed with ``P`` itself. Everything is float32,
slab by slab, and deterministic for a given seed (parameters are recorded in ``params``).

:func:`mapping_error` compares an estimated subject->template pull transform (for example
``TemplateRegistration.template2anat`` or a ``warp_template2anat`` file) with the truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image, save_image
from spinereg.io.resample import VolumeSampler, place_labels, slice_like
from spinereg.transforms.base import Transform
from spinereg.transforms.displacement import DisplacementField

_AXIS_OF = {"L": (0, -1.0), "R": (0, 1.0), "P": (1, -1.0), "A": (1, 1.0), "I": (2, -1.0), "S": (2, 1.0)}
_REGION_PREFIX = {"C": 0, "T": 7, "L": 19, "S": 24}


def level_number(level: int | str) -> int:
    """Vertebral level number as PAM50 values it: ``"C1"`` = 1 ... ``"C7"`` = 7, ``"T1"`` = 8, ..."""
    if isinstance(level, int | np.integer):
        return int(level)
    text = str(level).strip().upper()
    if text.isdigit():
        return int(text)
    if len(text) >= 2 and text[0] in _REGION_PREFIX and text[1:].isdigit():
        return _REGION_PREFIX[text[0]] + int(text[1:])
    raise ValueError(f"unknown vertebral level {level!r} (use e.g. 'C3', 'T6' or 3)")


def grid_from_codes(shape: Sequence[int], voxel_mm: float, codes: str, center: np.ndarray) -> Grid:
    """An axis-aligned grid of ``shape`` with nibabel orientation ``codes`` centred on ``center``."""
    lin = np.zeros((3, 3))
    for vox_axis, code in enumerate(codes.upper()):
        world_axis, sign = _AXIS_OF[code]
        lin[world_axis, vox_axis] = sign * voxel_mm
    if sorted(int(np.flatnonzero(lin[:, j])[0]) for j in range(3)) != [0, 1, 2]:
        raise ValueError(f"orientation {codes!r} must name each of L/R, A/P, S/I once")
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = np.asarray(center, float) - lin @ ((np.asarray(shape, float) - 1) / 2)
    return Grid(tuple(int(s) for s in shape), aff)


def _euler(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class TemplateDeformation:
    """The analytic template->subject push ``P`` (see the module docstring) and its inverse.

    All lengths in mm, angles in degrees, wavelengths in mm. ``center`` is the template point
    (on the cord) that is the origin of the cord-local coordinates.
    """

    center: np.ndarray
    scale: float
    stretch: list[tuple[float, float, float]]  # (amplitude, wavelength, phase) of a(t)
    twist: tuple[float, float, float]  # (amplitude deg, wavelength, phase)
    jitter: list[list[tuple[float, float, float]]]  # per in-plane axis: (amp, wavelength, phase)
    field_modes: list[list[tuple[float, float, float, float, float]]]  # per axis: amp, kx, ky, kz, phase
    bend: tuple[float, float, float]  # (amplitude, wavelength, phase) of the A-P bend b(s)
    bend_radius: float
    rotation_deg: tuple[float, float, float]
    translation: np.ndarray

    @classmethod
    def random(cls, center: np.ndarray, rng: np.random.Generator, *, bend_mm: float = 11.0,
               stretch: float = 0.07, jitter_mm: float = 1.2, field_mm: float = 0.3,
               twist_deg: float = 3.0, rotation_deg: float = 4.0, scale_range: float = 0.03) -> TemplateDeformation:
        """Draw the deformation's parameters from ``rng`` (sizes as documented above)."""
        wl = rng.uniform([90.0, 160.0], [130.0, 240.0])
        amp = stretch * np.array([0.6, 0.4]) * rng.choice([-1.0, 1.0], 2)
        st = [(float(a), float(w), float(p)) for a, w, p in zip(amp, wl, rng.uniform(0, 2 * np.pi, 2), strict=True)]
        jit = [[(float(rng.uniform(0.5, 1.0) * jitter_mm), float(rng.uniform(40, 120)), float(rng.uniform(0, 2 * np.pi)))
                for _ in range(3)] for _ in range(2)]
        modes = []
        for _ in range(3):
            axis_modes = []
            for _ in range(4):
                direction = rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                k = 2 * np.pi / rng.uniform(40.0, 80.0) * direction
                axis_modes.append((float(rng.uniform(0.5, 1.0) * field_mm), *map(float, k),
                                   float(rng.uniform(0, 2 * np.pi))))
            modes.append(axis_modes)
        return cls(
            center=np.asarray(center, float),
            scale=float(1.0 + rng.uniform(-scale_range, scale_range)),
            stretch=st,
            twist=(float(rng.uniform(0.5, 1.0) * twist_deg), float(rng.uniform(120, 250)),
                   float(rng.uniform(0, 2 * np.pi))),
            jitter=jit,
            field_modes=modes,
            bend=(float(rng.uniform(0.75, 1.25) * bend_mm), float(rng.uniform(240, 300)),
                  float(rng.uniform(-0.4, 0.4))),
            bend_radius=30.0,
            rotation_deg=tuple(float(v) for v in rng.uniform(-rotation_deg, rotation_deg, 3)),
            translation=rng.uniform([-5.0, -20.0, -15.0], [5.0, 20.0, 15.0]) + np.array([0.0, 40.0, 200.0]),
        )

    # -- 1D profiles along the cord ------------------------------------------------------------
    def arc(self, t: np.ndarray) -> np.ndarray:
        """Subject arc position ``s`` of template S-I offset ``t``: ``scale * (t + int a)``."""
        s = np.asarray(t, float).copy()
        for amp, wl, ph in self.stretch:
            w = 2 * np.pi / wl
            s += amp * (np.cos(ph) - np.cos(w * t + ph)) / w
        return self.scale * s

    def stretch_rate(self, t: np.ndarray) -> np.ndarray:
        """``ds/dt``: local S-I scaling of the cord (1 = no stretch)."""
        a = np.ones_like(np.asarray(t, float))
        for amp, wl, ph in self.stretch:
            a += amp * np.sin(2 * np.pi / wl * t + ph)
        return self.scale * a

    def bend_offset(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A-P offset ``b(s)`` of the subject centreline and its slope ``b'(s)``."""
        amp, wl, ph = self.bend
        w = 2 * np.pi / wl
        return amp * np.cos(w * s + ph), -amp * w * np.sin(w * s + ph)

    # -- the map ------------------------------------------------------------------------------
    @property
    def rotation(self) -> np.ndarray:
        return _euler(self.rotation_deg)

    def push(self, points: np.ndarray) -> np.ndarray:
        """Template points (N, 3) -> subject points (N, 3), world mm."""
        y = np.asarray(points, float)
        rel = y - self.center
        rx, ry, t = rel[:, 0], rel[:, 1], rel[:, 2]
        amp, wl, ph = self.twist
        phi = np.deg2rad(amp) * np.sin(2 * np.pi / wl * t + ph)
        c, s_ = np.cos(phi), np.sin(phi)
        qx, qy = c * rx - s_ * ry, s_ * rx + c * ry
        for d, q in ((0, qx), (1, qy)):
            for a, w, p in self.jitter[d]:
                q += a * np.sin(2 * np.pi / w * t + p)
        wz = np.zeros_like(t)
        for d, q in ((0, qx), (1, qy), (2, wz)):
            for a, kx, ky, kz, p in self.field_modes[d]:
                q += a * np.sin(kx * rel[:, 0] + ky * rel[:, 1] + kz * rel[:, 2] + p)
        s = self.arc(t) + wz
        b, db = self.bend_offset(s)
        theta = np.arctan(db)
        taper = np.exp(-(qx**2 + qy**2) / (2 * self.bend_radius**2))
        local = np.stack([qx, b + qy * (1 - (1 - np.cos(theta)) * taper), s - qy * np.sin(theta) * taper], axis=1)
        return local @ self.rotation.T + self.translation

    def pull(self, points: np.ndarray, iterations: int = 40, tol_mm: float = 1e-4) -> np.ndarray:
        """Subject points -> template points (``push``'s inverse, fixed-point iteration)."""
        x = np.asarray(points, float)
        rot = self.rotation
        local = (x - self.translation) @ rot  # R^T (x - t0), row-wise
        s = local[:, 2]
        b, _ = self.bend_offset(s)
        y = self.center + np.stack([local[:, 0], local[:, 1] - b, s / self.scale], axis=1)
        for _ in range(iterations):
            step = (x - self.push(y)) @ rot
            step[:, 2] /= self.scale
            y += step
            if np.abs(step).max(initial=0.0) < tol_mm:
                break
        return y

    def as_dict(self) -> dict:
        return {
            "center": [float(v) for v in self.center], "scale": self.scale,
            "stretch": [list(v) for v in self.stretch], "twist": list(self.twist),
            "jitter": [[list(v) for v in ax] for ax in self.jitter],
            "field_modes": [[list(v) for v in ax] for ax in self.field_modes],
            "bend": list(self.bend), "bend_radius": self.bend_radius,
            "rotation_deg": list(self.rotation_deg), "translation": [float(v) for v in self.translation],
        }


class _PushTransform(Transform):
    """``P`` as a pull transform on the template grid (template point -> subject point)."""

    def __init__(self, deformation: TemplateDeformation):
        self.deformation = deformation

    def map(self, points: np.ndarray) -> np.ndarray:
        return self.deformation.push(points)

    def inverse_map(self, points: np.ndarray) -> np.ndarray:
        return self.deformation.pull(points)

    def inverse(self) -> Transform:
        raise NotImplementedError("use TemplateSubject.true_subject2template")


@dataclass
class TemplateSubject:
    """A synthetic subject: images on ``grid`` and the true mappings to the template.

    ``true_subject2template`` is the pull field on the subject grid (subject point -> template
    point; SCT's ``warp_template2anat``). ``template_region`` is the template sub-grid the
    subject covers.
    """

    t2: Image
    seg: Image
    levels: Image
    labels: Image
    true_subject2template: DisplacementField
    deformation: TemplateDeformation
    template_region: Grid
    template: str
    params: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def grid(self) -> Grid:
        return self.t2.grid

    def true_template2subject(self, grid: Grid | None = None) -> DisplacementField:
        """Pull field on ``grid`` (default: the covered template region at 1 mm) mapping template
        points to subject points (SCT's ``warp_anat2template``), exact (analytic)."""
        g = grid or self.template_region.coarsened(2)
        return DisplacementField.from_transform(_PushTransform(self.deformation), g)

    def save(self, folder: str | Path, overwrite: bool = True) -> dict[str, Path]:
        """Write ``t2``, ``seg``, ``labels``, ``levels``, both true warps (ITK/ANTs) and
        ``phantom.json`` (parameters, seed) into ``folder``."""
        from spinereg.transforms.itk import write_displacement

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "t2": save_image(self.t2, out / "t2.nii.gz", overwrite=overwrite),
            "seg": save_image(self.seg, out / "seg.nii.gz", overwrite=overwrite),
            "labels": save_image(self.labels, out / "labels.nii.gz", overwrite=overwrite),
            "levels": save_image(self.levels, out / "levels.nii.gz", overwrite=overwrite),
            "true_warp_template2anat": write_displacement(
                self.true_subject2template, out / "true_warp_template2anat.nii.gz", overwrite),
            "true_warp_anat2template": write_displacement(
                self.true_template2subject(), out / "true_warp_anat2template.nii.gz", overwrite),
        }
        meta = {**self.params, "deformation": self.deformation.as_dict(),
                "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
                "files": {k: p.name for k, p in files.items()}}
        path = out / "phantom.json"
        path.write_text(json.dumps(meta, indent=1))
        files["json"] = path
        return files


def _upsample(data: np.ndarray, stride: int, shape: Sequence[int]) -> np.ndarray:
    """Trilinear interpolation of node values on a ``stride``-coarsened grid onto the fine grid
    (separable: one 1D linear interpolation per axis)."""
    out = data
    for axis, n in enumerate(shape):
        pos = np.arange(n) / stride
        i0 = np.minimum(np.floor(pos).astype(int), out.shape[axis] - 1)
        i1 = np.minimum(i0 + 1, out.shape[axis] - 1)
        w = (pos - i0).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i1, axis=axis) * w
    return out


def _label_points(path: Path) -> dict[int, np.ndarray]:
    img = load_image(path, ndim=3, check_finite=False, what="template label file")
    data = np.asarray(img.data)
    idx = np.argwhere(data > 0)
    vals = data[tuple(idx.T)].astype(int)
    pts = img.grid.voxel_to_world(idx)
    return {int(v): pts[vals == v].mean(axis=0) for v in np.unique(vals)}


def make_template_subject(
    template: str = "PAM50",
    voxel_mm: float = 0.8,
    shape: Sequence[int] | None = None,
    levels: tuple[int | str, int | str] = ("C1", "T6"),
    *,
    orientation: str = "LPI",
    fov_inplane_mm: tuple[float, float] = (51.2, 256.0),
    margin_mm: float = 9.0,
    bend_mm: float = 11.0,
    stretch: float = 0.07,
    jitter_mm: float = 1.2,
    rotation_deg: float = 4.0,
    seed: int = 0,
    noise: float = 0.02,
    body_labels: Sequence[int] = (3, 5),
    coarse_mm: float = 3.2,
) -> TemplateSubject:
    """Warp a template into a synthetic subject with a known smooth deformation.

    Parameters
    ----------
    template: template name or folder (needs cord, levels, body labels; csf/wm/gm for the T2).
    voxel_mm: isotropic voxel size of the subject.
    shape: voxel counts in ``orientation`` order; default: ``fov_inplane_mm`` (L-R, A-P) over
        ``voxel_mm`` and the S-I length of ``levels`` (+ ``margin_mm`` each end) in the subject.
        With the defaults: 64 x 320 x ~320 voxels (sagittal-like, S-I last).
    levels: first and last vertebral level covered (body label positions in the template).
    orientation: nibabel axis codes of the subject's voxel axes (``LPI`` = x to the left, y
        posterior, z inferior).
    bend_mm, stretch, jitter_mm, rotation_deg: sizes of the deformation (A-P bend amplitude,
        local S-I stretch amplitude as a fraction, in-plane jitter, global rotation per axis).
    seed: seeds every random choice (deformation parameters and noise).
    noise: Rician noise sigma relative to the CSF intensity (1.0) of the T2 image.
    body_labels: vertebral body label values written (one voxel each) into ``labels``.
    coarse_mm: spacing of the grid on which the inverse is solved before interpolation.
    """
    from spinereg.io.template import load_template
    from spinereg.register.contrast import TISSUE_INTENSITY, synthesize_contrast

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    tpl = load_template(template)
    body = _label_points(tpl.path("body"))
    lv = [level_number(v) for v in levels]
    missing = [v for v in (*lv, *body_labels) if v not in body]
    if missing:
        raise ValueError(f"template {tpl.name} has no body label for level(s) {missing}")
    z_top = max(body[lv[0]][2], body[lv[1]][2]) + margin_mm
    z_bot = min(body[lv[0]][2], body[lv[1]][2]) - margin_mm
    center = np.array([*np.mean([body[v][:2] for v in lv], axis=0), (z_top + z_bot) / 2])
    deform = TemplateDeformation.random(center, rng, bend_mm=bend_mm, stretch=stretch, jitter_mm=jitter_mm,
                                        rotation_deg=rotation_deg)

    # subject grid: around the pushed centreline, A-P centre 15 mm anterior to the cord
    zs = np.linspace(z_bot, z_top, 64)
    cl = deform.push(np.column_stack([np.full_like(zs, center[0]), np.full_like(zs, center[1]), zs]))
    codes = orientation.upper()
    world_axis = [_AXIS_OF[c][0] for c in codes]
    if shape is None:
        si_len = float(np.ptp(cl[:, 2]))
        fov = {0: fov_inplane_mm[0], 1: fov_inplane_mm[1], 2: si_len}
        shape = tuple(int(round(fov[a] / voxel_mm)) for a in world_axis)
    gcenter = cl.mean(axis=0) + deform.rotation @ np.array([0.0, 15.0, 0.0])
    grid = grid_from_codes(shape, voxel_mm, codes, gcenter)
    times["setup"] = time.perf_counter() - t0

    # true pull field: solve P(y) = x on a coarse grid, interpolate onto the subject grid
    t1 = time.perf_counter()
    stride = max(1, int(round(coarse_mm / voxel_mm)))
    coarse = grid.coarsened(stride)
    xc = coarse.world_coords()
    yc = deform.pull(xc)
    res = float(np.abs(deform.push(yc) - xc).max())
    truth = DisplacementField(grid, _upsample((yc - xc).reshape(*coarse.shape, 3).astype(np.float32),
                                              stride, grid.shape))
    times["truth"] = time.perf_counter() - t1

    # template images on the covered region
    t2_ = time.perf_counter()
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    region = tcord.grid.bounding_subgrid(yc, margin_mm=5.0)
    cord_r = slice_like(tcord, region)
    levels_img = load_image(tpl.path("levels"), ndim=3, check_finite=False)
    levels_r = slice_like(levels_img, region, dtype=None)
    del levels_img
    tint = synthesize_contrast(tpl, "t2", cord=tcord, region=region)
    del tcord
    bg = float(TISSUE_INTENSITY["t2"]["background"])
    times["template"] = time.perf_counter() - t2_

    # resample slab by slab
    t3 = time.perf_counter()
    samplers = (VolumeSampler(cord_r, "linear"), VolumeSampler(levels_r, "nn"),
                VolumeSampler(np.asarray(tint.data, np.float32), "linear", cval=bg))
    t2_out = np.empty(grid.shape, np.float32)
    seg_out = np.empty(grid.shape, np.uint8)
    lev_out = np.empty(grid.shape, levels_r.dtype)
    sigma = float(noise)
    for k0, k1 in grid.chunks():
        x = grid.world_coords(k0, k1)
        y = x + truth.data[:, :, k0:k1].reshape(-1, 3)
        ijk = region.world_to_voxel(y)
        sh = (grid.shape[0], grid.shape[1], k1 - k0)
        seg_out[:, :, k0:k1] = (samplers[0].at_voxels(ijk) > 0.5).reshape(sh)
        lev_out[:, :, k0:k1] = samplers[1].at_voxels(ijk).reshape(sh)
        clean = samplers[2].at_voxels(ijk).astype(np.float32)
        if sigma > 0:
            n1 = rng.standard_normal(clean.shape, dtype=np.float32)
            n2 = rng.standard_normal(clean.shape, dtype=np.float32)
            clean = np.sqrt((clean + sigma * n1) ** 2 + (sigma * n2) ** 2)
        t2_out[:, :, k0:k1] = clean.reshape(sh)
    del samplers, cord_r, levels_r, tint

    vals = np.array([int(v) for v in body_labels])
    pts = deform.push(np.array([body[v] for v in vals]))
    lab_out = place_labels(pts, vals, grid, dtype=np.uint8)
    times["resample"] = time.perf_counter() - t3
    times["total"] = time.perf_counter() - t0

    aff = grid.affine
    params = {
        "template": tpl.name, "voxel_mm": float(voxel_mm), "shape": list(grid.shape), "orientation": codes,
        "levels": [str(v) for v in levels], "seed": int(seed), "noise": sigma, "body_labels": vals.tolist(),
        "bend_mm": bend_mm, "stretch": stretch, "jitter_mm": jitter_mm, "rotation_deg": rotation_deg,
        "coarse_stride": stride, "inverse_residual_mm": res,
        "template_region": {"shape": list(region.shape), "affine": region.affine.tolist()},
        "body_label_points_subject": {int(v): p.round(3).tolist() for v, p in zip(vals, pts, strict=True)},
    }
    return TemplateSubject(
        t2=Image(t2_out, aff), seg=Image(seg_out, aff), levels=Image(lev_out, aff),
        labels=Image(lab_out, aff), true_subject2template=truth, deformation=deform,
        template_region=region, template=tpl.name, params=params, timings=times,
    )


# -- error of an estimated mapping ---------------------------------------------------------------
def _stats(err: np.ndarray) -> dict:
    fin = err[np.isfinite(err)]
    if not fin.size:
        return {"mean_mm": float("nan"), "p95_mm": float("nan"), "max_mm": float("nan"), "n": 0,
                "n_undefined": int(err.size)}
    return {"mean_mm": float(fin.mean()), "p95_mm": float(np.percentile(fin, 95)), "max_mm": float(fin.max()),
            "n": int(fin.size), "n_undefined": int(err.size - fin.size)}


def _errors(estimate: Transform, truth: DisplacementField, ijk: np.ndarray, within: Grid | None = None,
            chunk: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Errors at voxels ``ijk`` of the truth grid, and whether each true point is in ``within``."""
    grid = truth.grid
    out = np.empty(len(ijk))
    inside = np.ones(len(ijk), bool)
    for a in range(0, len(ijk), chunk):
        idx = ijk[a:a + chunk]
        x = grid.voxel_to_world(idx)
        true_y = x + truth.data[tuple(idx.astype(int).T)]
        out[a:a + chunk] = np.linalg.norm(estimate.map(x) - true_y, axis=1)
        if within is not None:
            v = within.world_to_voxel(true_y)
            inside[a:a + chunk] = np.all((v >= -0.5) & (v <= np.array(within.shape) - 0.5), axis=1)
    return out, inside


def mapping_error(
    estimate: Transform,
    truth: DisplacementField,
    mask: Image | np.ndarray | None = None,
    *,
    levels: Image | np.ndarray | None = None,
    fov_stride: int = 2,
    fov_within: Grid | None = None,
    si_bin_mm: float = 20.0,
) -> dict:
    """Distance (mm) between estimated and true template points of subject voxels.

    ``estimate`` and ``truth`` pull subject points to template points (``warp_template2anat``;
    ``TemplateRegistration.template2anat``); ``truth`` is on the subject grid. The top-level
    ``mean_mm`` / ``p95_mm`` / ``max_mm`` are over the voxels of ``mask`` (``> 0.5``; the whole
    grid if None); ``fov`` gives the same over the whole field of view (every ``fov_stride``-th
    voxel per axis); ``per_level`` the mask means by value of ``levels`` (subject levels
    image), ``per_si_bin`` by ``si_bin_mm`` bins of the subject's world S-I coordinate (bin
    start, mm). With ``fov_within`` (e.g. the template's grid), ``fov_in_template`` restricts
    the field-of-view statistics to voxels whose true template point lies in that grid (far
    from the spine the subject has no template counterpart, so any estimate is arbitrary there).
    Points the estimate leaves undefined (NaN) are counted in ``n_undefined``.
    """
    grid = truth.grid
    out: dict = {}
    if mask is not None:
        m = np.asarray(mask.data if isinstance(mask, Image) else mask) > 0.5
        if m.shape != tuple(grid.shape):
            raise ValueError(f"mask shape {m.shape} is not the truth grid's {grid.shape}")
        ijk = np.argwhere(m)
        err, _ = _errors(estimate, truth, ijk)
        out.update(_stats(err))
        if levels is not None:
            lv = np.asarray(levels.data if isinstance(levels, Image) else levels)[tuple(ijk.T)].astype(int)
            out["per_level"] = {int(v): float(np.nanmean(err[lv == v])) for v in np.unique(lv) if v > 0}
        z = grid.voxel_to_world(ijk)[:, 2]
        bins = np.floor(z / si_bin_mm).astype(int)
        out["per_si_bin"] = {float(b * si_bin_mm): float(np.nanmean(err[bins == b])) for b in np.unique(bins)}
    sub = np.stack(np.meshgrid(*[np.arange(0, n, fov_stride) for n in grid.shape], indexing="ij"), -1)
    err, inside = _errors(estimate, truth, sub.reshape(-1, 3), fov_within)
    fov = _stats(err)
    fov["stride"] = int(fov_stride)
    out["fov"] = fov
    if fov_within is not None:
        out["fov_in_template"] = {**_stats(err[inside]), "stride": int(fov_stride)}
    if mask is None:
        out.update({k: v for k, v in fov.items() if k != "stride"})
    return out
