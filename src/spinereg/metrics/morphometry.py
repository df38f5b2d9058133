"""Cord cross-sectional area (CSA) per slice, perpendicular to the cord, and per vertebral level.

As SCT's ``sct_process_segmentation``: the segmentation is cut into slices along its voxel axis
closest to world S-I; each slice's cord area (voxel count -- or the sum of a soft segmentation's
values -- times the in-plane voxel area) is corrected for the cord's inclination with the
centerline (:class:`spinereg.cord.centerline.Centerline`): ``csa = area * |t . n|`` where ``t``
is the cord's unit tangent at the slice and ``n`` the slice plane's unit normal (the area of an
oblique cut through a cylinder is its cross-section over the cosine of the angle). Everything is
computed from world vectors, so voxel order, flips and oblique headers do not change the result.

With a levels image (cord voxels valued by vertebral level, e.g. ``PAM50_levels`` warped to the
subject or ``*_seg_labeled``; any grid: it is read at the segmentation voxels' world positions),
each slice gets the most frequent non-zero level among its cord voxels, and levels aggregate the
mean and standard deviation of their slices' CSA.

Each slice also gets the cord's shape in the plane perpendicular to the same tangent
(:func:`spinereg.metrics.cord_shape.section_shape`: AP and RL diameters, compression ratio AP/RL,
eccentricity, orientation, solidity, as SCT's CSV); levels and the summary row give the mean and
standard deviation of each over their slices (slices whose shape could not be measured skipped).

Slices whose mask holds two or more separate pieces (:mod:`spinereg.metrics.cord_pieces`: 8-connected
at 0.5, each with its partial-volume rim; a stray blob, a cord cut in two by a syrinx, a nerve root)
are flagged: ``n_pieces`` and ``outside_largest_share`` (the share of the slice's area outside its
largest piece) in their row, a warning naming them. Their shape is that of the largest piece, their
centre (and the centerline fitted through the slices' centres) that of the largest piece; their CSA
(``csa_mm2``, ``area_slice_mm2``) still counts every piece's voxels -- the area of the mask as drawn,
right for a cord in two halves, too large by the blob's area for a false positive. Level and summary
means leave them out (``n_slices`` counts the slices averaged, ``n_split_slices`` those left out), as
SCT's per-level means leave out its slices with more than one region (SCT reports NaN for every
metric, the area included, on such a slice); ``include_split=True`` (``--include-split``) averages them too.

With a PMJ label (``pmj``; :mod:`spinereg.metrics.pmj_distance`, SCT's ``-pmj``), each slice gets its
distance below the pontomedullary junction along the centerline (extended straight from its top end up
to the PMJ's projection), and with ``pmj_distance`` the summary averages the slices whose distance lies
in ``pmj_distance +- pmj_extent / 2`` (SCT's ``-pmj-distance`` / ``-pmj-extent``).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinereg.cord.centerline import Centerline, si_axis
from spinereg.errors import InputError
from spinereg.io.image import Image, atomic_write
from spinereg.io.resample import sample_world
from spinereg.io.sanity import require_levels_image, require_segmentation
from spinereg.metrics.cord_pieces import slice_pieces
from spinereg.metrics.cord_shape import NAN_SHAPE, SHAPE_FIELDS, SectionShape, section_shape
from spinereg.metrics.pmj_distance import PMJProjection, distances_from_pmj, select_window

log = logging.getLogger(__name__)


@dataclass
class SliceArea:
    """One slice: index along the S-I voxel axis, world centre (mm), areas (mm2), angle (deg)."""

    slice: int
    centre_mm: tuple[float, float, float]
    area_slice_mm2: float
    angle_deg: float
    csa_mm2: float
    level: int | None = None
    shape: SectionShape = NAN_SHAPE
    n_pieces: int = 1
    outside_share: float = 0.0
    dist_pmj_mm: float | None = None  # distance below the PMJ along the centerline (with a PMJ label)

    @property
    def split(self) -> bool:
        """The slice's mask holds two or more separate pieces (shape of the largest; CSA of all)."""
        return self.n_pieces > 1


