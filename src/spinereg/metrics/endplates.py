"""Vertebral endplates located in the image, inside bodies placed by a registration (or any body
labels): heights, ratios and endplate tilts of the *subject*, not of the template's shapes.

The placed body is only a prior: which level, roughly where and which way is up, how deep the
body is, where it roughly ends. Everything measured comes from the image along lines through it:

1. **Frame.** From the labelled body: the spine's direction at it (S-I, from its labelled
   neighbours), its widest direction across (L-R), A-P completing them; the midline (L-R centre)
   and the A-P extent of its mid-sagittal part (``depth``). **Body axis** (``wall_axis``, on by
   default): the body's anterior and posterior walls are located in the image (the cortical
   line, darkest on MR and brightest on CT, within ``WALL_WINDOW_MM`` of the placed body's walls,
   on rows across the middle of the body, a line through them) and S-I is turned in the
   sagittal plane to be parallel to them (the mean of the walls found; none found or turned by
   more than ``MAX_WALL_TILT_DEG``: the spine's direction is kept). The columns below then
   stand in the body as morphometry places them, parallel to its walls; the neighbours'
   direction differs from it where the bodies stand in a staircase (cervical lordosis: 1-6 deg
   on t2, where only the anterior wall shows: veins and the posterior ligament blur the back),
   and on a curved endplate a column range turned by that much moves the fitted tilt by
   degrees (articulated phantoms, vertebrae turned by known angles: C3 inferior off by +3.4 deg
   on average with the neighbours' direction, +1.5 with the walls').
2. **Profiles.** Along S-I through the body, the image is sampled (trilinear, 0.25 mm steps,
   NaN beyond the outer voxel centres) on columns at several A-P positions, averaged over a small
   box across the column (``lr_halfwidth_mm`` left and right, 0.5 mm front and back: a reader's
   3 mm mid-sagittal slab).
3. **Edges.** Within ``WINDOW_MM`` of where the placed body ends on that column, the endplate is
   the strongest edge from bone to disc (``EDGE_POLARITY``; T2 and T1: from the dark cortical
   line up to the disc; CT: from the bright cortex down to the disc) at a local maximum of the
   derivative of the profile smoothed by ``EDGE_SMOOTH_MM``, refined by a parabola: the
   disc-bone boundary. The band beyond it must be disc: inside the image over
   ``DISC_BEYOND_MM`` and differing from the marrow (median of the body's core on that column) by
   ``MIN_DISC_CONTRAST`` of it with the disc's polarity (``DISC_POLARITY``: T2 brighter, T1 and CT
   darker). On T1 the disc is darker than the marrow but brighter than the cortical line: taking
   the edge from the marrow into the cortex instead made bodies a cortex too short on each side
   (analytic phantom: -2.0 to -2.5 mm; now +0.5 to +0.8 mm, the outward bias of every contrast).
   **Disc polarity from the image:** a T1 whose discs are brighter than the marrow (sct_testing_data
   t1: 3.5 times; the sequence and the marrow's fat decide it, not the name of the contrast) is
   measured with bright discs (:func:`disc_polarity`, ``DISC_BRIGHT_RATIO``); before, no body of
   that image was measured. C2 reports its inferior endplate only: its superior end is the dens.
4. **Planes.** Edge points at 7 A-P x 3 L-R columns (0.2-0.8 of the depth) give endplate
   planes: a robust start (Theil-Sen), then least squares with points farther than
   ``OUTLIER_MM`` refitted out; at least ``MIN_PLANE_POINTS`` inliers within
   ``MAX_PLANE_RMS_MM``, at most ``MAX_TILT_DEG`` from the spine's direction, the body between
   them ``HEIGHT_RANGE`` times the placed one's height; else not measured. A body with one
   endplate found while the other's search lies inside the image reports nothing (on images of
   noise a single plane can pass by chance; a vertebral body shows both). **Refit**
   (``refits``, 1 by default): every plane column is searched again within
   ``REFINE_WINDOW_MM`` of the planes with the criterion the heights use (the disc only has to
   differ from the bone side of the edge) and the planes are refitted: the first pass keeps
   only edges with a disc clearly brighter (T2) than the marrow, which drops the anterior lip of
   a curved endplate where the annulus is as dark as the marrow; the tilt is then fitted to
   part of the endplate only (t2's C4 inferior: 5.7 deg off). A refit plane that fails the
   checks keeps the first one. The body's axis for the heights becomes the bisector of the two
   normals. With ``iterations`` > 1 the columns are tilted to that axis and the planes refitted
   (the default, 1, keeps the columns along the body axis of step 1).
5. **Heights.** Along the body's axis at the anterior, middle and posterior columns (3/4, 1/2
   and 1/4 of the depth from the posterior wall), each endplate searched within
   ``REFINE_WINDOW_MM`` of its plane, where the band beyond the edge only has to differ from the
   bone side (the annulus, front and back, is about as dark as the marrow on T2). A column whose
   edge is still not found on one side takes that side from its endplate plane when both planes
   were found (``PLANE_FALLBACK``; the columns lie within the planes' own 0.2-0.8 of the depth) and
   its ``status`` says so (t2's anterior columns: the superior end from the plane). Wedge ratio
   anterior/posterior, biconcave ratio middle/posterior.

A side whose disc is not in the field of view, or whose edges are too few or scattered for a
plane, is not measured: heights and that endplate's tilt are NaN and ``status`` says which side
and why (a body cut by the image's end is refused, not measured short). An endplate found as a
plane whose outermost plane column (front or back) the field of view hides (``MIN_CUT_END``)
keeps its heights but gets no tilt: a plane over part of a curved endplate is not its tilt.
Tilts use the convention of :mod:`spinereg.metrics.spine` (angle of the superior-pointing normal
from +S, towards posterior positive), so :func:`~spinereg.metrics.spine.segmental_angles` apply,
read in the sagittal plane of the placed body's frame (its left-right axis, ``sagittal_lr``):
a subject turned about S-I in the scanner keeps its tilts
(:func:`~spinereg.metrics.spine.sagittal_tilt_deg`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.metrics.overlap import ImageLike, as_image
from spinereg.metrics.spine import Heights
from spinereg.robust import robust_sd

#: disc polarity per contrast: +1 discs brighter than marrow, -1 darker
DISC_POLARITY = {"t2": 1, "t2s": 1, "mr": 1, "t1": -1, "ct": -1}
#: polarity of the endplate edge (bone side to disc side): +1 the disc brighter than the cortical
#: line (MR: T2 and T1 alike, though the T1 disc is darker than the marrow), -1 darker (CT)
EDGE_POLARITY = {"t2": 1, "t2s": 1, "mr": 1, "t1": 1, "ct": -1}
#: cortical bone polarity per contrast: -1 darker than marrow (MR), +1 brighter (CT)
CORTEX_POLARITY = {"t2": -1, "t2s": -1, "mr": -1, "t1": -1, "ct": 1}
#: an MR contrast whose table says its discs are darker than the marrow (T1) is measured with
#: bright discs when the image shows them brighter: the median over the placed bodies' ends of the
#: brightest point within ``WINDOW_MM`` of the end exceeds the body's core by this fraction of it
#: (sct_testing_data t1: 3.5, its discs bright and its bodies dark; t2: 0.32; the analytic
#: phantom's T1, discs darker than the marrow: 0.00-0.05)
DISC_BRIGHT_RATIO = 0.5
#: antero-posterior positions of the anterior / middle / posterior heights (fraction of the
#: depth from the posterior wall)
COLUMNS = {"anterior": 0.75, "middle": 0.5, "posterior": 0.25}
#: antero-posterior fractions of the columns the endplate planes are fitted to
PLANE_COLUMNS = np.linspace(0.2, 0.8, 7)
#: a height column without an edge of its own on one side, where both endplate planes were found,
#: takes that side from its plane (within the planes' columns: an interpolation) and says so
PLANE_FALLBACK = True
#: the reasons an edge or a plane is not found because the image does not show it (the tilt rule
#: below counts them)
CORE_UNSEEN = "body core outside the field of view"
ENDPLATE_UNSEEN = "endplate outside the field of view"
DISC_UNSEEN = "disc outside the field of view"
PLANE_UNSEEN = "endplate or its disc outside the field of view"
UNSEEN_REASONS = frozenset({CORE_UNSEEN, ENDPLATE_UNSEEN, DISC_UNSEEN, PLANE_UNSEEN})
#: an endplate whose edge the field of view hides on this many of the 3 lines of its outermost
#: plane column (front or back) gets no tilt: the plane stands on part of the endplate only
#: (sct_testing_data t1, C5 inferior, 1-3 mm above the image's lower edge: the anterior columns
#: lost, a plane over the flatter posterior part, +9.8 deg from the reference)
MIN_CUT_END = 2
#: a disc must differ from the marrow by this fraction of the marrow level (absolute value) and,
#: in the first pass, by this many robust SDs of the marrow's own variation on the column
MIN_DISC_CONTRAST = 0.1
DISC_SNR = 2.0
#: how far (mm) from the placed body's end the endplate is looked for. A rigid per-vertebra step
#: keeps the template's body size (PAM50's C3 ~13 mm in t2's 16.4 mm body, placed by
#: ``template_spine`` 3 mm short at its inferior end plus ~1 mm of offset): at 4.5 mm that
#: endplate lay at the window's edge and a mid-body edge was taken on 5 of 21 columns, so C3 was
#: refused; at 6.0 it is found (t2 and t1, session 11), and the default preset's t2 and t1
#: figures and the articulated phantoms' (seeds 0-2, MR/CT) are unchanged
WINDOW_MM = 6.0
#: how far (mm) from the endplate plane fitted in the first pass it is looked for afterwards
REFINE_WINDOW_MM = 2.0
#: edge points farther than this (mm) from their endplate plane are refitted out
OUTLIER_MM = 1.5
#: an endplate plane needs this many inlying edge points (of 7 x 3 columns), lying this close
#: to it (RMS, mm): edges on noise scatter over the search window (RMS 0.8-1.0 mm on t2's grid
#: filled with noise), endplates do not (0.04-0.29 mm on t2, up to 0.51 on the phantoms)
MIN_PLANE_POINTS = 10
MAX_PLANE_RMS_MM = 0.8
#: an endplate plane more tilted than this from the spine's direction at the body is refused
MAX_TILT_DEG = 25.0
#: the measured body must be this many times as tall as the placed one (middle, along the spine)
HEIGHT_RANGE = (0.6, 1.6)
#: the disc must show over this length (mm) beyond the edge, inside the image
DISC_BEYOND_MM = 2.0
#: a placed body with fewer voxels than this share of the median body is not measured
MIN_BODY_SHARE = 0.4
STEP_MM = 0.25
#: smoothing (Gaussian SD, mm) of the profile before its derivative
EDGE_SMOOTH_MM = 0.5


@dataclass
class BodyEndplates(Heights):
    """Endplates of one vertebral body measured in the image (mm, degrees; NaN: not measured)."""

    superior_deg: float
    inferior_deg: float
    superior_normal: list[float]
    inferior_normal: list[float]
    centre: np.ndarray
    axes: np.ndarray  # rows: lr, ap, si (unit vectors, world)
    depth_mm: float
    status: str = "measured"
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # column centre points (world)
    edges: dict[str, tuple[float, float]] = field(default_factory=dict)  # column -> (s_inf, s_sup) mm
    #: the discs' polarity against the marrow the body was measured with (+1 brighter, -1 darker;
    #: 0: not measured), see :func:`disc_polarity`
    disc_polarity: int = 0
    #: the left-right axis of the placed body's frame (world), whose sagittal plane the tilts are
    #: read in (:func:`spinereg.metrics.spine.sagittal_tilt_deg`)
    sagittal_lr: np.ndarray | None = None

    @property
    def heights(self) -> dict[str, float]:
        return {"anterior": self.anterior_mm, "middle": self.middle_mm, "posterior": self.posterior_mm}


class _Sampler:
    """Trilinear samples of the image at world points; NaN beyond the outer voxel centres."""

    def __init__(self, img: Image, order: int = 1):
        self.order = order
        self.data = np.asarray(img.data, np.float64)
        self.grid = img.grid
        self.hi = np.array(self.data.shape[:3], float) - 1

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        v = self.grid.world_to_voxel(pts.reshape(-1, 3))
        inside = np.all((v >= -1e-6) & (v <= self.hi + 1e-6), axis=1)
        out = np.full(len(v), np.nan)
        if inside.any():
            out[inside] = ndimage.map_coordinates(self.data, np.clip(v[inside], 0, self.hi).T, order=self.order)
        return out.reshape(pts.shape[:-1])


#: a body the registration's warp only partly places (its field of view ends inside the body)
WARP_CUT_REASON = "body cut by the warp's field of view (placed only in part)"


def _prior_frames(bodies: Image, values: list[int], cut_levels: Collection[int] = ()) -> dict[int, tuple | str]:
    """Per body: midline centre, axes (lr, ap, si), depth and height of its mid-sagittal part;
    or why there is none (a body mostly outside the labels' grid; one in ``cut_levels``, cut by
    the placing warp's field of view; a whole body left without a whole neighbour by cut ones).
    Cut bodies do not set their neighbours' axes: their centroids are where the field of view
    ends (before session 41, t2 through its warp cropped inside C4: C3's superior tilt -10.96 or
    -8.64 deg as 55 or 45 % of the warp was kept, -9.66 with the whole warp, and C4 measured from
    its partial placement, inferior tilt -15.10 against -17.01, unflagged)."""
    from spinereg.metrics.spine import LONE_BODY_FLAG, _body_frame, _up_directions, lone_bodies

    lab = np.round(np.asarray(bodies.data)).astype(np.int32)
    pts = {v: bodies.grid.voxel_to_world(np.argwhere(lab == v).astype(float)) for v in values}
    vox = float(np.min(bodies.grid.zooms))
    typical = float(np.median([len(p) for p in pts.values()]))
    cut = {int(v) for v in cut_levels} & set(values)
    big = [v for v in values if len(pts[v]) >= max(MIN_BODY_SHARE * typical, 20)]
    whole = [v for v in big if v not in cut]
    lone = lone_bodies(big, cut & set(big))
    ups = _up_directions({v: pts[v].mean(0) for v in whole})
    out: dict[int, tuple | str] = {}
    for v in values:
        if v not in big:
            out[v] = f"body mostly outside the field of view ({len(pts[v]) / typical:.0%} of a typical one placed)"
            continue
        if v in cut or v in lone:
            out[v] = WARP_CUT_REASON if v in cut else LONE_BODY_FLAG.removeprefix("not measured: ")
            continue
        c, axes = _body_frame(pts[v], ups[v])
        loc = (pts[v] - c) @ axes.T
        lr_mid = float(np.median(loc[:, 0]))
        m = loc[np.abs(loc[:, 0] - lr_mid) <= max(3.0, vox)]
        if len(m) < 10:
            out[v] = "no mid-sagittal part in the body labels"
            continue
        a0, a1 = m[:, 1].min() - vox / 2, m[:, 1].max() + vox / 2
        s0, s1 = m[:, 2].min() - vox / 2, m[:, 2].max() + vox / 2
        centre = c + axes.T @ np.array([lr_mid, 0.5 * (a0 + a1), 0.5 * (s0 + s1)])
        out[v] = (centre, axes, float(a1 - a0), float(s1 - s0))
    return out


def _smooth(p: np.ndarray, sigma_mm: float) -> np.ndarray:
    """Gaussian smoothing of a profile with NaN ends (normalised convolution)."""
    ok = np.isfinite(p)
    num = ndimage.gaussian_filter1d(np.where(ok, p, 0.0), sigma_mm / STEP_MM, mode="nearest")
    den = ndimage.gaussian_filter1d(ok.astype(float), sigma_mm / STEP_MM, mode="nearest")
    return np.where(ok & (den > 0.5), num / np.where(den > 0, den, 1), np.nan)


def _parabola(y: np.ndarray, i: int) -> float:
    if 0 < i < len(y) - 1 and np.all(np.isfinite(y[i - 1:i + 2])):
        d = y[i - 1] - 2 * y[i] + y[i + 1]
        if d < 0:
            return float(np.clip(0.5 * (y[i - 1] - y[i + 1]) / d, -0.5, 0.5))
    return 0.0


def find_edge(s: np.ndarray, p: np.ndarray, prior: float, side: int, polarity: int,
              window_mm: float | None = None, marrow: float | None = None,
              refine: bool = False, spread: float = 0.0,
              disc_polarity: int | None = None) -> tuple[float, str]:
    """Endplate position (mm along ``s``) on one ``side`` (+1 superior, -1 inferior) of a body
    profile ``p(s)`` (``s`` = 0 at the body centre), or NaN and the reason.

    ``prior``: where the placed body ends on this line (the registration's guess). Within
    ``window_mm`` of it, the endplate is the strongest edge of the disc's polarity (T2, superior:
    dark bone below, bright disc above), at a local maximum of the derivative of the profile
    smoothed by ``EDGE_SMOOTH_MM``, refined by a parabola. The disc beyond it must be inside the
    image (``DISC_BEYOND_MM``) and differ from the bone side by ``MIN_DISC_CONTRAST`` of the
    marrow level (``marrow``: the profile's median over the body's core if not given).
    ``polarity`` is the edge's (bone side to disc side, :data:`EDGE_POLARITY`), ``disc_polarity``
    the disc's against the marrow (:data:`DISC_POLARITY`; the edge's if not given). Where they
    differ (T1: a dark cortical line, a grey disc beyond it, bright marrow) the disc's level is the
    median of the band beyond the edge."""
    window_mm = WINDOW_MM if window_mm is None else window_mm
    dpol = polarity if disc_polarity is None else disc_polarity
    if marrow is None:
        core = np.abs(s) < 2.0
        marrow = float(np.nanmedian(p[core])) if np.isfinite(p[core]).any() else np.nan
    if not np.isfinite(marrow) or not np.isfinite(prior):
        return np.nan, CORE_UNSEEN
    ps = _smooth(p, EDGE_SMOOTH_MM)
    score = polarity * side * np.gradient(ps, STEP_MM)
    nb = int(round(DISC_BEYOND_MM / STEP_MM))
    idx = np.flatnonzero((np.abs(s - prior) <= window_mm) & np.isfinite(score))
    if idx.size < 3:
        return np.nan, ENDPLATE_UNSEEN
    best, why = np.nan, "no edge of the disc's polarity"
    for i in idx[np.argsort(score[idx])[::-1]]:
        if score[i] <= 0:
            break
        if not (0 < i < len(s) - 1 and score[i] >= score[i - 1] and score[i] >= score[i + 1]):
            continue
        beyond = i + side * np.arange(1, nb + 1)
        if beyond.min() < 0 or beyond.max() >= len(s) or not np.isfinite(ps[beyond]).all():
            why = DISC_UNSEEN
            continue
        # the band beyond the edge must be disc, not marrow on the far side of a vessel or a
        # trabecular line: it differs from the marrow with the disc's polarity; near the planes
        # that the first pass fitted (``refine``), it only has to differ from the bone side of
        # the edge (the annulus, front and back, is as dark as the marrow on T2)
        disc = float(np.max(polarity * ps[beyond]))
        if refine:
            ref = float(np.min(polarity * ps[np.clip(i - side * np.arange(0, nb + 1), 0, len(s) - 1)]))
        else:
            if dpol != polarity:
                # T1: the disc's level beyond the edge, darker than the marrow, and a real step up
                # from the cortical line to it (not a ripple in whatever lies beyond the bone)
                level = float(np.median(ps[beyond]))
                bone = float(np.min(polarity * ps[np.clip(i - side * np.arange(0, nb + 1), 0, len(s) - 1)]))
                if polarity * level - bone < MIN_DISC_CONTRAST * abs(marrow):
                    why = "no disc beyond the edge"
                    continue
                disc = dpol * level
            ref = dpol * marrow
        need = MIN_DISC_CONTRAST * abs(marrow) if refine else max(MIN_DISC_CONTRAST * abs(marrow), DISC_SNR * spread)
        if disc - ref < need:
            why = "no disc beyond the edge"
            continue
        best = float(s[i] + _parabola(score, i) * STEP_MM)
        break
    return best, ("" if np.isfinite(best) else why)


#: the walls are looked for within this distance (mm) of the placed body's walls, on rows
#: spaced ``WALL_STEP_MM`` over the middle ``WALL_SPAN`` of its height
WALL_WINDOW_MM = 2.5
WALL_STEP_MM = 0.5
WALL_SPAN = 0.6
#: a wall line needs this share of the rows with a cortical line, lying this close to it (RMS)
WALL_MIN_SHARE = 0.6
WALL_MAX_RMS_MM = 0.8
#: a body axis from its walls farther than this from the spine's direction is not used
MAX_WALL_TILT_DEG = 15.0


def body_walls(sample: _Sampler, centre: np.ndarray, axes: np.ndarray, depth: float, height: float,
               cortex: int, lr_halfwidth_mm: float = 1.5) -> dict[str, tuple[float, float] | None]:
    """The body's anterior and posterior walls in the mid-sagittal slab: on antero-posterior rows
    across the middle of the body, the cortical line (darkest on MR, brightest on CT: ``cortex``
    -1 / +1) within ``WALL_WINDOW_MM`` of the placed body's wall, refined by a parabola; a line
    a = a0 + k s (mm along ``axes[1]`` and ``axes[2]`` from ``centre``) through them (Theil-Sen),
    or None where too few rows show the line or they scatter."""
    rows = np.arange(-0.5 * WALL_SPAN * height, 0.5 * WALL_SPAN * height + 1e-9, WALL_STEP_MM)
    a = np.arange(-0.5 * depth - WALL_WINDOW_MM - 2.0, 0.5 * depth + WALL_WINDOW_MM + 2.0 + 1e-9, STEP_MM)
    offs = [(e, b) for e in (-0.5, 0.0, 0.5) for b in np.arange(-lr_halfwidth_mm, lr_halfwidth_mm + 1e-6, 0.5)]
    out: dict[str, tuple[float, float] | None] = {}
    prof = []
    for r in rows:
        pts = np.stack([centre + axes[0] * b + (r + e) * axes[2] + a[:, None] * axes[1] for e, b in offs])
        vals = sample(pts)
        prof.append(_smooth(np.where(np.isfinite(vals).all(0), vals.mean(0), np.nan), EDGE_SMOOTH_MM))
    for name, side in (("anterior", 1), ("posterior", -1)):
        win = np.flatnonzero(np.abs(a - side * 0.5 * depth) <= WALL_WINDOW_MM)
        core = np.abs(a) <= 0.25 * depth
        pts = []
        for r, p in zip(rows, prof, strict=True):
            q = cortex * p[win]
            marrow = np.nanmedian(p[core]) if np.isfinite(p[core]).any() else np.nan
            if not np.isfinite(q).all() or not np.isfinite(marrow):
                continue
            i = int(np.argmax(q))
            # a cortical line: an extremum inside the window, standing out of the marrow
            if i in (0, len(q) - 1) or q[i] - cortex * marrow < MIN_DISC_CONTRAST * abs(marrow):
                continue
            pts.append((r, a[win[i]] + _parabola(q, i) * STEP_MM))
        if len(pts) < max(4, WALL_MIN_SHARE * len(rows)):
            out[name] = None
            continue
        r_, w_ = np.array(pts).T
        i, j = np.triu_indices(len(r_), 1)
        ok = np.abs(r_[j] - r_[i]) >= 1.0
        k = float(np.median((w_[j] - w_[i])[ok] / (r_[j] - r_[i])[ok]))
        a0 = float(np.median(w_ - k * r_))
        res = w_ - a0 - k * r_
        out[name] = (a0, k) if float(np.sqrt(np.mean(res**2))) <= WALL_MAX_RMS_MM else None
    return out


def _column(sample: _Sampler, centre: np.ndarray, axes: np.ndarray, ap_mm: float, lr_mm: float,
            s: np.ndarray, lr_halfwidth_mm: float, ap_halfwidth_mm: float = 0.5) -> np.ndarray:
    """Profile along ``axes[2]`` through the column at (``lr_mm``, ``ap_mm``), averaged over a
    small box across it (NaN where any sample leaves the image)."""
    offs = [(a, lr_mm + b) for a in np.linspace(-ap_halfwidth_mm, ap_halfwidth_mm, 3)
            for b in np.arange(-lr_halfwidth_mm, lr_halfwidth_mm + 1e-6, 0.5)]
    pts = np.stack([centre + axes[0] * b + axes[1] * (ap_mm + a) + s[:, None] * axes[2] for a, b in offs])
    vals = sample(pts)
    return np.where(np.isfinite(vals).all(0), vals.mean(0), np.nan)


def _prior_ends(labels: _Sampler, level: int, centre: np.ndarray, axes: np.ndarray, ap_mm: float,
                lr_mm: float, s: np.ndarray) -> tuple[float, float]:
    """Where the placed body ends below and above along the column (the run of its label through
    the centre, or the nearest run), NaN if the column misses it."""
    pts = centre + axes[0] * lr_mm + axes[1] * ap_mm + s[:, None] * axes[2]
    inside = np.round(np.nan_to_num(labels(pts), nan=0.0)) == level
    if not inside.any():
        return np.nan, np.nan
    runs = np.split(np.flatnonzero(inside), np.flatnonzero(np.diff(np.flatnonzero(inside)) > 1) + 1)
    run = min(runs, key=lambda r: np.min(np.abs(s[r])))
    return float(s[run[0]] - STEP_MM / 2), float(s[run[-1]] + STEP_MM / 2)


def _fit_plane(pts: np.ndarray, axes: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Unit normal (towards +si) and a point of the plane through ``pts`` (points farther than
    ``OUTLIER_MM`` refitted out), or None with fewer than ``MIN_PLANE_POINTS`` inliers, inliers
    farther than ``MAX_PLANE_RMS_MM`` (RMS) from it, or an antero-posterior spread under 3 mm."""
    loc = (pts - centre) @ axes.T
    if len(loc) < 4 or np.ptp(loc[:, 1]) < 3.0:
        return None
    # robust start (Theil-Sen: medians of pairwise slopes), so that one far point at the front
    # or the back does not tilt the first fit enough to keep itself in
    i, j = np.triu_indices(len(loc), 1)
    da, dl, ds = loc[j, 1] - loc[i, 1], loc[j, 0] - loc[i, 0], loc[j, 2] - loc[i, 2]
    pa = np.abs(da) >= 1.0
    sa = float(np.median(ds[pa] / da[pa])) if pa.any() else 0.0
    pl_ = np.abs(dl) >= 1.0
    sl = float(np.median((ds[pl_] - sa * da[pl_]) / dl[pl_])) if pl_.any() else 0.0
    c0 = float(np.median(loc[:, 2] - sa * loc[:, 1] - sl * loc[:, 0]))
    res = np.abs(c0 + sa * loc[:, 1] + sl * loc[:, 0] - loc[:, 2])
    keep = res <= OUTLIER_MM
    coef = None
    for _ in range(4):
        if keep.sum() < 4 or np.ptp(loc[keep, 1]) < 3.0:
            return None
        A = np.column_stack([np.ones(keep.sum()), loc[keep, 1], loc[keep, 0]])
        coef, *_ = np.linalg.lstsq(A, loc[keep, 2], rcond=None)
        res = np.abs(np.column_stack([np.ones(len(loc)), loc[:, 1], loc[:, 0]]) @ coef - loc[:, 2])
        new = res <= max(OUTLIER_MM, 2.5 * float(np.median(res[keep])))
        if (new == keep).all():
            break
        keep = new
    if keep.sum() < MIN_PLANE_POINTS or float(np.sqrt(np.mean(res[keep] ** 2))) > MAX_PLANE_RMS_MM:
        return None
    n = axes[2] - coef[1] * axes[1] - coef[2] * axes[0]
    return n / np.linalg.norm(n), centre + coef[0] * axes[2]


