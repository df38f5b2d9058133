"""Spine measures from labelled vertebral body segmentations, disc labels and a cord segmentation.

All measures are in world space (RAS+ mm), so they do not depend on voxel order or obliquity.
Vertebra values follow SCT (C1 = 1 ... C7 = 7, T1 = 8 ... T12 = 19, L1 = 20 ... L5 = 24; disc
labels carry the value of the vertebra below: C2/C3 = 3).

* :func:`vbq` -- vertebral bone quality (Ehresman et al. 2020, Spine J): median T1w signal of the
  L1-L4 trabecular bone (each body eroded by ``erode_mm`` to exclude the cortex; the median of
  the four per-level medians) divided by the median CSF signal at L3 (CSF voxels within the S-I
  extent of L3's body).
* :func:`trabecular_hu` -- per-vertebra trabecular CT numbers (mean, median, SD of the eroded
  body) with the opportunistic-screening flags: mean <= 110 HU "osteoporosis likely", <= 160 HU
  "osteopenia likely".
* :func:`vertebral_heights` -- anterior, middle and posterior heights along each body's S-I axis
  (the principal axis of the body closest to the local spine direction), measured at the centre
  of each third of the body's antero-posterior depth as the body volume under a triangular
  window (half-width a sixth of the depth, a quarter of the width) over the window's area, so
  that voxelisation errors average out; plus the wedge (anterior/posterior) and biconcave
  (middle/posterior) ratios.
* :func:`endplate_angles` -- planes fitted to the superior and inferior endplates of each body;
  sagittal tilt of their normals; segmental (disc) angles between consecutive bodies and a
  Cobb-like angle between the inferior endplates of two levels (e.g. C2-C7). Positive angles are
  lordosis (convex anteriorly).
* :func:`disc_label_angles` -- angles between consecutive disc-to-disc directions (sagittal).
* :func:`cord_curvature` -- max and mean curvature (1/mm) of the cord centerline over a level
  range.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.io.sanity import require_segmentation
from spinereg.metrics.overlap import ImageLike, as_image, check_same_grid

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

OSTEOPOROSIS_HU = 110.0
OSTEOPENIA_HU = 160.0
VBQ_LEVELS = (20, 21, 22, 23)
VBQ_CSF_LEVEL = 22


def level_name(value: int) -> str:
    """SCT vertebra value -> name (3 -> C3, 8 -> T1, 20 -> L1, 25 -> S1)."""
    v = int(value)
    if 1 <= v <= 7:
        return f"C{v}"
    if 8 <= v <= 19:
        return f"T{v - 7}"
    if 20 <= v <= 24:
        return f"L{v - 19}"
    if 25 <= v <= 29:
        return f"S{v - 24}"
    return str(v)


def parse_level(text: str) -> int:
    """``"L3"``, ``"C2"``, ``"T12"`` or ``"22"`` -> SCT value."""
    t = str(text).strip().upper()
    if t.isdigit():
        return int(t)
    base = {"C": 0, "T": 7, "L": 19, "S": 24}
    if t[:1] in base and t[1:].isdigit():
        return base[t[0]] + int(t[1:])
    raise InputError(f"unknown vertebral level {text!r}", None, "use names (C2, T12, L3) or SCT values (2, 19, 22)")


def _labels(bodies: ImageLike) -> tuple[Image, np.ndarray, list[int]]:
    from spinereg.io.sanity import is_segmentation, values_of

    img = as_image(bodies, "vertebral body segmentation")
    data = np.asarray(img.data)
    v = values_of(img)
    if not is_segmentation(v):  # an intensity image (int16 t2: an internal LinAlgError before session 36)
        raise InputError(f"vertebral body segmentation is not a labelled segmentation: {v.describe()} "
                         "(an intensity image?)", img.name, "give the bodies labelled by level (value = vertebra)")
    if not np.allclose(data, np.round(data)):
        raise InputError("vertebral body segmentation has non-integer values", img.name,
                         "give a labelled segmentation (value = vertebra, L1 = 20), resampled with -x nn")
    lab = np.round(data).astype(np.int32)
    values = [int(v) for v in np.unique(lab) if v > 0]
    if not values:
        raise InputError("vertebral body segmentation is empty", img.name, "give a labelled vertebral body segmentation")
    if values == [1]:  # C1 has no body: a binary mask (a cord segmentation measured a 55 mm "C1" before session 36)
        raise InputError("vertebral body segmentation holds one value, 1 (C1, which has no body): a binary mask, "
                         "not bodies labelled by level", img.name,
                         "give the bodies labelled by level (value = vertebra: C3 = 3, L1 = 20)")
    return img, lab, values


def trabecular_masks(bodies: ImageLike, erode_mm: float = 3.0) -> dict[int, np.ndarray]:
    """Per vertebra: body voxels farther than ``erode_mm`` (world mm) from outside the body."""
    img, lab, values = _labels(bodies)
    zooms = img.grid.zooms
    out = {}
    for v in values:
        m = lab == v
        sl = ndimage.find_objects(m.astype(np.int8))[0]
        pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        dist = np.zeros(m.shape, np.float32)
        dist[pad] = ndimage.distance_transform_edt(m[pad], sampling=zooms)
        out[v] = dist > erode_mm
    return out


@dataclass
class VBQResult:
    vbq: float
    bone_median: float
    csf_median: float
    level_medians: dict[int, float]
    n_csf: int


def _body_frame(points: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and axes (rows lr, ap, si) of a body: S-I = ``up`` (the spine's direction at the
    body, from its neighbours: a body that is about as deep as it is tall has principal axes that
    mix A-P and S-I; before session 36 the S-I axis was the principal axis closest to ``up``, 43
    deg off on PAM50's cervical bodies, their mask heights 0.2-0.8 mm posterior), L-R = the body's
    widest direction across it, A-P completing them towards anterior."""
    c = points.mean(0)
    si = up / np.linalg.norm(up)
    d = points - c
    d = d - np.outer(d @ si, si)
    _, vecs = np.linalg.eigh(d.T @ d)
    lr = vecs[:, -1] - (vecs[:, -1] @ si) * si
    lr /= np.linalg.norm(lr)
    ap = np.cross(si, lr)
    if ap[1] < 0:
        ap, lr = -ap, -lr
    return c, np.stack([lr, ap, si])


