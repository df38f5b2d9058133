"""Files of a labeling: the segmentation painted with levels, one voxel per disc, a JSON.

``<img>_seg_labeled.nii.gz``: every cord voxel valued by its vertebral level (PAM50_levels
values), from its arc length on the centerline; ``<img>_labels-disc.nii.gz``: one voxel per disc
(PAM50_label_disc values, 60 = conus tip) on the centerline at the disc's height;
``<img>_discs.json``: positions (mm), level names, confidences, identity margin and gaps. Each file
is written atomically; a failure leaves none of them behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spinereg.io.image import Image, atomic_write, check_writable, save_image
from spinereg.io.resample import place_labels
from spinereg.vertebrae.label import VertebralLabeling


def image_stem(path: str | Path | None) -> str:
    name = Path(path).name if path else "image"
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def labeled_segmentation(seg: Image, labeling: VertebralLabeling) -> Image:
    """The segmentation painted with vertebral levels (uint8; 0 outside the cord)."""
    data = np.asarray(seg.data)
    idx = np.argwhere(data > 0.5)
    out = np.zeros(seg.shape[:3], np.uint8)
    if len(idx):
        s, _ = labeling.centerline.project(seg.grid.voxel_to_world(idx))
        out[tuple(idx.T)] = np.clip(labeling.level_at(s), 0, 255)
    return seg.with_data(out)


def disc_label_image(image: Image, labeling: VertebralLabeling) -> Image:
    """One voxel per disc (PAM50_label_disc values) on ``image``'s grid."""
    vol = place_labels(labeling.points, labeling.values, image.grid, dtype=np.uint8)
    return image.with_data(vol)


def write_labeling(image: Image, seg: Image, labeling: VertebralLabeling, outdir: str | Path,
                   overwrite: bool = False, inputs: dict | None = None) -> dict[str, Path]:
    """Write the three files into ``outdir``; returns them by role."""
    outdir = Path(outdir)
    stem = image_stem(image.path)
    files = {"seg_labeled": outdir / f"{stem}_seg_labeled.nii.gz",
             "disc_labels": outdir / f"{stem}_labels-disc.nii.gz",
             "json": outdir / f"{stem}_discs.json"}
    for p in files.values():  # refuse before writing anything
        check_writable(p, overwrite)
    labeled = labeled_segmentation(seg, labeling)
    discs = disc_label_image(image, labeling)
    doc = {"inputs": inputs or {}, **labeling.as_dict()}
    written = []
    try:
        written.append(save_image(labeled, files["seg_labeled"], overwrite=overwrite, dtype=np.uint8))
        written.append(save_image(discs, files["disc_labels"], overwrite=overwrite, dtype=np.uint8))
        written.append(atomic_write(files["json"], lambda tmp: tmp.write_text(json.dumps(doc, indent=1)),
                                    overwrite=overwrite))
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return files
