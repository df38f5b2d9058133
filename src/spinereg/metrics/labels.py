"""Distances between paired point labels (same value in both files), world mm.

Each label value is reduced to the centre of mass (world RAS+ mm) of its voxels, so single-voxel
labels and label blobs (e.g. rootlet segmentations, several blobs per value) are handled alike. A
value on several separate single voxels is a duplicated point label and is refused (their mean
would be a point that was never labelled). Values must be integers
(as SCT requires); 0 is background. A and B may be on different grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.metrics.overlap import ImageLike, as_image
from spinereg.metrics.report import MetricResult


def label_centers(img: Image, what: str = "label file") -> dict[int, np.ndarray]:
    """Centre of mass (world mm) of each non-zero integer label value of ``img``."""
    data = np.asarray(img.data)
    nz = (data != 0) & np.isfinite(data)
    if not nz.any():
        raise InputError(f"{what} holds no labels (every voxel is 0)", img.name,
                         "give a label file with non-zero integer values (one point per label)")
    vals = data[nz].astype(float)
    rounded = np.rint(vals)
    bad = np.abs(vals - rounded) > 1e-3
    if bad.any():
        raise InputError(
            f"{what} has non-integer values (e.g. {vals[bad][0]:g}); labels must be integers",
            img.name, "resample label files with `-x label` or `-x nn`, never linear/spline")
    idx = np.argwhere(nz)
    _refuse_duplicated_points(img, idx, rounded.astype(np.int64), what)
    uniq, inverse = np.unique(rounded.astype(np.int64), return_inverse=True)
    counts = np.bincount(inverse).astype(float)
    com = np.stack([np.bincount(inverse, weights=idx[:, d]) for d in range(3)], axis=1)
    world = img.grid.voxel_to_world(com / counts[:, None])
    return {int(v): world[i] for i, v in enumerate(uniq)}


#: single-voxel points of one value farther apart than this (mm) are two labels, not one
DUPLICATE_POINT_MM = 3.0


def _refuse_duplicated_points(img: Image, idx: np.ndarray, values: np.ndarray, what: str) -> None:
    """Raise when a value sits on two or more separate single voxels (a duplicated point label,
    e.g. C5 relabelled 3: its "position" was the mean of the C3 and C5 points). Blobs, and values
    made of several blobs (rootlets), are kept: only values whose every part is one voxel count."""
    for v in np.unique(values):
        pts = idx[values == v]
        if len(pts) < 2 or len(pts) > 64:
            continue
        lo = pts.min(0)
        box = np.zeros(tuple(pts.max(0) - lo + 1), bool)
        box[tuple((pts - lo).T)] = True
        lab, n = ndimage.label(box, structure=np.ones((3, 3, 3)))
        if n < 2 or n != len(pts):  # one blob, or some part is a blob of adjacent voxels
            continue
        world = img.grid.voxel_to_world(pts)
        if np.linalg.norm(world - world.mean(0), axis=1).max() > DUPLICATE_POINT_MM:
            raise InputError(f"label {int(v)} is on {n} separate points (at {np.round(world, 1).tolist()} mm) "
                             f"in the {what}: two labels of one value?", img.name,
                             "keep one point (voxel or blob) per label value")


@dataclass
class LabelPair:
    label: int
    distance_mm: float
    a_mm: tuple[float, float, float]
    b_mm: tuple[float, float, float]


@dataclass
class LabelDistanceResult(MetricResult):
    """Distances between labels of equal value (mm); labels found in one file only are listed."""

    metric = "labels"
    mean_mm: float
    rms_mm: float
    max_mm: float
    n_pairs: int
    a: str
    b: str
    pairs: list[LabelPair] = field(default_factory=list)
    only_in_a: list[int] = field(default_factory=list)
    only_in_b: list[int] = field(default_factory=list)

    def item_rows(self) -> list[dict]:
        return [self._row("label_distance_mm", p.distance_mm, label=p.label) for p in self.pairs]


def label_distances(a: ImageLike, b: ImageLike) -> LabelDistanceResult:
    """Distance between the centres of mass of each label value present in both files."""
    ia, ib = as_image(a, "label file"), as_image(b, "label file")
    ca, cb = label_centers(ia), label_centers(ib)
    common = sorted(set(ca) & set(cb))
    if not common:
        raise InputError(
            f"{ia.name} (labels {sorted(ca)}) and {ib.name} (labels {sorted(cb)}) share no label value",
            ib.name, "compare label files of the same kind (e.g. both disc labels)")
    pa = np.array([ca[v] for v in common])
    pb = np.array([cb[v] for v in common])
    dist = np.linalg.norm(pa - pb, axis=1)
    pairs = [LabelPair(v, float(d), tuple(map(float, x)), tuple(map(float, y)))
             for v, d, x, y in zip(common, dist, pa, pb, strict=True)]
    return LabelDistanceResult(
        mean_mm=float(dist.mean()),
        rms_mm=float(np.sqrt(np.mean(dist**2))),
        max_mm=float(dist.max()),
        n_pairs=len(common),
        a=ia.name, b=ib.name,
        pairs=pairs,
        only_in_a=sorted(set(ca) - set(cb)),
        only_in_b=sorted(set(cb) - set(ca)),
    )