def _centroids(img: Image, lab: np.ndarray, values: list[int]) -> dict[int, np.ndarray]:
    com = ndimage.center_of_mass(np.ones(lab.shape, np.float32), lab, values)
    return {v: img.grid.voxel_to_world(np.array(c, float)[None])[0] for v, c in zip(values, com, strict=True)}


def _up_directions(cents: dict[int, np.ndarray], extrapolate: bool = False) -> dict[int, np.ndarray]:
    """Local spine direction (towards the head) at each body, from its labelled neighbours: the
    chord between the two (an interior body; on a circular arc, the tangent at it), or the chord
    to its one neighbour at an end of the labels, turned by ``extrapolate`` by half the angle
    between that chord and the next (the tangent at the end body on a circular arc; without it
    the end body's axis is half a segment's angle off)."""
    vals = sorted(cents)
    out = {}
    for i, v in enumerate(vals):
        above = cents[vals[i - 1]] if i > 0 else None
        below = cents[vals[i + 1]] if i + 1 < len(vals) else None
        if above is not None and below is not None:
            d = above - below
        elif above is not None:
            d = above - cents[v]
            if extrapolate and i >= 2:
                d = _turned_on(d / np.linalg.norm(d), cents[vals[i - 2]] - above)
        elif below is not None:
            d = cents[v] - below
            if extrapolate and i + 2 < len(vals):
                d = _turned_on(d / np.linalg.norm(d), below - cents[vals[i + 2]])
        else:
            d = np.array([0.0, 0.0, 1.0])
        out[v] = d / np.linalg.norm(d)
    return out


