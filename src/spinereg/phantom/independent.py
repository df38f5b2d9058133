"""Independent phantom subjects: PAM50 anatomy, a deformation and a contrast the solver does not share.

Use::

    from spinereg.phantom.independent import make_independent_subject
    ph = make_independent_subject("test", seed=3)            # or "full", "thoracolumbar", ...
    ph.image, ph.seg, ph.cord_pv, ph.levels                  # subject images (float32 / uint8)
    ph.disc_points, ph.body_points                           # true label positions {value: world mm}
    ph.labels("body", (3, 5)), ph.disc_labels                # label images (PAM50 label values)
    ph.true_subject2template                                 # pull field on the subject grid (warp_template2anat)
    ph.pull(points)                                          # the same truth at any world points
    ph.error(estimate)                                       # cord mapping error vs truth (mean/p95 mm ...)
    ph.save(folder)                                          # NIfTI + ITK warps + phantom.json

**What the subject is.** The template's anatomy (PAM50 cord, levels, labels) moved by a random
:class:`~spinereg.phantom.spine_deformation.SpineDeformation` (cord size/shape, piecewise S-I
stretch with a length 0.85-1.15x the template's, B-spline field, curvature, rotation), seen
through a contrast of :mod:`spinereg.phantom.tissue_contrast` (``source="average"``: the real
PAM50_small T2 average; ``"tissue"``: a T1/T2/T2*-like tissue mixture), with partial volume
(each voxel averages ``ceil(voxel / pv_mm)`` samples along each thick axis), a smooth
multiplicative bias field and Rician noise (``noise`` x the CSF intensity).

**Truth.** The push is inverted numerically (Newton) on nodes at most ``coarse_mm`` apart; the
pull field interpolated from those nodes is the field every image is resampled through, so it
*is* the truth (``true_subject2template``, SCT's ``warp_template2anat``). Label positions solve
``pull(x) = template label`` on the same field. ``params["inverse_residual_mm"]`` is the Newton
residual, ``params["push_consistency_mm"]`` the largest ``|P(pull(x)) - x|`` at 2000 random
voxels (interpolation between nodes).

**What a method is not given** (for reports): the deformation, the contrast source, the bias and
noise, the true label positions beyond the ``body_labels`` it is handed.

Variants (``spinereg/data/phantom_variants.json``): ``test`` (~40 x 56 x 70, a second or two),
``test_t1``, ``full`` (0.8 mm, 64 x 320 x ~320, C1-T6), ``cervical``, ``cervicothoracic``,
``thoracolumbar`` (T9-L1, conus label 60), ``iso1mm_t1``, ``axial_thick`` (0.5 x 0.5 x 5 mm),
``axial_7p5``, ``sagittal_thick`` (3 mm L-R). Deterministic per seed; float32.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image, save_image
from spinereg.io.resample import VolumeSampler, place_labels, slice_like
from spinereg.phantom.spine_deformation import CordProfile, SpineDeformation, invert
from spinereg.phantom.template_subject import level_number, mapping_error
from spinereg.phantom.tissue_contrast import (
    average_t2,
    phantom_table,
    template_volume,
    tissue_image,
)
from spinereg.transforms.base import Transform
from spinereg.transforms.displacement import DisplacementField

_AXIS = {"L": (0, -1.0), "R": (0, 1.0), "P": (1, -1.0), "A": (1, 1.0), "I": (2, -1.0), "S": (2, 1.0)}


def subject_grid(shape: Sequence[int], zooms: Sequence[float], codes: str, center: np.ndarray) -> Grid:
    """Axis-aligned grid (nibabel orientation ``codes``, voxel sizes per voxel axis) centred on ``center``."""
    lin = np.zeros((3, 3))
    for j, code in enumerate(codes.upper()):
        a, sign = _AXIS[code]
        lin[a, j] = sign * float(zooms[j])
    if sorted(int(np.flatnonzero(lin[:, j])[0]) for j in range(3)) != [0, 1, 2]:
        raise ValueError(f"orientation {codes!r} must name each of L/R, A/P, S/I once")
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = np.asarray(center, float) - lin @ ((np.asarray(shape, float) - 1) / 2)
    return Grid(tuple(int(s) for s in shape), aff)


class NodeField:
    """Pull map ``x -> y`` interpolated trilinearly from values at the nodes of ``grid``."""

    def __init__(self, grid: Grid, disp: np.ndarray):
        self.grid, self.disp = grid, np.asarray(disp, np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        c = self.grid.world_to_voxel(x).T
        u = np.stack([ndimage.map_coordinates(self.disp[..., a], c, order=1, mode="nearest")
                      for a in range(3)], axis=1)
        return x + u


class _Push(Transform):
    def __init__(self, deformation: SpineDeformation):
        self.deformation = deformation

    def map(self, points: np.ndarray) -> np.ndarray:
        return self.deformation.push(points)

    def inverse(self) -> Transform:  # pragma: no cover
        raise NotImplementedError("use IndependentSubject.true_subject2template")


@dataclass
class IndependentSubject:
    """A subject and its truth (see the module docstring)."""

    image: Image
    seg: Image
    cord_pv: Image
    levels: Image
    disc_labels: Image
    body_labels: Image
    disc_points: dict[int, np.ndarray]
    body_points: dict[int, np.ndarray]
    true_subject2template: DisplacementField
    deformation: SpineDeformation
    template_region: Grid
    template: str
    contrast: str
    params: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: the truth at any subject world points (N, 3) -> template points: the node field every image
    #: was resampled through (``true_subject2template`` is its value at the voxel centres)
    pull: NodeField | None = field(default=None, repr=False)

    @property
    def grid(self) -> Grid:
        return self.image.grid

    def labels(self, kind: str = "body", values: Sequence[int] | None = None) -> Image:
        """One-voxel label image of the true ``kind`` (``body``/``disc``) points with ``values``
        (default: the ``body_labels`` the subject was made with, or every disc)."""
        pts = self.body_points if kind == "body" else self.disc_points
        vals = [int(v) for v in (values if values is not None else
                                 (self.params["body_labels"] if kind == "body" else sorted(pts)))]
        missing = [v for v in vals if v not in pts]
        if missing:
            raise ValueError(f"labels {missing} are outside this subject's field of view")
        data = place_labels(np.array([pts[v] for v in vals]), np.array(vals), self.grid, dtype=np.uint8)
        return Image(data, self.grid.affine)

    def true_template2subject(self, grid: Grid | None = None) -> DisplacementField:
        """The push sampled on ``grid`` (default: the covered template region at 1 mm): SCT's
        ``warp_anat2template`` (analytic, not the node interpolation)."""
        return DisplacementField.from_transform(_Push(self.deformation), grid or self.template_region.coarsened(2))

    def error(self, estimate: Transform, mask: Image | np.ndarray | None = None, **kw) -> dict:
        """:func:`~spinereg.phantom.template_subject.mapping_error` of a subject->template pull
        (``warp_template2anat``) in the cord (default ``mask``: the true seg), per level, and
        over the field of view whose true template point lies in the template."""
        from spinereg.io.template import load_template

        tgrid = template_volume(str(load_template(self.template).path("cord"))).grid
        kw.setdefault("fov_within", tgrid)
        return mapping_error(estimate, self.true_subject2template, self.seg if mask is None else mask,
                             levels=self.levels, **kw)

    def level_errors(self, estimate: Transform, kind: str = "disc") -> dict[int, float]:
        """S-I distance (template mm) between each true label pushed by ``estimate`` and the
        template's own label: a wrong level shows as an error of about one vertebra (15-25 mm)."""
        from spinereg.io.template import load_template

        pts = self.disc_points if kind == "disc" else self.body_points
        ref = _label_points(str(load_template(self.template).path(kind)))
        vals = [v for v in sorted(pts) if v in ref]
        if not vals:
            return {}
        moved = estimate.map(np.array([pts[v] for v in vals]))
        return {v: float(abs(m[2] - ref[v][2])) for v, m in zip(vals, moved, strict=True)}

    def save(self, folder: str | Path, overwrite: bool = True) -> dict[str, Path]:
        """Write the images, label images, both true warps (ITK/ANTs) and ``phantom.json``."""
        from spinereg.transforms.itk import write_displacement

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        files = {self.contrast: save_image(self.image, out / f"{self.contrast}.nii.gz", overwrite=overwrite)}
        for name in ("seg", "cord_pv", "levels", "disc_labels", "body_labels"):
            files[name] = save_image(getattr(self, name), out / f"{name}.nii.gz", overwrite=overwrite)
        files["labels"] = save_image(self.labels("body"), out / "labels.nii.gz", overwrite=overwrite)
        files["true_warp_template2anat"] = write_displacement(
            self.true_subject2template, out / "true_warp_template2anat.nii.gz", overwrite)
        files["true_warp_anat2template"] = write_displacement(
            self.true_template2subject(), out / "true_warp_anat2template.nii.gz", overwrite)
        meta = {**self.params, "deformation": self.deformation.as_dict(),
                "disc_points_mm": {int(k): v.round(3).tolist() for k, v in self.disc_points.items()},
                "body_points_mm": {int(k): v.round(3).tolist() for k, v in self.body_points.items()},
                "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
                "files": {k: p.name for k, p in files.items()}}
        (out / "phantom.json").write_text(json.dumps(meta, indent=1))
        files["json"] = out / "phantom.json"
        return files


