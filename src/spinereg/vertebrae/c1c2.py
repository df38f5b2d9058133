"""C1/C2 from the CSF space above C2/C3: a level no disc band marks.

Above the C2/C3 disc the discs say nothing: PAM50's C1/C2 label (disc value 2) sits where the
dens rises into the ring of C1, with no disc, and a map through the discs below reaches it only by
extrapolation (on the full C1-T6 phantoms, even with exact discs C2/C3 and below the cord above
C2/C3 gives a p95 error over 1.5 mm on 6 of 20 seeds; docs/labeling_bare_image.md). The CSF
around the cord does mark it: the subarachnoid space widens from C2/C3 up to a broad maximum
3-7 mm above C1/C2 (the canal behind the dens), narrows at the ring of C1 and widens again into
the cisterna magna. PAM50's CSF mask shows the pattern (area ~150 mm2 at C2/C3, ~236 at 3-6 mm
above C1/C2, ~195 at C1's arch) and so do T2 images of it (the real PAM50_small average as well).

:func:`locate_c1c2` measures that profile on the subject, along its cord centerline (area of
the bright voxels within ``RADIUS_MM`` of the cord, outside the cord segmentation, on disks
perpendicular to the centerline: independent of the image's axes), and finds the one stretch
``k`` of the segment above C2/C3 (template mm per subject mm, ``K_RANGE``) for which the
template's CSF-area profile, laid from C2/C3 upwards, correlates best with it. C1/C2 is then
``s(C2/C3) + (t(C1/C2) - t(C2/C3)) / k``. It needs a bright CSF (T2, T2*), the C2/C3 disc
measured, ``MIN_ABOVE_MM`` of cord in view above it, and a correlation of at least ``MIN_NCC``;
otherwise it returns None with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from spinereg.io.image import Image
from spinereg.io.resample import sample_world

if TYPE_CHECKING:
    from spinereg.cord.centerline import Centerline

#: contrasts whose CSF is brighter than the cord and its surroundings
BRIGHT_CSF = ("t2", "t2s")
#: disk radius (mm) around the centerline where the CSF is counted
RADIUS_MM = 14.0
#: a voxel is CSF when brighter than this fraction of the disk's 99th percentile
BRIGHT_FRACTION = 0.5
#: stretches of the segment above C2/C3 tried (template mm per subject mm) and their step
K_RANGE = (0.75, 1.30)
K_STEP = 0.01
#: the profile starts this far below C2/C3 (mm), where the discs already pin the map
BELOW_MM = 5.0
#: cord in view above C2/C3 needed before the profile is read (mm): C1/C2 lies 15-20 mm above it
MIN_ABOVE_MM = 20.0
#: the profile must reach this far (template mm) beyond the template's CSF maximum above C1/C2
#: (searched within PEAK_SEARCH_MM of C1/C2): a profile that ends on the rising flank fits many
#: stretches (tuning phantoms, full seeds 10-11: C1/C2 off by 1.5-2.5 mm when cut there)
PEAK_MARGIN_MM = 2.0
PEAK_SEARCH_MM = 15.0
#: least correlation between the subject's and the template's profiles
MIN_NCC = 0.8
#: spacing (mm) of the disks along the cord and of the samples on each disk
STEP_MM = 0.5
#: a disk is used when at least this share of it lies in the field of view
MIN_DISK_INSIDE = 0.9


@dataclass
class C1C2:
    """C1/C2 at arc length ``s`` of the labeling's centerline, the stretch ``k`` above C2/C3 and
    the profiles' correlation ``ncc``."""

    s: float
    k: float
    ncc: float

    @property
    def placed(self) -> bool:
        """False when the fit ran into the end of the stretches searched (``s`` is NaN then):
        the stretch it wants lies beyond ``k``."""
        return bool(np.isfinite(self.s))

    def as_dict(self) -> dict:
        return {"s_mm": round(self.s, 2), "stretch": round(self.k, 3), "ncc": round(self.ncc, 3)}


