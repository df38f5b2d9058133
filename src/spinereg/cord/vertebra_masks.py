"""Per-vertebra masks: one label per vertebra, valued by level as SCT (C1 = 1 ... C7 = 7, T1 = 8 ...
T12 = 19, L1 = 20 ... L5 = 24, sacrum = 25).

Two sources:

* **a template's spine mask split by vertebral level** (:func:`split_spine_mask`,
  :func:`template_vertebrae`): PAM50_spine is a binary mask of the vertebrae (bodies and
  posterior arches). It is cut into 6-connected components; each component takes the level of
  its *body part* (voxels more than ``body_offset_mm`` anterior to the cord), read from the
  nearest voxel of the levels image (PAM50_levels: cord voxels valued by vertebral level). A
  component whose body part spans two levels with a large share each (C1 and C2 touch in PAM50)
  is split voxel by voxel by the nearest cord level. Components with no body part (spinous
  processes, ribs, transverse processes cut off by the field of view) take the level of the
  nearest labelled voxel. The result is cached on disk by file identity (templates do not
  change). Warp it to a subject with the registration (nearest neighbour), e.g.
  ``apply_transforms(labels, subject_grid, reg.template2anat, "nn")``.
* **a user's vertebra segmentation** (:func:`vertebrae_from_segmentation`): SCT values as above,
  or TotalSpineSeg's (11-17 = C1-C7, 21-32 = T1-T12, 41-45 = L1-L5, 50 = sacrum; its cord (1),
  canal (2) and disc (63-100) labels are dropped). ``convention="auto"`` recognises
  TotalSpineSeg by its cord/canal/disc values or vertebra values above 24; say
  ``convention="totalspineseg"`` or ``"sct"`` when a file holds neither (e.g. only C1-C7 as
  11-17, which SCT would read as T4-T10).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from spinereg.io.template import Template
    from spinereg.transforms.base import Transform

#: TotalSpineSeg vertebra value -> SCT level value
TSS_TO_SCT: dict[int, int] = {
    **{10 + k: k for k in range(1, 8)},  # C1-C7
    **{20 + k: 7 + k for k in range(1, 13)},  # T1-T12
    **{40 + k: 19 + k for k in range(1, 6)},  # L1-L5
    50: 25,  # sacrum
}
#: TotalSpineSeg labels that are not vertebrae: cord, canal, discs
TSS_OTHER = frozenset({1, 2, *range(63, 68), *range(71, 83), *range(91, 96), 100})
SCT_MAX = 29


def _int_labels(img: Image, what: str) -> np.ndarray:
    data = np.asarray(img.data)
    if data.dtype.kind == "f":
        if not np.allclose(data, np.round(data)):
            raise InputError(f"{what} has non-integer values", img.name,
                             "give a labelled segmentation (resampled with -x nn, never linear)")
        data = np.round(data)
    return data.astype(np.int32)


def detect_convention(values: Iterable[int]) -> str:
    """``"totalspineseg"`` when the values can only be TotalSpineSeg's, else ``"sct"``."""
    vals = {int(v) for v in values if v > 0}
    if vals & TSS_OTHER or any(v > SCT_MAX for v in vals):
        return "totalspineseg"
    return "sct"


def vertebrae_from_segmentation(seg: Image | str, convention: str = "auto") -> Image:
    """A user's vertebra segmentation as SCT level values (other structures dropped)."""
    img = seg if isinstance(seg, Image) else load_image(seg, ndim=3, what="vertebra segmentation")
    lab = _int_labels(img, "vertebra segmentation")
    values = np.unique(lab[lab > 0])
    if values.size == 0:
        raise InputError("vertebra segmentation is empty", img.name, "give a labelled vertebra segmentation")
    conv = detect_convention(values) if convention == "auto" else convention
    if conv == "totalspineseg":
        lut = np.zeros(max(int(values.max()), 100) + 1, np.int16)
        for k, v in TSS_TO_SCT.items():
            lut[k] = v
        out = lut[lab]
    elif conv == "sct":
        bad = values[values > SCT_MAX]
        if bad.size:
            raise InputError(f"vertebra values {bad.tolist()[:5]} are not SCT levels", img.name,
                             "use --vert-convention totalspineseg for TotalSpineSeg files")
        out = lab.astype(np.int16)
    else:
        raise InputError(f"unknown vertebra label convention {convention!r}", img.name,
                         "use auto, sct or totalspineseg")
    if not (out > 0).any():
        raise InputError("no vertebra in the segmentation", img.name,
                         "TotalSpineSeg vertebrae are 11-17, 21-32, 41-45, 50; SCT's 1-25")
    return Image(out, img.affine, img.header)


