"""The levels' names from the CSF around the cord: a cue the disc bands and the cord width lack.

Where the image shows three or four alike cervical discs (an axial stack of 5 mm slices from C2
to C5) the disc bands, their spacing and the cord width do not say which levels they are: on
the independent phantom's ``axial_thick`` variant the chain named 8 of the 22 stacks run before
(mostly two levels off) and 12 of 30 fresh ones (one to seven levels off) wrong, all flagged
(docs/labeling_bare_image.md). The subarachnoid space does: against the cord's
own area it is wide at C2 (PAM50: CSF / cord area 2.6), narrows through C3 (1.9) and C4 (1.6)
to the cervical enlargement (C5 1.5), and widens again below it (C6 1.8, C7 and the thoracic
levels ~2.5). The ratio is free of the subject's size; its profile along the cord is what this
module reads.

:func:`csf_identity` measures the subject's CSF and cord areas on disks along the centerline
(:func:`spinereg.vertebrae.c1c2.disk_areas`), maps the stretch from ``EXTEND_MM`` above the
top band disc to ``EXTEND_MM`` below the last onto the template's arc length through the
labeling's discs under their names and under the names shifted by each of ``SHIFTS`` levels,
and compares the log area ratio with the template's there (the mean difference removed: a
subject's canal may be wider or narrower throughout). Its evidence for the best shift against
the labeling's own names is ``n (rms_0^2 - rms_best^2) / (2 SIGMA^2)``, ``n`` the stretch's
independent samples (its length over the larger of ``SAMPLE_MM`` and the image's sampling along
the cord). It needs a bright CSF (T2, T2*) and two discs on their bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spinereg.vertebrae.c1c2 import BRIGHT_CSF, disk_areas, template_csf

if TYPE_CHECKING:
    from spinereg.cord.centerline import Centerline
    from spinereg.io.image import Image
    from spinereg.vertebrae.model import SpineModel

#: level shifts tried (+ = the discs named lower levels, larger disc values)
SHIFTS = tuple(range(-8, 9))
#: the stretch read reaches this far (mm) beyond the first and last disc
EXTEND_MM = 12.0
#: spread of the log CSF / cord area ratio about the template's (mean removed)
SIGMA = 0.1
#: the profile's samples count as independent this far apart (mm) at the least
SAMPLE_MM = 5.0
#: least disc value a band disc may be given (C2/C3: C1/C2 shows no disc band)
FIRST_BAND_VALUE = 3
#: areas under this (mm2) are read as this (the log of an empty disk)
MIN_AREA_MM2 = 1.0
#: the profile renames no labeling of an image whose voxels are longer than this (mm) along
#: world A-P: the CSF in front of and behind the cord is a thin layer (PAM50's CSF mask at C3-C5,
#: 2 mm behind the cord, 3 mm in front; 4-4.5 mm in front at C2), lost to partial volume and to
#: the segmentation's A-P steps when the voxel is as long. sct_testing_data t2 averaged to 3 mm
#: along A-P (chain right, margin 1.16): the CSF preferred one level lower with evidence 13.1
#: (10.7 with 3 mm R-L as well), a wrong relabel; at 2.5 mm it preferred the right names
#: (evidence 8.6, correcting a chain one level low). Every phantom the rule was chosen on has
#: A-P voxels of at most 1 mm (session 51)
MAX_AP_VOXEL_MM = 2.5


def coarse_ap_reason(image: Image) -> str | None:
    """Why the CSF profile cannot rename ``image``'s levels (its voxels longer than
    :data:`MAX_AP_VOXEL_MM` along world A-P), or None."""
    ap = image.grid.extent_along([0.0, 1.0, 0.0])
    if ap <= MAX_AP_VOXEL_MM + 1e-6:
        return None
    return (f"voxels {ap:.1f} mm along A-P (more than {MAX_AP_VOXEL_MM} mm): the thin CSF in front of and behind "
            "the cord is lost to partial volume")


@dataclass(frozen=True)
class CsfIdentity:
    """The shift the CSF profile prefers, its ``evidence`` against the labeling's own names
    (0 when it prefers them), the residual per shift and the stretch's independent samples."""

    shift: int
    evidence: float
    rms: dict[int, float]
    samples: float

    def as_dict(self) -> dict:
        return {"shift": int(self.shift), "evidence": round(float(self.evidence), 2),
                "samples": round(float(self.samples), 1),
                "rms": {str(k): round(float(v), 4) for k, v in sorted(self.rms.items())}}


