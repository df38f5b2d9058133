"""Distance from the pontomedullary junction (PMJ) along the cord centerline (SCT's ``-pmj``).

PMJ-based CSA (Bedard & Cohen-Adad 2022; SCT's ``sct_process_segmentation -pmj -pmj-distance
-pmj-extent``) averages the cord's area over the slices lying a given distance below the PMJ,
measured along the cord rather than along the scanner's S-I axis (neck flexion moves the
vertebrae, not the cord's length below the brainstem).

Conventions (world RAS+ mm throughout; the voxel order of either image does not matter):

* The PMJ label (``<img>_pmj.nii.gz``, one voxel valued 50 as ``sct_detect_pmj``, or a manual
  label) is one point: the non-zero voxels' centroid, refused when there is none or when they
  lie more than :data:`LABEL_SPREAD_MM` apart (several labels).
* The centerline (:class:`spinereg.cord.centerline.Centerline`, arc length ``s`` increasing
  toward superior) ends about half a slice above the segmentation's top slice; the PMJ lies
  above it (the cord segmentation usually stops below the brainstem). **Extension**: beyond its
  top end the centerline continues as a straight line along its end tangent
  (:meth:`Centerline.points` beyond :attr:`Centerline.length`). The PMJ is projected onto the
  extended centerline (closest point, as SCT projects it onto its extrapolated centerline): its
  arc length ``s_pmj`` may exceed the fitted length. The PMJ sits on the brainstem's anterior
  surface, a few mm in front of the centerline; that offset is not counted in the distance.
  SCT extrapolates its centerline with a smoothing B-spline over the whole image instead of a
  straight line. Where the cord keeps curving above its segmentation the straight extension
  reads the distance short by about k^2 L^3 / 6 (curvature k, gap L from the centerline's top
  end to the PMJ): on an analytic tube of curvature ~0.02/mm, 0.11 mm for a 10 mm gap and
  0.59 mm for 20 mm (tests/test_csa_pmj.py); the same for every slice, so the window moves by
  that much.
* Each slice's distance is ``s_pmj - s(slice centre)``, ``s(.)`` the arc length of the
  slice's cord centre projected onto the centerline: positive below the PMJ.
* Refused (:class:`spinereg.errors.InputError`): a PMJ whose projection lies below the
  segmentation's top slice centre (a PMJ inside the segmented cord is a wrong label or a
  segmentation running into the brainstem), or one more than :data:`MAX_OFF_LINE_MM` from the
  extended centerline (a label of another structure, or another subject's).
* The window ``distance +- extent / 2`` selects the slices whose centre distance lies in the
  closed interval (SCT picks the nearest slice indices and adjusts the count to the extent; on
  a 1 mm slice grid both give the same slices to within one at each end). A window holding no
  slice is refused, naming the distances the segmentation covers; one only partly covered (it
  runs past the segmentation's top or bottom) is averaged over the slices it holds, with a
  warning giving the length covered (SCT clips it to the segmentation silently).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.errors import InputError
from spinereg.io.image import Image

log = logging.getLogger(__name__)

#: non-zero voxels of a PMJ file lying within this distance (mm) of their centroid are one label
LABEL_SPREAD_MM = 3.0
#: a PMJ farther than this (mm) from the centerline's straight extension is refused
MAX_OFF_LINE_MM = 30.0


@dataclass(frozen=True)
class PMJProjection:
    """The PMJ point (world mm), its arc length on the extended centerline, and geometry checks."""

    point_mm: tuple[float, float, float]
    s_pmj_mm: float  # arc length of the PMJ's projection (may exceed the centerline's length)
    off_line_mm: float  # distance of the PMJ from the extended centerline
    gap_mm: float  # arc length from the centerline's top end to the PMJ's projection (<0: below the end)


def pmj_point(pmj: Image) -> np.ndarray:
    """World position (3,) of a PMJ label image's single label (centroid of its non-zero voxels)."""
    if pmj.ndim != 3:
        raise InputError(f"PMJ label must be 3D, got shape {pmj.shape}", pmj.name,
                         "give the PMJ label (label-vertebrae's <img>_pmj.nii.gz, or one labelled voxel)")
    d = np.asarray(pmj.data, np.float64)
    idx = np.argwhere(np.isfinite(d) & (d != 0))
    if len(idx) == 0:
        raise InputError("the PMJ file holds no label (every voxel is 0)", pmj.name,
                         "give the PMJ label (label-vertebrae's <img>_pmj.nii.gz is written only when the PMJ "
                         "is in view), or label the pontomedullary junction by hand")
    pts = pmj.grid.voxel_to_world(idx)
    c = pts.mean(axis=0)
    spread = float(np.max(np.linalg.norm(pts - c, axis=1)))
    if spread > LABEL_SPREAD_MM:
        vals = np.unique(d[tuple(idx.T)])
        raise InputError(f"the PMJ file holds several labels ({len(idx)} non-zero voxels, values "
                         f"{', '.join(f'{v:g}' for v in vals[:6])}, up to {spread:.1f} mm from their centre): "
                         "the PMJ is one point", pmj.name,
                         "give a file with the PMJ label only (e.g. label-vertebrae's <img>_pmj.nii.gz)")
    return c