@cache
def _label_points(path: str) -> dict[int, np.ndarray]:
    img = load_image(path, ndim=3, check_finite=False, what="template label file")
    data = np.asarray(img.data)
    idx = np.argwhere(data > 0)
    vals = data[tuple(idx.T)].astype(int)
    pts = img.grid.voxel_to_world(idx)
    return {int(v): pts[vals == v].mean(axis=0) for v in np.unique(vals)}


@cache
def _profile(path: str) -> CordProfile:
    img = template_volume(path)
    return CordProfile.from_mask(np.asarray(img.data), img.affine)


def resolve_options(variant: str | None, overrides: dict) -> dict:
    """The keyword values of a variant (defaults < variant < ``overrides``)."""
    table = phantom_table()
    opts = dict(table["defaults"])
    if variant is not None:
        if variant not in table["variants"]:
            raise ValueError(f"unknown phantom variant {variant!r} (use one of {', '.join(table['variants'])})")
        opts.update({k: v for k, v in table["variants"][variant].items() if k != "doc"})
    unknown = sorted(set(overrides) - set(opts) - {"seed", "shape", "deformation"})
    if unknown:
        raise TypeError(f"unknown phantom option(s) {unknown}")
    opts.update(overrides)
    return opts


def make_independent_subject(variant: str | None = "test", *, seed: int = 0, shape: Sequence[int] | None = None,
                             deformation: dict | None = None, **overrides) -> IndependentSubject:
    """Make a subject (module docstring). ``variant`` names defaults in phantom_variants.json;
    keywords override them (``levels``, ``voxel_mm``, ``orientation``, ``fov_inplane_mm``,
    ``margin_mm``, ``contrast`` t1/t2/t2s, ``source`` average/tissue, ``noise``, ``bias``,
    ``pv_mm``, ``coarse_mm``, ``length_scale``, ``body_labels``, ``template``); ``deformation``:
    keywords of :meth:`SpineDeformation.random` (e.g. ``{"bend_mm": (0, 0)}``)."""
    from spinereg.io.template import load_template

    o = resolve_options(variant, overrides)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    tpl = load_template(o["template"])
    cord_path = str(tpl.path("cord"))
    profile = _profile(cord_path)
    body, disc = _label_points(str(tpl.path("body"))), _label_points(str(tpl.path("disc")))
    lv = [level_number(v) for v in o["levels"]]
    missing = [v for v in lv if v not in body]
    if missing:
        raise ValueError(f"template {tpl.name} has no body label for level(s) {missing}")
    z_top = max(body[v][2] for v in lv) + o["margin_mm"]
    z_bot = min(body[v][2] for v in lv) - o["margin_mm"]
    z_c = (z_top + z_bot) / 2
    disc_z = [p[2] for v, p in disc.items() if v < 60]
    deform = SpineDeformation.random(profile, z_c, disc_z, rng, length_scale=o["length_scale"],
                                     **(deformation or {}))

    zs = np.linspace(z_bot, z_top, 96)
    cx, cy, _, _ = profile.at(zs)
    cl = deform.push(np.column_stack([cx, cy, zs]))
    codes = o["orientation"].upper()
    zooms = np.broadcast_to(np.asarray(o["voxel_mm"], float), (3,))
    world_axis = [_AXIS[c][0] for c in codes]
    if shape is None:
        fov = {0: o["fov_inplane_mm"][0], 1: o["fov_inplane_mm"][1], 2: float(np.ptp(cl[:, 2]))}
        shape = tuple(max(1, int(round(fov[a] / z))) for a, z in zip(world_axis, zooms, strict=True))
    ap_offset = min(15.0, 0.2 * o["fov_inplane_mm"][1])
    grid = subject_grid(shape, zooms, codes, cl.mean(axis=0) + deform.rotation @ np.array([0.0, ap_offset, 0.0]))
    times["setup"] = time.perf_counter() - t0

    # the truth: the push inverted on nodes spanning the grid (plus half a voxel)
    t1 = time.perf_counter()
    spacing = np.full(3, float(o["coarse_mm"]))
    ext = (np.array(grid.shape) * zooms)
    nshape = tuple(int(np.ceil(e / s)) + 2 for e, s in zip(ext, spacing, strict=True))
    naff = grid.affine.copy()
    naff[:3, :3] = grid.affine[:3, :3] / zooms * spacing
    naff[:3, 3] = grid.voxel_to_world(np.full((1, 3), -0.5))[0] - naff[:3, :3] @ np.full(3, 0.5)
    nodes = Grid(nshape, naff)
    xn = nodes.world_coords()
    yn, residual = invert(deform.push, deform.approx_pull(xn), xn)
    pull = NodeField(nodes, (yn - xn).reshape(*nshape, 3))
    del xn, yn
    data = np.empty((*grid.shape, 3), np.float32)
    for k0, k1 in grid.chunks():
        x = grid.world_coords(k0, k1)
        data[:, :, k0:k1] = (pull(x) - x).reshape(grid.shape[0], grid.shape[1], k1 - k0, 3)
    truth = DisplacementField(grid, data)
    probe = grid.voxel_to_world(rng.uniform(0, 1, (2000, 3)) * (np.array(grid.shape) - 1))
    consistency = float(np.linalg.norm(deform.push(pull(probe)) - probe, axis=1).max())
    times["truth"] = time.perf_counter() - t1

    # template-space sources on the region the subject covers
    t2 = time.perf_counter()
    tcord = template_volume(cord_path)
    corners = pull(nodes.world_coords()[:: max(1, nodes.size // 200_000)])
    region = tcord.grid.bounding_subgrid(corners, margin_mm=6.0)
    if region is None:
        raise ValueError("the subject does not overlap the template")
    cord_r = slice_like(tcord, region)
    levels_r = slice_like(template_volume(str(tpl.path("levels"))), region, dtype=None)
    if o["source"] == "average":
        if o["contrast"] != "t2":
            raise ValueError("source='average' is a T2 image: use contrast='t2' or source='tissue'")
        inten, igrid, bg = average_t2(region)
    elif o["source"] == "tissue":
        inten, bg, _ = tissue_image(tpl, region, o["contrast"], rng)
        igrid = region
    else:
        raise ValueError(f"unknown source {o['source']!r} (use 'average' or 'tissue')")
    times["template"] = time.perf_counter() - t2

    # resample: partial volume over each voxel's footprint, then bias field and Rician noise
    t3 = time.perf_counter()
    nsub = np.maximum(1, np.ceil(zooms / o["pv_mm"] - 1e-6)).astype(int)
    offs = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in nsub], indexing="ij"), -1).reshape(-1, 3)
    s_cord, s_lev = VolumeSampler(cord_r, "linear"), VolumeSampler(levels_r, "nn")
    s_int = VolumeSampler(inten, "linear", cval=bg)
    img_out = np.empty(grid.shape, np.float32)
    pv_out = np.empty(grid.shape, np.float32)
    lev_out = np.empty(grid.shape, levels_r.dtype)
    for k0, k1 in grid.chunks(max(200_000, 2_000_000 // len(offs))):
        sh = (grid.shape[0], grid.shape[1], k1 - k0)
        vox = grid.voxel_coords(k0, k1)
        acc_i = np.zeros(len(vox))
        acc_c = np.zeros(len(vox))
        centre = truth.data[:, :, k0:k1].reshape(-1, 3) + grid.voxel_to_world(vox)
        for off in offs:
            y = centre if len(offs) == 1 else pull(grid.voxel_to_world(vox + off))
            acc_i += s_int.at_voxels(igrid.world_to_voxel(y))
            acc_c += s_cord.at_voxels(region.world_to_voxel(y))
        img_out[:, :, k0:k1] = (acc_i / len(offs)).reshape(sh)
        pv_out[:, :, k0:k1] = (acc_c / len(offs)).reshape(sh)
        lev_out[:, :, k0:k1] = s_lev.at_voxels(region.world_to_voxel(centre)).reshape(sh)
    del s_cord, s_int, inten, cord_r
    seg = pv_out >= 0.5
    lev_out[~seg] = 0
    img_out *= _bias(grid, rng, o["bias"])
    if o["noise"] > 0:
        sig = np.float32(o["noise"] * phantom_table()["contrasts"].get(o["contrast"], {}).get("csf", 1.0))
        n1 = rng.standard_normal(grid.shape, dtype=np.float32)
        n2 = rng.standard_normal(grid.shape, dtype=np.float32)
        img_out = np.sqrt((img_out + sig * n1) ** 2 + (sig * n2) ** 2)
    times["resample"] = time.perf_counter() - t3

    # true label positions: solve pull(x) = template label on the same node field
    pts = {}
    for name, table in (("disc", disc), ("body", body)):
        vals = sorted(table)
        guess = deform.push(np.array([table[v] for v in vals]))
        xs, _ = invert(pull, guess, np.array([table[v] for v in vals]))
        v = grid.world_to_voxel(xs)
        inside = np.all((v >= -0.5) & (v <= np.array(grid.shape) - 0.5), axis=1)
        pts[name] = {int(val): x for val, x, ok in zip(vals, xs, inside, strict=True) if ok}
    aff = grid.affine

    def lab(p: dict) -> Image:
        vals = sorted(p)
        arr = place_labels(np.array([p[v] for v in vals]).reshape(-1, 3), np.array(vals, int), grid, dtype=np.uint8)
        return Image(arr, aff)

    times["total"] = time.perf_counter() - t0
    body_vals = [int(v) for v in o["body_labels"] if int(v) in pts["body"]]
    params = {
        "variant": variant, "seed": int(seed), **{k: v for k, v in o.items() if k != "body_labels"},
        "template": tpl.name, "shape": list(grid.shape), "zooms": zooms.tolist(), "orientation": codes,
        "body_labels": body_vals, "partial_volume_samples": nsub.tolist(), "node_spacing_mm": spacing.tolist(),
        "inverse_residual_mm": residual, "push_consistency_mm": consistency,
        "length_scale": deform.length_scale,
        "template_region": {"shape": list(region.shape), "affine": region.affine.tolist()},
        "not_given_to_methods": ["deformation", "contrast source", "bias field", "noise",
                                 "label positions other than body_labels"],
    }
    return IndependentSubject(
        image=Image(img_out, aff), seg=Image(seg.astype(np.uint8), aff), cord_pv=Image(pv_out, aff),
        levels=Image(lev_out, aff), disc_labels=lab(pts["disc"]), body_labels=lab(pts["body"]),
        disc_points=pts["disc"], body_points=pts["body"], true_subject2template=truth, deformation=deform,
        template_region=region, template=tpl.name, contrast=o["contrast"], params=params, timings=times,
        pull=pull,
    )


def _bias(grid: Grid, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum of 3 random cosines)`` with log-amplitude ``amplitude``."""
    if amplitude <= 0:
        return np.ones(grid.shape, np.float32)
    c = grid.center_world()
    modes = []
    for _ in range(3):
        d = rng.normal(size=3)
        modes.append((d / np.linalg.norm(d), 2 * np.pi / rng.uniform(150.0, 400.0), rng.uniform(0, 2 * np.pi)))
    out = np.zeros(grid.shape, np.float32)
    for k0, k1 in grid.chunks():
        x = (grid.world_coords(k0, k1) - c).astype(np.float32)
        acc = np.zeros(len(x), np.float32)
        for d, k, ph in modes:
            acc += np.cos(k * (x @ d.astype(np.float32)) + np.float32(ph))
        out[:, :, k0:k1] = (acc * np.float32(amplitude / np.sqrt(3))).reshape(grid.shape[0], grid.shape[1], k1 - k0)
    return np.exp(out)