def _turned_on(d: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """``d`` turned away from the direction ``nxt`` of the next chord along the spine by half the
    angle between them, in their plane (the end tangent of a circular arc through the chords)."""
    n = nxt / np.linalg.norm(nxt)
    ang = np.arccos(np.clip(d @ n, -1.0, 1.0))
    if ang < 1e-9:
        return d
    perp = d - (d @ n) * n
    perp /= np.linalg.norm(perp)
    # d = cos(ang) n + sin(ang) perp; the end tangent lies a further ang / 2 from n
    return np.cos(1.5 * ang) * n + np.sin(1.5 * ang) * perp


def _frames(img: Image, lab: np.ndarray, values: list[int],
            cut_levels: Collection[int] = ()) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per body: centroid, axes (lr, ap, si) and local coordinates of its voxels.

    The spine's direction at a body (its S-I axis) comes from the centroids of its whole
    neighbours only: a body cut by the grid's edge or in ``cut_levels`` (:func:`_cut_by_the_edge`)
    has its centroid where the field of view ends, not at its centre, and is left out, its whole
    neighbour then an end body (:func:`_up_directions`, extrapolated). Before session 41 the cut
    neighbour's visible part set it: on sct_testing_data t2 through its registration's warp C3's
    posterior height was 8.90 mm, 9.20 mm on the same image zero-padded along S-I (one more rim
    slice of the cut C2 placed). A cut body's own axis (its measures are not reported) is from
    its centroid and its neighbours' as before."""
    cents = _centroids(img, lab, values)
    cut = _cut_by_the_edge(lab, values) | {int(v) for v in cut_levels}
    whole = {v: c for v, c in cents.items() if v not in cut}
    ups = _up_directions(whole if len(whole) >= 2 else cents, extrapolate=True)
    for v in cents:
        if v not in ups:
            ups[v] = _up_directions({**whole, v: cents[v]}, extrapolate=True)[v]
    out = {}
    for v in values:
        pts = img.grid.voxel_to_world(np.argwhere(lab == v).astype(float))
        c, axes = _body_frame(pts, ups[v])
        out[v] = (c, axes, (pts - c) @ axes.T)
    return out


def vbq(t1: ImageLike, bodies: ImageLike, csf: ImageLike, *, levels: tuple[int, ...] = VBQ_LEVELS,
        csf_level: int = VBQ_CSF_LEVEL, erode_mm: float = 3.0) -> VBQResult:
    """Vertebral bone quality score (T1w): median L1-L4 trabecular signal / CSF signal at L3."""
    it1 = as_image(t1, "T1w image")
    ib, lab, values = _labels(bodies)
    icsf = as_image(csf, "CSF mask")
    check_same_grid(it1, ib)
    check_same_grid(it1, icsf)
    missing = [level_name(v) for v in (*levels, csf_level) if v not in values]
    if missing:
        raise InputError(f"vertebral body segmentation lacks {', '.join(sorted(set(missing)))}", ib.name,
                         "VBQ needs L1-L4 bodies labelled 20-23 (SCT values)")
    data = np.asarray(it1.data, float)
    masks = trabecular_masks(ib, erode_mm)
    med = {}
    for v in levels:
        if not masks[v].any():
            raise InputError(f"{level_name(v)} has no voxel deeper than {erode_mm} mm", ib.name, "lower --erode")
        med[v] = float(np.median(data[masks[v]]))
    c, axes, loc = _frames(ib, lab, [v for v in values if abs(v - csf_level) <= 1])[csf_level]
    lo, hi = loc[:, 2].min(), loc[:, 2].max()
    cidx = np.argwhere(np.asarray(icsf.data) > 0.5)
    cl = (icsf.grid.voxel_to_world(cidx.astype(float)) - c) @ axes.T
    keep = (cl[:, 2] >= lo) & (cl[:, 2] <= hi) & (np.hypot(cl[:, 0], cl[:, 1]) < 60.0)
    if not keep.any():
        raise InputError(f"no CSF voxel at {level_name(csf_level)}", icsf.name,
                         "give a CSF mask (e.g. the thecal sac) covering the L3 level")
    csf_med = float(np.median(data[tuple(cidx[keep].T)]))
    bone = float(np.median(list(med.values())))
    return VBQResult(vbq=bone / csf_med, bone_median=bone, csf_median=csf_med, level_medians=med,
                     n_csf=int(keep.sum()))


def check_hounsfield(img: Image, data: np.ndarray | None = None, how: str = "given as --ct") -> None:
    """Refuse a "CT" without a negative value: a CT in HU holds fat (about -100) and air (-1000),
    an MR image none (sct_testing_data t2 read as CT: 120-127 "HU", 'osteopenia likely')."""
    data = np.asarray(img.data, float) if data is None else data
    lo = float(data.min()) if data.size else 0.0
    if lo >= 0:
        raise InputError(f"CT image has no negative value (range {lo:g} to {float(data.max()):g}): not in "
                         f"Hounsfield units, whose fat is about -100 and air -1000 (an MR image {how}, or a CT "
                         "stored without its rescale intercept)", img.name,
                         "give the CT in HU (HU = stored value * RescaleSlope + RescaleIntercept, e.g. "
                         "dcm2niix output)")


@dataclass
class HURow:
    level: int
    name: str
    mean_hu: float
    median_hu: float
    sd_hu: float
    n_voxels: int
    flag: str


def hu_flag(mean_hu: float) -> str:
    if mean_hu <= OSTEOPOROSIS_HU:
        return "osteoporosis likely"
    if mean_hu <= OSTEOPENIA_HU:
        return "osteopenia likely"
    return "normal"


def trabecular_hu(ct: ImageLike, bodies: ImageLike, *, erode_mm: float = 3.0) -> list[HURow]:
    """Per vertebra: mean, median and SD of the trabecular CT numbers, with the HU flags."""
    ict = as_image(ct, "CT image")
    ib, _, _ = _labels(bodies)
    check_same_grid(ict, ib)
    data = np.asarray(ict.data, float)
    check_hounsfield(ict, data)
    rows = []
    for v, m in trabecular_masks(ib, erode_mm).items():
        vals = data[m]
        if vals.size == 0:
            rows.append(HURow(v, level_name(v), float("nan"), float("nan"), float("nan"), 0, "too small"))
            continue
        mean = float(vals.mean())
        rows.append(HURow(v, level_name(v), mean, float(np.median(vals)), float(vals.std()), int(vals.size),
                          hu_flag(mean)))
    return rows


@dataclass
class Heights:
    """Heights of one vertebral body (mm) and their ratios (anterior and middle over posterior)."""

    level: int
    name: str
    anterior_mm: float
    middle_mm: float
    posterior_mm: float
    wedge_ratio: float
    biconcave_ratio: float


@dataclass
class HeightRow(Heights):
    depth_mm: float
    flag: str = ""  # why the heights are not measured (NaN), or empty


#: a body's heights and ratios outside this range are flagged (a wedge or biconcave deformity)
HEIGHT_RATIO_RANGE = (0.8, 1.2)
CUT_BODY_FLAG = "not measured: body cut by the edge of the labels' field of view"
#: a whole body whose every labelled neighbour is cut has no spine direction to be measured along
#: (its neighbours' centroids are where the field of view ends): t2 through its warp cropped along
#: S-I to leave C3 the one whole body gave C3's posterior height 6.97-8.83 mm as more or less of
#: the cut C4 was in view (10.83 with C4 whole) before session 41
LONE_BODY_FLAG = "not measured: no whole neighbouring body in view to set the spine's direction"


def lone_bodies(values: Collection[int], cut: Collection[int]) -> set[int]:
    """The whole bodies left without a whole neighbour by cut ones: when bodies are cut and fewer
    than two whole ones remain (a single body labelled on purpose, nothing cut, is measured along
    world S-I as before)."""
    whole = [v for v in values if v not in set(cut)]
    return set(whole) if cut and len(whole) < 2 else set()


def vertebral_heights(bodies: ImageLike, cut_levels: Collection[int] = ()) -> list[HeightRow]:
    """Anterior/middle/posterior heights (mm) of each labelled body and their ratios, on the body's
    mid-sagittal part (within ``max(3 mm, a voxel)`` of its L-R centre), as 6-point morphometry
    reads them: a body label that also holds pedicle stubs or transverse processes (PAM50's
    cervical bodies, placed by a registration) is measured on its body, not averaged with them
    (before session 36 the windows spanned a quarter of the whole label's width: PAM50's C4
    measured 6.0 / 11.4 / 2.7 mm). ``cut_levels``: bodies known to be cut by something inside the
    grid (placed by a warp whose field of view ends there: :func:`~spinereg.metrics.spine_registration.placed_bodies`),
    flagged as those the grid's own edge cuts."""
    ib, lab, values = _labels(bodies)
    vox = float(abs(np.linalg.det(ib.affine[:3, :3])))
    rows = []
    cut = _cut_by_the_edge(lab, values) | {v for v in cut_levels if v in values}
    lone = lone_bodies(values, cut)
    for v, (_, axes, loc) in _frames(ib, lab, values, cut).items():
        if v in cut or v in lone:
            nan = float("nan")
            rows.append(HeightRow(v, level_name(v), nan, nan, nan, nan, nan, nan,
                                  CUT_BODY_FLAG if v in cut else LONE_BODY_FLAG))
            continue
        a, lr = loc[:, 1], loc[:, 0]
        ea, el = ib.grid.extent_along(axes[1]), ib.grid.extent_along(axes[0])
        lc = float(np.median(lr))
        rl = max(3.0, el)
        mid = np.abs(lr - lc) <= rl
        a0, a1 = a[mid].min() - ea / 2, a[mid].max() + ea / 2
        depth = a1 - a0
        # triangular windows (half-widths ra, rl; integral ra * rl) so that the voxel sums carry no
        # staircase error; for a linear height profile the window mean is the height at its centre
        ra = depth / 6
        wl = np.clip(1 - np.abs(lr - lc) / rl, 0, None)
        h = []
        for t in (5 / 6, 1 / 2, 1 / 6):  # anterior, middle, posterior third centres
            wa = np.clip(1 - np.abs(a - (a0 + t * depth)) / ra, 0, None)
            h.append(float((wa * wl).sum()) * vox / (ra * rl))
        ha, hm, hp = h
        rows.append(HeightRow(v, level_name(v), ha, hm, hp, ha / hp if hp else float("nan"),
                              hm / hp if hp else float("nan"), depth))
    return rows


def _cut_by_the_edge(lab: np.ndarray, values: list[int]) -> set[int]:
    """Labels with a voxel on a face of the grid: the field of view cuts them (a body placed by a
    registration at the edge of the image, 1.5 mm of C6 measured 0.1 / 1.3 / 1.4 mm tall)."""
    faces = [lab[0], lab[-1], lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]]
    on = set(np.unique(np.concatenate([f.ravel() for f in faces])).tolist())
    return {v for v in values if v in on}