@dataclass
class LevelArea:
    level: int
    csa_mean_mm2: float
    csa_std_mm2: float
    n_slices: int
    slices: list[int] = field(default_factory=list)
    shape_mean: dict[str, float] = field(default_factory=dict)
    shape_std: dict[str, float] = field(default_factory=dict)
    n_split: int = 0  # slices at this level holding several pieces (left out of the means unless included)


#: CSV names of the shape metrics (SectionShape's fields), each followed by its SD column
SHAPE_COLUMNS: dict[str, tuple[str, str]] = {
    "diameter_ap_mm": ("diameter_AP_mm", "diameter_AP_std_mm"),
    "diameter_rl_mm": ("diameter_RL_mm", "diameter_RL_std_mm"),
    "compression_ratio": ("compression_ratio", "compression_ratio_std"),
    "eccentricity": ("eccentricity", "eccentricity_std"),
    "orientation_deg": ("orientation_deg", "orientation_std_deg"),
    "solidity": ("solidity", "solidity_std"),
}


def shape_stats(shapes: list[SectionShape]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and SD of each shape metric over ``shapes`` (NaN entries skipped; NaN if none)."""
    arr = np.array([[getattr(s, f) for f in SHAPE_FIELDS] for s in shapes], float).reshape(-1, len(SHAPE_FIELDS))
    ok = np.isfinite(arr)
    n = ok.sum(0)
    mean = np.where(n > 0, np.where(ok, arr, 0).sum(0) / np.maximum(n, 1), np.nan)
    sd = np.where(n > 0, np.sqrt(np.where(ok, (arr - mean) ** 2, 0).sum(0) / np.maximum(n, 1)), np.nan)
    return dict(zip(SHAPE_FIELDS, mean.tolist(), strict=True)), dict(zip(SHAPE_FIELDS, sd.tolist(), strict=True))


def _shape_cells(mean: dict[str, float] | None, sd: dict[str, float] | None = None) -> dict:
    out = {}
    for f, (cm, cs) in SHAPE_COLUMNS.items():
        m = None if mean is None else mean.get(f)
        s = None if sd is None else sd.get(f)
        out[cm] = round(m, 4) if m is not None and np.isfinite(m) else ""
        out[cs] = round(s, 4) if s is not None and np.isfinite(s) else ""
    return out


@dataclass
class CSAResult:
    """Per-slice and per-level CSA of a segmentation."""

    seg: str
    slice_axis: int
    slices: list[SliceArea]
    levels: list[LevelArea]
    angle_correction: bool = True
    include_split: bool = False
    pmj: PMJProjection | None = None
    pmj_window: tuple[float, float] | None = None  # (distance, extent) mm: the summary's slices

    def in_scope(self, s: SliceArea, levels: list[int] | None) -> bool:
        """The slice is in the summary's scope: at one of ``levels`` (when given), in the PMJ window
        (when the result has one)."""
        if levels is not None and s.level not in levels:
            return False
        if self.pmj_window is not None:
            d, e = self.pmj_window
            return s.dist_pmj_mm is not None and abs(s.dist_pmj_mm - d) <= e / 2 + 1e-9
        return True

    def scope_label(self, levels: list[int] | None = None) -> str:
        """The summary row's scope: ``all``, ``levels a:b`` or ``pmj D+-E/2``."""
        if self.pmj_window is not None:
            return f"pmj {self.pmj_window[0]:g}+-{self.pmj_window[1] / 2:g}"
        return "all" if levels is None else f"levels {min(levels)}:{max(levels)}"

    def _averaged(self, levels: list[int] | None) -> list[SliceArea]:
        return [s for s in self.slices if self.in_scope(s, levels) and (self.include_split or not s.split)]

    def split_slices(self, levels: list[int] | None = None) -> list[int]:
        """Slices (in the summary's scope: of the given levels, in the PMJ window) holding two or more pieces."""
        return [s.slice for s in self.slices if s.split and self.in_scope(s, levels)]

    def mean_over(self, levels: list[int] | None = None) -> tuple[float, float, int]:
        """Mean, std and count of the slice CSAs (of the given levels only, when given); slices
        holding several pieces left out unless ``include_split``."""
        vals = [s.csa_mm2 for s in self._averaged(levels)]
        if not vals:
            return float("nan"), float("nan"), 0
        return float(np.mean(vals)), float(np.std(vals)), len(vals)

    def shape_over(self, levels: list[int] | None = None) -> tuple[dict[str, float], dict[str, float]]:
        """Mean and SD of each shape metric over the slices (of the given levels only, when given;
        slices holding several pieces left out unless ``include_split``)."""
        return shape_stats([s.shape for s in self._averaged(levels)])

    def to_rows(self, vert: list[int] | None = None) -> list[dict]:
        rows = []
        for s in self.slices:
            rows.append({"scope": "slice", "slice": s.slice, "level": "" if s.level is None else s.level,
                         "x_mm": round(s.centre_mm[0], 3), "y_mm": round(s.centre_mm[1], 3),
                         "z_mm": round(s.centre_mm[2], 3), "csa_mm2": round(s.csa_mm2, 4),
                         "csa_std_mm2": "", "n_slices": 1, "area_slice_mm2": round(s.area_slice_mm2, 4),
                         "angle_deg": round(s.angle_deg, 3), **_shape_cells(s.shape.as_dict()),
                         "n_pieces": s.n_pieces, "outside_largest_share": round(s.outside_share, 4),
                         "n_split_slices": "",
                         "dist_pmj_mm": "" if s.dist_pmj_mm is None else round(s.dist_pmj_mm, 3)})
        for lv in self.levels:
            ok = lv.n_slices > 0
            rows.append({"scope": "level", "slice": "", "level": lv.level, "x_mm": "", "y_mm": "", "z_mm": "",
                         "csa_mm2": round(lv.csa_mean_mm2, 4) if ok else "",
                         "csa_std_mm2": round(lv.csa_std_mm2, 4) if ok else "",
                         "n_slices": lv.n_slices, "area_slice_mm2": "", "angle_deg": "",
                         **_shape_cells(lv.shape_mean, lv.shape_std),
                         "n_pieces": "", "outside_largest_share": "", "n_split_slices": lv.n_split,
                         "dist_pmj_mm": ""})
        m, sd, n = self.mean_over(vert)
        rows.append({"scope": self.scope_label(vert), "slice": "", "level": "", "x_mm": "", "y_mm": "", "z_mm": "",
                     "csa_mm2": round(m, 4) if n else "", "csa_std_mm2": round(sd, 4) if n else "",
                     "n_slices": n, "area_slice_mm2": "", "angle_deg": "",
                     **_shape_cells(*self.shape_over(vert)),
                     "n_pieces": "", "outside_largest_share": "", "n_split_slices": len(self.split_slices(vert)),
                     "dist_pmj_mm": ""})
        return rows


CSV_COLUMNS = ["scope", "slice", "level", "x_mm", "y_mm", "z_mm", "csa_mm2", "csa_std_mm2", "n_slices",
               "area_slice_mm2", "angle_deg", *(c for pair in SHAPE_COLUMNS.values() for c in pair),
               "dist_pmj_mm", "n_pieces", "outside_largest_share", "n_split_slices"]


#: a levels image must give a level to at least this share of the segmentation's voxels (a
#: point-label file given as --levels marks one voxel per level: t2's labels.nii.gz 2 of 4275)
MIN_LEVEL_COVERAGE = 0.1


def require_levels_present(result: CSAResult, vert: list[int] | None, levels_name: str | None = None) -> None:
    """Raise unless some slice lies at one of the ``vert`` levels (a summary over no slice is empty)."""
    present = [lv.level for lv in result.levels]
    if vert is None:
        return
    if any(s.level in vert for s in result.slices):  # slices holding several pieces included
        absent = [v for v in vert if v not in present]
        if absent:  # the summary row is labelled with the levels asked for, not those averaged
            log.warning("no slice of the segmentation lies at level(s) %s: the summary 'levels %d:%d' "
                        "averages levels %s only", ", ".join(map(str, absent)), min(vert), max(vert),
                        ", ".join(str(v) for v in present if v in vert))
        return
    raise InputError(f"no slice of the segmentation lies at levels {min(vert)}-{max(vert)} "
                     f"(levels present: {', '.join(map(str, present)) or 'none'})", levels_name,
                     "choose --vert among the levels present, or check the levels image")


#: a soft segmentation's values may stray this far outside [0, 1] (float rounding of a resampled
#: mask; :func:`spinereg.io.sanity.is_mask`'s tolerance): they are clipped, not read as labels
SOFT_TOLERANCE = 1e-3


def _weights(seg: Image) -> np.ndarray:
    d = np.asarray(seg.data, np.float64)
    if d.min() < -SOFT_TOLERANCE or d.max() > 1 + SOFT_TOLERANCE:
        return (d > 0).astype(np.float64)  # a labelled segmentation: every non-zero voxel is cord
    # a soft mask a hair above 1 was read as labelled, each faint edge voxel a whole voxel of cord
    # (a soft cylinder of 50.3 mm2 scaled by 1.0005: CSA 213.6 mm2, before session 40)
    return np.clip(d, 0.0, 1.0)


def cross_sectional_area(seg: Image, levels: Image | None = None, *, angle_correction: bool = True,
                         min_area_mm2: float = 0.0, include_split: bool = False, pmj: Image | None = None,
                         pmj_distance: float | None = None, pmj_extent: float = 20.0) -> CSAResult:
    """CSA per slice (and per level with ``levels``) of a binary or soft cord segmentation.

    ``include_split``: average the slices holding several pieces into the level and summary means
    too (left out by default; see the module docstring). ``pmj``: PMJ label image (any grid): each
    slice gets ``dist_pmj_mm``; with ``pmj_distance`` the summary averages the slices within
    ``pmj_distance +- pmj_extent / 2`` mm below the PMJ (refused when none is)."""
    if pmj_distance is not None and pmj is None:
        raise InputError("a PMJ distance needs the PMJ label", seg.name, "give the PMJ label with --pmj")
    if seg.ndim != 3:
        raise InputError(f"segmentation must be 3D, got shape {seg.shape}", seg.name, "give a 3D cord segmentation")
    # an intensity image given as -s would be read below as a labelled segmentation, every
    # non-zero voxel cord (t2.nii.gz gave a "CSA" of 3069 mm2)
    require_segmentation(seg)
    w = _weights(seg)
    if not np.any(w > 0):
        raise InputError("segmentation is empty (no voxel > 0)", seg.name, "give a spinal cord segmentation")
    axis = si_axis(seg.affine)
    inplane = [a for a in range(3) if a != axis]
    _require_cross_section(seg, w, inplane)
    lin = seg.affine[:3, :3]
    cross = np.cross(lin[:, inplane[0]], lin[:, inplane[1]])
    vox_area = float(np.linalg.norm(cross))
    normal = cross / vox_area
    wm = np.moveaxis(w, axis, 2)
    mass = wm.sum(axis=(0, 1))
    ks = np.flatnonzero(mass * vox_area > max(min_area_mm2, 1e-9))
    pieces = [slice_pieces(wm[:, :, k]) for k in ks]
    # the cord: each slice's largest piece (the whole slice where it is one piece: unchanged)
    wc = wm.copy() if any(p.split for p in pieces) else wm
    for k, p in zip(ks, pieces, strict=True):
        if p.split:
            wc[:, :, k] *= p.largest
    cmass = wc.sum(axis=(0, 1))
    # world centre of each slice's cord
    ii = np.arange(wm.shape[0])[:, None]
    jj = np.arange(wm.shape[1])[None, :]
    vox = np.zeros((len(ks), 3))
    for n, k in enumerate(ks):
        sl = wc[:, :, k]
        vox[n, inplane[0]] = float((sl * ii).sum() / cmass[k])
        vox[n, inplane[1]] = float((sl * jj).sum() / cmass[k])
        vox[n, axis] = k
    centres = seg.grid.voxel_to_world(vox)
    if angle_correction and len(ks) < 2:  # no centerline: "corrected" would be the slice-plane area
        raise InputError(f"the segmentation's cord lies on one slice (of {wm.shape[2]} along S-I): its "
                         "inclination, and so the area perpendicular to it, cannot be measured", seg.name,
                         "give a segmentation covering several slices, or pass --no-angle-correction for the "
                         "area in the slice plane")
    if pmj is not None and len(ks) < 2:
        raise InputError(f"the segmentation's cord lies on one slice (of {wm.shape[2]} along S-I): no centerline "
                         "to measure the distance from the PMJ along", seg.name,
                         "give a segmentation covering several slices")
    cl = None
    if angle_correction or pmj is not None:  # the centerline through the largest pieces: a stray blob does not pull it
        wcl = np.moveaxis(wc, 2, axis)
        bin_img = Image((wcl > 0).astype(np.float32) if wcl.max() > 1 else wcl.astype(np.float32), seg.affine)
        cl = Centerline.from_mask(bin_img)
    dist = [None] * len(ks)
    proj = window = None
    if pmj is not None:
        d, proj = distances_from_pmj(cl, pmj, centres)
        if pmj_distance is not None:
            select_window(d, float(pmj_distance), float(pmj_extent), seg.name)
            window = (float(pmj_distance), float(pmj_extent))
        dist = [float(v) for v in d]
    if angle_correction:
        s, _ = cl.project(centres)
        t = cl.tangent(s)
        cosang = np.clip(np.abs(t @ normal), 1e-6, 1.0)
    else:
        cosang = np.ones(len(ks))
        t = np.tile(normal, (len(ks), 1))
    soft = bool(np.any((w > 0) & (w < 1)))
    shapes = [section_shape(wc[:, :, k], lin[:, inplane], lin, tk, soft=soft) for k, tk in zip(ks, t, strict=True)]
    slice_lv = _slice_levels(seg, w, axis, ks, levels) if levels is not None else [None] * len(ks)
    slices = [SliceArea(int(k), tuple(float(v) for v in c), float(mass[k] * vox_area),
                        float(np.degrees(np.arccos(ca))), float(mass[k] * vox_area * ca), lv, sh,
                        p.n_pieces, p.outside_share, dp)
              for k, c, ca, lv, sh, p, dp in zip(ks, centres, cosang, slice_lv, shapes, pieces, dist, strict=True)]
    _warn_split_slices(seg.name, slices, include_split)
    per_level = []
    for lv in sorted({s.level for s in slices if s.level is not None}):
        at = [s for s in slices if s.level == lv]
        use = [s for s in at if include_split or not s.split]
        vals = [s.csa_mm2 for s in use]
        sm, ss = shape_stats([s.shape for s in use])
        per_level.append(LevelArea(lv, float(np.mean(vals)) if vals else float("nan"),
                                   float(np.std(vals)) if vals else float("nan"), len(vals),
                                   [s.slice for s in use], sm, ss, sum(s.split for s in at)))
    return CSAResult(seg.name, axis, slices, per_level, angle_correction, include_split, proj, window)


def _warn_split_slices(name: str | None, slices: list[SliceArea], include_split: bool) -> list[int]:
    """Warn of slices whose segmentation holds two or more separate pieces (a false-positive blob
    beside the cord, a cord cut in two, a nerve root; a 50.3 mm2 cylinder with a 2 mm radius one
    beside it read 62.3 mm2, silently, before session 40). Returns them."""
    split = [s.slice for s in slices if s.split]
    if split:
        shown = ", ".join(map(str, split[:8])) + (" ..." if len(split) > 8 else "")
        means = "averaged into" if include_split else "left out of"
        log.warning("%s: %d slice(s) hold two or more separate pieces of segmentation (slices %s): their shape is "
                    "that of the largest piece, their CSA sums the pieces, and they are %s the level and summary "
                    "means -- check the segmentation (remove what is not cord)", name, len(split), shown, means)
    return split


def _require_cross_section(seg: Image, w: np.ndarray, inplane: list[int]) -> None:
    """Refuse a cord one voxel thick across an in-plane axis (a sagittal or coronal slice, or a
    one-slice grid): each slice's "area" would be the cord's width times one voxel (t2's
    segmentation cut to one sagittal slice gave a CSA of 7.7 mm2 over 55 slices, session 36)."""
    codes = seg.grid.axcodes
    for a in inplane:
        others = tuple(b for b in range(3) if b != a)
        layers = int(np.count_nonzero(np.any(w > 0, axis=others)))
        if layers == 1:
            where = "a one-slice grid" if w.shape[a] == 1 else f"one of its {w.shape[a]} slices"
            raise InputError(f"the segmentation's cord lies on one voxel layer across the cord (voxel axis {a}, "
                             f"{codes[a]}: {where}): a slice along the cord, not its cross-section", seg.name,
                             "give a 3D cord segmentation covering the whole cross-section (e.g. of an axial "
                             "or 3D image)")


def _slice_levels(seg: Image, w: np.ndarray, axis: int, ks: np.ndarray, levels: Image) -> list[int | None]:
    if levels.ndim != 3:
        raise InputError(f"levels image must be 3D, got shape {levels.shape}", levels.name,
                         "give a 3D image of vertebral levels (cord voxels valued by level)")
    require_levels_image(levels)
    from spinereg.metrics.spine_registration import template_lattice_of

    # a template's own levels (PAM50_small_levels, not warped) read at a subject's world points:
    # t2 got T3-T5 for its cervical cord, exit 0, before session 49
    lattice = template_lattice_of(levels.grid)
    if lattice is not None and template_lattice_of(seg.grid) != lattice:
        raise InputError(f"the levels image lies on {lattice}'s own grid (the template's levels, not this "
                         "subject's)", levels.name,
                         "warp the template's levels onto the image first (spinereg warp-template -d IMAGE -w "
                         "warp_template2anat), or give label-vertebrae's <img>_seg_labeled")
    idx = np.argwhere(w > 0)
    vals = np.rint(sample_world(np.asarray(levels.data), levels.affine, seg.grid.voxel_to_world(idx),
                                interp="nn")).astype(int)
    if not np.any(vals > 0):
        raise InputError("levels image has no level at the segmentation's voxels", levels.name,
                         "give the levels of this subject (e.g. PAM50_levels warped onto the image)")
    covered = float(np.mean(vals > 0))
    if covered < MIN_LEVEL_COVERAGE:
        raise InputError(f"the levels image gives a level to {int((vals > 0).sum())} of the segmentation's "
                         f"{len(vals)} voxels ({100 * covered:.1f} %): a point-label file?", levels.name,
                         "give a levels image: the segmentation painted with levels (label-vertebrae's "
                         "<img>_seg_labeled, or PAM50_levels warped onto the image)")
    out: list[int | None] = []
    kk = idx[:, axis]
    for k in ks:
        v = vals[(kk == k) & (vals > 0)]
        if v.size == 0:
            out.append(None)
        else:
            u, c = np.unique(v, return_counts=True)
            out.append(int(u[np.argmax(c)]))
    return out


def parse_levels(text: str | None) -> list[int] | None:
    """``"2:5"`` -> [2, 3, 4, 5]; ``"2,3,7"`` -> [2, 3, 7]; None -> None."""
    if not text:
        return None
    try:
        if ":" in text:
            a, b = (int(v) for v in text.split(":"))
            return list(range(min(a, b), max(a, b) + 1))
        return [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise InputError(f"invalid levels {text!r}", None, "use e.g. 2:5 or 2,3,4") from exc


def write_csa_csv(result: CSAResult, path: str | Path, *, vert: list[int] | None = None,
                  overwrite: bool = False) -> Path:
    """Per-slice rows, per-level rows and one summary row (``all`` or ``levels a:b``), atomically."""
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    wr.writeheader()
    for row in result.to_rows(vert):
        wr.writerow(row)
    text = buf.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite)