def _plausible(planes: list, axes: np.ndarray, centre: np.ndarray, height: float, why: list[str]) -> list:
    """Planes an anatomy allows, the others None (reason in ``why``): each endplate within
    ``MAX_TILT_DEG`` of the spine's direction at the body, and the body between them (along that
    direction through its centre) ``HEIGHT_RANGE`` times as tall as the placed one. Edges of
    trabecular texture, vessels or a neighbour taken for an endplate fail one of them."""
    out = list(planes)
    for k, pl in enumerate(planes):
        if pl is not None:
            tilt = float(np.degrees(np.arccos(np.clip(abs(pl[0] @ axes[2]), 0.0, 1.0))))
            if tilt > MAX_TILT_DEG:
                out[k] = None
                why[k] = f"endplate plane tilted {tilt:.0f} deg from the spine (> {MAX_TILT_DEG:g})"
    if out[0] is not None and out[1] is not None:
        h = _plane_hit(out[0], centre, axes[2]) - _plane_hit(out[1], centre, axes[2])
        if not HEIGHT_RANGE[0] * height <= h <= HEIGHT_RANGE[1] * height:
            why[0] = why[1] = (f"endplates {h:.1f} mm apart where the placed body is {height:.1f} mm tall "
                               f"(outside {HEIGHT_RANGE[0]:g}-{HEIGHT_RANGE[1]:g} times)")
            out = [None, None]
    return out