def sagittal_tilt_deg(normal: np.ndarray, lr: np.ndarray | None = None) -> float:
    """Sagittal tilt (deg) of an endplate's superior-pointing ``normal`` (world, RAS+): its angle
    from +S, towards posterior positive, in the sagittal plane of the body whose left-right axis
    is ``lr`` (a body frame's, so that S x ``lr`` points anterior; the plane's up is world +S
    projected into it). ``lr=None``, or an ``lr`` within 11.5 deg of S-I: the scanner's sagittal
    plane (world x).

    A subject turned about S-I in the scanner (head rotation) keeps its tilts: they are read in
    its own sagittal plane (read in the scanner's, a -17 deg tilt of a subject turned 20 deg
    reads -16.0: the projection shrinks its tangent by cos 20 deg). One pitched about L-R has them
    changed by the pitch (the tilt is from the scanner's S; segmental angles, differences, are
    not); one leaning to the side has them changed by a fraction of a degree (t2 leaning 15 deg:
    0.2-1.4 deg, the lean tilting the reference S within the plane)."""
    n = np.asarray(normal, float)
    up, front = _sagittal_plane(lr)
    return float(np.degrees(np.arctan2(-(n @ front), n @ up)))


def _sagittal_plane(lr: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Up (world +S projected into the plane normal to ``lr``) and front (up x ``lr``) of that
    sagittal plane; the scanner's for ``lr=None`` or within 11.5 deg of S-I."""
    up, front = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])
    if lr is None:
        return up, front
    e = np.asarray(lr, float) / np.linalg.norm(lr)
    s = up - (up @ e) * e
    if np.linalg.norm(s) < 0.2:
        return up, front
    s /= np.linalg.norm(s)
    return s, np.cross(s, e)


