"""QC report page of an automatic cord segmentation (``segment``): axial mosaic with the outline.

The run's provenance names the image (``inputs.image``), the mask (``outputs.seg``) and what was
segmented (``segmentation``: the image, or the mean of a 4D series). The page shows axial windows
centred on the cord, inferior to superior, each labelled with the image's slice number, without
and with the segmentation's outline (before/after toggle), and the cord's mid-sagittal plane.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinereg.errors import InputError
from spinereg.qc.pages import Panel, page


@page("segment")
def render(run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    from spinereg.io.image import load_image
    from spinereg.qc.figures import (
        SEG_COLOR,
        Overlay,
        axial_mosaic,
        axial_slices,
        crop_grid,
        on_grid,
        sagittal_view,
        slice_numbers,
        tile_labels,
        to_ras,
    )

    image_path = (prov.get("inputs") or {}).get("image")
    seg_path = (prov.get("outputs") or {}).get("seg")
    if not image_path or not seg_path:
        raise InputError("provenance.json must name inputs.image and outputs.seg", Path(run_dir) / "provenance.json",
                         "give the folder written by spinereg segment --qc")
    image = load_image(image_path, ndim=(3, 4), lazy=True)
    seg = load_image(seg_path, ndim=3, what="segmentation")
    img = image if image.ndim == 3 else image.with_data(np.asarray(image.volume(0)))
    full = np.asarray(on_grid(seg, image.grid, interp="nn")) > 0.5
    grid = crop_grid(image.grid, full)
    base = to_ras(on_grid(img, grid), grid.affine)
    segv = to_ras(on_grid(seg, grid, interp="nn").astype(np.float32), grid.affine).data
    cordmask = segv > 0.5
    slices = axial_slices(cordmask)
    labels = tile_labels(slice_numbers(base, slices, image.grid))
    ov = Overlay(segv, "contour", SEG_COLOR, "segmentation")
    axial_mosaic(base, outdir / "seg_axial_image.png", cordmask, [], slices, tile_labels=labels)
    axial_mosaic(base, outdir / "seg_axial.png", cordmask, [ov], slices, tile_labels=labels)
    sagittal_view(base, outdir / "seg_sagittal.png", cordmask, [ov])
    info = prov.get("segmentation") or {}
    what = info.get("segmented", "the image")
    note = ""
    if "median_axial_area_mm2" in info:
        # both on the model's working grid, where the plausibility checks run (t2s: 88.5 mm2 there,
        # 85.5 on the written mask's voxels): a check, not a measure (spinereg csa measures)
        note = (f"{info.get('working_slices_with_cord', '?')} slices with cord, median axial area "
                f"{info['median_axial_area_mm2']} mm2 on the model's working grid (spinereg csa measures the "
                f"written mask), mean probability {info.get('mean_probability', '?')}")
    if info.get("warnings"):  # what segment said on stderr, e.g. a cord ending well below the top
        note = "; ".join(f"warning: {w}" for w in info["warnings"]) + (f". {note}" if note else "")
    return [
        Panel("segmentation", "Automatic cord segmentation (axial)", "toggle",
              {"before": "seg_axial_image.png", "after": "seg_axial.png"},
              f"red: automatic cord segmentation of {what}; tiles labelled with the image's slice number, "
              "inferior (top left) to superior", {"before": "image", "after": "image + segmentation"}, note),
        Panel("segmentation", "Automatic cord segmentation (sagittal)", "single", {"image": "seg_sagittal.png"},
              "red: the segmentation through the cord's mid-sagittal plane"),
    ]