def _plane_hit(plane: tuple[np.ndarray, np.ndarray], base: np.ndarray, direction: np.ndarray) -> float:
    """Parameter t where base + t * direction meets the plane (normal, point)."""
    n, q = plane
    den = float(n @ direction)
    return float(n @ (q - base)) / den if abs(den) > 1e-6 else np.nan


def _sag_deg(n: np.ndarray | None, lr: np.ndarray) -> float:
    from spinereg.metrics.spine import sagittal_tilt_deg

    return sagittal_tilt_deg(n, lr) if n is not None else float("nan")


def measure_body(sample: _Sampler, labels: _Sampler, level: int, centre: np.ndarray,
                 axes: np.ndarray, depth: float, height: float, polarity: int, *,
                 lr_halfwidth_mm: float = 1.5, iterations: int = 1,
                 refits: int = 1, wall_axis: bool = True, cortex: int = -1,
                 disc_polarity: int | None = None) -> BodyEndplates:
    """Endplates of one body from its prior frame (see the module doc)."""
    from spinereg.metrics.spine import level_name

    axes = np.array(axes, float)
    reach = 0.5 * height + WINDOW_MM + 4.0
    s = np.arange(-reach, reach + 1e-9, STEP_MM)

    axes0 = axes.copy()
    walls = {}
    if wall_axis:
        # the body's own axis: parallel to its walls in the image (the spine's direction from the
        # neighbours' centres differs from it where the bodies stand in a staircase, as in a
        # cervical lordosis; on a curved endplate a column range turned by that difference moves
        # the fitted tilt by degrees)
        walls = body_walls(sample, centre, axes, depth, height, cortex, lr_halfwidth_mm)
        ks = [w[1] for w in walls.values() if w is not None]
        if ks and np.degrees(np.arctan(abs(np.mean(ks)))) <= MAX_WALL_TILT_DEG:
            k = float(np.mean(ks))
            si = axes[2] + k * axes[1]
            si /= np.linalg.norm(si)
            ap_ax = axes[1] - (axes[1] @ si) * si
            axes = np.stack([axes[0], ap_ax / np.linalg.norm(ap_ax), si])
    why_plane = ["no endplate plane: too few edges in the columns, or scattered"] * 2  # superior, inferior

    def edges(ap: float, lr: float, axes: np.ndarray,
              planes: list[tuple[np.ndarray, np.ndarray] | None] | None = None
              ) -> tuple[float, float, str, tuple[str, str]]:
        prof = _column(sample, centre, axes, ap, lr, s, lr_halfwidth_mm)
        if planes is None:  # the placed body's ends on this line, searched widely
            lo, hi = _prior_ends(labels, level, centre, axes, ap, lr, s)
            window = WINDOW_MM
        else:  # the endplate planes fitted so far, searched narrowly
            base = centre + axes[0] * lr + axes[1] * ap
            hi, lo = (np.nan if pl is None else _plane_hit(pl, base, axes[2]) for pl in planes)
            window = REFINE_WINDOW_MM
        core = np.abs(s) < max(0.2 * height, 2.0)
        marrow = float(np.nanmedian(prof[core])) if np.isfinite(prof[core]).any() else np.nan
        # the marrow's own variation on this column (robust SD of the smoothed core): a disc has
        # to stand out of it
        pc = _smooth(prof, EDGE_SMOOTH_MM)[core]
        pc = pc[np.isfinite(pc)]
        spread = robust_sd(pc) if pc.size else 0.0
        refine = planes is not None
        top, why_t = (find_edge(s, prof, hi, +1, polarity, window, marrow, refine, spread, disc_polarity)
                      if np.isfinite(hi)
                      else (np.nan, why_plane[0]))
        bot, why_b = (find_edge(s, prof, lo, -1, polarity, window, marrow, refine, spread, disc_polarity)
                      if np.isfinite(lo)
                      else (np.nan, why_plane[1]))
        why = "; ".join(w for w in (f"superior: {why_t}" if why_t else "",
                                    f"inferior: {why_b}" if why_b else "") if w)
        return bot, top, why, (why_t, why_b)

    planes = None
    normals: tuple = (None, None)
    unseen = [0, 0]  # first-pass columns where the image ends within the superior / inferior search

    # per side (superior, inferior): plane columns at the outer antero-posterior fractions whose
    # edge the field of view hides, in the last pass
    cut_ends = [0, 0]

    def plane_points(axes: np.ndarray, planes: list[tuple[np.ndarray, np.ndarray] | None] | None
                     ) -> tuple[list, list]:
        sup, inf = [], []
        cut = np.zeros((2, len(PLANE_COLUMNS)), int)
        for fi, f in enumerate(PLANE_COLUMNS):
            for lr in (-lr_halfwidth_mm, 0.0, lr_halfwidth_mm):
                ap = (f - 0.5) * depth
                if planes is None:
                    prof = _column(sample, centre, axes, ap, lr, s, lr_halfwidth_mm)
                    for k, end in enumerate(reversed(_prior_ends(labels, level, centre, axes, ap, lr, s))):
                        near = np.abs(s - end) <= WINDOW_MM + DISC_BEYOND_MM
                        unseen[k] += int(not np.isfinite(end) or not np.isfinite(prof[near]).all())
                b, t, _, whys = edges(ap, lr, axes, planes)
                for k, w in enumerate(whys):
                    cut[k, fi] += int(w in UNSEEN_REASONS)
                base = centre + axes[0] * lr + axes[1] * ap
                if np.isfinite(t):
                    sup.append(base + t * axes[2])
                if np.isfinite(b):
                    inf.append(base + b * axes[2])
        cut_ends[:] = [int(max(c[0], c[-1])) for c in cut]
        return sup, inf

    for it in range(max(1, iterations)):
        sup, inf = plane_points(axes, planes)
        planes = [_fit_plane(np.array(q).reshape(-1, 3), axes, centre) for q in (sup, inf)]
        planes = _plausible(planes, axes0, centre, height, why_plane)
        for k in (0, 1):
            if planes[k] is None and unseen[k] > 1.5 * len(PLANE_COLUMNS):
                why_plane[k] = PLANE_UNSEEN
            elif planes[k] is None and planes[1 - k] is not None:
                # both endplates are in the image and only one was found: not a body this method
                # can read (noise, an artefact); nothing is reported for it
                planes[1 - k] = None
                why_plane[1 - k] = why_plane[k] = ("only one endplate found though both are in the image: "
                                                   + why_plane[k])
        if it == 0:
            # refit: every plane column searched again near the planes, with the edges the heights
            # use (the disc only has to differ from the bone side: the annulus at the anterior lip
            # is as dark as the marrow on T2), so that a plane is fitted to the whole endplate and
            # not to the part where the disc is brightest
            for _ in range(refits):
                sup, inf = plane_points(axes, planes)
                new = [None if pl is None else _fit_plane(np.array(q).reshape(-1, 3), axes, centre)
                       for pl, q in zip(planes, (sup, inf), strict=True)]
                new = _plausible(new, axes0, centre, height, list(why_plane))
                planes = [n if n is not None else pl for n, pl in zip(new, planes, strict=True)]
        normals = tuple(None if f is None else f[0] for f in planes)
        if normals[0] is None or normals[1] is None:
            break
        si = normals[0] + normals[1]
        si /= np.linalg.norm(si)
        ap_ax = axes[1] - (axes[1] @ si) * si
        ap_ax /= np.linalg.norm(ap_ax)
        axes = np.stack([np.cross(ap_ax, si), ap_ax, si])
    h, cols, found, why_all = {}, {}, {}, []
    for name, f in COLUMNS.items():
        ap = (f - 0.5) * depth
        b, t, why, _ = edges(ap, 0.0, axes, planes)
        cols[name] = centre + axes[1] * ap
        if PLANE_FALLBACK and why and planes is not None and all(pl is not None for pl in planes):
            # an endplate found as a plane but without an edge of its own on this column (T2's
            # anterior annulus is as dark as the marrow): the plane's height there
            base = centre + axes[1] * ap
            t_p, b_p = (_plane_hit(pl, base, axes[2]) for pl in planes)
            if not np.isfinite(t) and np.isfinite(t_p):
                t, why = t_p, why + " (superior end from its endplate plane)"
            if not np.isfinite(b) and np.isfinite(b_p):
                b, why = b_p, why + " (inferior end from its endplate plane)"
        found[name] = (b, t)
        h[name] = t - b
        if why:
            why_all.append(f"{name} {why}")
    ha, hm, hp = h["anterior"], h["middle"], h["posterior"]
    shown = list(normals)
    for k, side in enumerate(("superior", "inferior")):
        if normals[k] is not None and cut_ends[k] >= MIN_CUT_END:
            # the plane stands on part of the endplate only: its tilt is not the tilt over the
            # body's depth (a curved endplate's part nearest the field of view's edge is lost)
            shown[k] = None
            why_all.append(f"{side} tilt: the field of view cuts the endplate's "
                           "front or back end (tilt not measured)")
    status = "measured" if not why_all else "; ".join(why_all)
    return BodyEndplates(level, level_name(level), ha, hm, hp, ha / hp if hp else np.nan, hm / hp if hp else np.nan,
                         _sag_deg(shown[0], axes0[0]), _sag_deg(shown[1], axes0[0]),
                         [] if shown[0] is None else shown[0].round(6).tolist(),
                         [] if shown[1] is None else shown[1].round(6).tolist(),
                         centre, axes, depth, status, cols, found, sagittal_lr=axes0[0].copy())