def template_area_profiles(template_csf_path: str, template_cord_path: str) -> tuple[np.ndarray, np.ndarray]:
    """World S-I and log CSF / cord area ratio of a straight template (slices with cord only)."""
    z, csf = template_csf(template_csf_path)
    zc, cord = template_csf(template_cord_path)  # the area profile of any straight template mask
    cord = np.interp(z, zc, cord)
    keep = cord >= 4.0
    return z[keep], np.log(np.maximum(csf[keep], MIN_AREA_MM2) / cord[keep])


def _to_template(s: np.ndarray, s_disc: np.ndarray, t_disc: np.ndarray) -> np.ndarray:
    """Arc lengths ``s`` mapped to the template through the discs (linear between them, each
    end's slope beyond)."""
    o = np.argsort(s_disc)
    sd, td = s_disc[o], t_disc[o]
    t = np.interp(s, sd, td)
    k0 = (td[1] - td[0]) / (sd[1] - sd[0])
    k1 = (td[-1] - td[-2]) / (sd[-1] - sd[-2])
    t = np.where(s < sd[0], td[0] + k0 * (s - sd[0]), t)
    return np.where(s > sd[-1], td[-1] + k1 * (s - sd[-1]), t)


def csf_identity(image: Image, seg: Image, centerline: Centerline, discs: list[tuple[int, float]],
                 model: SpineModel, profile: tuple[np.ndarray, np.ndarray], contrast: str,
                 si_mm: float) -> CsfIdentity | None:
    """What the CSF profile says of the names of ``discs`` (``(value, arc length)`` of the band
    discs, module doc); ``profile``: :func:`template_area_profiles`; ``si_mm``: the image's
    sampling along the cord. None without a bright CSF or two discs, or when the stretch lies
    outside the field of view."""
    if contrast not in BRIGHT_CSF or len(discs) < 2:
        return None
    values = np.array([v for v, _ in discs], int)
    s_disc = np.array([s for _, s in discs], float)
    if np.ptp(s_disc) <= 0:
        return None
    lo = max(float(s_disc.min()) - EXTEND_MM, 0.0)
    hi = min(float(s_disc.max()) + EXTEND_MM, float(centerline.length))
    s, csf, cord = disk_areas(image, seg, centerline, lo, hi)
    keep = cord >= 4.0
    s, ratio = s[keep], np.log(np.maximum(csf[keep], MIN_AREA_MM2) / cord[keep])
    if len(s) < 10:
        return None
    tz, tratio = profile
    known = {int(v): float(t) for v, t in zip(model.disc_values, model.disc_s, strict=True)}
    rms = {}
    for shift in SHIFTS:
        named = values + shift
        if named.min() < FIRST_BAND_VALUE or any(int(v) not in known for v in named):
            continue
        t = _to_template(s, s_disc, np.array([known[int(v)] for v in named]))
        inside = (t >= tz[0]) & (t <= tz[-1])
        if inside.mean() < 0.9:
            continue
        d = ratio[inside] - np.interp(t[inside], tz, tratio)
        rms[shift] = float(np.sqrt(np.mean((d - d.mean()) ** 2)))
    if 0 not in rms:
        return None
    best = min(rms, key=rms.get)
    samples = float(np.ptp(s)) / max(SAMPLE_MM, float(si_mm))
    evidence = samples * (rms[0] ** 2 - rms[best] ** 2) / (2 * SIGMA ** 2)
    return CsfIdentity(int(best), float(evidence), rms, samples)
