"""Files of a labeling: the segmentation painted with levels, one voxel per disc, a JSON.

``<img>_seg_labeled.nii.gz``: every cord voxel valued by its vertebral level (PAM50_levels
values), from its arc length on the centerline; ``<img>_labels-disc.nii.gz``: one voxel per measured disc
(PAM50_label_disc values, 60 = conus tip) on the centerline at the disc's height;
``<img>_discs.json``: positions (mm), level names, confidences, identity margin and gaps, and per
disc whether the label file holds it (an estimated C1/C2 is in the JSON only);
``<img>_pmj.nii.gz`` when the image shows the pontomedullary junction: one voxel valued 50 (SCT's
``sct_detect_pmj`` file; :mod:`spinereg.vertebrae.pmj`). Each file appears with the others or not at all (spinereg.io.staging.OutputFolder): a failure leaves the
folder as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spinereg.cord.landmarks import Landmarks
from spinereg.io.grid import Grid
from spinereg.io.image import Image, on_grid_of, path_stem, save_image
from spinereg.io.resample import place_labels
from spinereg.vertebrae.convention import to_label_convention
from spinereg.vertebrae.model import CONUS
from spinereg.vertebrae.result import Disc, VertebralLabeling


def image_stem(path: str | Path | None) -> str:
    return path_stem(path) if path else "image"


def labeled_segmentation(seg: Image, labeling: VertebralLabeling) -> Image:
    """The segmentation painted with vertebral levels (uint8; 0 outside the cord)."""
    data = np.asarray(seg.data)
    idx = np.argwhere(data > 0.5)
    out = np.zeros(seg.shape[:3], np.uint8)
    if len(idx):
        s, _ = labeling.centerline.project(seg.grid.voxel_to_world(idx))
        out[tuple(idx.T)] = np.clip(labeling.level_at(s), 0, 255)
    return seg.with_data(out)


def written_discs(labeling: VertebralLabeling, grid: Grid) -> list[Disc]:
    """The discs of ``labeling`` (in its order) that the label file on ``grid`` holds: measured
    (not ``estimated``) and with their nearest voxel on the grid; of two landing on one voxel, the
    later (lower) one, which is the one the voxel keeps. The one rule :func:`disc_label_image`
    writes by and :func:`labeling_document` reports as ``in_label_file``."""
    cand = [d for d in labeling.discs if not d.estimated]
    if not cand:
        return []
    ijk, ok = grid.nearest_voxels(np.array([d.point for d in cand], float).reshape(-1, 3))
    at = {tuple(v): d for d, v, k in zip(cand, ijk.tolist(), ok, strict=True) if k}  # the last one kept
    kept = {id(d) for d in at.values()}
    return [d for d in cand if id(d) in kept]


def disc_label_image(image: Image, labeling: VertebralLabeling) -> Image:
    """One voxel per disc (PAM50_label_disc values) on ``image``'s grid: the discs of
    :func:`written_discs`."""
    discs = written_discs(labeling, image.grid)
    vol = place_labels(np.array([d.point for d in discs], float).reshape(-1, 3),
                       np.array([d.value for d in discs], int), image.grid, dtype=np.uint8)
    return image.with_data(vol)


def labeling_document(labeling: VertebralLabeling, grid: Grid, **head: object) -> dict:
    """The ``<img>_discs.json`` of ``labeling`` on ``grid``: ``head`` first, then the labeling's
    record, each disc with ``in_label_file`` (:func:`written_discs`, what :func:`disc_label_image` writes). The label
    file holds the measured discs whose nearest voxel is on the grid: a C1/C2 the chain's spacing
    placed (``estimated``, nothing on the image marks it) is in the JSON only, as a disc whose
    centerline point lies past the field of view's edge. Before session 49 the JSON listed them
    beside the others and said nothing of the label file leaving them out."""
    doc = {**head, **labeling.as_dict()}
    written = {id(d) for d in written_discs(labeling, grid)}
    for rec, disc in zip(doc["discs"], labeling.discs, strict=True):
        rec["in_label_file"] = id(disc) in written
    doc["label_file"] = ("one voxel per disc measured on the image (PAM50_label_disc values, 60 = conus tip); "
                         "discs with in_label_file false are listed here only")
    return doc


def disc_landmarks(labeling: VertebralLabeling, grid: Grid | None = None, source: str | None = None,
                   template: str | None = None) -> Landmarks:
    """The labeling's measured discs as registration landmarks, at the points where they were
    measured (world mm, the JSON's positions), not at the label file's voxels:
    :func:`disc_label_image` rounds each disc to its nearest voxel, up to half a slice along S-I
    (2.5 mm on 5 mm axial slices). ``grid``: the image's; discs whose nearest voxel is off it are
    left out, as the label file leaves them out (the band can be in view where the centerline
    point is not, and the outputs' warps, which the QC pushes landmarks through, end at the grid).
    ``source``: what provenance names them by (e.g. the label file). ``template``: the discs are
    moved to that template's disc-label convention (:func:`spinereg.vertebrae.convention.to_label_convention`;
    the record: :func:`registration_discs`); None keeps the measured points.

    The conus tip (60) is reported, not a landmark (as when discs join given labels,
    :mod:`spinereg.register.auto_landmarks`): its vertebral level varies between people (T12-L2)
    and PAM50's lies 0.5 mm from its L1/L2 disc, so pairing both with the template imposes a
    spurious stretch between them, or an order the template does not have (a cord ending 0.1 mm
    below its L1/L2 disc stopped the registration: "landmarks are not in the same order")."""
    return registration_discs(labeling, grid, source, template)[0]


def registration_discs(labeling: VertebralLabeling, grid: Grid | None = None, source: str | None = None,
                       template: str | None = None) -> tuple[Landmarks, dict]:
    """:func:`disc_landmarks` and what was done to them for ``template`` (a provenance record;
    ``{"converted": False, ...}`` without a template)."""
    values, points = np.asarray(labeling.values, int), np.asarray(labeling.points, float).reshape(-1, 3)
    keep = values != CONUS
    if grid is not None:
        keep &= grid.nearest_voxels(points)[1]
    lm = Landmarks("disc", values[keep], points[keep], source)
    if template is None:
        return lm, {"converted": False, "why": "no template named"}
    si = None if grid is None else grid.extent_along([0.0, 0.0, 1.0])
    return to_label_convention(labeling, lm, template, si)


def write_labeling(image: Image, seg: Image, labeling: VertebralLabeling, outdir: str | Path,
                   overwrite: bool = False, inputs: dict | None = None) -> dict[str, Path]:
    """Write the three files into ``outdir``; returns them by role. All are on ``image``'s grid (a
    ``seg`` holding its voxels in another axis order is moved exactly onto it first)."""
    seg = on_grid_of(seg, image)
    outdir = Path(outdir)
    stem = image_stem(image.path)
    files = {"seg_labeled": outdir / f"{stem}_seg_labeled.nii.gz",
             "disc_labels": outdir / f"{stem}_labels-disc.nii.gz",
             "json": outdir / f"{stem}_discs.json"}
    if labeling.pmj is not None:  # the PMJ in view: one voxel valued 50, as sct_detect_pmj writes it
        files["pmj"] = outdir / f"{stem}_pmj.nii.gz"
    from spinereg.io.staging import OutputFolder

    folder = OutputFolder(outdir, [p.name for p in files.values()], overwrite=overwrite).check()  # before any work
    labeled = labeled_segmentation(seg, labeling)
    discs = disc_label_image(image, labeling)
    doc = labeling_document(labeling, image.grid, inputs=inputs or {})
    # all three files appear together or none (a failure leaves the folder as it was, and removes
    # the folders made for it)
    with folder as tmp:
        save_image(labeled, tmp / files["seg_labeled"].name, overwrite=True, dtype=np.uint8)
        save_image(discs, tmp / files["disc_labels"].name, overwrite=True, dtype=np.uint8)
        (tmp / files["json"].name).write_text(json.dumps(doc, indent=1))
        if "pmj" in files:
            pmj = image.with_data(place_labels(np.array([labeling.pmj["point_mm"]]), np.array([labeling.pmj["value"]]),
                                               image.grid, dtype=np.uint8))
            save_image(pmj, tmp / files["pmj"].name, overwrite=True, dtype=np.uint8)
    return files