def measure_endplates(image: ImageLike, bodies: ImageLike, contrast: str = "t2",
                      levels: Iterable[int] | None = None, *,
                      lr_halfwidth_mm: float = 1.5, iterations: int = 1, refits: int = 1,
                      wall_axis: bool = True, cut_levels: Collection[int] = ()) -> list[BodyEndplates]:
    """Heights, ratios and endplate tilts of each labelled body, located in ``image`` (any grid:
    the body labels are only the region prior, e.g. bodies placed by a registration's
    ``warp_template2anat``, :func:`~spinereg.metrics.spine_registration.bodies_from_warp`).
    ``wall_axis``: columns parallel to the body's walls located in the image (else along the
    spine's direction from the neighbouring bodies); ``refits``: plane refits with every column's
    edge near the first planes (0: the first pass's planes); see the module doc, steps 1 and 4.
    ``cut_levels``: bodies the placing warp's field of view cuts
    (:func:`~spinereg.metrics.spine_registration.placed_bodies`): not measured, and not used for
    their neighbours' axes (:func:`_prior_frames`)."""
    img = as_image(image, "image")
    ib = as_image(bodies, "vertebral bodies")
    if contrast not in DISC_POLARITY:
        raise InputError(f"unknown contrast {contrast!r}", None, f"use one of {', '.join(DISC_POLARITY)}")
    if contrast == "ct":  # an MR image measured with CT's edges (t2: C4 20.2 mm against 15.0 as t2)
        from spinereg.metrics.spine import check_hounsfield

        check_hounsfield(img, how="measured as --contrast ct")
    lab = np.asarray(ib.data)
    values = sorted(int(v) for v in np.unique(np.round(lab)) if v > 0)
    if levels is not None:
        values = [v for v in values if v in set(int(x) for x in levels)]
    if not values:
        raise InputError("no vertebral body to measure", ib.name, "give bodies labelled by level (C3 = 3)")
    frames = _prior_frames(ib, values, cut_levels)
    sample = _Sampler(img)
    labels = _Sampler(Image(np.round(lab).astype(np.float32), ib.affine), order=0)
    dpol, _ = disc_polarity(contrast, disc_brightness(sample, labels, frames, lr_halfwidth_mm))
    out = []
    for v in values:
        if isinstance(frames[v], str):
            out.append(_unmeasured(v, frames[v]))
            continue
        r = measure_body(sample, labels, v, *frames[v], EDGE_POLARITY[contrast], lr_halfwidth_mm=lr_halfwidth_mm,
                         iterations=iterations, refits=refits, wall_axis=wall_axis,
                         cortex=CORTEX_POLARITY[contrast], disc_polarity=dpol)
        r.disc_polarity = dpol
        out.append(_without_dens_end(r) if v == AXIS_LEVEL else r)
    return out


