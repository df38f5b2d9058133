"""QC scores that need images, computed from an output folder (its warps and the inputs named in
provenance.json), for :mod:`spinereg.metrics.verdict`.

Distances are judged where both images hold the cord and in voxels of the coarsest axis: a
7.5 mm-slice image cannot be closer than half a slice to anything along S-I, so
``hausdorff95_vox`` divides the Hausdorff 95 distance (over the slices that hold both masks) by
the subject's largest voxel size. Inverse consistency is re-measured over the same region
(``inverse_consistency_region_p95_mm``: destination voxels within 10 mm of the cord on the
slices both segmentations cover, whose image lies in the source's field of view): the far
corners of two different fields of view carry extrapolated fields, not registration errors.

Image similarity (:mod:`spinereg.metrics.similarity`) compares the fixed image with the moving
image before (header placement) and after the registration in a 10 mm neighbourhood of the cord
(the whole overlap for image-only runs): for ``register-to-template`` the subject image vs the
template image of its contrast (the real template image when present, else synthesised from the
tissue maps) warped with ``warp_template2anat``; for ``register`` the destination vs the source
warped with the forward warp. ``image_structure`` / ``image_empty`` flag noise and empty images;
``warp_identity`` flags an identity result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.box import box_slices, mask_box, pad_voxels
from spinereg.io.image import Image, load_image, on_grid_of
from spinereg.metrics.similarity import image_structure, registration_similarity

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.grid import Grid
    from spinereg.io.template import Template
    from spinereg.transforms.base import Transform


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"{what} not found", path, "give a spinereg output folder (with metrics.json and "
                         "provenance.json)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON ({exc})", path, "rerun the command with --overwrite") from exc


def _bin(img: Image, thr: float = 0.5) -> Image:
    return img.with_data((np.asarray(img.data) > thr).astype(np.uint8))


def _si_axis(img: Image) -> int:
    from spinereg.metrics.overlap import si_axis

    return si_axis(img.affine)


def shared_slices(a: Image, b: Image) -> np.ndarray:
    """Boolean per slice (along ``b``'s S-I voxel axis) of the slices of ``b`` holding both masks
    (``a`` on ``b``'s grid)."""
    ax = _si_axis(b)
    other = tuple(i for i in range(3) if i != ax)
    return np.any(np.asarray(a.data) > 0.5, axis=other) & np.any(np.asarray(b.data) > 0.5, axis=other)


def _restrict(img: Image, keep: np.ndarray) -> Image:
    ax = _si_axis(img)
    shape = [1, 1, 1]
    shape[ax] = -1
    return img.with_data(((np.asarray(img.data) > 0.5) & keep.reshape(shape)).astype(np.uint8))


def surface_scores(moved: Image, target: Image) -> dict[str, float]:
    """Hausdorff 95 (mm and voxels of the coarsest axis) and centerline RMS/max of ``moved`` vs
    ``target`` over the slices holding both (same grid)."""
    from spinereg.metrics.centerline import centerline_distance
    from spinereg.metrics.distance import hausdorff

    keep = shared_slices(moved, target)
    if keep.sum() < 2:
        return {"shared_slices": float(keep.sum())}
    a, b = _restrict(_bin(moved), keep), _restrict(_bin(target), keep)
    hd = hausdorff(a, b)
    cl = centerline_distance(a, b)
    coarse = float(np.max(target.grid.zooms))
    return {"hausdorff95_mm": round(hd.hausdorff95_mm, 4), "hausdorff95_vox": round(hd.hausdorff95_mm / coarse, 4),
            "centerline_rms_mm": round(cl.rms_mm, 4), "centerline_max_mm": round(cl.max_mm, 4),
            "shared_slices": float(keep.sum())}


def cord_region(seg: Image, margin_mm: float = 10.0, keep: np.ndarray | None = None) -> np.ndarray:
    """Voxels within ``margin_mm`` of the cord (distance transform in mm), on the ``keep`` slices."""
    m = np.asarray(seg.data) > 0.5
    if not m.any():
        return np.zeros(m.shape, bool)
    # only the cord's bounding box plus the margin can be within margin_mm of it: the distance
    # transform there (every cord voxel inside) gives the same distances as on the whole grid
    box = box_slices(*mask_box(m, pad_voxels(margin_mm, seg.grid.zooms, 1)))
    region = np.zeros(m.shape, bool)
    region[box] = ndimage.distance_transform_edt(~m[box], sampling=seg.grid.zooms) <= margin_mm
    if keep is not None:
        shape = [1, 1, 1]
        shape[_si_axis(seg)] = -1
        region &= keep.reshape(shape)
    return region


def region_consistency(fwd: Transform, inv: Transform, grid: Grid, region: np.ndarray,
                       source_grid: Grid) -> dict[str, float]:
    """p95 / max of ``|inv(fwd(x)) - x|`` over the ``region`` voxels of ``grid`` whose image lies
    in ``source_grid`` (mm)."""
    idx = np.argwhere(region)
    if len(idx) > 200_000:
        idx = idx[:: len(idx) // 200_000 + 1]
    if not len(idx):
        return {}
    x = grid.voxel_to_world(idx)
    y = fwd.map(x)
    ijk = source_grid.world_to_voxel(np.nan_to_num(y))
    ok = np.all(np.isfinite(y), axis=1) & np.all((ijk >= -0.5) & (ijk <= np.array(source_grid.shape) - 0.5), axis=1)
    if ok.sum() < 10:
        return {}
    r = np.linalg.norm(inv.map(y[ok]) - x[ok], axis=1)
    r = r[np.isfinite(r)]
    return {"inverse_consistency_region_p95_mm": round(float(np.percentile(r, 95)), 4),
            "inverse_consistency_region_max_mm": round(float(r.max()), 4)}


def _image_scores(fixed: Image, moving: Image, transform: Transform,
                  region: np.ndarray, si_peak: bool = True) -> dict[str, float]:
    """Structure and emptiness of both images and their similarity (``si_peak``: with the S-I
    peak, judged for ``register`` only)."""
    out: dict[str, float] = {}
    for name, img, reg in (("fixed", fixed, region), ("moving", moving, None)):
        s = image_structure(img, reg if reg is not None and reg.any() else None)
        out[f"image_empty_{name}"] = s["empty"]
        out[f"image_structure_{name}"] = s["structure"]
    out["image_empty"] = max(out["image_empty_fixed"], out["image_empty_moving"])
    out["image_structure"] = min(out["image_structure_fixed"], out["image_structure_moving"])
    if out["image_empty"] == 0.0:
        out.update(registration_similarity(fixed, moving, transform, region if region.any() else None,
                                           si_peak=si_peak).as_dict())
    return out


def _template_of(prov: dict):
    from spinereg.io.template import load_template

    info = prov.get("template") or {}
    root = info.get("root")
    if root and Path(root).is_dir():
        return load_template(root)
    return load_template(info.get("name") or (prov.get("inputs") or {}).get("template") or "PAM50")


def template_image(tpl: Template, contrast: str, tcord: Image, region: Grid) -> Image | None:
    """The template's image for ``contrast`` on ``region`` (a voxel-aligned sub-grid): the real
    file when the template has one, else synthesised from its tissue maps."""
    from spinereg.io.resample import slice_like
    from spinereg.register.contrast import synthesize_contrast

    if tpl.has(contrast):
        full = load_image(tpl.path(contrast), ndim=3, check_finite=False)
        return Image(slice_like(full, region), region.affine)
    return synthesize_contrast(tpl, contrast, tcord, region)


def template_run_scores(out: Path, prov: dict) -> dict[str, float]:
    from spinereg.metrics.level_check import label_si_scale
    from spinereg.transforms.apply import apply_transforms
    from spinereg.transforms.itk import read_displacement

    inputs = prov.get("inputs") or {}
    seg = load_image(input_path(inputs, "seg", out), ndim=3, what="segmentation")
    img = load_image(input_path(inputs, "image", out), ndim=3, what="image") if inputs.get("image") else None
    if img is not None:  # a segmentation holding the image's voxels in another axis order: scored on the
        seg = on_grid_of(seg, img)  # image's grid, as the registration used it
    tpl = _template_of(prov)
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    inv = read_displacement(_existing(out / "warp_template2anat.nii.gz"))
    moved = apply_transforms(tcord, seg.grid, [inv], "linear")
    scores = surface_scores(moved, seg)
    del moved  # not alive beside the template image below (full-resolution peak)
    scores["coarsest_voxel_mm"] = round(float(np.max(seg.grid.zooms)), 4)
    # labels are voxels: along S-I they are known to half a voxel at best
    scores["label_si_uncertainty_mm"] = round(float(seg.grid.zooms[_si_axis(seg)]) / 2, 4)
    scores.update(label_si_scale(prov, seg, tpl))
    if img is not None:
        region = cord_region(seg)
        pts = inv.map(seg.grid.voxel_to_world(np.argwhere(region)[::7]))
        sub = tcord.grid.bounding_subgrid(pts, margin_mm=10.0)
        tim = template_image(tpl, str(inputs.get("contrast") or "t2"), tcord, sub) if sub is not None else None
        if tim is not None:
            scores.update(_image_scores(img, tim, inv, region, si_peak=False))
        if scores.get("image_empty", 0.0) == 0.0 and scores.get("image_structure", 1.0) >= 0.1:
            from spinereg.metrics.level_check import auto_level_offset

            lv, notes = auto_level_offset(img, seg, str(inputs.get("contrast") or "t2"), inv, tpl)
            scores.update(lv)
            if notes:
                scores["_notes"] = notes
    return scores


def register_run_scores(out: Path, prov: dict, loaded: dict[str, Image] | None = None) -> dict[str, float]:
    """The image scores of a ``register`` folder; ``loaded``: input images the caller holds, by
    provenance input key, as ``load_image(path, ndim=3)`` reads the file it names (not read again)."""
    from spinereg.io.image import file_stem as stem
    from spinereg.io.image import pair_stems
    from spinereg.transforms.apply import apply_transforms
    from spinereg.transforms.itk import read_displacement

    inputs = prov.get("inputs") or {}

    def load(key: str, what: str) -> Image:
        have = (loaded or {}).get(key)
        if have is not None and np.ndim(have.data) == 3:
            return have
        return load_image(input_path(inputs, key, out), ndim=3, what=what)

    src = load("input", "source image")
    dest = load("dest", "destination image")
    s, d = pair_stems(stem(src, "src"), stem(dest, "dest"))
    fwd = read_displacement(_existing(out / f"warp_{s}2{d}.nii.gz"))
    scores: dict[str, float] = {"warp_identity": float(np.nanmax(np.abs(fwd.data), initial=0.0) < 1e-3),
                                "coarsest_voxel_mm": round(float(max(np.max(src.grid.zooms), np.max(dest.grid.zooms))), 4)}
    region = np.ones(dest.shape[:3], bool)
    if inputs.get("iseg") and inputs.get("dseg"):
        # segmentations holding their image's voxels in another axis order: on the image's grid, as
        # the registration used them (a no-op for those on it already, e.g. the ones the caller holds)
        iseg = on_grid_of(load("iseg", "source segmentation"), src)
        dseg = on_grid_of(load("dseg", "destination segmentation"), dest)
        moved = apply_transforms(iseg, dseg.grid, [fwd], "linear")
        scores.update(surface_scores(moved, dseg))
        region = cord_region(dseg, keep=shared_slices(moved, dseg))
        inv_path = out / f"warp_{d}2{s}.nii.gz"
        if inv_path.is_file():
            scores.update(region_consistency(fwd, read_displacement(inv_path), dest.grid, region, src.grid))
    elif inputs.get("dseg"):
        dseg = on_grid_of(load("dseg", "destination segmentation"), dest)
        region = cord_region(dseg)
    scores.update(_image_scores(dest, src, fwd, region))
    return scores


def derived_scores(scores: dict[str, float], metrics: dict) -> dict[str, float]:
    """Scores combining the image scores with the command's own metrics:

    * ``inverse_consistency_vox``: the inverse-consistency p95 (over the cord region when
      measured there, else the command's whole-grid figure) in voxels of the coarsest axis;
    * ``identity_result``: 1 when the warp is the identity and the images give no evidence that
      the identity placement is right (their similarity does not peak there), else 0;
    * ``unverified_si_scale_deviation``: ``label_si_scale_deviation`` when the automatic level
      check gave no verdict (ambiguous labeling), so that an unusual S-I scale warns there.
    """
    out: dict[str, float] = {}
    coarse = scores.get("coarsest_voxel_mm")
    ic = scores.get("inverse_consistency_region_p95_mm")
    if ic is None:
        ic = (metrics.get("inverse_consistency_mm") or {}).get("p95")
    if coarse and ic is not None and np.isfinite(ic):
        out["inverse_consistency_vox"] = round(float(ic) / float(coarse), 4)
    if "label_si_scale_deviation" in scores and "level_offset_vertebrae" not in scores:
        # levels not verified independently: an unusual S-I scale is then the only hint of a
        # one-level label error, so it warns (see docs/qc_calibration.md)
        out["unverified_si_scale_deviation"] = float(scores["label_si_scale_deviation"])
    if "warp_identity" in scores:
        supported = scores.get("similarity_shift_gain", 0.0) > 0.002
        out["identity_result"] = float(scores["warp_identity"] >= 0.5 and not supported)
    return out


def folder_scores(folder: str | Path, prov: dict | None = None,
                  loaded: dict[str, Image] | None = None) -> dict[str, float]:
    """Scores needing images, from an output folder's warps and the inputs it names (see the
    module docstring); empty for commands without image scores. ``loaded``: see
    :func:`register_run_scores`."""
    out = Path(folder)
    prov = prov if prov is not None else _read_json(out / "provenance.json", "provenance.json")
    command = prov.get("command")
    if command == "register-to-template":
        return template_run_scores(out, prov)
    if command == "register":
        return register_run_scores(out, prov, loaded)
    if command == "chain":
        return chain_run_scores(out, prov, loaded)
    return {}


#: a composed image with more of its cord than this outside the fields of view its warp goes through
#: gets a note with the fix (qc_thresholds.json's chain warn_above for cord_outside_anat_fov;
#: tests/test_chain.py checks they agree)
OUTSIDE_NOTE_ABOVE = 0.1


def chain_run_scores(out: Path, prov: dict, loaded: dict | None = None) -> dict[str, float]:
    """The image scores of a ``chain`` folder: ``image_structure`` (smallest) and ``image_empty``
    (largest) of the chain's images (whole images; ``loaded["images"]`` when the caller holds them,
    else the files named in provenance.json that still exist). A noise image as the chain's target
    used to give exit 0, "NOT SCORED" (before session 37). The chain's Dice scores come from its
    metrics (:func:`chain_metric_scores`)."""
    scores: dict[str, float] = {}
    images = list((loaded or {}).get("images") or [])
    if not images:
        for path in (prov.get("inputs") or {}).get("images") or []:
            p = Path(str(path))
            if p.is_file():
                images.append(load_image(p, ndim=(3, 4), what="image"))
    structure, empty = [], []
    for img in images:
        s = image_structure(img)
        structure.append(s["structure"])
        empty.append(s["empty"])
    if structure:
        scores["image_structure"] = min(structure)
        scores["image_empty"] = max(empty)
    return scores


def chain_metric_scores(metrics: dict) -> dict:
    """The scores of a ``chain`` folder that its metrics hold (per image: a dict), with ``_notes``:
    ``cord_dice`` (the smallest template cord Dice over the images with a segmentation, slices
    holding both; a ``composed`` image's over the part its warp is not extrapolated, see
    :func:`_judged_dice`), ``composed_cord_dice`` (the smallest Dice of a ``direct`` image's composition
    through the links over the part they cover: a check of the links, which the direct Dice is
    not), ``cord_outside_anat_fov`` (the largest fraction of a ``composed`` image's cord outside
    the fields of view of the images it is carried through (up to the anatomical image's): its
    template warp there is extrapolated). From the metrics the verdict holds in memory (before
    session 39 :func:`chain_run_scores` read them back from metrics.json; the same scores)."""
    scores: dict = {}
    entries = {name: m for name, m in metrics.items() if isinstance(m, dict) and name != "qc"}
    dice = [_judged_dice(m) for m in entries.values() if "cord_dice_zb" in m or "cord_dice_whole" in m]
    if dice:
        scores["cord_dice"] = round(min(dice), 4)
    # a direct registration is fitted to its image's segmentation (its Dice stays high whatever the
    # links did); the composition through the links, over the part they cover, checks the links
    composed = [float(m["composed"]["cord_dice_in_anat_fov"]) for m in entries.values()
                if isinstance(m.get("composed"), dict) and m["composed"].get("cord_dice_in_anat_fov") is not None]
    if composed:
        scores["composed_cord_dice"] = round(min(composed), 4)
    gains = {name: float(m["link_similarity"]["gain"]) for name, m in entries.items()
             if isinstance(m.get("link_similarity"), dict) and m["link_similarity"].get("gain") is not None}
    notes: list[str] = []
    if gains:
        scores["link_similarity_gain"] = round(min(gains.values()), 4)
        notes += [f"{name}: its link to the next image lowered the images' mutual information around the cord "
                  f"({g:+.4f}): it may have moved them apart; check the overlay, or give the link other steps "
                  "(--link-param, e.g. step=1,type=im,algo=slicereg,metric=MI for contrasts that differ), the "
                  "image's automatic segmentation (--seg auto), or a warp you have checked (--link-warp)"
                  for name, g in gains.items() if g < 0]
    outside = {name: float(m["cord_outside_anat_fov"]) for name, m in entries.items()
               if m.get("mode") == "composed" and m.get("cord_outside_anat_fov") is not None}
    if outside:
        scores["cord_outside_anat_fov"] = round(max(outside.values()), 4)
        notes += [f"{name}: {frac:.0%} of its cord lies outside the field of view of the images its "
                  "template warp goes through (the chain's later images), "
                  "where its composed template warp is extrapolated; give its cord segmentation (or "
                  "'auto') in --seg for a direct template registration of its whole field of view"
                  for name, frac in outside.items() if frac > OUTSIDE_NOTE_ABOVE]
    if notes:
        scores["_notes"] = notes
    return scores


def _judged_dice(m: dict) -> float:
    """The cord Dice a chain's image is judged on: over the slices holding both cords, and for a
    ``composed`` image only over the voxels its links carry inside the later images' fields of view
    (``cord_dice_in_anat_fov``), where its template warp is a registration. Beyond them the warp is
    an extrapolation, which ``cord_outside_anat_fov`` judges (warns, with the fix). Before session
    50 the whole-field Dice counted the extrapolated part twice: on sct_testing_data-derived
    cohorts (t2s / MT reaching 17-46 % beyond t2) every chain warned or failed on ``cord_dice``
    (0.74-0.95) while the covered part held 0.89-0.97."""
    if m.get("mode") == "composed" and m.get("cord_dice_in_anat_fov") is not None:
        return float(m["cord_dice_in_anat_fov"])
    return float(m.get("cord_dice_zb", m.get("cord_dice_whole")))


def _existing(p: Path) -> Path:
    if not p.is_file():
        raise InputError("output file missing", p, "rerun the command with --overwrite")
    return p


def input_path(inputs: dict, key: str, folder: Path) -> Path:
    if not inputs.get(key):
        raise InputError(f"provenance.json names no {key!r} input", folder / "provenance.json",
                         "rerun the command that wrote this folder")
    # a file the run made itself is named "NAME (automatic: ...)" and lies in the run folder: the
    # folder's, even where a file of that name lies in the working directory (a user's own seg)
    text = str(inputs[key])
    p = Path(text.split(" (automatic:")[0].strip())
    if " (automatic:" in text:
        p = folder / p.name
    elif not p.is_absolute() and not p.exists():
        p = folder / p
    if not p.is_file():
        raise InputError(f"the {key} input named in provenance.json is gone", p,
                         "restore it, or rerun the registration")
    return p
