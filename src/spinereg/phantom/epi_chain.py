"""An EPI -> T2*w -> T2w -> template phantom with the true mapping of every EPI voxel.

Built on :func:`~spinereg.phantom.template_subject.make_template_subject` (a T2w subject made by
warping PAM50 with a known smooth deformation ``P``; its pull ``P^-1`` maps T2w points to
template points). Two more acquisitions of the same subject are derived through *known*
transforms, their intensities painted from the template's tissue maps (cord, CSF, WM, GM, spine)
sampled at the true template point of every sub-sample (no resampling of the T2w image):

* **T2*w** (axial, 0.5 x 0.5 x 5 mm, LAS): the subject moved by a small rigid transform;
  ``t2s_to_t2w`` (pull on the T2*w grid) maps T2*w points to T2w points. Contrast T2*-like
  (grey matter brighter than white matter, bone dark); slice profile 5 mm (sub-sampled).
* **GE-EPI mean** (axial, 1 x 1 x 5 mm, LAS, phase encoding ``pe`` = A-P): a further small rigid
  transform ``epi_to_t2s`` (pull on the undistorted EPI grid: EPI points -> T2*w points), then
  distortion along PE by a smooth B0 field attached to the anatomy: differences of Gaussians at
  the vertebral disc interfaces just anterior to the cord (sign flip across each disc, discs from
  the template's disc labels) plus a weak linear gradient, defined in template coordinates and
  scaled so that its largest magnitude on the EPI grid is ``field_max_hz``. With
  ``vsm = field * readout_s * sign(pe)`` (:mod:`spinereg.epi.distortion`) a tissue point at
  undistorted voxel ``r`` appears at ``r + vsm(r)`` with intensity divided by ``1 + dvsm/dpe``;
  the distorted image is computed analytically (sampling the tissue at the undistorted point of
  every distorted voxel, ``r = y + w(y)`` with ``w`` the inverse shift), with Rician noise.

Truth (pull fields, ``ChainResult.template2image`` convention: an image's points -> template
points): ``true_template2epi`` on the EPI grid for the *distorted* EPI voxels (EPI voxel ->
undistorted EPI point -> T2*w -> T2w -> template), ``true_template2epi_undistorted`` (the same
without the distortion: what the distortion-corrected EPI should map to), ``true_template2t2s``,
and the T2w subject's ``true_subject2template``. The field (Hz) and VSM are on the EPI grid at
undistorted voxel positions (what :func:`~spinereg.epi.fieldmap.correct_fieldmap` expects).
Everything is deterministic for a given seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from spinereg.epi.distortion import invert_shift, jacobian, pe_axis, vsm_to_field
from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.io.resample import VolumeSampler, slice_like
from spinereg.phantom.template_subject import (
    TemplateSubject,
    _label_points,
    make_template_subject,
)
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.displacement import DisplacementField

if TYPE_CHECKING:
    from spinereg.io.template import Template

#: tissue intensities (background soft tissue, bone, CSF, WM, GM) of the derived contrasts
CHAIN_CONTRASTS = {
    "t2s": {"background": 0.35, "bone": 0.12, "csf": 0.90, "wm": 0.42, "gm": 0.68},
    "epi": {"background": 0.40, "bone": 0.20, "csf": 0.95, "wm": 0.55, "gm": 0.66},
}
_DISC_HALF_MM = 2.5  # half height of an intervertebral disc (field sources at its two interfaces)
_FIELD_SIGMA_Z = 3.0  # S-I extent of one interface's field (mm)
_FIELD_SIGMA_XY = (8.0, 6.0)  # L-R, A-P extent of the field around the vertebral body (mm)
_FIELD_ANTERIOR_MM = 5.0  # centre of the field anterior to the cord centre (mm)


def _axial_grid(shape: Sequence[int], voxel_mm: Sequence[float], center: np.ndarray) -> Grid:
    """LAS axial grid (nibabel codes; SCT's RPI) centred on ``center``."""
    lin = np.diag([-float(voxel_mm[0]), float(voxel_mm[1]), float(voxel_mm[2])])
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = np.asarray(center, float) - lin @ ((np.asarray(shape, float) - 1) / 2)
    return Grid(tuple(int(s) for s in shape), aff)


def _subsample_offsets(grid: Grid, n_inplane: int, n_z: int) -> np.ndarray:
    """World offsets (M, 3) of ``n_inplane**2 * n_z`` sub-samples evenly filling one voxel."""
    def centres(n: int) -> np.ndarray:
        return (np.arange(n) + 0.5) / n - 0.5

    ijk = np.stack(np.meshgrid(centres(n_inplane), centres(n_inplane), centres(n_z), indexing="ij"), -1)
    return ijk.reshape(-1, 3) @ grid.affine[:3, :3].T


def _rician(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return img.astype(np.float32)
    re = img + sigma * rng.standard_normal(img.shape)
    im = sigma * rng.standard_normal(img.shape)
    return np.sqrt(re**2 + im**2).astype(np.float32)


@dataclass
class _TemplateTissue:
    """Painted template contrasts and the cord map on a template sub-grid, sampled at world points."""

    region: Grid
    samplers: dict[str, VolumeSampler]

    @classmethod
    def load(cls, tpl: Template, points: np.ndarray, contrasts: Sequence[str]) -> _TemplateTissue:
        from scipy import ndimage

        from spinereg.io.image import load_image

        cord_img = load_image(tpl.path("cord"), ndim=3, check_finite=False)
        region = cord_img.grid.bounding_subgrid(points, margin_mm=4.0)
        maps = {"cord": np.clip(slice_like(cord_img, region), 0, 1)}
        for role in ("csf", "wm", "gm", "spine"):
            maps[role] = (np.clip(slice_like(load_image(tpl.path(role), ndim=3, check_finite=False), region), 0, 1)
                          if tpl.has(role) else np.zeros_like(maps["cord"]))
        samplers = {"cord": VolumeSampler(maps["cord"], "linear")}
        for name in contrasts:
            t = CHAIN_CONTRASTS[name]
            bg = t["background"]
            out = bg + maps["spine"] * (t["bone"] - bg) + maps["csf"] * (t["csf"] - bg)
            inside = maps["wm"] + maps["gm"]
            wmgm = (maps["wm"] * t["wm"] + maps["gm"] * t["gm"]) / np.maximum(inside, 1e-3)
            cord_val = np.where(inside > 1e-3, wmgm, 0.5 * (t["wm"] + t["gm"]))
            out = out * (1 - maps["cord"]) + maps["cord"] * cord_val
            samplers[name] = VolumeSampler(ndimage.gaussian_filter(out, 0.5).astype(np.float32), "linear", cval=bg)
        return cls(region, samplers)

    def sample(self, name: str, template_points: np.ndarray) -> np.ndarray:
        return self.samplers[name].at_voxels(self.region.world_to_voxel(template_points))


@dataclass
class _FieldModel:
    """B0 field (Hz) as a function of template points (attached to the anatomy)."""

    cord_xy: np.ndarray  # template cord centre (x, y), PAM50 is straight
    sources: list[tuple[float, float]]  # (z of a disc interface, signed amplitude)
    gradient: tuple[float, float]  # Hz per mm along A-P (y) and S-I (z), before scaling
    scale: float = 1.0

    def raw(self, t: np.ndarray) -> np.ndarray:
        dx = t[:, 0] - self.cord_xy[0]
        dy = t[:, 1] - self.cord_xy[1]
        sx, sy = _FIELD_SIGMA_XY
        g_xy = np.exp(-(dx**2 / (2 * sx**2) + (dy - _FIELD_ANTERIOR_MM) ** 2 / (2 * sy**2)))
        f = np.zeros(len(t))
        for zc, amp in self.sources:
            f += amp * np.exp(-((t[:, 2] - zc) ** 2) / (2 * _FIELD_SIGMA_Z**2))
        gy, gz = self.gradient
        return f * g_xy + gy * dy + gz * (t[:, 2] - np.mean([s[0] for s in self.sources]))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return self.scale * self.raw(t)


@dataclass
class EpiChainPhantom:
    """Images and ground truth of :func:`make_epi_chain_phantom` (see the module docstring)."""

    subject: TemplateSubject  # T2w anatomy (``t2``/``image``, ``seg``, ``labels``), ``true_subject2template``
    t2s: Image
    t2s_seg: Image
    epi: Image  # distorted GE-EPI mean (3D), PE = ``pe``
    epi_undistorted: Image  # the same acquisition without distortion and noise
    fieldmap_hz: Image  # field on the EPI grid, at undistorted voxel positions
    vsm: np.ndarray  # signed voxel shifts along PE (undistorted voxel r appears at r + vsm)
    epi_cord: Image  # true cord on the distorted EPI grid
    epi_undistorted_cord: Image  # true cord on the EPI grid without distortion
    t2s_to_t2w: AffineTransform  # pull on the T2*w grid: T2*w points -> T2w points
    epi_to_t2s: AffineTransform  # pull on the EPI grid: undistorted EPI points -> T2*w points
    true_template2epi: DisplacementField  # EPI grid: distorted EPI points -> template points
    true_template2epi_undistorted: DisplacementField  # EPI grid: undistorted points -> template
    true_template2t2s: DisplacementField  # T2*w grid: T2*w points -> template points
    sidecar: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def t2w(self) -> Image:
        return self.subject.image if hasattr(self.subject, "image") else self.subject.t2

    @property
    def t2w_seg(self) -> Image:
        return self.subject.seg

    @property
    def labels(self) -> Image:
        lab = self.subject.labels
        return lab("body") if callable(lab) else lab

    @property
    def pe(self) -> str:
        return str(self.sidecar["PhaseEncodingDirection"])

    @property
    def readout_s(self) -> float:
        return float(self.sidecar["TotalReadoutTime"])

    @property
    def sdc_true(self) -> DisplacementField:
        """True correction (pull on the EPI grid: undistorted point -> distorted point)."""
        return vsm_to_field(self.vsm, self.epi.grid, pe_axis(self.pe)[0])

    def t2w_to_template(self, points: np.ndarray) -> np.ndarray:
        """Exact (analytic) template points of T2w world points."""
        pull = self.subject.pull if getattr(self.subject, "pull", None) is not None else self.subject.deformation.pull
        return pull(np.asarray(points, float))


def make_epi_chain_phantom(
    seed: int = 0,
    *,
    template: str = "PAM50",
    levels: tuple[str, str] = ("C3", "C6"),
    body_labels: Sequence[int] = (3, 4, 5, 6),
    t2w_voxel_mm: float = 1.0,
    t2w_fov_inplane_mm: tuple[float, float] = (64.0, 96.0),
    t2s_shape: Sequence[int] = (128, 128, 10),
    t2s_voxel_mm: Sequence[float] = (0.5, 0.5, 5.0),
    epi_shape: Sequence[int] = (64, 64, 10),
    epi_voxel_mm: Sequence[float] = (1.0, 1.0, 5.0),
    t2s_offset: tuple[float, float] = (1.0, 1.0),
    epi_offset: tuple[float, float] = (1.0, 1.0),
    field_max_hz: float = 70.0,
    readout_s: float = 0.030,
    pe: str = "j",
    noise: float = 0.02,
    epi_noise: float = 0.03,
    helper_mm: float = 1.5,
    subject: str = "template",
) -> EpiChainPhantom:
    """Build the EPI chain phantom (see the module docstring).

    ``levels``, ``t2w_voxel_mm``, ``t2w_fov_inplane_mm``, ``body_labels``: the T2w subject
    (defaults: C3-C6 at 1 mm, 64 x 96 x ~72 voxels, a second or two; one vertebral body label
    per level, so that the 45 mm T2*w slab holds at least two of them). ``t2s_offset`` / ``epi_offset``: size of the
    rigid offsets (translation mm, rotation deg; random directions) T2*w -> T2w and undistorted
    EPI -> T2*w. ``field_max_hz`` with ``readout_s`` sets the largest shift (70 Hz x 30 ms =
    2.1 voxels). ``pe``: BIDS phase-encode direction of the EPI (``j`` = towards anterior on its
    LAS grid). ``noise`` / ``epi_noise``: Rician sigma relative to the CSF intensity (~1).
    ``helper_mm``: spacing of the interpolated map used to paint sub-samples (the truth fields
    are evaluated exactly at voxel centres). ``subject``: ``"template"`` (the T2w subject of
    :func:`make_template_subject`, whose contrast is close to the solver's) or ``"independent"``
    (:func:`spinereg.phantom.independent.make_independent_subject`: its own deformation family and
    the real PAM50_small T2 average; the truth is its node field).
    """
    from spinereg.io.template import load_template

    t0 = time.perf_counter()
    times: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    if subject == "independent":
        from spinereg.phantom.independent import make_independent_subject

        subj = make_independent_subject(None, template=template, voxel_mm=t2w_voxel_mm, levels=list(levels), seed=seed,
                                        fov_inplane_mm=list(t2w_fov_inplane_mm), noise=noise,
                                        body_labels=list(body_labels))
        pull = subj.pull
        cord_xy = np.array([v[0] for v in subj.deformation.profile.at(np.array([subj.deformation.z_center]))[:2]])
    elif subject == "template":
        subj = make_template_subject(template, voxel_mm=t2w_voxel_mm, levels=levels, seed=seed,
                                     fov_inplane_mm=t2w_fov_inplane_mm, noise=noise, body_labels=body_labels)
        pull = subj.deformation.pull
        cord_xy = subj.deformation.center[:2].copy()
    else:
        raise ValueError(f"unknown subject {subject!r} (use 'template' or 'independent')")
    times["t2w"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    tpl = load_template(template)

    # axial grids centred on the cord at mid-height of the T2w subject
    seg_pts = subj.grid.voxel_to_world(np.argwhere(subj.seg.data > 0).astype(float))
    z_mid = 0.5 * (seg_pts[:, 2].min() + seg_pts[:, 2].max())
    near = np.abs(seg_pts[:, 2] - z_mid) < 3.0
    center = np.array([*seg_pts[near, :2].mean(axis=0), z_mid])
    t2s_grid = _axial_grid(t2s_shape, t2s_voxel_mm, center)
    epi_grid = _axial_grid(epi_shape, epi_voxel_mm, center)

    def rigid(size: tuple[float, float]) -> AffineTransform:
        d = rng.normal(size=3)
        a = rng.normal(size=3)
        return AffineTransform.from_params(rotation_deg=size[1] * a / np.linalg.norm(a),
                                           translation=size[0] * d / np.linalg.norm(d), center=center)

    t2s_to_t2w = rigid(t2s_offset)
    epi_to_t2s = rigid(epi_offset)

    def to_template(points: np.ndarray, space: str, exact: bool = True) -> np.ndarray:
        """Template points of T2*w (``space="t2s"``) or undistorted EPI points: exact (analytic
        inverse of ``P``) or, for the many sub-samples that paint the images, through ``helper``."""
        p = epi_to_t2s.map(points) if space == "epi" else np.asarray(points, float)
        return pull(t2s_to_t2w.map(p)) if exact else helper.map(p)

    # T2*w-frame points -> template points on a 1.5 mm helper grid covering both new grids (the
    # map is smooth at the centimetre scale: trilinear interpolation is within ~0.01 mm)
    corners = np.concatenate([g.voxel_to_world(np.argwhere(np.ones((2, 2, 2))) * (np.array(g.shape) - 1))
                              for g in (t2s_grid, epi_grid)])
    lo, hi = corners.min(0) - 6.0, corners.max(0) + 6.0
    hshape = np.ceil((hi - lo) / helper_mm).astype(int) + 1
    haff = np.diag([helper_mm, helper_mm, helper_mm, 1.0])
    haff[:3, 3] = lo
    hgrid = Grid(tuple(int(v) for v in hshape), haff)
    hx = hgrid.world_coords()
    helper = DisplacementField(hgrid, (to_template(hx, "t2s") - hx).reshape(*hgrid.shape, 3), outside="nan")
    tissue = _TemplateTissue.load(tpl, helper.map(hx), ("t2s", "epi"))
    times["template"] = time.perf_counter() - t1

    # ---- T2*w: 5 mm slice profile, 0.5 mm in-plane
    t2 = time.perf_counter()
    off_s = _subsample_offsets(t2s_grid, 1, 5)
    xs = t2s_grid.world_coords()
    ts_sub = to_template((xs[:, None, :] + off_s[None]).reshape(-1, 3), "t2s", exact=False)
    t2s_clean = tissue.sample("t2s", ts_sub).reshape(len(xs), -1).mean(1).reshape(t2s_grid.shape)
    t2s_cord = tissue.sample("cord", ts_sub).reshape(len(xs), -1).mean(1).reshape(t2s_grid.shape)
    true_t2s = to_template(xs, "t2s")
    t2s = _rician(t2s_clean, noise, rng)
    times["t2s"] = time.perf_counter() - t2

    # ---- B0 field (template coordinates), VSM on the undistorted EPI grid
    t3 = time.perf_counter()
    discs = _label_points(tpl.path("disc"))
    z_lo, z_hi = tissue.region.voxel_to_world(np.array([[0, 0, 0], np.array(tissue.region.shape) - 1.0]))[:, 2]
    z_lo, z_hi = min(z_lo, z_hi) - 10.0, max(z_lo, z_hi) + 10.0
    sources: list[tuple[float, float]] = []
    for v in sorted(discs):
        zc = float(discs[v][2])
        if z_lo <= zc <= z_hi:
            amp = float(rng.uniform(0.7, 1.0))
            sources += [(zc + _DISC_HALF_MM, amp), (zc - _DISC_HALF_MM, -amp)]
    fmodel = _FieldModel(cord_xy=cord_xy, sources=sources,
                         gradient=(float(rng.uniform(0.003, 0.006)), float(rng.uniform(-0.002, 0.002))))
    xe = epi_grid.world_coords()
    true_und = to_template(xe, "epi")
    raw = fmodel.raw(true_und)
    fmodel.scale = float(field_max_hz) / max(float(np.abs(raw).max()), 1e-9)
    field_hz = (fmodel.scale * raw).reshape(epi_grid.shape)
    axis, sign = pe_axis(pe)
    vsm = field_hz * float(readout_s) * sign
    jac = jacobian(vsm, axis)

    # ---- EPI: distorted voxel y shows the tissue of undistorted voxel r = y + w(y)
    w = invert_shift(vsm, axis)
    ijk = epi_grid.voxel_coords()
    ijk_r = ijk.copy()
    ijk_r[:, axis] += w.ravel()
    r = epi_grid.voxel_to_world(ijk_r)
    from scipy import ndimage

    jac_r = ndimage.map_coordinates(jac, ijk_r.T, order=1, mode="nearest")
    off_e = _subsample_offsets(epi_grid, 2, 5)

    def epi_at(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tp = to_template((points[:, None, :] + off_e[None]).reshape(-1, 3), "epi", exact=False)
        return (tissue.sample("epi", tp).reshape(len(points), -1).mean(1),
                tissue.sample("cord", tp).reshape(len(points), -1).mean(1))

    und_clean, und_cord = epi_at(xe)
    dist_clean, dist_cord = epi_at(r)
    dist_clean = dist_clean / np.clip(jac_r, 0.05, None)
    epi = _rician(dist_clean.reshape(epi_grid.shape), epi_noise, rng)
    true_dist = to_template(r, "epi")
    times["epi"] = time.perf_counter() - t3

    def img(data: np.ndarray, g: Grid) -> Image:
        return Image(np.asarray(data), g.affine)

    def pull_field(g: Grid, x: np.ndarray, y: np.ndarray) -> DisplacementField:
        return DisplacementField(g, (y - x).reshape(*g.shape, 3).astype(np.float32))

    nz = int(epi_grid.shape[2])
    order = list(range(0, nz, 2)) + list(range(1, nz, 2))
    tr_s = 2.0
    timing = [0.0] * nz
    for rank, k in enumerate(order):
        timing[k] = round(rank * tr_s / nz, 6)
    sidecar = {"PhaseEncodingDirection": pe, "TotalReadoutTime": float(readout_s), "EchoTime": 0.030,
               "RepetitionTime": tr_s, "SliceTiming": timing, "MultibandAccelerationFactor": 1,
               "SliceEncodingDirection": "k"}
    cord_und = und_cord.reshape(epi_grid.shape) > 0.5
    params = {
        "seed": int(seed), "template": tpl.name, "levels": list(levels), "t2w": subj.params,
        "t2s": {"shape": list(t2s_grid.shape), "voxel_mm": [float(v) for v in t2s_voxel_mm],
                "to_t2w": t2s_to_t2w.matrix.tolist(), "offset_mm_deg": list(t2s_offset)},
        "epi": {"shape": list(epi_grid.shape), "voxel_mm": [float(v) for v in epi_voxel_mm],
                "to_t2s": epi_to_t2s.matrix.tolist(), "offset_mm_deg": list(epi_offset),
                "pe": pe, "readout_s": float(readout_s), "noise": float(epi_noise)},
        "field": {"max_hz": float(field_max_hz), "scale": fmodel.scale, "n_sources": len(sources),
                  "in_cord_hz": [float(field_hz[cord_und].min()), float(field_hz[cord_und].max())]
                  if cord_und.any() else [0.0, 0.0]},
        "max_abs_vsm_vox": float(np.abs(vsm).max()),
        "max_abs_vsm_cord_vox": float(np.abs(vsm[cord_und]).max()) if cord_und.any() else 0.0,
        "min_jacobian": float(jac.min()),
    }
    times["total"] = time.perf_counter() - t0
    return EpiChainPhantom(
        subject=subj,
        t2s=img(t2s, t2s_grid),
        t2s_seg=img((t2s_cord > 0.5).astype(np.uint8), t2s_grid),
        epi=img(epi, epi_grid),
        epi_undistorted=img(und_clean.reshape(epi_grid.shape).astype(np.float32), epi_grid),
        fieldmap_hz=img(field_hz.astype(np.float32), epi_grid),
        vsm=vsm,
        epi_cord=img((dist_cord.reshape(epi_grid.shape) > 0.5).astype(np.uint8), epi_grid),
        epi_undistorted_cord=img(cord_und.astype(np.uint8), epi_grid),
        t2s_to_t2w=t2s_to_t2w,
        epi_to_t2s=epi_to_t2s,
        true_template2epi=pull_field(epi_grid, xe, true_dist),
        true_template2epi_undistorted=pull_field(epi_grid, xe, true_und),
        true_template2t2s=pull_field(t2s_grid, xs, true_t2s),
        sidecar=sidecar,
        params=params,
        timings=times,
    )