def split_spine_mask(spine: Image, levels: Image, *, body_offset_mm: float = 5.0, split_share: float = 0.15,
                     min_voxels: int = 3) -> Image:
    """Label a binary spine mask by vertebra (see the module doc). ``spine`` and ``levels`` share
    one grid; the anterior direction is world +y (RAS)."""
    if not spine.grid.same_as(levels.grid):
        raise InputError("spine mask and levels image are on different grids", spine.name,
                         "give both from the same template")
    grid = spine.grid
    sp = np.asarray(spine.data) > 0.5
    lev = _int_labels(levels, "levels image")
    comp, n = ndimage.label(sp)
    if n == 0:
        raise InputError("spine mask is empty", spine.name, "give the template's spine mask")
    cord_idx = np.argwhere(lev > 0)
    if cord_idx.size == 0:
        raise InputError("levels image is empty", levels.name, "give the template's levels image")
    cord_xyz = grid.voxel_to_world(cord_idx)
    cord_lev = lev[tuple(cord_idx.T)]
    tree = cKDTree(cord_xyz)
    out = np.zeros(sp.shape, np.int16)
    objects = ndimage.find_objects(comp)
    unassigned = []
    for c, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        local = np.argwhere(comp[sl] == c) + [s.start for s in sl]
        if len(local) < min_voxels:
            unassigned.append(local)
            continue
        sample = local[::max(1, len(local) // 5000)]  # the level shares need no more
        xyz = grid.voxel_to_world(sample)
        _, j = tree.query(xyz)
        body = xyz[:, 1] - cord_xyz[j, 1] > body_offset_mm
        if not body.any():
            unassigned.append(local)
            continue
        counts = np.bincount(cord_lev[j][body])
        main = np.flatnonzero(counts / counts.sum() >= split_share)
        if len(main) <= 1:
            out[tuple(local.T)] = int(np.argmax(counts))
        else:  # merged vertebrae: voxel by voxel, restricted to the main levels
            _, j = tree.query(grid.voxel_to_world(local))
            lv = cord_lev[j]
            lv = np.where(np.isin(lv, main), lv, main[np.argmin(np.abs(main[None] - lv[:, None]), axis=1)])
            out[tuple(local.T)] = lv
    if unassigned:
        rest = np.concatenate(unassigned)
        done = np.argwhere(out > 0)
        if len(done):
            step = max(1, len(done) // 300_000)
            ref = done[::step]
            _, j = cKDTree(grid.voxel_to_world(ref)).query(grid.voxel_to_world(rest))
            out[tuple(rest.T)] = out[tuple(ref[j].T)]
    return Image(out, spine.affine, spine.header)


def template_vertebrae(tpl: Template) -> Image:
    """The template's spine mask split by vertebra (cached on disk by file identity)."""
    from spinereg.io.registry import cache_dir

    for role in ("spine", "levels"):
        if not tpl.has(role):
            raise InputError(f"template {tpl.name} has no {role} image", None,
                             "per-vertebra masks need the template's spine mask and levels (PAM50)")
    paths = [tpl.path("spine"), tpl.path("levels")]
    ident = "|".join(f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in paths)
    key = hashlib.sha256(f"{ident}|v1".encode()).hexdigest()[:24]
    cache = cache_dir() / "vertebrae" / f"{key}.nii.gz"
    spine = load_image(paths[0], ndim=3, check_finite=False)
    try:
        cached = load_image(cache, ndim=3)
        if cached.grid.same_as(spine.grid):
            return Image(np.asarray(cached.data).astype(np.int16), spine.affine, spine.header)
    except (OSError, InputError, ValueError):
        pass
    out = split_spine_mask(spine, load_image(paths[1], ndim=3, check_finite=False))
    try:
        from spinereg.io.image import save_image

        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{key}.{os.getpid()}.nii.gz")
        save_image(Image(out.data.astype(np.uint8), out.affine, out.header), tmp, overwrite=True)
        os.replace(tmp, cache)
    except OSError:  # a read-only cache only costs time
        pass
    return out


def vertebral_bodies(vertebrae: np.ndarray, cord: np.ndarray, grid: Grid, offset_mm: float = 8.0) -> np.ndarray:
    """The body of each vertebra: its voxels more than ``offset_mm`` anterior (world +y) to the
    cord centre of their axial slice (the grid's voxel axis closest to S-I), largest 6-connected
    part (drops lateral masses and processes that reach forward)."""
    lab = np.asarray(vertebrae)
    si = int(np.argmax(np.abs(grid.affine[2, :3]) / grid.zooms))
    cidx = np.argwhere(np.asarray(cord) > 0.5)
    if cidx.size == 0:
        raise InputError("cord mask is empty", None, "give the template's cord mask on the same grid")
    ys = grid.voxel_to_world(cidx)[:, 1]
    k = cidx[:, si]
    sums = np.bincount(k, ys, minlength=grid.shape[si])
    cnt = np.bincount(k, minlength=grid.shape[si])
    have = cnt > 0
    cy = np.interp(np.arange(grid.shape[si]), np.flatnonzero(have), sums[have] / cnt[have])
    idx = np.argwhere(lab > 0)
    ant = grid.voxel_to_world(idx)[:, 1] - cy[idx[:, si]]
    body = np.zeros(lab.shape, bool)
    body[tuple(idx[ant > offset_mm].T)] = True
    out = np.zeros(lab.shape, np.int16)
    sel = np.where(body, lab, 0)
    for v, sl in enumerate(ndimage.find_objects(sel), start=1):
        if sl is None:
            continue
        part, n = ndimage.label(sel[sl] == v)
        if n:
            big = np.argmax(np.bincount(part.ravel())[1:]) + 1
            out[sl][part == big] = v
    return out


def spine_tissues(tpl: Template, region: Grid, vertebrae: np.ndarray,
                  disc_gap_mm: float = 8.0) -> dict[str, np.ndarray]:
    """Tissue masks of a template region (for synthetic spine contrasts): ``cord``, ``csf``,
    ``bone`` (the vertebrae), ``cortex`` (bone within 1 mm of its surface), ``disc`` (gaps of at
    most ``disc_gap_mm`` along S-I between vertebral bodies) and ``bodies`` (labels)."""
    from spinereg.io.resample import slice_like

    cord = slice_like(load_image(tpl.path("cord"), ndim=3, check_finite=False), region) > 0.5
    csf = slice_like(load_image(tpl.path("csf"), ndim=3, check_finite=False), region) > 0.5
    bone = np.asarray(vertebrae) > 0
    inner = ndimage.distance_transform_edt(bone, sampling=region.zooms)
    bodies = vertebral_bodies(vertebrae, cord, region, offset_mm=5.0)
    si = int(np.argmax(np.abs(region.affine[2, :3]) / region.zooms))
    length = int(round(disc_gap_mm / region.zooms[si])) | 1
    st = np.ones([length if a == si else 1 for a in range(3)], bool)
    disc = ndimage.binary_closing(bodies > 0, structure=st) & ~bone
    return {"cord": cord, "csf": csf & ~cord, "bone": bone, "cortex": bone & (inner <= 1.0), "disc": disc,
            "bodies": bodies}


def vertebrae_on_grid(labels: Image, grid: Grid,
                      transforms: Transform | Sequence[Transform] | None = None) -> np.ndarray:
    """Vertebra labels resampled (nearest neighbour) onto ``grid`` through pull ``transforms``."""
    from spinereg.transforms.apply import apply_transforms

    return np.asarray(apply_transforms(labels, grid, transforms, "nn").data).astype(np.int16)


def vertebra_masks(labels: np.ndarray | Image) -> dict[int, np.ndarray]:
    """``{level: boolean mask}`` of a labelled vertebra array."""
    lab = np.asarray(labels.data if isinstance(labels, Image) else labels)
    return {int(v): lab == v for v in np.unique(lab) if v > 0}
