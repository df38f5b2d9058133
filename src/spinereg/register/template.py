"""Normalisation to a template (``spinereg register-to-template``).

Pipeline (``ref="template"``, as SCT's default):

1. centerlines of the subject cord (from its segmentation) and of the template cord;
2. landmarks (vertebral bodies, discs or rootlet midpoints) projected onto both centerlines give
   an arc-length correspondence (1 label: shift, 2: shift + S-I scaling, >2: piecewise), which
   with the centerline frames defines one analytic cord-to-cord mapping (straightening and label
   alignment in one transform);
3. the registration steps (``--param`` or a preset) refine it in template space;
4. the chain is sampled once into ``warp_anat2template`` (template grid) and its inverse into
   ``warp_template2anat`` (subject grid), so every output is interpolated once.

``ref="subject"`` runs the steps in the subject's space instead (no resampling of the subject
image; for thick-slice axial data).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.cord.landmarks import (
    Landmarks,
    check_against_template,
    check_near_seg,
    read_point_labels,
    rootlet_midpoints,
    split_below_cord,
)
from spinereg.cord.roll import cross_section_roll, frame_turn
from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image, onto_grid_of, require_nonempty
from spinereg.io.orientation import positive_grid, reorient, si_last_code
from spinereg.io.resample import slice_like
from spinereg.io.sanity import unit_mask
from spinereg.register.cord_mapping import CordMapping, PiecewiseLinear, SampledMapping
from spinereg.register.engine import invert_step, region_of_interest, run_steps
from spinereg.register.slice_maps import extended_slice_maps
from spinereg.register.steps import Step, parse_param
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.base import Chain, Transform
from spinereg.transforms.displacement import DisplacementField

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from spinereg.cord.centerline import Centerline
    from spinereg.io.template import Template
    from spinereg.vertebrae.result import VertebralLabeling

DEFAULT_PRESET = "template_spinereg"
#: smallest smoothing (mm) of the centerlines the cord mapping is built on: sub-centimetre
#: wiggles of a centerline fit (segmentation noise, the tapering conus) bend the cord frames
#: sharply, and points a few centimetres away would fold; no cord curves on that scale
MAPPING_SMOOTH_MM = 6.0
_TEMPLATE_LABEL_ROLE = {"body": "body", "disc": "disc", "rootlet": "rootlets_midpoint"}


@dataclass
class TemplateRegistration:
    """Result of :func:`register_to_template` (in memory; see ``save`` in the output module)."""

    image: Image
    seg: Image
    template: object
    ref: str
    steps: list[Step]
    landmarks: Landmarks
    template_landmarks: Landmarks
    mapping: CordMapping
    mapping_fields: tuple[SampledMapping, SampledMapping]
    step_transforms: list[Transform]
    step_inverses: list[Transform]
    work_grid: Grid
    template_grid: Grid
    template_crop: Grid
    si_report: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    #: measured discs of the automatic labeling used beside the given landmarks (subject, template;
    #: projected on the centerlines), None when the given landmarks were used alone
    auto_landmarks: Landmarks | None = None
    auto_template_landmarks: Landmarks | None = None
    #: which landmarks were used (given / automatic) and why (provenance.json, metrics.json)
    landmark_report: dict = field(default_factory=dict)
    #: the automatic vertebral labeling run for this registration (reused by the QC level check)
    labeling: object = None

    @property
    def anat2template(self) -> Chain:
        """Pull chain on the template grid: template points -> subject points."""
        fwd = self.mapping_fields[0]
        if self.ref == "template":
            return Chain([fwd, *self.step_transforms])
        return Chain([*reversed(self.step_inverses), fwd])

    @property
    def template2anat(self) -> Chain:
        """Pull chain on the subject grid: subject points -> template points."""
        inv = self.mapping_fields[1]
        if self.ref == "template":
            return Chain([*reversed(self.step_inverses), inv])
        return Chain([inv, *self.step_transforms])

    def warp_anat2template(self) -> DisplacementField:
        return DisplacementField.from_transform(self.anat2template, self.template_grid, coarse_mm=self._coarse_mm)

    def warp_template2anat(self) -> DisplacementField:
        return DisplacementField.from_transform(self.template2anat, self.image.grid, coarse_mm=self._coarse_mm)

    @property
    def _coarse_mm(self) -> float:
        """Large grids: evaluate the chain on nodes about as far apart as the working grid's voxels
        (the chain has no finer detail) and interpolate trilinearly in between."""
        return float(np.min(self.work_grid.zooms))


def load_landmarks(labels: str | Path | Image | Landmarks | None = None,
                   ldisc: str | Path | Image | Landmarks | None = None,
                   lrootlet: str | Path | Image | Landmarks | None = None) -> Landmarks:
    given = [(k, v) for k, v in (("body", labels), ("disc", ldisc), ("rootlet", lrootlet)) if v is not None]
    if len(given) != 1:
        raise InputError("give exactly one kind of landmarks", None,
                         "use one of -l (vertebral body labels), --ldisc (disc labels), --lrootlet (rootlet seg)")
    kind, src = given[0]
    if isinstance(src, Landmarks):  # points already in world mm (e.g. carried through a chain)
        return Landmarks(kind, src.values, src.points, src.source)
    img = src if isinstance(src, Image) else load_image(src, ndim=3, what="label file")
    return rootlet_midpoints(img) if kind == "rootlet" else read_point_labels(img, kind)


def template_landmarks(tpl: Template, kind: str) -> Landmarks:
    """The template's landmarks of ``kind``.

    Templates without body labels (e.g. PAM50_small) get them from the disc labels: the body of
    level N lies midway between discs N and N+1 (within 0.8 mm on PAM50, where both exist).
    Disc labels are given in PAM50_label_disc's convention (N = the disc between levels N-1 and
    N, 3 = C2/C3) whatever the template's file uses (:func:`_disc_value_shift`).
    """
    if kind == "body" and not tpl.has("body") and tpl.has("disc"):
        discs = template_landmarks(tpl, "disc")
        vals = [v for v in discs.values if v + 1 in discs.values]
        pts = np.array([(discs.point(v) + discs.point(v + 1)) / 2 for v in vals])
        return Landmarks("body", np.array(vals), pts, str(tpl.path("disc")))
    img = load_image(tpl.path(_TEMPLATE_LABEL_ROLE[kind]), ndim=3, what="template label file")
    if kind == "rootlet":
        return rootlet_midpoints(img)
    lm = read_point_labels(img, kind, allow_blobs=True)
    if kind == "disc" and tpl.has("levels"):
        shift = _disc_value_shift(str(tpl.path("levels")), lm)
        if shift:
            values = np.where(lm.values < _CONUS_LABEL, lm.values + shift, lm.values)
            lm = Landmarks(lm.kind, values, lm.points, lm.source)
    return lm


#: disc label values from here on are not discs between two levels (PAM50's 60: the conus)
_CONUS_LABEL = 60


def _disc_value_shift(levels_path: str, discs: Landmarks, probe_mm: float = 3.0) -> int:
    """What to add to a template's disc label values to have PAM50_label_disc's convention, read
    from the template's own level map: the level just below disc N is N in that convention.

    MNI-Poly-AMU_disc.nii.gz numbers each disc after the level above it (C2/C3 = 2: its level map
    holds 2 above and 3 below that disc, landmarks_center.nii.gz 2 at mid-C2), one less than
    PAM50's. Taken as PAM50's, every given or automatic disc and every body label (placed
    between two discs) went one level too low in MNI-Poly-AMU before session 49: t2 with
    ``-l labels.nii.gz -t MNI-Poly-AMU`` got the level map one level high on all 52 cord slices
    (C3's mid-body labelled C4) and passed; t2s (one C4 body label) had 0.20 of its cord's voxels
    at SCT's levels (``t2s/MNI-Poly-AMU_level_crop``; PAM50 0.77 in the same run). Now +1 for
    MNI-Poly-AMU: t2 47 of 52 slices at SCT's levels (the rest on level boundaries), t2s 0.64
    of its voxels, 7 of 9 slices (as PAM50); 0 for PAM50 and PAM50_small. 0 unless at least two
    discs and two thirds of those read agree on the shift
    (``tests/test_mni_disc_convention.py``).
    """
    lev = _slice_levels(levels_path)
    if lev is None:
        return 0
    z0, dz, modes = lev
    shifts = []
    for v, p in zip(discs.values.tolist(), discs.points, strict=True):
        k = int(round((float(p[2]) - probe_mm - z0) / dz))
        if v < _CONUS_LABEL and 0 <= k < len(modes) and modes[k] > 0:
            shifts.append(int(modes[k]) - int(v))
    if len(shifts) < 2:
        return 0
    vals, counts = np.unique(shifts, return_counts=True)
    best = int(np.argmax(counts))
    return int(vals[best]) if counts[best] >= 2 * len(shifts) / 3 else 0


_SLICE_LEVELS: dict[str, tuple[float, float, np.ndarray] | None] = {}


def _slice_levels(path: str) -> tuple[float, float, np.ndarray] | None:
    """Most frequent non-zero level of each slice of a level map along its voxel axis closest to
    S-I, with that axis' world z at slice 0 and step (cached per file); None for an oblique map."""
    if path in _SLICE_LEVELS:
        return _SLICE_LEVELS[path]
    img = load_image(path, ndim=3, what="template level map", check_finite=False)
    aff = img.grid.affine
    ax = int(np.argmax(np.abs(aff[2, :3])))
    out = None
    if np.count_nonzero(np.abs(aff[2, :3]) > 1e-6) == 1:  # one voxel axis along S-I: slices are levels' planes
        data = np.rint(np.asarray(img.data)).astype(int)
        data = np.moveaxis(data, ax, -1).reshape(-1, data.shape[ax])
        modes = np.zeros(data.shape[1], int)
        for k in range(data.shape[1]):
            col = data[:, k]
            col = col[col > 0]
            if col.size:
                modes[k] = int(np.bincount(col).argmax())
        out = (float(aff[2, 3]), float(aff[2, ax]), modes)
    _SLICE_LEVELS[path] = out
    return out


#: the least share of the segmented cord that the landmarks must map onto the template's cord
#: (between its ends along S-I) for a registration to be attempted
MIN_CORD_ON_TEMPLATE = 0.5


def _require_cord_on_template_cord(covered: np.ndarray, tcord: Image, lm: Landmarks, img: Image,
                                   template: str) -> None:
    """Refuse landmarks that map most of the segmented cord (``covered``: its voxels in template
    space) beyond the ends of the template's cord, in the user's terms. The steps after the
    landmarks need the two cords on common slices; without this check a lumbar level given to a
    cervical cord (or one disc found in a noise image, named L1/L2, next to PAM50's conus) stopped
    inside a step with "no slice holds both the fixed and the moving segmentation"."""
    tz = tcord.grid.voxel_to_world(np.argwhere(np.asarray(tcord.data) > 0.5)[::50].astype(float))[:, 2]
    lo, hi = float(tz.min()), float(tz.max())
    on = float(np.mean((covered[:, 2] >= lo) & (covered[:, 2] <= hi))) if len(covered) else 0.0
    if on >= MIN_CORD_ON_TEMPLATE:
        return
    from spinereg.vertebrae.names import level_name
    from spinereg.vertebrae.result import disc_name

    name = {"disc": disc_name, "body": level_name}.get(lm.kind, str)
    names = ", ".join(name(int(v)) for v in lm.values)
    where = f"below the lower end of {template}'s cord (its conus)" if np.median(covered[:, 2]) < lo \
        else f"above the upper end of {template}'s cord"
    raise InputError(
        f"the landmarks ({lm.kind} {names}) place {100 * (1 - on):.0f} % of the segmented cord {where}: "
        "the levels do not fit this cord, or the segmentation is not the cord",
        img.name, "check the labels' values (or the automatic labeling's) and the segmentation; give -l / --ldisc "
        "with the right levels")


def template_centerline(tcord: Image) -> Centerline:
    """Centerline of a template cord, cached on disk by file identity (templates do not change)."""
    import hashlib
    import json

    from spinereg.cord.centerline import Centerline, centerline_from_seg
    from spinereg.io.registry import cache_dir

    path = tcord.path
    if path is None:
        return centerline_from_seg(tcord, min_smooth_mm=MAPPING_SMOOTH_MM)
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|v2|{MAPPING_SMOOTH_MM}".encode()).hexdigest()[:24]
    cache = cache_dir() / "centerlines" / f"{key}.json"
    try:
        return Centerline.from_dict(json.loads(cache.read_text()))
    except (OSError, ValueError, KeyError):
        pass
    cl = centerline_from_seg(tcord, min_smooth_mm=MAPPING_SMOOTH_MM)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.part")
        tmp.write_text(json.dumps(cl.to_dict()))
        os.replace(tmp, cache)
    except OSError:  # a read-only cache only costs time
        pass
    return cl


def project_landmarks(lm: Landmarks, cl: Centerline) -> Landmarks:
    """The landmarks moved to their closest centerline points."""
    s, _ = cl.project(lm.points)
    return Landmarks(lm.kind, lm.values, cl.points(s), lm.source)


def arc_correspondence(cl_ref: Centerline, cl_src: Centerline, lm_ref: Landmarks,
                       lm_src: Landmarks) -> PiecewiseLinear:
    """Arc length on the reference cord -> arc length on the source cord, through the landmarks."""
    common = np.intersect1d(lm_ref.values, lm_src.values)
    s_ref, _ = cl_ref.project(lm_ref.subset(common).points)
    s_src, _ = cl_src.project(lm_src.subset(common).points)
    # one landmark: a shift along the cord; two: shift + S-I scaling; more: piecewise
    try:
        return PiecewiseLinear(s_ref, s_src)
    except InputError as exc:  # name the label file and the order found (before session 37: no file named)
        along = ", ".join(str(int(v)) for v in common[np.argsort(s_src)])
        tpl = ", ".join(str(int(v)) for v in common[np.argsort(s_ref)])
        raise InputError(f"landmarks are not in the same order along the cord as in the template (along the "
                         f"cord the labels run {along} in the subject, {tpl} in the template)", lm_src.source,
                         f"{exc.fix}, or the image's header is upside down (head towards I)") from exc


def sampled(transform: Transform, grid: Grid, si_mm: float = 2.0, inplane_mm: float = 4.0) -> SampledMapping:
    """``transform`` sampled on nodes spanning ``grid`` (trilinear in between): ``si_mm`` apart
    along the voxel axis closest to S-I, ``inplane_mm`` along the others. The cord mapping is
    linear in-plane and curves gently along the cord, so this is accurate (< 0.2 mm near the cord)."""
    grid = positive_grid(grid)  # the nodes do not depend on how the voxels are flipped
    si = int(np.argmax(np.abs(grid.affine[2, :3]) / grid.zooms))
    spacing = np.full(3, inplane_mm)
    spacing[si] = si_mm
    stride = np.maximum(1, np.round(spacing / grid.zooms)).astype(int)
    return SampledMapping(transform, DisplacementField.from_transform(transform, grid.coarsened(stride)))


def crop_grid(grid: Grid, world_points: np.ndarray, margin_mm: float = 10.0) -> Grid:
    """Sub-grid of ``grid`` (same voxels) covering ``world_points`` plus a margin."""
    sub = grid.bounding_subgrid(world_points, margin_mm)
    if sub is None:
        raise InputError("the subject does not overlap the template after landmark alignment", None,
                         "check the landmark values")
    return sub


def register_to_template(
    image: str | Path | Image,
    seg: str | Path | Image,
    *,
    labels: str | Path | Image | Landmarks | None = None,
    ldisc: str | Path | Image | Landmarks | None = None,
    lrootlet: str | Path | Image | Landmarks | None = None,
    template: str | Path = "PAM50",
    contrast: str = "t2",
    param: str | None = None,
    ref: str = "template",
    si_refine: bool = True,
    labeling: VertebralLabeling | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TemplateRegistration:
    """Register a subject's anatomical image to a template (see module doc).

    ``si_refine``: refine the landmarks' S-I correspondence with the vertebral pattern of the
    image (see :mod:`spinereg.register.si_refine`); kept only when it improves the match.

    ``labeling``: the automatic vertebral labeling of the image (a
    :class:`~spinereg.vertebrae.result.VertebralLabeling`, or ``"auto"`` to run
    :func:`~spinereg.vertebrae.label_vertebrae` here). When it is not ambiguous and its levels
    agree with the given body or disc labels, its measured discs join them as landmarks (the given
    labels win; see :mod:`spinereg.register.auto_landmarks`); otherwise the given labels are used
    alone. None (default): the given labels alone. ``landmark_report`` says what was used and why.

    Body or disc labels over 15 mm below the lower end of the segmented cord (a lumbar field of
    view past the conus) are not registered, the cord being what is aligned
    (:func:`~spinereg.cord.landmarks.split_below_cord`); ``landmark_report["not_registered"]``
    names them. Labels far from the cord anywhere else are refused.

    Returns a :class:`TemplateRegistration`; :func:`spinereg.pipelines.template_outputs.write_outputs`
    writes SCT-named warps, images, metrics and provenance.
    """
    from spinereg.cord.centerline import centerline_from_seg
    from spinereg.io.template import load_template

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    img = image if isinstance(image, Image) else load_image(image, ndim=3)
    sg = seg if isinstance(seg, Image) else load_image(seg, ndim=3, what="segmentation")
    sg = unit_mask(onto_grid_of(sg, img))  # the image's voxels in another axis order: exactly on its grid
    require_nonempty(sg)
    lm = load_landmarks(labels, ldisc, lrootlet)
    lm, below = split_below_cord(lm, sg)  # below the cord's lower end (the conus): not registered
    check_near_seg(lm, sg)
    tpl = load_template(template)
    tlm = template_landmarks(tpl, lm.kind)
    check_against_template(lm, tlm, tpl.name)
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    timings["load"] = time.perf_counter() - t0
    auto, tauto, report = None, None, {"given": {"kind": lm.kind, "values": [int(v) for v in lm.values]},
                                       "automatic": {"used": False, "reason": "not asked (labeling=None)"}}
    if below:
        report["given"]["values"] = sorted(report["given"]["values"] + list(below))
        report["not_registered"] = {"kind": lm.kind, "values": sorted(below),
                                    "distance_mm": [round(below[v], 1) for v in sorted(below)],
                                    "why": "below the lower end of the segmented cord"}
    if labeling is not None and not tpl.has("disc"):
        report["automatic"]["reason"] = f"template {tpl.name} has no disc labels"
    elif labeling is not None:
        from spinereg.register.auto_landmarks import automatic_discs

        if isinstance(labeling, str):
            t0 = time.perf_counter()
            try:
                labeling = auto_labeling(img, sg, contrast, check_identity=False)
            except InputError as err:  # an optional addition never blocks the given labels
                labeling = None
                report["automatic"]["reason"] = f"automatic labeling failed: {err}"
            timings["labeling"] = time.perf_counter() - t0
        if labeling is not None:
            tdisc = template_landmarks(tpl, "disc")
            auto, report["automatic"] = automatic_discs(lm, labeling, tdisc, template=tpl.name,
                                                         si_spacing_mm=img.grid.extent_along([0.0, 0.0, 1.0]))
            if auto is not None:
                tauto = tdisc.subset(auto.values)

    t0 = time.perf_counter()
    cl_subj = centerline_from_seg(sg, min_smooth_mm=MAPPING_SMOOTH_MM)
    cl_tpl = template_centerline(tcord)
    # landmarks are projected onto their centerline (rootlet midpoints and body labels may lie
    # off the cord centre); residuals are measured between projected points
    raw_landmarks = (tlm, lm)  # as placed in the label files (algo=tps steps)
    lm, tlm = project_landmarks(lm, cl_subj), project_landmarks(tlm, cl_tpl)
    arc = arc_correspondence(cl_tpl, cl_subj, tlm, lm)
    anchors = tlm.subset(lm.values).points
    if auto is not None:
        from spinereg.register.auto_landmarks import FittedEnds, arc_pairs

        auto, tauto = project_landmarks(auto, cl_subj), project_landmarks(tauto, cl_tpl)
        s_ref, s_src = arc_pairs(cl_tpl, cl_subj, [(tlm, lm), (tauto, auto)])
        try:
            arc = FittedEnds(s_ref, s_src)
            anchors = np.concatenate([anchors, tauto.points])
        except InputError:  # not in the same order along both cords: the given labels alone
            report["automatic"].update(used=False, reason="the automatic discs and the given labels are not in "
                                                          "the same order along the cord: the given labels only",
                                       warn=True)
            auto, tauto = None, None
    timings["centerline_landmarks"] = time.perf_counter() - t0
    si_report: dict = {"used": False, "reason": "disabled"}
    if si_refine:
        t0 = time.perf_counter()
        # the pattern is read in front of the cord: in the subject's own front when it is turned
        # about S-I in the scanner (as the labeling reads its discs)
        turn = frame_turn(cross_section_roll(sg, cl_subj).angle_deg)
        arc, si_report = _refine_si(arc, cl_tpl, cl_subj.rolled(turn) if turn else cl_subj, img, tpl, contrast,
                                    tcord, anchors)
        si_report["frame_turned_deg"] = round(turn, 2)
        timings["si_refine"] = time.perf_counter() - t0
    mapping = CordMapping(cl_tpl, cl_subj, arc)

    steps = parse_param(param if param else DEFAULT_PRESET)
    if ref not in ("template", "subject"):
        raise InputError(f"unknown --ref {ref!r}", None, "use --ref template or --ref subject")

    t0 = time.perf_counter()
    # template-space region that the subject covers (its seg mapped into the template)
    seg_pts = sg.grid.voxel_to_world(np.argwhere(sg.data > 0.5))
    covered = mapping.inverse().map(seg_pts)
    _require_cord_on_template_cord(covered, tcord, lm, img, tpl.name)
    work_tpl = crop_grid(tcord.grid, covered, margin_mm=12.0)
    out_tpl = tcord.grid if tcord.grid.size <= 4_000_000 else crop_grid(tcord.grid, covered, margin_mm=30.0)
    # the analytic mapping is smooth (linear in-plane, gently curved along the cord): sample it
    # once on ~2 mm nodes and interpolate, instead of projecting every voxel on the centerline
    fwd_map = sampled(mapping, out_tpl)
    inv_map = sampled(mapping.inverse(), img.grid)
    timings["mapping_fields"] = time.perf_counter() - t0
    from spinereg.register.spine_contrast import needs_spine, spine_inputs

    if needs_spine(steps):  # per-vertebra steps: the whole spine the subject shows, not just the cord
        if ref != "template":
            raise InputError("per-vertebra steps (algo=polyrigid, rigidity=) run in template space", None,
                             "use --ref template with them")
        work_tpl = covered_region(tcord.grid, inv_map, img.grid, margin_mm=SPINE_MARGIN_MM)
    t0 = time.perf_counter()
    needs_image = any(st.type in ("im", "imseg") for st in steps)
    if ref == "template":
        # register at about the subject's resolution (a 0.5 mm template is not refined further)
        grid = work_tpl.with_voxel_size(np.maximum(float(np.min(img.grid.zooms)), tcord.grid.zooms))
        fixed = {"seg": apply_transforms(Image(slice_like(tcord, work_tpl), work_tpl.affine), grid, [],
                                         "linear").data}
        moving = {"seg": sg, "im": img}
        tim = _template_intensity(tpl, contrast, tcord, work_tpl) if needs_image else None
        if tim is not None:
            fixed["im"] = apply_transforms(tim, grid, [], "linear").data
        fixed.update(spine_inputs(steps, tpl, contrast, work_tpl, grid))
        from spinereg.register.tps import template_landmark_inputs

        fixed.update(template_landmark_inputs(steps, *raw_landmarks, tcord.grid, img.grid))
        initial: list[Transform] = [fwd_map]
    else:
        # slice-wise steps need axial slices along the last voxel axis: reorder the subject's axes
        code = si_last_code(img.affine)
        wimg, wseg = reorient(img, code), reorient(sg, code)
        grid = wimg.grid
        fixed = {"seg": (np.asarray(wseg.data) > 0.5).astype(np.float32), "im": np.asarray(wimg.data, np.float32)}
        moving = {"seg": tcord}
        tim = _template_intensity(tpl, contrast, tcord, covered_region(tcord.grid, inv_map, img.grid))\
            if needs_image else None
        if tim is not None:
            moving["im"] = tim
        initial = [inv_map]
    res = run_steps(steps, grid, fixed, moving, initial, progress=progress)
    timings["steps"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # slice-wise steps carried beyond the cord (register.slice_maps): the engine's copies fade into
    # the identity at the edge of the working grid (the cord plus 12 mm), which left a rotation
    # found about the cord off the vertebral bodies beyond it
    transforms = extended_slice_maps(res.transforms, region_of_interest(grid, [fixed.get("seg")]))
    inverses = [invert_step(t) for t in transforms]
    timings["invert"] = time.perf_counter() - t0
    return TemplateRegistration(
        image=img, seg=sg, template=tpl, ref=ref, steps=steps, landmarks=lm, template_landmarks=tlm,
        mapping=mapping, mapping_fields=(fwd_map, inv_map), step_transforms=transforms, step_inverses=inverses, work_grid=grid,
        template_grid=out_tpl, template_crop=work_tpl, si_report=si_report, timings=timings, records=[r.as_dict() for r in res.records],
        auto_landmarks=auto, auto_template_landmarks=tauto, landmark_report=report,
        labeling=labeling if labeling is not None and not isinstance(labeling, str) else None,
    )


def auto_labeling(image: Image, seg: Image, contrast: str, template: str = "PAM50",
                  check_identity: bool = True, init: tuple | None = None) -> VertebralLabeling:
    """The automatic vertebral labeling of ``image`` as register-to-template and its QC level
    check run it (one call, shared by both). ``check_identity=False`` when given labels fix the
    levels (they are checked against the result): the image-alone second opinion is skipped.
    ``init``: one disc pinned (``-initz`` / ``-initlabel``: (world point, disc value))."""
    from spinereg.vertebrae import label_vertebrae

    return label_vertebrae(image, seg, contrast=contrast if contrast in ("t1", "t2", "t2s") else "auto",
                           template=template, check_identity=check_identity, init=init)


#: margin (mm) of the template region the per-vertebra steps work on, around what the subject
#: covers: a vertebra at the field's edge needs its whole body in the region. At 5 mm (before
#: session 35) t2's C3 (at the top edge) came out right or 8 mm short (or unmeasured) with nodes a
#: few voxels apart; from 10 mm on, every node set gives the same result (heights within 0.03 mm)
SPINE_MARGIN_MM = 15.0


def covered_region(tgrid: Grid, to_template: Transform, subject: Grid, margin_mm: float = 5.0) -> Grid:
    """Voxel-aligned part of the template grid that the subject grid maps into, read off nodes
    about 4 voxels apart from one face of the subject grid to the other (the same nodes whatever
    its voxel flips: before session 35 every 4th voxel from the first corner, which a flip moved,
    and t2 flipped A-P gave template_spine another region and its cord points 2.35 mm elsewhere)."""
    axes = [np.linspace(0.0, n - 1.0, int(np.ceil((n - 1) / 4)) + 1) for n in subject.shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    pts = to_template.map(subject.voxel_to_world(ijk))
    return crop_grid(tgrid, pts[np.all(np.isfinite(pts), axis=1)], margin_mm)


def _refine_si(arc: PiecewiseLinear, cl_tpl: Centerline, cl_subj: Centerline, img: Image,
               tpl: Template, contrast: str, tcord: Image, anchor_points: np.ndarray):
    """S-I refinement from the vertebral pattern (template image on the region the subject
    covers), anchored at the template points of the landmarks (world mm, N x 3)."""
    from spinereg.register.si_refine import HOLD_SLACK, held_ends, refine_with_image

    inv = arc.inverse()
    s_ref = np.linspace(float(inv(np.array([-20.0]))[0]), float(inv(np.array([cl_subj.length + 20.0]))[0]), 50)
    region = crop_grid(tcord.grid, cl_tpl.points(s_ref), margin_mm=35.0)
    tim = _template_intensity(tpl, contrast, tcord, region)
    if tim is None:
        return arc, {"used": False, "reason": f"no template image for contrast {contrast}"}
    anchors, _ = cl_tpl.project(anchor_points)
    # beyond an end with several landmarks the landmarks' extrapolation is kept (held_ends)
    hold, arc0 = held_ends(anchors), arc
    # each pass may move the correspondence by less than half a vertebra; far from the labels the
    # extrapolation can be off by more, so passes repeat while they improve the match
    passes = []
    for _ in range(3):
        new, rep = refine_with_image(arc, cl_tpl, cl_subj, tim, img, anchors, hold_beyond=hold,
                                     hold_slack=HOLD_SLACK, reference=arc0)
        passes.append(rep)
        if not rep["used"]:
            break
        arc = new
    used = any(p["used"] for p in passes)
    return arc, {"used": used, "passes": len([p for p in passes if p["used"]]),
                 "held_beyond_mm": [None if v is None else round(v, 2) for v in hold],
                 "correlation_before": passes[0]["correlation_before"],
                 "correlation_after": max(p["correlation_after"] if p["used"] else p["correlation_before"]
                                          for p in passes), "details": passes}


def _template_intensity(tpl: Template, contrast: str, tcord: Image,
                        region: Grid | None = None) -> Image | None:
    """The template image for ``contrast`` (on ``region``, a voxel-aligned sub-grid of the
    template, when given): the real template when present, else synthesised from tissue maps."""
    from spinereg.register.contrast import synthesize_contrast

    if tpl.has(contrast):
        full = load_image(tpl.path(contrast), ndim=3, check_finite=False)
        return full if region is None else Image(slice_like(full, region), region.affine, full.header)
    return synthesize_contrast(tpl, contrast, tcord, region)
