"""Spine phantom with known vertebral heights, sagittal angles and intensities.

Vertebral bodies are boxes whose sagittal section is a symmetric trapezoid (anterior height
``ha``, posterior height ``hp``: a wedge when ``ha < hp``), centred on a circular arc in the
sagittal plane (lordosis: convex anteriorly, centre of curvature posterior) and oriented along
it. Discs fill the gaps; a cord tube and a CSF sleeve run behind the bodies on a concentric arc.
Everything is analytic, so the truth is known exactly:

* heights at the centres of the posterior / middle / anterior thirds of each body (along its
  S-I axis), their ratios;
* endplate normals (superior and inferior) and the sagittal angles between them;
* disc label points (value of the vertebra below, as SCT: C2/C3 = 3);
* cord curvature (1 / radius of the cord arc);
* T1w signal (marrow per level, cortex, CSF) and CT numbers (trabecular HU per level, cortex),
  constant per tissue by default (so VBQ and trabecular HU are exact by design, a check of the
  arithmetic only); ``texture``, ``noise`` and ``pv_factor`` make them realistic (see
  :func:`make_spine_phantom`).

Vertebra values follow SCT: C1 = 1 ... C7 = 7, T1 = 8 ... T12 = 19, L1 = 20 ... L5 = 24.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from spinereg.io.image import Image

if TYPE_CHECKING:
    from numpy.typing import DTypeLike


@dataclass
class SpinePhantom:
    """Images (``t1``, ``ct``, labelled ``bodies``, ``csf`` and ``cord`` masks, ``discs`` point
    labels) and ``truth`` (per-level design values, angles, curvature, VBQ)."""

    t1: Image
    ct: Image
    bodies: Image
    csf: Image
    cord: Image
    discs: Image
    truth: dict = field(default_factory=dict)


def _sag_angle_deg(n: np.ndarray) -> float:
    """Sagittal tilt of a superior-pointing normal: angle from +S towards posterior (deg)."""
    return float(np.degrees(np.arctan2(-n[1], n[2])))


def make_spine_phantom(
    levels: tuple[int, ...] = (20, 21, 22, 23, 24),
    *,
    voxel_mm: float = 0.5,
    height_mm: float = 25.0,
    depth_mm: float = 35.0,
    width_mm: float = 44.0,
    disc_mm: float = 9.0,
    lordosis_deg: float = 30.0,
    wedge: dict[int, float] | None = None,
    cortex_mm: float = 1.5,
    marrow_t1: dict[int, float] | None = None,
    trabecular_hu: dict[int, float] | None = None,
    csf_t1: float = 50.0,
    cortex_t1: float = 20.0,
    cortex_hu: float = 700.0,
    cord_radius_mm: float = 4.0,
    csf_radius_mm: float = 7.0,
    texture: float = 0.0,
    noise: float = 0.0,
    pv_factor: int = 1,
    seed: int = 0,
) -> SpinePhantom:
    """Build a phantom of the vertebrae ``levels`` (top to bottom), RAS+ grid of ``voxel_mm``.

    ``lordosis_deg``: total bend of the arc through the body centres (from the first to the last
    body's axis). ``wedge``: level -> anterior/posterior height ratio (e.g. ``{22: 0.7}`` an
    anterior wedge fracture of L3; posterior height stays ``height_mm``). ``marrow_t1`` and
    ``trabecular_hu`` default to distinct values per level.

    Realism (defaults off, which keeps every tissue constant): ``texture`` multiplies marrow and
    soft tissue by ``1 + texture * n`` (``n`` smooth unit-variance noise, ~1.5 mm correlation),
    ``noise`` adds Gaussian noise (fraction of the CSF T1 signal; CT gets ``noise * 100`` HU),
    ``pv_factor`` > 1 builds every image on a grid ``pv_factor`` times finer and averages blocks
    (partial volume at the output voxel ``voxel_mm``; label masks keep the majority). The truth
    stays the design values.
    """
    if pv_factor > 1:
        fine = make_spine_phantom(levels, voxel_mm=voxel_mm / pv_factor, height_mm=height_mm, depth_mm=depth_mm,
                                  width_mm=width_mm, disc_mm=disc_mm, lordosis_deg=lordosis_deg, wedge=wedge,
                                  cortex_mm=cortex_mm, marrow_t1=marrow_t1, trabecular_hu=trabecular_hu,
                                  csf_t1=csf_t1, cortex_t1=cortex_t1, cortex_hu=cortex_hu,
                                  cord_radius_mm=cord_radius_mm, csf_radius_mm=csf_radius_mm,
                                  texture=texture, noise=0.0, pv_factor=1, seed=seed)
        return _block_average(fine, int(pv_factor), voxel_mm, noise, seed)
    levels = tuple(int(v) for v in levels)
    n = len(levels)
    wedge = dict(wedge or {})
    marrow_t1 = dict(marrow_t1 or {v: 100.0 + 10.0 * i for i, v in enumerate(levels)})
    trabecular_hu = dict(trabecular_hu or {v: 200.0 - 30.0 * i for i, v in enumerate(levels)})
    hp = np.full(n, float(height_mm))
    ha = np.array([height_mm * wedge.get(v, 1.0) for v in levels])
    hm = 0.5 * (ha + hp)
    # arc lengths of body centres from the top (mid heights + discs)
    s = np.concatenate([[0.0], np.cumsum(0.5 * (hm[:-1] + hm[1:]) + disc_mm)])
    if n < 2 or not 0 < lordosis_deg < 120:
        raise ValueError("the phantom needs at least 2 levels and 0 < lordosis_deg < 120")
    total = s[-1]
    phi_total = np.radians(lordosis_deg)
    radius = total / phi_total
    phi = phi_total * (0.5 - s / total)  # top body: largest angle
    canal = depth_mm / 2 + csf_radius_mm + 3.0  # body centre to cord centre (posterior)

    centres = np.stack([np.zeros(n), radius * np.cos(phi) - radius, radius * np.sin(phi)], -1)
    u_si = np.stack([np.zeros(n), -np.sin(phi), np.cos(phi)], -1)
    u_ap = np.stack([np.zeros(n), np.cos(phi), np.sin(phi)], -1)
    u_lr = np.cross(u_ap, u_si)  # = +x (R)

    # grid covering bodies, discs and canal
    half_diag = 0.5 * np.hypot(depth_mm, height_mm) + 2
    lo = centres.min(0) - [width_mm / 2 + 3, canal + csf_radius_mm + 3, half_diag]
    hi = centres.max(0) + [width_mm / 2 + 3, half_diag, half_diag]
    lo[1] = min(lo[1], (centres - canal * u_ap).min(0)[1] - csf_radius_mm - 3)
    shape = tuple(int(np.ceil((h - lo_) / voxel_mm)) + 1 for lo_, h in zip(lo, hi, strict=True))
    lo = lo + 0.27 * voxel_mm  # no body face exactly on a voxel centre (the design sizes stay exact)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = lo
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    xyz = ijk * voxel_mm + lo.astype(np.float32)

    labels = np.zeros(len(xyz), np.int16)
    inner = np.zeros(len(xyz), bool)
    for i, v in enumerate(levels):
        d = xyz - centres[i].astype(np.float32)
        a, si, lr = d @ u_ap[i].astype(np.float32), d @ u_si[i].astype(np.float32), d @ u_lr[i].astype(np.float32)
        h = hp[i] + (ha[i] - hp[i]) * (a + depth_mm / 2) / depth_mm
        body = (np.abs(lr) <= width_mm / 2) & (np.abs(a) <= depth_mm / 2) & (np.abs(si) <= h / 2)
        core = ((np.abs(lr) <= width_mm / 2 - cortex_mm) & (np.abs(a) <= depth_mm / 2 - cortex_mm)
                & (np.abs(si) <= h / 2 - cortex_mm))
        labels[body] = v
        inner |= core & body

    # cord and CSF: tubes on the arc at `canal` behind the body centres
    rc = radius - canal
    rho = np.hypot(xyz[:, 1] + radius, xyz[:, 2])  # distance to the centre of curvature (0, -radius, 0)
    radial = np.hypot(rho - rc, xyz[:, 0])
    cord_curv = 1.0 / rc
    cord = radial <= cord_radius_mm
    csf = (radial <= csf_radius_mm) & ~cord
    # discs: between consecutive bodies, inside the hull of their facing endplates (approximate)
    disc_mask = np.zeros(len(xyz), bool)
    disc_pts = []
    truth_levels = {}
    for i, v in enumerate(levels):
        k = (ha[i] - hp[i]) / (2 * depth_mm)  # slope of the superior surface along +a
        n_sup = u_si[i] - k * u_ap[i]
        n_inf = u_si[i] + k * u_ap[i]
        n_sup, n_inf = n_sup / np.linalg.norm(n_sup), n_inf / np.linalg.norm(n_inf)
        t = np.array([1 / 6, 1 / 2, 5 / 6])  # posterior, middle, anterior third centres
        h3 = hp[i] + (ha[i] - hp[i]) * t
        truth_levels[v] = {
            "height_posterior_mm": float(h3[0]), "height_middle_mm": float(h3[1]),
            "height_anterior_mm": float(h3[2]),
            "wedge_ratio": float(h3[2] / h3[0]), "biconcave_ratio": float(h3[1] / h3[0]),
            "endplate_superior_deg": _sag_angle_deg(n_sup), "endplate_inferior_deg": _sag_angle_deg(n_inf),
            "marrow_t1": float(marrow_t1[v]), "trabecular_hu": float(trabecular_hu[v]),
            "centre_mm": centres[i].tolist(),
        }
        if i + 1 < n:
            top = centres[i] - hm[i] / 2 * u_si[i]
            bot = centres[i + 1] + hm[i + 1] / 2 * u_si[i + 1]
            disc_pts.append((levels[i + 1], 0.5 * (top + bot)))
            axis = bot - top
            length = np.linalg.norm(axis)
            axis = axis / length
            d = xyz - top.astype(np.float32)
            along = d @ axis.astype(np.float32)
            perp = d - np.outer(along, axis).astype(np.float32)
            a_dir = u_ap[i] + u_ap[i + 1]
            a_dir /= np.linalg.norm(a_dir)
            pa, plr = perp @ a_dir.astype(np.float32), perp[:, 0]
            disc_mask |= ((along > -3) & (along < length + 3) & (np.abs(pa) <= depth_mm / 2 - 1)
                          & (np.abs(plr) <= width_mm / 2 - 1) & (labels == 0))
    # disc labels: one voxel each at the nearest grid point
    disc_lab = np.zeros(shape, np.int16)
    for v, p in disc_pts:
        idx = np.round((p - lo) / voxel_mm).astype(int)
        disc_lab[tuple(idx)] = v

    body = labels > 0
    t1 = np.full(len(xyz), 5.0, np.float32)
    t1[disc_mask] = 80.0
    t1[csf] = csf_t1
    t1[cord] = 70.0
    t1[body] = cortex_t1
    hu = np.full(len(xyz), -80.0, np.float32)
    hu[disc_mask] = 90.0
    hu[csf] = 15.0
    hu[cord] = 35.0
    hu[body] = cortex_hu
    for v in levels:
        m = (labels == v) & inner
        t1[m] = marrow_t1[v]
        hu[m] = trabecular_hu[v]
    rng = np.random.default_rng(seed)
    if texture > 0:
        from scipy import ndimage

        tex = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5 / voxel_mm).ravel()
        tex /= max(float(tex.std()), 1e-6)
        soft = (labels == 0) & ~disc_mask & ~csf & ~cord
        for sel in (inner, soft):
            t1[sel] *= 1 + texture * tex[sel]
            hu[sel] += texture * np.abs(hu[sel]).clip(50, None) * tex[sel]
    if noise > 0:
        t1 += rng.normal(0, noise * csf_t1, t1.shape).astype(np.float32)
        hu += rng.normal(0, noise * 100.0, hu.shape).astype(np.float32)

    def img(a: np.ndarray, dtype: DTypeLike | None = None) -> Image:
        return Image(a.reshape(shape) if dtype is None else a.reshape(shape).astype(dtype), affine)

    # truth of angles: sagittal (positive = lordosis, i.e. the upper endplate tilted more anteriorly)
    seg_angles = {}
    for i in range(n - 1):
        seg_angles[f"{levels[i]}-{levels[i + 1]}"] = (truth_levels[levels[i]]["endplate_inferior_deg"]
                                                      - truth_levels[levels[i + 1]]["endplate_superior_deg"])
    dp = np.array([p for _, p in disc_pts])
    disc_angles = {}
    if len(dp) >= 3:
        dirs = np.diff(dp, axis=0)
        ang_d = np.degrees(np.arctan2(-dirs[:, 1], -dirs[:, 2]))  # directions point inferior
        for j in range(len(dirs) - 1):
            key = f"{disc_pts[j][0]}-{disc_pts[j + 1][0]}-{disc_pts[j + 2][0]}"
            disc_angles[key] = float(ang_d[j + 1] - ang_d[j])
    vbq_levels = [v for v in (20, 21, 22, 23) if v in levels]
    truth = {
        "levels": truth_levels,
        "cobb_deg": (truth_levels[levels[0]]["endplate_inferior_deg"]
                     - truth_levels[levels[-1]]["endplate_inferior_deg"]),
        "disc_angles_deg": seg_angles,
        "disc_label_angles_deg": disc_angles,
        "disc_points_mm": {int(v): p.tolist() for v, p in disc_pts},
        "cord_curvature_per_mm": cord_curv,
        "csf_t1": csf_t1,
        "vbq": (float(np.median([marrow_t1[v] for v in vbq_levels])) / csf_t1) if vbq_levels else None,
        "voxel_mm": voxel_mm,
    }
    return SpinePhantom(t1=img(t1), ct=img(hu), bodies=img(labels), csf=img(csf, np.uint8),
                        cord=img(cord, np.uint8), discs=Image(disc_lab, affine), truth=truth)


def _block_average(fine: SpinePhantom, f: int, voxel_mm: float, noise: float, seed: int) -> SpinePhantom:
    """The phantom at ``f`` times coarser voxels: intensities averaged over each block (partial
    volume), masks and labels by majority, disc point labels re-placed at the nearest voxel."""
    shape = tuple(n // f for n in fine.t1.shape)

    def blocks(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)[: shape[0] * f, : shape[1] * f, : shape[2] * f]
        return a.reshape(shape[0], f, shape[1], f, shape[2], f)

    def mean(a: np.ndarray) -> np.ndarray:
        return blocks(a.astype(np.float32)).mean(axis=(1, 3, 5))

    affine = fine.t1.affine.copy()
    affine[:3, :3] *= f
    affine[:3, 3] += fine.t1.affine[:3, :3] @ np.full(3, (f - 1) / 2)
    lab = blocks(fine.bodies.data)
    vals = np.unique(fine.bodies.data[fine.bodies.data > 0])
    counts = np.stack([(lab == v).sum(axis=(1, 3, 5)) for v in vals], -1)
    bodies = np.where(counts.max(-1) * 2 > f**3, vals[counts.argmax(-1)], 0).astype(np.int16)
    rng = np.random.default_rng(seed + 1)
    t1, ct = mean(fine.t1.data), mean(fine.ct.data)
    if noise > 0:
        t1 += rng.normal(0, noise * fine.truth["csf_t1"], t1.shape).astype(np.float32)
        ct += rng.normal(0, noise * 100.0, ct.shape).astype(np.float32)
    discs = np.zeros(shape, np.int16)
    inv = np.linalg.inv(affine)
    for v, p in fine.truth["disc_points_mm"].items():
        idx = np.round(inv[:3, :3] @ np.asarray(p) + inv[:3, 3]).astype(int)
        discs[tuple(idx)] = v
    truth = {**fine.truth, "voxel_mm": voxel_mm, "pv_factor": f}
    return SpinePhantom(t1=Image(t1, affine), ct=Image(ct, affine), bodies=Image(bodies, affine),
                        csf=Image((mean(fine.csf.data) > 0.5).astype(np.uint8), affine),
                        cord=Image((mean(fine.cord.data) > 0.5).astype(np.uint8), affine),
                        discs=Image(discs, affine), truth=truth)
