"""Detected discs in the template's disc-label convention, for registration.

The labeling places a disc where its band crosses the vertebral column (the tilt pivot 3 mm in
front of the column's posterior wall, on the cord centerline at that arc length). The template's
disc labels (PAM50_label_disc), which a registration maps discs onto, were placed by hand with
another convention: where the same detector reads PAM50's own discs (its tissue maps painted
T2-like, ``training/template_disc_offsets.py``) C3/C4 and C4/C5 lie about 1 mm above their
labels, C5/C6 0.7 mm above, C7/T1 0.45 mm below. Those offsets (``spinereg/data/template_disc_offsets.json``)
would otherwise land in every subject's registration. :func:`to_label_convention` moves each disc
placed on its band by minus its offset, times the labeling's S-I scale, along the labeling's
centerline: the subject's point in the label's convention. The labeling's own outputs (label
file, JSON) keep the measured positions.

Only bright discs (T2, T2*, T1 images whose discs are brighter than the marrow, as the labeling
reads the polarity): on the T1-like template image the readings moved by up to 1.5 mm between
texture seeds. (Read on the smoothed dark response of session 25 they are one grid step, +0.54..
+0.59 mm, at every disc but T12/L1 over 16 texture seeds, which is not the per-level bias of dark
discs on the independent phantoms, C4/C5 +0.50 and C5/C6 +0.74 mm; removing it would move their
mean error only 0.606 -> 0.584 mm: still none are given, session 30.)
Only images that sample S-I at :data:`MAX_SI_SPACING_MM` or finer: the offsets
were read at the template's 0.5 mm; through 5 mm axial slices the band is read through the
slice's partial volume, and the offsets (at most 1.04 mm) are under half a slice (on
``axial_thick`` seeds 1-4 converting changed the cord error by -0.46..+0.74 mm, mean +0.06). A C1/C2 located from the CSF profile is already matched to the template's own label
(:mod:`spinereg.vertebrae.c1c2`) and is not moved; templates without a table are not converted.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from spinereg.cord.landmarks import Landmarks

if TYPE_CHECKING:
    from spinereg.vertebrae.result import VertebralLabeling

#: coarsest S-I sampling (one voxel's extent along world S-I, mm) at which discs are converted
MAX_SI_SPACING_MM = 2.0


@cache
def _table() -> dict:
    return json.loads(resources.files("spinereg").joinpath("data/template_disc_offsets.json").read_text())


def label_offsets(template: str, polarity: int) -> dict[int, float]:
    """Detector minus label arc length (template mm, + = superior) per disc value of
    ``template`` for discs of ``polarity`` (+1 bright, -1 dark); empty when none are known."""
    if int(polarity) <= 0:
        return {}
    return {int(v): float(o) for v, o in (_table().get(str(template)) or {}).get("bright", {}).items()}


def to_label_convention(labeling: VertebralLabeling, landmarks: Landmarks, template: str,
                        si_spacing_mm: float | None = None) -> tuple[Landmarks, dict]:
    """``landmarks`` (a subset of ``labeling``'s discs) with every disc the labeling placed on its
    band moved to the template label's convention, and a record of what was done (provenance).
    ``si_spacing_mm``: the image's voxel extent along S-I (none converted above
    :data:`MAX_SI_SPACING_MM`)."""
    offsets = label_offsets(template, labeling.polarity)
    why = None
    if not offsets:
        why = "dark discs (the detector's reading of the template is not stable for them)" \
            if labeling.polarity <= 0 else f"no detector offsets for template {template}"
    elif si_spacing_mm is not None and si_spacing_mm > MAX_SI_SPACING_MM:
        why = f"S-I sampled every {si_spacing_mm:.1f} mm (> {MAX_SI_SPACING_MM:g}): the offsets are under half a slice"
    if why is not None:
        return landmarks, {"converted": False, "why": why}
    discs = {int(d.value): d for d in labeling.discs}
    pts, moved = [], {}
    for v, p in zip(landmarks.values.tolist(), landmarks.points, strict=True):
        d = discs.get(int(v))
        if d is None or d.source != "band" or int(v) not in offsets:
            pts.append(np.asarray(p, float))
            continue
        shift = -offsets[int(v)] * float(labeling.scale)
        pts.append(labeling.centerline.points(float(d.s) + shift))
        moved[d.name] = round(shift, 2)
    out = Landmarks(landmarks.kind, landmarks.values, np.asarray(pts, float).reshape(-1, 3), landmarks.source)
    return out, {"converted": True, "to": f"{template} disc labels' convention", "moved_mm": moved,
                 "offsets": "spinereg/data/template_disc_offsets.json"}