#: C2 (the axis): its inferior endplate is measured, its superior end is not an endplate (the dens
#: rises from the body into the ring of C1), so neither its superior tilt nor its heights are
#: reported (sct_testing_data t1: an edge at the atlanto-dental joint gave 11.7-13.0 mm "heights")
AXIS_LEVEL = 2


def _without_dens_end(r: BodyEndplates) -> BodyEndplates:
    """C2 with its superior tilt and heights removed, its status saying why."""
    from dataclasses import replace

    if not np.isfinite(r.superior_deg) and not np.isfinite(r.middle_mm):
        return r
    nan = float("nan")
    why = "superior: C2 has no superior endplate (the dens): heights and superior tilt not measured"
    return replace(r, anterior_mm=nan, middle_mm=nan, posterior_mm=nan, wedge_ratio=nan, biconcave_ratio=nan,
                   superior_deg=nan, superior_normal=[],
                   status=why if r.status == "measured" else f"{why}; {r.status}")


def disc_brightness(sample: _Sampler, labels: _Sampler, frames: dict, lr_halfwidth_mm: float = 1.5) -> float:
    """How much brighter than the marrow the discs next to the placed bodies are: the median, over
    the bodies' ends on their plane columns, of (brightest smoothed sample within ``WINDOW_MM`` of
    the placed end - the body's core median) / the core median; NaN where no end is in view."""
    ratios = []
    for v, fr in frames.items():
        if isinstance(fr, str):
            continue
        centre, axes, depth, height = fr
        reach = 0.5 * height + WINDOW_MM + 4.0
        s = np.arange(-reach, reach + 1e-9, STEP_MM)
        core = np.abs(s) < max(0.2 * height, 2.0)
        for f in PLANE_COLUMNS:
            ap = (f - 0.5) * depth
            prof = _column(sample, centre, axes, ap, 0.0, s, lr_halfwidth_mm)
            if not np.isfinite(prof[core]).any():
                continue
            marrow = float(np.nanmedian(prof[core]))
            ps = _smooth(prof, EDGE_SMOOTH_MM)
            for end in _prior_ends(labels, v, centre, axes, ap, 0.0, s):
                near = (np.abs(s - end) <= WINDOW_MM) & np.isfinite(ps)
                if np.isfinite(end) and near.sum() * STEP_MM >= WINDOW_MM and abs(marrow) > 0:
                    ratios.append((float(ps[near].max()) - marrow) / abs(marrow))
    return float(np.median(ratios)) if ratios else float("nan")