def project_pmj(cl: Centerline, point: np.ndarray, top_s_mm: float, name: str | None = None) -> PMJProjection:
    """Project the PMJ onto the centerline extended straight beyond its top end; refuse a PMJ below
    ``top_s_mm`` (the arc length of the segmentation's top slice centre) or far from the extension."""
    p = np.asarray(point, float).reshape(1, 3)
    s, dist = cl.project(p, extend=True)
    s_pmj, off = float(s[0]), float(dist[0])
    proj = PMJProjection(tuple(float(v) for v in p[0]), s_pmj, off, s_pmj - cl.length)
    if off > MAX_OFF_LINE_MM:
        raise InputError(f"the PMJ lies {off:.1f} mm from the cord's centerline extended above the segmentation "
                         f"(more than {MAX_OFF_LINE_MM:g} mm): not this cord's pontomedullary junction", name,
                         "check that the PMJ label and the segmentation belong to the same image and subject")
    if s_pmj < top_s_mm:
        raise InputError(f"the PMJ lies {top_s_mm - s_pmj:.1f} mm below the top of the cord segmentation (along "
                         "the centerline): the PMJ must lie above the segmented cord", name,
                         "check the PMJ label, or cut the segmentation below the pontomedullary junction")
    return proj


def distances_from_pmj(cl: Centerline, pmj: Image, centres_mm: np.ndarray) -> tuple[np.ndarray, PMJProjection]:
    """Distance (mm) along the centerline from the PMJ down to each slice centre (N, 3), and the
    PMJ's projection. The centerline is extended straight from its top end (see the module doc)."""
    c = np.asarray(centres_mm, float).reshape(-1, 3)
    s_slices, _ = cl.project(c, extend=True)
    proj = project_pmj(cl, pmj_point(pmj), float(np.max(s_slices)), pmj.name)
    return proj.s_pmj_mm - s_slices, proj


def pmj_window(distance: float, extent: float) -> tuple[float, float]:
    """The closed interval of distances ``distance +- extent / 2`` (mm)."""
    if not np.isfinite(distance) or distance < 0:
        raise InputError(f"--pmj-distance must be a distance >= 0 mm, got {distance}", None,
                         "give the distance below the PMJ in mm, e.g. --pmj-distance 64")
    if not np.isfinite(extent) or extent <= 0:
        raise InputError(f"--pmj-extent must be > 0 mm, got {extent}", None,
                         "give the window's length in mm, e.g. --pmj-extent 30")
    return distance - extent / 2, distance + extent / 2


def select_window(dist_mm: np.ndarray, distance: float, extent: float, name: str | None = None) -> np.ndarray:
    """Boolean mask of the slices whose distance lies in ``distance +- extent / 2``; refused when none
    does (the message names the range of distances the segmentation covers)."""
    lo, hi = pmj_window(distance, extent)
    d = np.asarray(dist_mm, float)
    sel = (d >= lo - 1e-9) & (d <= hi + 1e-9)
    if not sel.any():
        raise InputError(f"no slice of the segmentation lies {lo:g}-{hi:g} mm below the PMJ (along the "
                         f"centerline): its slices lie {d.min():.1f}-{d.max():.1f} mm below it", name,
                         "choose --pmj-distance / --pmj-extent within that range")
    step = float(np.median(np.abs(np.diff(np.sort(d))))) if len(d) > 1 else 0.0
    if lo < d.min() - step / 2 - 1e-6 or hi > d.max() + step / 2 + 1e-6:
        log.warning("%s: the window %g-%g mm below the PMJ is only partly covered by the segmentation (its slices lie "
                    "%.1f-%.1f mm below the PMJ): the PMJ summary averages %d slice(s), %.1f mm of the %g asked for",
                    name, lo, hi, d.min(), d.max(), int(sel.sum()), min(hi, d.max() + step / 2)
                    - max(lo, d.min() - step / 2), hi - lo)
    return sel