@dataclass
class EndplateRow:
    level: int
    name: str
    superior_deg: float
    inferior_deg: float
    superior_normal: list[float]
    inferior_normal: list[float]


def _fit_endplates(a: np.ndarray, lr: np.ndarray, si: np.ndarray, voxel_volume: float,
                   voxel_extents: tuple[float, float], n_a: int = 3, n_lr: int = 2,
                   core: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Planes si = c0 + c1 a + c2 lr of the superior and inferior endplates; returns both (c1, c2).

    At ``n_a x n_lr`` sample points over the central ``core`` of the body's footprint, a
    triangular window gives the body's local height (volume under the window over its area) and
    mid-height (window-weighted mean si); top = mid + height / 2, bottom = mid - height / 2 are
    sub-voxel (no staircase of the extreme voxels)."""
    a0, a1 = a.min() - voxel_extents[0] / 2, a.max() + voxel_extents[0] / 2
    l0, l1 = lr.min() - voxel_extents[1] / 2, lr.max() + voxel_extents[1] / 2
    ac, lc = 0.5 * (a0 + a1), 0.5 * (l0 + l1)
    da, dl = core * (a1 - a0) / 2, core * (l1 - l0) / 2
    ra, rl = (a1 - a0) / (2 * n_a), (l1 - l0) / (2 * n_lr)
    pa = np.linspace(ac - da + ra, ac + da - ra, n_a)
    pl = np.linspace(lc - dl + rl, lc + dl - rl, n_lr)
    wa = np.clip(1 - np.abs(a[None] - pa[:, None]) / ra, 0, None)  # (n_a, N)
    wl = np.clip(1 - np.abs(lr[None] - pl[:, None]) / rl, 0, None)  # (n_lr, N)
    w = wa[:, None, :] * wl[None, :, :]  # (n_a, n_lr, N)
    sw = w.sum(-1)
    height = sw * voxel_volume / (ra * rl)
    mid = (w * si).sum(-1) / np.where(sw > 0, sw, 1)
    ga, gl = np.meshgrid(pa, pl, indexing="ij")
    ok = sw.ravel() > 0
    A = np.stack([np.ones(ok.sum()), ga.ravel()[ok], gl.ravel()[ok]], -1)
    out = []
    for sign in (1.0, -1.0):
        coef, *_ = np.linalg.lstsq(A, (mid + sign * height / 2).ravel()[ok], rcond=None)
        out.append(coef[1:])
    return out[0], out[1]


def endplate_angles(bodies: ImageLike, core: float = 0.9, cut_levels: Collection[int] = ()) -> list[EndplateRow]:
    """Superior and inferior endplate planes of each body and their sagittal tilts (deg).

    Tilt = angle of the plane's superior-pointing normal from +S, towards posterior positive, in
    the body's own sagittal plane (:func:`sagittal_tilt_deg`).
    Planes are fitted to sub-voxel top/bottom points sampled over the central ``core`` fraction of
    the body's depth and width (see :func:`_fit_endplates`). ``cut_levels``: bodies cut inside the
    grid (as for :func:`vertebral_heights`), left out of their neighbours' frames (:func:`_frames`).
    """
    ib, lab, values = _labels(bodies)
    vox = float(abs(np.linalg.det(ib.affine[:3, :3])))
    rows = []
    for v, (_, axes, loc) in _frames(ib, lab, values, cut_levels).items():
        ext = (ib.grid.extent_along(axes[1]), ib.grid.extent_along(axes[0]))
        normals = []
        for c1, c2 in _fit_endplates(loc[:, 1], loc[:, 0], loc[:, 2], vox, ext, core=core):
            n = axes[2] - c1 * axes[1] - c2 * axes[0]
            normals.append(n / np.linalg.norm(n))
        rows.append(EndplateRow(v, level_name(v), sagittal_tilt_deg(normals[0], axes[0]),
                                sagittal_tilt_deg(normals[1], axes[0]),
                                normals[0].round(6).tolist(), normals[1].round(6).tolist()))
    return rows


def segmental_angles(rows: list[EndplateRow]) -> dict[str, float]:
    """Disc angles between consecutive labelled bodies: inferior endplate of the upper minus
    superior endplate of the lower (deg, positive = lordosis)."""
    by = {r.level: r for r in rows}
    vals = sorted(by)
    return {f"{level_name(u)}-{level_name(lw)}": by[u].inferior_deg - by[lw].superior_deg
            for u, lw in zip(vals[:-1], vals[1:], strict=True) if lw == u + 1}


def cobb_angle(rows: list[EndplateRow], upper: int, lower: int) -> float:
    """Cobb-like angle between the inferior endplates of ``upper`` and ``lower`` (e.g. C2-C7)."""
    by = {r.level: r for r in rows}
    miss = [level_name(v) for v in (upper, lower) if v not in by]
    if miss:
        raise InputError(f"vertebral body segmentation lacks {', '.join(miss)}", None,
                         "label both end vertebrae of the angle")
    return by[upper].inferior_deg - by[lower].inferior_deg


def _points_lr(points: np.ndarray) -> np.ndarray:
    """The L-R axis of the sagittal plane a spine's points (discs) lie in: the one of the points'
    two minor principal axes nearer world L-R (a curve bent to the side is still read in its
    sagittal plane), pointing right."""
    c = points - points.mean(0)
    _, vecs = np.linalg.eigh(c.T @ c)
    minor = vecs[:, :2].T
    lr = minor[int(np.argmax(np.abs(minor[:, 0])))]
    return lr * np.sign(lr[0])


def disc_label_angles(discs: ImageLike) -> dict[str, float]:
    """Sagittal angles between consecutive disc-to-disc directions (deg, positive = lordosis), in
    the plane the discs lie in (:func:`_points_lr`: a subject turned about S-I in the
    scanner keeps its angles)."""
    from spinereg.cord.landmarks import read_point_labels

    lm = read_point_labels(as_image(discs, "disc labels"), "disc")
    order = np.argsort(lm.values)
    vals, pts = lm.values[order], lm.points[order]
    if len(vals) < 3:
        raise InputError("fewer than 3 disc labels", lm.source, "label at least 3 consecutive discs")
    d = np.diff(pts, axis=0)
    up, front = _sagittal_plane(_points_lr(pts))
    ang = np.degrees(np.arctan2(-(d @ front), -(d @ up)))
    return {f"{vals[j]}-{vals[j + 1]}-{vals[j + 2]}": float(ang[j + 1] - ang[j]) for j in range(len(d) - 1)}


@dataclass
class CurvatureResult:
    max_per_mm: float
    mean_per_mm: float
    s_range_mm: tuple[float, float]
    levels: tuple[int, int] | None


def cord_curvature(cord_seg: ImageLike, bodies: ImageLike | None = None,
                   levels: tuple[int, int] | None = None, margin_mm: float = 5.0) -> CurvatureResult:
    """Max and mean curvature (1/mm) of the cord centerline, between the body centroids of
    ``levels`` (upper, lower) when given, else over the whole segmentation minus ``margin_mm``
    at each end (where the fitted curve is least constrained)."""
    from spinereg.cord.centerline import Centerline

    seg = as_image(cord_seg, "cord segmentation")
    require_segmentation(seg, "segmentation", "--cord")  # t2 itself as --cord read a curvature of 0.101 /mm
    cl = Centerline.from_mask(seg)
    lo, hi = margin_mm, cl.length - margin_mm
    if levels is not None:
        if bodies is None:
            raise InputError("a level range needs the vertebral body segmentation", None, "give --bodies")
        ib, lab, values = _labels(bodies)
        miss = [level_name(v) for v in levels if v not in values]
        if miss:
            raise InputError(f"vertebral body segmentation lacks {', '.join(miss)}", ib.name, "choose labelled levels")
        cents = _centroids(ib, lab, list(levels))
        s, _ = cl.project(np.array([cents[v] for v in levels]))
        lo, hi = float(max(min(s), 0.0)), float(min(max(s), cl.length))
    if hi <= lo:
        raise InputError("the level range covers no part of the centerline", seg.name, "choose other levels")
    ss = np.linspace(lo, hi, max(int((hi - lo) / 0.5), 2))
    k = cl.curvature(ss)
    return CurvatureResult(float(k.max()), float(k.mean()), (lo, hi), levels)


SPINE_CSV_COLUMNS = ("measure", "level", "name", "value", "unit", "flag")


def _row(measure: str, level: int | str, name: str, value: float, unit: str,
         flag: str = "") -> dict:
    return {"measure": measure, "level": level, "name": name, "value": round(float(value), 6), "unit": unit,
            "flag": flag}


def parse_level_range(text: str | None) -> tuple[int, int] | None:
    """``"C2:C7"`` / ``"2:7"`` -> (2, 7); None stays None."""
    if not text:
        return None
    parts = str(text).split(":")
    if len(parts) != 2:
        raise InputError(f"bad level range {text!r}", None, "write UPPER:LOWER, e.g. C2:C7 or 20:23")
    lo, hi = parse_level(parts[0]), parse_level(parts[1])
    return (min(lo, hi), max(lo, hi))


def spine_metrics_rows(bodies: ImageLike | None = None, t1: ImageLike | None = None, csf: ImageLike | None = None,
                       ct: ImageLike | None = None, discs: ImageLike | None = None, cord: ImageLike | None = None,
                       levels: str | tuple[int, int] | None = None, erode_mm: float = 3.0,
                       cut_levels: Collection[int] = ()) -> list[dict]:
    """Every measure the inputs allow, as long-format rows (see ``SPINE_CSV_COLUMNS``);
    ``cut_levels`` as for :func:`vertebral_heights`."""
    rng = parse_level_range(levels) if isinstance(levels, str | None) else tuple(levels)
    rows: list[dict] = []
    if t1 is not None or csf is not None:
        if bodies is None or t1 is None or csf is None:
            raise InputError("VBQ needs the T1w image, the CSF mask and the vertebral bodies", None,
                             "give --t1, --csf and --bodies together")
        r = vbq(t1, bodies, csf, erode_mm=erode_mm)
        rows += [_row("t1_trabecular_median", v, level_name(v), m, "a.u.") for v, m in r.level_medians.items()]
        rows.append(_row("csf_median_at_L3", VBQ_CSF_LEVEL, "L3", r.csf_median, "a.u."))
        rows.append(_row("vbq", "L1-L4", "L1-L4", r.vbq, "ratio"))
    if ct is not None:
        if bodies is None:
            raise InputError("trabecular HU needs the vertebral bodies", None, "give --bodies with --ct")
        for h in trabecular_hu(ct, bodies, erode_mm=erode_mm):
            rows += [_row("hu_mean", h.level, h.name, h.mean_hu, "HU", h.flag),
                     _row("hu_median", h.level, h.name, h.median_hu, "HU"),
                     _row("hu_sd", h.level, h.name, h.sd_hu, "HU"),
                     _row("hu_n_voxels", h.level, h.name, h.n_voxels, "voxels")]
    if bodies is not None:
        lo, hi = HEIGHT_RATIO_RANGE
        heights = vertebral_heights(bodies, cut_levels)
        cut = {h.level for h in heights if h.flag == CUT_BODY_FLAG}
        skip = {h.level: h.flag for h in heights if h.flag in (CUT_BODY_FLAG, LONE_BODY_FLAG)}
        for h in heights:
            def ratio_flag(x: float, h: HeightRow = h) -> str:
                return h.flag or ("" if not np.isfinite(x) or lo <= x <= hi else f"outside {lo}-{hi}")

            rows += [_row("height_anterior", h.level, h.name, h.anterior_mm, "mm", h.flag),
                     _row("height_middle", h.level, h.name, h.middle_mm, "mm", h.flag),
                     _row("height_posterior", h.level, h.name, h.posterior_mm, "mm", h.flag),
                     _row("wedge_ratio", h.level, h.name, h.wedge_ratio, "ratio", ratio_flag(h.wedge_ratio)),
                     _row("biconcave_ratio", h.level, h.name, h.biconcave_ratio, "ratio",
                          ratio_flag(h.biconcave_ratio))]
        eps = endplate_angles(bodies, cut_levels=cut)
        nan = float("nan")
        for e in eps:
            if e.level in skip:  # a cut body's planes stand on what the field of view left of it
                rows += [_row("endplate_superior_tilt", e.level, e.name, nan, "deg", skip[e.level]),
                         _row("endplate_inferior_tilt", e.level, e.name, nan, "deg", skip[e.level])]
            else:
                rows += [_row("endplate_superior_tilt", e.level, e.name, e.superior_deg, "deg"),
                         _row("endplate_inferior_tilt", e.level, e.name, e.inferior_deg, "deg")]
        for k, a in segmental_angles(eps).items():
            hit = [f for v, f in sorted(skip.items()) if level_name(v) in k.split("-")]
            if hit:
                rows.append(_row("segmental_angle", k, k, nan, "deg", hit[0]))
            else:
                rows.append(_row("segmental_angle", k, k, a, "deg"))
        have = {e.level for e in eps} - set(skip)
        if rng is not None and rng[0] in have and rng[1] in have:
            nm = f"{level_name(rng[0])}-{level_name(rng[1])}"
            rows.append(_row("cobb_angle", nm, nm, cobb_angle(eps, *rng), "deg"))
        elif rng is not None:  # asked for (--levels) and not measurable: said, not left out
            nm = f"{level_name(rng[0])}-{level_name(rng[1])}"
            rows.append(_row("cobb_angle", nm, nm, nan, "deg",
                             "not measured: " + _range_ends_missing(rng, {e.level for e in eps}, skip)))
        elif rng is None and 2 in have and 7 in have:
            rows.append(_row("cobb_angle", "C2-C7", "C2-C7", cobb_angle(eps, 2, 7), "deg"))
    if discs is not None:
        for k, a in disc_label_angles(discs).items():
            nm = "-".join(level_name(int(x)) for x in k.split("-"))
            rows.append(_row("disc_label_angle", k, nm, a, "deg"))
    if cord is not None:
        c = cord_curvature(cord, bodies, rng if (rng is not None and bodies is not None) else None)
        nm = f"{level_name(rng[0])}-{level_name(rng[1])}" if c.levels else "all"
        flag = ""
        if c.levels:
            _, lab_b, values_b = _labels(bodies)
            cut_b = _cut_by_the_edge(lab_b, values_b) | set(cut_levels)
            cut_ends = [level_name(v) for v in c.levels if v in cut_b]
            if cut_ends:  # the range ends at the centre of what the field of view left of the body
                flag = (f"range shortened: {', '.join(cut_ends)} cut by the edge of the labels' field of view "
                        "(the range ends at the centre of its visible part)")
        rows += [_row("cord_curvature_max", nm, nm, c.max_per_mm, "1/mm", flag),
                 _row("cord_curvature_mean", nm, nm, c.mean_per_mm, "1/mm", flag)]
    return rows


def _range_ends_missing(rng: tuple[int, int], labelled: set[int], skipped: dict[int, str]) -> str:
    """Why a level range's end bodies cannot be measured: not labelled, or not measured (cut by the
    edge, or left without a whole neighbour: ``skipped``, level -> its flag)."""
    why = [f"{level_name(v)} not labelled" for v in rng if v not in labelled]
    why += [f"{level_name(v)} {skipped[v].removeprefix('not measured: ')}" for v in rng if v in skipped]
    return "; ".join(dict.fromkeys(why))


def write_spine_csv(rows: list[dict], path: str | Path, overwrite: bool = False) -> Path:
    """Write the rows as CSV atomically."""
    import csv
    import io
    from pathlib import Path

    from spinereg.io.image import atomic_write

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SPINE_CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    text = buf.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite)
