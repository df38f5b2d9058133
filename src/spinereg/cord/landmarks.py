"""Point landmarks: vertebral body labels, disc labels and nerve-rootlet midpoints.

Label files follow SCT/PAM50: one voxel (or a small blob) per landmark, valued by level
(bodies: C1 = 1 ... T1 = 8; discs: 3 = C2/C3; rootlets: spinal level). Everything is returned in
world mm. Validation turns the cryptic failures SCT users hit into one-line errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.box import mask_box
from spinereg.io.image import Image

if TYPE_CHECKING:
    from collections.abc import Iterable

KINDS = ("body", "disc", "rootlet")
#: a point label's voxels lie within this distance (mm) of their centre: farther, the file holds
#: regions (a segmentation given as labels put "C1" at the cord's centre of mass and registered)
MAX_BLOB_MM = 5.0


@dataclass
class Landmarks:
    """Landmarks of one kind: ``values[i]`` is at world point ``points[i]`` (mm)."""

    kind: str
    values: np.ndarray
    points: np.ndarray
    source: str | None = None

    def __len__(self) -> int:
        return len(self.values)

    def as_dict(self) -> dict[int, list[float]]:
        return {int(v): [round(float(c), 4) for c in p] for v, p in zip(self.values, self.points, strict=True)}

    def subset(self, values: Iterable[int]) -> Landmarks:
        keep = np.isin(self.values, list(values))
        return Landmarks(self.kind, self.values[keep], self.points[keep], self.source)

    def point(self, value: int) -> np.ndarray:
        idx = np.flatnonzero(self.values == value)
        return self.points[idx[0]]


def _values_present(data: np.ndarray, name: str) -> np.ndarray:
    nz = data[data != 0]
    if nz.size == 0:
        raise InputError("label file has no labels (all voxels are 0)", name,
                         "place labels with `sct_label_utils -create-viewer` or give the right file")
    if nz.size > 0.2 * data.size:  # t2.nii.gz as -initlabel: "label 1 appears 242 times (at [...])",
        # a 5 kB line of coordinates, before session 37
        raise InputError(f"not a point-label file: {100 * nz.size / data.size:.0f}% of its voxels are non-zero "
                         f"({min(len(np.unique(nz)), 1000)}{'+' if len(np.unique(nz)) > 1000 else ''} distinct values; "
                         "an intensity image?)", name,
                         "give a point-label file (one voxel per label, e.g. from `sct_label_utils -create-viewer`)")
    if not np.allclose(nz, np.round(nz), atol=1e-3):
        bad = np.unique(nz[~np.isclose(nz, np.round(nz), atol=1e-3)])[:5]
        raise InputError(f"non-integer label values {bad.tolist()}", name,
                         "labels must be integers (resample label files with -x label or nn, never linear)")
    return np.unique(np.round(nz).astype(int))


def read_point_labels(img: Image, kind: str = "body", allow_blobs: bool = True) -> Landmarks:
    """Read a point-label image: one landmark per value (centre of mass, world mm).

    Raises InputError for empty files, non-integer values, duplicated labels (the same value
    at two places more than 3 mm apart) and regions (a value whose voxels reach farther than
    ``MAX_BLOB_MM`` from their centre: a segmentation, not point labels).
    """
    name = img.name
    data = np.asarray(img.data)
    values = _values_present(data, name)
    # work in the bounding box of the labels (template label files are large and mostly empty)
    lo, hi = mask_box(data)
    offset = lo.astype(float)
    rounded = np.round(data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]).astype(int)
    points = []
    for v in values:
        mask = rounded == v
        lab, n = ndimage.label(mask)
        if n > 1:
            coms = np.array(ndimage.center_of_mass(mask, lab, range(1, n + 1))) + offset
            world = img.grid.voxel_to_world(coms)
            spread = np.linalg.norm(world - world.mean(0), axis=1).max()
            if spread > 3.0 or not allow_blobs:
                raise InputError(
                    f"label {v} appears {n} times (at {np.round(world[:4], 1).tolist()}"
                    f"{f' and {n - 4} more places' if n > 4 else ''} mm)", name,
                    "keep one voxel per label value",
                )
        com = np.array(ndimage.center_of_mass(mask)) + offset
        world = img.grid.voxel_to_world(com)
        reach = float(np.linalg.norm(img.grid.voxel_to_world(np.argwhere(mask) + offset) - world, axis=1).max())
        if reach > MAX_BLOB_MM:
            raise InputError(
                f"label {v} covers a region, not a point ({int(mask.sum())} voxels reaching {reach:.0f} mm from "
                f"their centre; a label is one voxel or a blob within {MAX_BLOB_MM:g} mm)", name,
                "give a point-label file (one voxel per level, e.g. from `sct_label_utils -create-viewer`); "
                "a cord segmentation goes to -s",
            )
        points.append(world)
    return Landmarks(kind, values, np.array(points), name)


def rootlet_midpoints(img: Image) -> Landmarks:
    """Reduce a rootlet segmentation (values = spinal levels) to one centre-of-mass point per level."""
    data = np.asarray(img.data)
    values = _values_present(data, img.name)
    rounded = np.round(data).astype(int)
    coms = np.array(ndimage.center_of_mass(np.ones_like(rounded), rounded, values))
    return Landmarks("rootlet", values, img.grid.voxel_to_world(coms), img.name)


def check_against_template(lm: Landmarks, template_lm: Landmarks, template_name: str) -> None:
    """Every subject label must exist in the template's label file."""
    missing = sorted(set(lm.values.tolist()) - set(template_lm.values.tolist()))
    if missing:
        raise InputError(
            f"label value(s) {missing} do not exist in the {template_name} {lm.kind} labels "
            f"(available: {template_lm.values.tolist()})", lm.source,
            f"use {lm.kind} label values as in the template's {lm.kind} file"
            + (" (bodies: -l, C3 = 3; discs: --ldisc, C2/C3 = 3)" if lm.kind != "rootlet" else ""),
        )