@lru_cache(maxsize=4)
def template_csf(path: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`template_csf_profile` of the CSF mask at ``path`` (read once per process)."""
    from spinereg.io.image import load_image

    return template_csf_profile(load_image(path, ndim=3, check_finite=False))


def template_csf_profile(csf: Image) -> tuple[np.ndarray, np.ndarray]:
    """CSF area (mm2) of each axial slice of a straight template's CSF mask and the slice's world
    S-I coordinate (the template's arc length up to a constant, PAM50 and MNI-Poly-AMU being
    straight along S-I)."""
    m = np.asarray(csf.data) >= 0.5
    g = csf.grid
    ax = int(np.argmax(np.abs(g.affine[2, :3])))  # the voxel axis along world S-I
    area = m.sum(axis=tuple(a for a in range(3) if a != ax)) * float(np.prod(g.zooms)) / g.zooms[ax]
    idx = np.zeros((m.shape[ax], 3))
    idx[:, ax] = np.arange(m.shape[ax])
    z = g.voxel_to_world(idx)[:, 2]
    o = np.argsort(z)
    return z[o], area[o].astype(float)


def subject_csf_profile(image: Image, seg: Image, centerline: Centerline, s0: float,
                        s1: float) -> tuple[np.ndarray, np.ndarray]:
    """Bright (CSF) area (mm2) outside the cord within ``RADIUS_MM`` of the centerline, on disks
    perpendicular to it every ``STEP_MM`` from arc length ``s0`` to ``s1``; rows leaving the field
    of view are dropped."""
    s, csf, _ = disk_areas(image, seg, centerline, s0, s1)
    return s, csf


def disk_areas(image: Image, seg: Image, centerline: Centerline, s0: float,
               s1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`subject_csf_profile`'s arc lengths and CSF areas, and the segmented cord's area
    (mm2, partial voxels counted in part) on the same disks."""
    s = np.arange(s0, s1 + 1e-6, STEP_MM)
    u = np.arange(-RADIUS_MM, RADIUS_MM + 1e-6, STEP_MM)
    a, b = np.meshgrid(u, u, indexing="ij")
    disk = np.hypot(a, b) <= RADIUS_MM
    a, b = a[disk], b[disk]
    c, f = centerline.points(s), centerline.frame(s)
    pts = c[:, None] + a[None, :, None] * f[:, None, :, 0] + b[None, :, None] * f[:, None, :, 1]
    vals = sample_world(np.asarray(image.data, np.float32), image.affine, pts.reshape(-1, 3), "linear",
                        cval=np.nan).reshape(pts.shape[:2])
    cord_pv = sample_world(np.asarray(seg.data, np.float32), seg.affine, pts.reshape(-1, 3), "linear",
                           cval=0.0).reshape(pts.shape[:2])
    cord = cord_pv >= 0.5
    seen = np.isfinite(vals)
    inside = seen.mean(1) >= MIN_DISK_INSIDE
    vals, cord, seen, cord_pv = vals[inside], cord[inside], seen[inside], cord_pv[inside]
    with np.errstate(invalid="ignore"):
        thr = BRIGHT_FRACTION * np.nanpercentile(vals, 99, axis=1) if len(vals) else np.zeros(0)
        bright = (vals > thr[:, None]) & ~cord & seen
    # rows partly outside the field of view: the area scaled to the whole disk
    area = bright.sum(1) * STEP_MM ** 2 * seen.shape[1] / np.maximum(seen.sum(1), 1)
    return s[inside], area.astype(float), (np.clip(cord_pv, 0, 1).sum(1) * STEP_MM ** 2).astype(float)


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def fit_stretch(s: np.ndarray, area: np.ndarray, s3: float, tz: np.ndarray, tarea: np.ndarray,
                t3: float) -> tuple[float, float]:
    """Best stretch ``k`` (and its correlation) of ``t = t3 + k (s - s3)`` mapping the subject's
    profile onto the template's (both z-scored over the overlap)."""
    best = (-np.inf, float("nan"))
    for k in np.arange(K_RANGE[0], K_RANGE[1] + 1e-9, K_STEP):
        t = t3 + k * (s - s3)
        m = (t >= tz[0]) & (t <= tz[-1])
        if m.sum() < 10:
            continue
        c = float(np.mean(_z(np.interp(t[m], tz, tarea)) * _z(area[m])))
        if c > best[0]:
            best = (c, float(k))
    return best[1], best[0]


def locate_c1c2(image: Image, seg: Image, centerline: Centerline, s_c2c3: float, contrast: str,
                template_profile: tuple[np.ndarray, np.ndarray], t_c2c3: float,
                t_c1c2: float) -> tuple[C1C2 | None, str]:
    """C1/C2 on the subject's centerline from the CSF profile above C2/C3 (module doc), or None
    and why; when the fit runs into the end of ``K_RANGE`` a :class:`C1C2` that is not
    :attr:`~C1C2.placed` (its ``k`` that end) and why. ``s_c2c3``: the measured C2/C3 (arc length on ``centerline``);
    ``template_profile``: :func:`template_csf_profile` of the template; ``t_c2c3``, ``t_c1c2``:
    the template's C2/C3 and C1/C2 (world S-I, mm)."""
    if contrast not in BRIGHT_CSF:
        return None, f"C1/C2 from the CSF needs a bright CSF (T2, T2*), not {contrast}"
    top = float(centerline.length)
    if top - s_c2c3 < MIN_ABOVE_MM:
        return None, f"{top - s_c2c3:.0f} mm of cord in view above C2/C3 (C1/C2 from the CSF needs {MIN_ABOVE_MM:.0f})"
    s, area = subject_csf_profile(image, seg, centerline, s_c2c3 - BELOW_MM, top)
    if len(s) == 0 or s.max() - s_c2c3 < MIN_ABOVE_MM:
        return None, "the CSF above C2/C3 is outside the field of view"
    tz, tarea = template_profile
    k, ncc = fit_stretch(s, area, s_c2c3, tz, tarea, t_c2c3)
    if not np.isfinite(ncc) or ncc < MIN_NCC:
        return None, f"CSF profile above C2/C3 unlike the template's (correlation {ncc:.2f} < {MIN_NCC})"
    if k <= K_RANGE[0] + K_STEP / 2 or k >= K_RANGE[1] - K_STEP / 2:
        return C1C2(float("nan"), k, ncc), f"CSF profile above C2/C3 stretched to the limit of the search ({k:.2f})"
    near = (tz >= t_c1c2) & (tz <= t_c1c2 + PEAK_SEARCH_MM)
    t_peak = float(tz[near][np.argmax(tarea[near])]) if near.any() else t_c1c2
    reach = t_c2c3 + k * (float(s.max()) - s_c2c3)
    if reach < t_peak + PEAK_MARGIN_MM:
        return None, (f"the field of view ends {t_peak + PEAK_MARGIN_MM - reach:.1f} mm (template) short of "
                      "the CSF maximum above C1/C2 the fit needs")
    return C1C2(s_c2c3 + (t_c1c2 - t_c2c3) / k, k, ncc), ""
