"""Straighten an image along its spinal cord (SCT's ``sct_straighten_spinalcord``) and write it.

:func:`straighten_image` fits the cord's centerline to a segmentation (:func:`spinereg.cord.straighten`),
resamples the image into the straight space once, and writes, all together or none
(:class:`~spinereg.io.staging.OutputFolder`):

* ``<img>_straight.nii.gz``: the image straightened (its centre line on the straight grid's
  central column, R-L / A-P kept, S-I = arc length along the cord);
* ``warp_curve2straight.nii.gz`` (on the straight grid) and ``warp_straight2curve.nii.gz`` (on
  the image's grid): ITK/ANTs displacement fields, named as SCT names them, usable with
  ``spinereg apply`` (and ``antsApplyTransforms`` / ``sct_apply_transfo``) to move any image,
  segmentation or label of either space to the other;
* ``straight_ref.nii.gz``: an empty image on the straight grid (the destination of ``apply``);
* ``straightening.json``: SCT's straightening figures measured on the segmentation straightened
  by the written field (``mse_vox2``, ``max_dist_vox``, ``sct_rms_mm``; SCT's own test requires
  ``mse_vox2`` < 0.8 and ``max_dist_vox`` < 1.2), the round trip of the two fields on the cord
  voxels, the centerline, and the provenance (inputs with checksums, versions, parameters).

A straightening that fails SCT's criteria is reported in the JSON (``sct_criteria_met``) and as
a warning; the files are written either way (the caller decides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinereg.cord.straighten import StraighteningResult, straighten
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image, on_grid_of, path_stem, save_image
from spinereg.io.provenance import describe_inputs, utc_now, versions, write_json
from spinereg.io.resample import interp_name
from spinereg.io.sanity import require_segmentation
from spinereg.transforms.apply import apply_transforms

#: SCT's straightening test (``testing/cli/test_cli_sct_straighten_spinalcord.py``): on the
#: straightened segmentation, mean squared distance of the slice centres to the centre line
#: (voxels^2) and the largest distance (voxels)
SCT_MAX_MSE_VOX2 = 0.8
SCT_MAX_DIST_VOX = 1.2


@dataclass
class StraightenOutputs:
    """What :func:`straighten_image` wrote (``files`` by role), its figures and warnings."""

    files: dict[str, Path]
    metrics: dict
    warnings: list[str] = field(default_factory=list)
    result: StraighteningResult | None = None


def output_names(image_path: str | Path | None) -> dict[str, str]:
    """The file names :func:`straighten_image` writes, by role."""
    stem = path_stem(image_path) if image_path else "image"
    return {"straight": f"{stem}_straight.nii.gz", "curve2straight": "warp_curve2straight.nii.gz",
            "straight2curve": "warp_straight2curve.nii.gz", "straight_ref": "straight_ref.nii.gz",
            "json": "straightening.json"}


def _seg_on_image_grid(seg: Image, image: Image) -> Image:
    """The segmentation on the image's voxel grid: exactly when it holds the same voxels (maybe in
    another axis order), else resampled (linear: a soft mask) through world coordinates; refused
    when none of it falls in the image."""
    s = on_grid_of(seg, image)
    if s.grid.same_as(image.grid, atol=1e-4):
        return s
    out = apply_transforms(seg, image.grid, [], "linear")
    if not np.any(np.asarray(out.data) >= 0.5):
        raise InputError("the segmentation holds no cord inside the image's field of view (world coordinates)",
                         seg.name, "give the cord segmentation of this image (-s), in its space")
    return out


def straighten_image(image: Image | str | Path, seg: Image | str | Path, outdir: str | Path, *,
                     interp: str = "spline", xy_size_mm: float | None = None,
                     voxel_size: float | None = None, overwrite: bool = False,
                     inputs: dict | None = None) -> StraightenOutputs:
    """Straighten ``image`` along the cord of ``seg`` and write the files of the module docstring
    into ``outdir``.

    ``interp``: the image's interpolation (``nn``, ``linear``, ``spline`` -- SCT's default --, or
    ``label``). ``xy_size_mm``: the straight image's width across R-L and A-P (mm; SCT's
    ``-xy_size``); default: what covers the image's field of view around the cord, at most 80 mm.
    ``voxel_size``: the straight grid's voxel size (mm, isotropic); default: the image's in-plane
    resolution and its S-I spacing. Inputs are checked, and ``outdir`` too, before the work."""
    from spinereg.io.staging import OutputFolder

    interp = interp_name(interp)
    img = image if isinstance(image, Image) else load_image(image, ndim=(3, 4), lazy=True, what="image")
    sg = seg if isinstance(seg, Image) else load_image(seg, ndim=3, what="segmentation")
    require_segmentation(sg, "segmentation", "-s")  # an image as -s straightened along its "cord" with a warning only
    if img.ndim not in (3, 4):
        raise InputError(f"image must be 3D or 4D, got shape {img.shape}", img.name, "give a 3D image or a 4D series")
    for name, v in (("xy_size_mm", xy_size_mm), ("voxel_size", voxel_size)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise InputError(f"{name} {v}: must be a positive size in mm", None, f"give a positive {name}")
    names = output_names(img.path)
    outdir = Path(outdir)
    folder = OutputFolder(outdir, list(names.values()), overwrite=overwrite).check()  # before the work
    ref = img if img.ndim == 3 else Image(np.asarray(img.volume(0)), img.affine, None, img.path)
    seg_img = _seg_on_image_grid(sg, ref)
    res = straighten(seg_img, half_width_mm=None if xy_size_mm is None else xy_size_mm / 2.0,
                     voxel_size=voxel_size, max_radius_mm=40.0)
    straight = res.to_straight(img, interp)
    m = dict(res.metrics)
    met = bool(m.get("mse_vox2", np.inf) < SCT_MAX_MSE_VOX2 and m.get("max_dist_vox", np.inf) < SCT_MAX_DIST_VOX)
    warnings = []
    if not met:
        warnings.append(f"the straightened segmentation's centre strays from the centre line (mse "
                        f"{m.get('mse_vox2', float('nan')):.2f} voxel^2, max {m.get('max_dist_vox', float('nan')):.2f} "
                        f"voxels; SCT requires < {SCT_MAX_MSE_VOX2} and < {SCT_MAX_DIST_VOX}): check the segmentation "
                        "(a gap, a blob off the cord) before using the straightened image")
    doc = {"command": "straighten", "created": utc_now(), "versions": versions(),
           "inputs": {**(inputs or {}), "files": describe_inputs({"image": img.path, "seg": sg.path})},
           "parameters": {"interp": interp, "xy_size_mm": xy_size_mm, "voxel_size": voxel_size},
           "sct_criteria": {"max_mse_vox2": SCT_MAX_MSE_VOX2, "max_dist_vox": SCT_MAX_DIST_VOX},
           "sct_criteria_met": met, "metrics": m, "centerline": res.centerline.to_dict(),
           "warnings": warnings}
    files = {k: outdir / v for k, v in names.items()}
    from spinereg.transforms.itk import write_displacement

    with folder as tmp:
        save_image(straight, tmp / names["straight"], overwrite=True)
        write_displacement(res.curve2straight, tmp / names["curve2straight"], overwrite=True)
        write_displacement(res.straight2curve, tmp / names["straight2curve"], overwrite=True)
        zeros = Image(np.zeros(res.straight_grid.shape, np.uint8), res.straight_grid.affine)
        save_image(zeros, tmp / names["straight_ref"], overwrite=True, dtype=np.uint8)
        write_json(tmp / names["json"], doc, overwrite=True)
    return StraightenOutputs(files, {**m, "sct_criteria_met": met}, warnings, res)