#: labels farther than this (mm) from the cord segmentation are refused
MAX_LABEL_SEG_MM = 15.0


def distance_to_seg(points: np.ndarray, seg: Image) -> np.ndarray:
    """Distance (mm) of each world point (N, 3) to the nearest voxel of the segmentation ``seg``
    (an empty segmentation is an :class:`InputError`)."""
    mask = np.asarray(seg.data) > 0.5
    if not mask.any():
        raise InputError("segmentation is empty", seg.name, "give a cord segmentation with non-zero voxels")
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(seg.grid.voxel_to_world(np.argwhere(mask))).query(np.asarray(points, float).reshape(-1, 3))
    return np.asarray(dist, float)


def split_below_cord(lm: Landmarks, seg: Image,
                     max_mm: float = MAX_LABEL_SEG_MM) -> tuple[Landmarks, dict[int, float]]:
    """Body and disc labels below the lower end of the segmented cord, set apart: the cord ends
    at the conus (T12-L2) while the vertebrae and discs go on (a lumbar field of view), and a
    segmentation can stop short of a thin conus. A label over ``max_mm`` from the segmentation
    whose value lies below (greater than) every label within ``max_mm`` of it is returned in
    ``left_out`` ({value: distance mm}); the others are kept. Far labels above or between the
    near ones, or every label far (labels and segmentation of different images), stay for
    :func:`check_near_seg` to refuse. Rootlets are returned as they are."""
    if lm.kind not in ("body", "disc") or not len(lm):
        return lm, {}
    dist = distance_to_seg(lm.points, seg)
    off = dist > max_mm
    if off.all() or not off.any():
        return lm, {}
    below = off & (lm.values > lm.values[~off].max())
    left_out = {int(v): float(d) for v, d in zip(lm.values[below], dist[below], strict=True)}
    return lm.subset(lm.values[~below].tolist()), left_out


def check_near_seg(lm: Landmarks, seg: Image, max_mm: float = MAX_LABEL_SEG_MM) -> None:
    """Labels must lie near the cord: more than ``max_mm`` from the segmentation is an error."""
    dist = distance_to_seg(lm.points, seg)
    far = dist > max_mm
    if far.any():
        raise InputError(
            f"label(s) {lm.values[far].tolist()} lie {np.round(dist[far], 1).tolist()} mm from the cord "
            "segmentation", lm.source,
            "check that labels and segmentation belong to the same image (same space)",
        )