def disc_polarity(contrast: str, brightness: float) -> tuple[int, str]:
    """The discs' polarity against the marrow to measure with (+1 brighter, -1 darker) and why:
    the contrast's (:data:`DISC_POLARITY`), except an MR contrast listed with dark discs (T1)
    whose image shows them brighter than the marrow by ``DISC_BRIGHT_RATIO``
    (:func:`disc_brightness`): bright."""
    dpol = DISC_POLARITY[contrast]
    if contrast != "ct" and dpol < 0 and np.isfinite(brightness) and brightness > DISC_BRIGHT_RATIO:
        return 1, (f"discs brighter than the marrow in this image ({brightness:.2f} of it; {contrast} assumes "
                   "darker): measured as bright")
    return dpol, ""


def _unmeasured(level: int, why: str) -> BodyEndplates:
    from spinereg.metrics.spine import level_name

    nan = float("nan")
    return BodyEndplates(level, level_name(level), nan, nan, nan, nan, nan, nan, nan, [], [],
                         np.full(3, nan), np.full((3, 3), nan), nan, why)


#: wedge and biconcave ratios outside this range are flagged (Genant-style semi-quantitative
#: grading starts at a 20 % height loss)
RATIO_RANGE = (0.8, 1.2)


def endplate_rows(results: list[BodyEndplates]) -> list[dict]:
    """Long-format rows (``spinereg.metrics.spine.SPINE_CSV_COLUMNS``) of heights, ratios (flagged
    outside ``RATIO_RANGE``), endplate tilts and segmental angles measured in the image; a body or
    side not measured gives NaN values with its reason in ``flag``."""
    from spinereg.metrics.spine import EndplateRow, segmental_angles

    def row(measure: str, level: int | str, name: str, value: float, unit: str,
            flag: str = "") -> dict:
        return {"measure": measure, "level": level, "name": name, "value": round(float(value), 6), "unit": unit,
                "flag": flag}

    rows: list[dict] = []
    for r in results:
        why = "" if r.status == "measured" else f"not measured: {r.status}"
        for col in ("anterior", "middle", "posterior"):
            rows.append(row(f"image_height_{col}", r.level, r.name, r.heights[col], "mm",
                            why if not np.isfinite(r.heights[col]) else ""))
        for measure, value in (("image_wedge_ratio", r.wedge_ratio), ("image_biconcave_ratio", r.biconcave_ratio)):
            flag = why if not np.isfinite(value) else (
                "" if RATIO_RANGE[0] <= value <= RATIO_RANGE[1] else f"outside {RATIO_RANGE[0]}-{RATIO_RANGE[1]}")
            rows.append(row(measure, r.level, r.name, value, "ratio", flag))
        for side in ("superior", "inferior"):
            value = getattr(r, f"{side}_deg")
            rows.append(row(f"image_endplate_{side}_tilt", r.level, r.name, value, "deg",
                            "" if np.isfinite(value) else (why or f"not measured: {r.status}")))
    eps = [EndplateRow(r.level, r.name, r.superior_deg, r.inferior_deg, r.superior_normal, r.inferior_normal)
           for r in results]
    for k, a in segmental_angles(eps).items():
        rows.append(row("image_segmental_angle", k, k, a, "deg", "" if np.isfinite(a) else "not measured"))
    return rows
