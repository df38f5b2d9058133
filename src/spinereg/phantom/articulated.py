"""Articulated-spine phantom: PAM50's vertebrae moved rigidly one by one, discs and soft tissue
deforming smoothly in between, with the exact truth mapping.

Construction (independent of the registration code: no polyrigid fusion, no log-Euclidean
averaging, no scaling and squaring):

1. The template's spine mask is split by vertebra (:func:`spinereg.cord.vertebra_masks.
   template_vertebrae`). Vertebrae sharing a large face (PAM50's C1 and C2, one connected
   component in the mask) form one rigid body. Bodies are chained outwards from the middle one
   (identity): relative to its neighbour, each body turns by a flexion / extension (about L-R)
   and a lateral bending (about A-P) of ``flexion_deg`` / ``bending_deg`` (uniform, random sign,
   total kept within +-``max_total_deg``) about the midpoint of their centroids, then translates
   by ``translation_mm`` (uniform magnitude, random direction in the axial plane, i.e.
   listhesis-like). Each vertebra's *push* motion is a 4x4 matrix (template -> subject point).
2. The push displacement is blended from the per-body *displacements* with Shepard's
   inverse-distance partition of unity: ``d(x) = sum_b w_b(x) (P_b(x) - x)``,
   ``w_b = dist_b^-p / sum_k dist_k^-p`` (``dist_b`` = distance to body b's mask, mm; p = 1).
   On a body's voxels ``w_b = 1`` exactly, so every vertebra moves exactly rigidly, except a
   2 mm contact layer where two bodies nearly touch (facet joints): that layer deforms like
   cartilage (``rigid`` marks the exactly rigid voxels, > 99 % of the bone). Discs, cord and soft
   tissue deform smoothly. ``d`` lives on the working grid (trilinear in between). A draw whose
   field would fold (Jacobian determinant < ``min_det``: vertebrae colliding) is redrawn.
3. The subject's pull field (subject point -> template point) is the numerical inverse of
   ``x -> x + d(x)`` (fixed-point iteration, residual recorded); the subject image samples the
   template content there.

Contrasts: ``"mr"`` (T2-like: bright CSF and discs, marrow mid-grey and homogeneous, dark
cortex) and ``"ct"`` (HU: cortex ~900, trabecular ~250 with a 15 HU texture, disc ~90, soft
tissue ~40); soft tissue carries a weak smooth texture (1.5 mm) in both; drawn on PAM50's 0.5 mm
grid and blurred by the working voxel before sampling.

``truth_anat2template`` (template grid, template point -> subject point) is what a registration
run in template space (fixed = template, moving = subject) should find.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.io.resample import VolumeSampler, slice_like
from spinereg.transforms.displacement import DisplacementField

#: tissue intensities per contrast
CONTRASTS: dict[str, dict[str, float]] = {
    "mr": {"background": 0.30, "csf": 1.0, "cord": 0.40, "disc": 0.75, "marrow": 0.50, "cortex": 0.12,
           "texture": 0.04, "bone_texture": 0.0},
    "ct": {"background": 40.0, "csf": 10.0, "cord": 35.0, "disc": 90.0, "marrow": 250.0, "cortex": 900.0,
           "texture": 15.0, "bone_texture": 15.0},
}


@dataclass
class ArticulatedPhantom:
    """Template (fixed) and subject (moving) images on one working grid, template-space masks
    (``vertebrae``; ``rigid``: the vertebra voxels that the truth moves exactly rigidly, i.e.
    without the contact layers), the per-vertebra push motions and the exact truth fields."""

    template: Image
    subject: Image
    vertebrae: Image
    rigid: Image
    cord: Image
    truth_anat2template: DisplacementField
    truth_template2anat: DisplacementField
    motions: dict[int, np.ndarray]
    params: dict = field(default_factory=dict)

    @property
    def grid(self) -> Grid:
        return self.template.grid


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def random_motions(bodies: list[int], centres: dict[int, np.ndarray], rng: np.random.Generator, *,
                   flexion_deg: tuple[float, float] = (2.0, 6.0),
                   bending_deg: tuple[float, float] = (2.0, 6.0),
                   translation_mm: tuple[float, float] = (1.0, 3.0),
                   max_total_deg: float = 6.0) -> tuple[dict[int, np.ndarray], list[dict]]:
    """Push matrices (4x4) per rigid body, chained outwards from the middle one (identity): the
    motion of a body relative to its neighbour towards the middle is a flexion (about L-R) and a
    lateral bending (about A-P) about the midpoint of their centroids, then an axial-plane
    translation. Returns the matrices and the table of segments."""
    order = sorted(bodies)
    mid = len(order) // 2
    push = {order[mid]: np.eye(4)}
    total = {order[mid]: np.zeros(2)}
    segments = []
    for direction in (1, -1):
        k = mid
        while 0 <= k + direction < len(order):
            a, b = order[k], order[k + direction]
            rel = []
            for axis, (lo, hi) in ((0, flexion_deg), (1, bending_deg)):
                mag = rng.uniform(lo, hi)
                sign = rng.choice([-1.0, 1.0])
                if abs(total[a][axis] + sign * mag) > max_total_deg:
                    sign = -sign
                rel.append(sign * mag)
            total[b] = total[a] + np.array(rel)
            d = np.array([*rng.standard_normal(2), 0.0])
            d *= rng.uniform(*translation_mm) / np.linalg.norm(d)
            c = 0.5 * (centres[a] + centres[b])
            r = _rot(0, rel[0]) @ _rot(1, rel[1])
            m = np.eye(4)
            m[:3, :3] = r
            m[:3, 3] = c - r @ c + d
            push[b] = push[a] @ m
            segments.append({"moving": b, "relative_to": a, "flexion_deg": float(rel[0]),
                             "bending_deg": float(rel[1]), "translation_mm": d.round(4).tolist()})
            k += direction
    return push, segments


def fused_groups(labels: np.ndarray, grid: Grid, min_contact_mm2: float = 150.0) -> dict[int, int]:
    """Vertebrae whose masks share a large face (PAM50's C1 and C2, split from one connected
    component) move as one body: ``{level: body}``, the body named by its smallest level.
    Facet contacts are smaller and stay separate."""
    parent = {int(v): int(v) for v in np.unique(labels) if v > 0}
    area = {}
    for ax in range(3):
        face = float(np.prod(np.delete(grid.zooms, ax)))
        a = np.moveaxis(labels, ax, 0)
        pairs = np.stack([a[:-1].ravel(), a[1:].ravel()], -1)
        pairs = np.sort(pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0) & (pairs[:, 0] != pairs[:, 1])], axis=1)
        for (u, w), n in zip(*np.unique(pairs, axis=0, return_counts=True), strict=True):
            area[(int(u), int(w))] = area.get((int(u), int(w)), 0.0) + n * face

    def find(v: int) -> int:
        while parent[v] != v:
            v = parent[v]
        return v

    for (u, w), mm2 in area.items():
        if mm2 >= min_contact_mm2:
            ru, rw = find(u), find(w)
            parent[max(ru, rw)] = min(ru, rw)
    return {v: find(v) for v in parent}


def shepard_displacement(labels: np.ndarray, grid: Grid, motions: dict[int, np.ndarray],
                         power: float = 2.0) -> np.ndarray:
    """``sum_v w_v (P_v(x) - x)`` on ``grid`` with inverse-distance weights (exact on the masks)."""
    x = grid.world_coords().reshape(*grid.shape, 3)
    num = np.zeros(grid.shape + (3,), np.float64)
    den = np.zeros(grid.shape, np.float64)
    onehot = np.zeros(grid.shape + (3,), np.float64)
    inside = labels > 0
    for v, m in motions.items():
        mask = labels == v
        dist = ndimage.distance_transform_edt(~mask, sampling=grid.zooms)
        w = 1.0 / np.maximum(dist, 1e-9) ** power
        disp = x @ m[:3, :3].T + m[:3, 3] - x
        w[mask] = 0.0
        num += w[..., None] * disp
        den += w
        onehot[mask] = disp[mask]
    out = num / np.where(den > 0, den, 1.0)[..., None]
    out[inside] = onehot[inside]
    return out.astype(np.float32)


def _content(tissues: dict[str, np.ndarray], contrast: str, rng: np.random.Generator,
             zooms: np.ndarray) -> np.ndarray:
    tab = CONTRASTS[contrast]
    out = np.full(tissues["cord"].shape, tab["background"], np.float32)
    out[tissues["disc"]] = tab["disc"]
    out[tissues["csf"]] = tab["csf"]
    out[tissues["cord"]] = tab["cord"]
    out[tissues["bone"]] = tab["marrow"]
    out[tissues["cortex"]] = tab["cortex"]
    tex = ndimage.gaussian_filter(rng.standard_normal(out.shape).astype(np.float32), 1.5 / np.asarray(zooms))
    tex *= tab["texture"] / max(float(tex.std()), 1e-6)
    tex[tissues["bone"]] *= tab["bone_texture"] / tab["texture"]
    return out + tex


def rigid_cores(labels: np.ndarray, grid: Grid, clearance_mm: float = 2.0) -> np.ndarray:
    """Vertebra labels without the voxels within ``clearance_mm`` of another vertebra: where two
    vertebrae touch (facet joints, C1-C2) the contact layer deforms like cartilage, so that
    neighbours can move apart or together without folding the field."""
    out = labels.copy()
    for v in np.unique(labels[labels > 0]):
        other = (labels > 0) & (labels != v)
        near = ndimage.distance_transform_edt(~other, sampling=grid.zooms) <= clearance_mm
        out[(labels == v) & near] = 0
    return out


def invert_push(push: DisplacementField, grid: Grid, iterations: int = 100,
                tol_mm: float = 1e-4) -> tuple[DisplacementField, np.ndarray]:
    """Pull field on ``grid`` inverting ``x -> x + d(x)``: per-point fixed-point iteration (only
    the points not yet converged are iterated); returns the field and the residual (mm)."""
    y = grid.world_coords()
    x = y - push.displacement(y)
    active = np.arange(len(y))
    for _ in range(iterations):
        xn = y[active] - push.displacement(x[active])
        step = np.abs(xn - x[active]).max(1)
        x[active] = xn
        active = active[step >= tol_mm]
        if active.size == 0:
            break
    res = np.linalg.norm(push.map(x) - y, axis=1)
    return DisplacementField(grid, (x - y).reshape(*grid.shape, 3)), res.reshape(grid.shape)


def make_articulated_phantom(levels: tuple[int, int] = (2, 7), *, voxel_mm: float = 1.0, contrast: str = "mr",
                             seed: int = 0, noise: float = 0.02,
                             flexion_deg: tuple[float, float] = (2.0, 6.0),
                             bending_deg: tuple[float, float] = (2.0, 6.0),
                             translation_mm: tuple[float, float] = (1.0, 3.0),
                             max_total_deg: float = 6.0, margin_mm: float = 22.0,
                             power: float = 1.0, min_det: float = 0.05, max_draws: int = 40,
                             template: str = "PAM50") -> ArticulatedPhantom:
    """Build the phantom over vertebrae ``levels`` (first, last; SCT values, C2 = 2) of the
    template (see the module doc). ``voxel_mm`` must be a multiple of the template's voxel
    (PAM50: 0.5 mm). ``noise``: Gaussian noise SD relative to the contrast's range (subject only).
    Motions whose field would fold (Jacobian determinant below ``min_det``: vertebrae colliding)
    are redrawn (``params["draws"]`` counts the draws). Deterministic for a given ``seed``."""
    from spinereg.cord.vertebra_masks import spine_tissues, template_vertebrae
    from spinereg.io.template import load_template
    from spinereg.metrics.jacobian import determinant_map

    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {sorted(CONTRASTS)}")
    rng = np.random.default_rng(seed)
    tpl = load_template(template)
    vert_full = template_vertebrae(tpl)
    full = vert_full.grid
    idx = np.argwhere(np.isin(np.asarray(vert_full.data), list(range(levels[0], levels[1] + 1))))
    if idx.size == 0:
        raise ValueError(f"template {tpl.name} has no vertebra in levels {levels}")
    si = int(np.argmax(np.abs(full.affine[2, :3]) / full.zooms))
    pad = int(np.ceil(margin_mm / full.zooms[si]))
    k0, k1 = max(int(idx[:, si].min()) - pad, 0), min(int(idx[:, si].max()) + pad, full.shape[si] - 1)
    stride = int(round(voxel_mm / float(full.zooms.min())))
    if stride < 1 or abs(stride * full.zooms.min() - voxel_mm) > 1e-6:
        raise ValueError(f"voxel_mm must be a multiple of the template voxel ({full.zooms.min()} mm)")
    shape = list(full.shape)
    shape[si] = k1 - k0 + 1
    shape = [1 + stride * ((n - 1) // stride) for n in shape]  # working voxels on template voxels
    offset = np.eye(4)
    offset[si, 3] = k0
    region = Grid(tuple(shape), full.affine @ offset)
    vert_r = slice_like(vert_full, region, dtype=None).astype(np.int16)
    grid = region.coarsened(stride)
    sub = tuple(slice(None, None, stride) for _ in range(3))
    vert = vert_r[sub][: grid.shape[0], : grid.shape[1], : grid.shape[2]]
    present = [int(v) for v in np.unique(vert) if v > 0 and (vert == v).sum() >= 20]
    vert = np.where(np.isin(vert, present), vert, 0).astype(np.int16)
    vert_r = np.where(np.isin(vert_r, present), vert_r, 0).astype(np.int16)
    groups = fused_groups(vert, grid)
    body_lab = np.zeros_like(vert)
    for v, g in groups.items():
        body_lab[vert == v] = g
    bodies = sorted(set(groups.values()))
    cores = np.where(rigid_cores(body_lab, grid) > 0, vert, 0).astype(np.int16)
    centres = {g: grid.voxel_to_world(np.argwhere(body_lab == g)).mean(0) for g in bodies}
    draws = 0
    while True:
        draws += 1
        body_motions, segments = random_motions(bodies, centres, rng, flexion_deg=flexion_deg,
                                                bending_deg=bending_deg, translation_mm=translation_mm,
                                                max_total_deg=max_total_deg)
        motions = {v: body_motions[groups[v]] for v in present}
        push = DisplacementField(grid, shepard_displacement(np.where(cores > 0, body_lab, 0), grid,
                                                            body_motions, power))
        det = determinant_map(push)
        if float(np.nanmin(det)) >= min_det:
            break
        if draws >= max_draws:
            raise ValueError(f"no motion draw without folding in {max_draws} tries; lower the angles or translations")
    pull, residual = invert_push(push, grid)

    tissues = spine_tissues(tpl, region, vert_r)
    content = _content(tissues, contrast, rng, region.zooms)
    content = ndimage.gaussian_filter(content, 0.42 * stride)  # PSF of the working voxel
    sampler = VolumeSampler(content, "linear")
    xg = grid.world_coords()
    tmpl = sampler.at_voxels(region.world_to_voxel(xg))
    ijk = np.clip(region.world_to_voxel(pull.map(xg)), 0, np.array(region.shape) - 1)
    subj = sampler.at_voxels(ijk)
    tab = CONTRASTS[contrast]
    span = max(tab.values()) - min(v for k, v in tab.items() if "texture" not in k)
    subj = subj + noise * span * rng.standard_normal(subj.shape)
    cord = (tissues["cord"][sub][: grid.shape[0], : grid.shape[1], : grid.shape[2]]).astype(np.uint8)
    inner = tuple(slice(4, n - 4) for n in grid.shape)
    params = {"levels": list(levels), "present": present, "voxel_mm": voxel_mm, "contrast": contrast, "seed": seed,
              "noise": noise, "power": power, "segments": segments, "draws": draws,
              "bodies": {str(v): g for v, g in groups.items()},
              "truth_min_det": float(np.nanmin(det)),
              # residual of the inverse 4 voxels or more inside the grid (at the border the
              # pre-image may lie outside it)
              "truth_inverse_residual_mm": {"mean": float(residual[inner].mean()), "max": float(residual[inner].max())}}
    shape = grid.shape
    return ArticulatedPhantom(
        template=Image(tmpl.reshape(shape).astype(np.float32), grid.affine),
        subject=Image(subj.reshape(shape).astype(np.float32), grid.affine),
        vertebrae=Image(vert, grid.affine), rigid=Image(cores, grid.affine), cord=Image(cord, grid.affine),
        truth_anat2template=push, truth_template2anat=pull, motions=motions, params=params)
