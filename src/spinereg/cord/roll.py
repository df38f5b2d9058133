"""Which way the subject faces about the cord: the roll of the cord's cross-section.

A centerline's frame starts with its normal on world anterior (:mod:`spinereg.cord.centerline`).
For a subject turned about S-I in the scanner (head rotation, an axially rotated spine) the
anatomy's anterior lies elsewhere, and a mid-sagittal slab cut in that frame crosses the
vertebral bodies obliquely: 20 mm in front of the cord a 15 degree turn puts it 5 mm off the
mid-line. The cord is flattened front to back (its left-right width exceeds its depth by a third
or more, PAM50: 1.3-1.7 outside the upper cervical cord), so its cross-section's major axis gives
the subject's left-right. :func:`cross_section_roll` measures the angle between that axis and the
frame's binormal, per 5 mm of cord, and combines the pieces by their elongation (axial
directions averaged as doubled angles: an axis has no sign).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.io.image import Image

#: length of the cord pieces (mm) whose cross-sections are measured
PIECE_MM = 5.0
#: a frame read in front of the cord follows the subject's turn beyond TOLERANCE_DEG (within it
#: a +-3 mm slab still holds the vertebral bodies' mid-line 30 mm in front: 2.6 mm at 5 deg);
#: beyond MAX_DEG the cross-section's long axis is as likely A-P as L-R and nothing is turned
TOLERANCE_DEG = 5.0
MAX_DEG = 45.0
#: fewest voxels in a piece for its second moments to count
MIN_VOXELS = 10


@dataclass(frozen=True)
class Roll:
    """Angle (degrees) from the frame's binormal to the cross-section's major axis, toward the
    normal (``Centerline.rolled(angle_deg)`` turns the frame onto the cord); ``elongation``: the
    pieces' weighted agreement and elongation, 0 (round, or pieces disagreeing) to 1 (a line);
    ``pieces``: how many pieces were measured; ``spread_deg``: the 10th-90th percentile range of
    the pieces' angles."""

    angle_deg: float
    elongation: float
    pieces: int
    spread_deg: float

    def as_dict(self) -> dict:
        return {"angle_deg": round(self.angle_deg, 2), "elongation": round(self.elongation, 3),
                "pieces": self.pieces, "spread_deg": round(self.spread_deg, 1)}


def cross_section_roll(seg: Image, centerline: Centerline, piece_mm: float = PIECE_MM) -> Roll:
    """The cord's roll about ``centerline`` from the segmentation ``seg`` (see the module doc)."""
    idx = np.argwhere(np.asarray(seg.data) > 0.5)
    if len(idx) < MIN_VOXELS:
        return Roll(0.0, 0.0, 0, 0.0)
    a, b, s = centerline.local_coords(seg.grid.voxel_to_world(idx.astype(float))).T
    inside = (s >= 0.0) & (s <= centerline.length)
    a, b, s = a[inside], b[inside], s[inside]
    piece = np.floor(s / piece_mm).astype(int)
    vx = vy = total = 0.0
    angles = []
    for k in np.unique(piece):
        m = piece == k
        if m.sum() < MIN_VOXELS:
            continue
        da, db = a[m] - a[m].mean(), b[m] - b[m].mean()
        caa, cbb, cab = float((da * da).mean()), float((db * db).mean()), float((da * db).mean())
        c2, s2 = caa - cbb, 2.0 * cab
        vx, vy, total = vx + c2, vy + s2, total + caa + cbb
        angles.append(0.5 * np.degrees(np.arctan2(s2, c2)))
    if not angles or total <= 0.0:
        return Roll(0.0, 0.0, 0, 0.0)
    lo, hi = np.percentile(angles, [10, 90])
    return Roll(float(0.5 * np.degrees(np.arctan2(vy, vx))), float(np.hypot(vx, vy) / total), len(angles),
                float(hi - lo))


def frame_turn(roll_deg: float, tolerance_deg: float = TOLERANCE_DEG, max_deg: float = MAX_DEG) -> float:
    """How far (degrees) to turn a frame read in front of the cord for a cross-section roll of
    ``roll_deg``: the roll beyond ``tolerance_deg`` (0 within it, and 0 beyond ``max_deg``)."""
    r = float(roll_deg)
    if abs(r) > max_deg:
        return 0.0
    return float(np.sign(r) * max(abs(r) - tolerance_deg, 0.0))

