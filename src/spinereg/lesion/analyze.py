"""Lesion metrics along the cord, as SCT's ``sct_analyze_lesion``, in world coordinates.

Each lesion is one connected component of the lesion mask (18-connectivity: voxels sharing a face
or an edge, not only a corner -- SCT's ``skimage.measure.label(connectivity=2)``). Lesions are
numbered from superior to inferior along the cord (the arc length of their centre), so the
numbering does not depend on the voxel order of the files.

Per lesion (columns as SCT names them, see :data:`CSV_COLUMNS`):

- ``volume [mm3]``: voxel count x voxel volume (binary mask, > 0.5).
- ``length [mm]``: extent along the cord's centerline (arc length of the voxel centres projected
  onto the :class:`spinereg.cord.Centerline`, plus one voxel's extent along the cord's tangent).
  SCT sums ``dz / cos(angle)`` over the axial slices the lesion touches, which for a tilted cord
  also counts the lesion's width; here a tilted ellipsoid gives 2 x its semi-axis along the cord.
- ``max_equivalent_diameter [mm]``: ``2 sqrt(A / pi)`` for the largest lesion area ``A`` on a
  section perpendicular to the cord.
- ``max_axial_damage_ratio []``: largest (lesion area within the cord) / (cord area) on the same
  sections.
- ``midsagittal_dorsal/ventral/total_bridge_width [mm]``: tissue bridges at the midsagittal plane
  (:mod:`spinereg.lesion.bridges`). Per section (JSON ``bridge_sections``, and ``<lesion>_bridges.csv``): ``[s, dorsal,
  ventral]`` for each section perpendicular to the cord that holds lesion on that plane, ``s`` its
  centre's arc length along the centerline (mm, as ``s_min_mm`` / ``s_max_mm``).
- ``vol_level_<k> [mm3]`` (with a levels image): the lesion's voxels whose level (the levels image
  at the voxel centre, nearest neighbour) is ``k``, x voxel volume -- voxel-wise, as SCT's
  ``im_vert * im_lesion``. ``vol_no_level [mm3]``: the rest, lesion voxels where the levels image is
  0 (a PAM50_levels labels the cord only: lesion voxels outside the cord, or outside the image's
  field of view); per-level volumes plus it equal ``volume [mm3]`` exactly.

Sections perpendicular to the cord: the lesion's span along the centerline is cut into slabs one
voxel thick (the voxel's extent along the tangent); each voxel's volume is spread evenly over its
own extent along the tangent, a slab's area is its volume over its thickness. For a cord along a
voxel axis these are exactly the axial slices. On a curved cord consecutive sections are further
apart on the outer side of the bend than along the centerline (closer on the inner side), so each
voxel's volume counts ``1 / (1 - k . offset)`` toward the area (``k`` the centerline's curvature
vector, ``offset`` the voxel centre's in-section offset; :func:`_area_weights`): without it a lesion
1.5 mm outward of a 40 mm bend read a 3.75 % larger area (tests/test_analyze_lesion_curved.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.cord import Centerline
    from spinereg.io.image import Image

#: CSV columns, SCT's names first (``label`` .. ``max_axial_damage_ratio []``), then spinereg's
CSV_COLUMNS = ("label", "volume [mm3]", "length [mm]", "max_equivalent_diameter [mm]",
               "max_axial_damage_ratio []", "n_voxels", "centre_x_mm", "centre_y_mm", "centre_z_mm",
               "s_min_mm", "s_max_mm", "inside_cord_fraction", "outside_cord", "levels",
               "midsagittal_dorsal_bridge_width [mm]", "midsagittal_ventral_bridge_width [mm]",
               "midsagittal_total_bridge_width [mm]")

#: least mean summed tract partial volume over the cord voxels (measured: SCT mt/label warped to mt1 0.39;
#: the unwarped PAM50 atlas on t2_fake_lesion 0.12)
ATLAS_COVER_MIN = 0.25

#: share of a lesion's voxels inside the cord under which the lesion is flagged ``outside_cord``
INSIDE_MIN = 0.5


@dataclass
class LesionRow:
    """One lesion (a connected component)."""

    label: int
    n_voxels: int
    volume_mm3: float
    length_mm: float
    max_equivalent_diameter_mm: float
    max_axial_damage_ratio: float
    centre_mm: tuple[float, float, float]
    s_range_mm: tuple[float, float]  # arc length along the centerline (bottom, top)
    inside_cord_fraction: float
    dorsal_bridge_mm: float = float("nan")  # midsagittal tissue bridges (NaN: lesion off that plane)
    ventral_bridge_mm: float = float("nan")
    levels: tuple[int, ...] = ()
    volume_per_level_mm3: dict[int, float] = field(default_factory=dict)
    bridge_sections: list[tuple[float, float, float]] = field(default_factory=list)  # (s, dorsal, ventral) mm
    volume_no_level_mm3: float = float("nan")  # lesion volume where the levels image is 0 (NaN: no levels image)
    tract_share_pct: dict[str, float] = field(default_factory=dict)  # % of the lesion's atlas volume

    @property
    def outside_cord(self) -> bool:
        return self.inside_cord_fraction < INSIDE_MIN

    def csv_row(self) -> dict[str, object]:
        row: dict[str, object] = {
            "label": self.label, "volume [mm3]": round(self.volume_mm3, 4), "length [mm]": round(self.length_mm, 4),
            "max_equivalent_diameter [mm]": round(self.max_equivalent_diameter_mm, 4),
            "max_axial_damage_ratio []": (round(self.max_axial_damage_ratio, 5)
                                          if np.isfinite(self.max_axial_damage_ratio) else "nan"),
            "n_voxels": self.n_voxels, "centre_x_mm": round(self.centre_mm[0], 3),
            "centre_y_mm": round(self.centre_mm[1], 3), "centre_z_mm": round(self.centre_mm[2], 3),
            "s_min_mm": round(self.s_range_mm[0], 3), "s_max_mm": round(self.s_range_mm[1], 3),
            "inside_cord_fraction": round(self.inside_cord_fraction, 4),
            "outside_cord": int(self.outside_cord), "levels": " ".join(str(v) for v in self.levels)}
        for side, v in (("dorsal", self.dorsal_bridge_mm), ("ventral", self.ventral_bridge_mm),
                        ("total", self.dorsal_bridge_mm + self.ventral_bridge_mm)):
            row[f"midsagittal_{side}_bridge_width [mm]"] = round(v, 4) if np.isfinite(v) else "nan"
        for lv, vol in self.volume_per_level_mm3.items():
            row[f"vol_level_{lv} [mm3]"] = round(vol, 4)
        if np.isfinite(self.volume_no_level_mm3):
            row["vol_no_level [mm3]"] = round(self.volume_no_level_mm3, 4)
        for name, pct in self.tract_share_pct.items():
            row[f"{name} [%]"] = round(pct, 3)
        return row

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d["outside_cord"] = self.outside_cord
        d["volume_per_level_mm3"] = {str(k): v for k, v in self.volume_per_level_mm3.items()}
        return d


@dataclass
class LesionReport:
    """All lesions of a mask and their totals."""

    lesions: list[LesionRow]
    labels: np.ndarray  # int32 volume on the lesion mask's grid, each lesion its own label
    voxel_volume_mm3: float
    notes: list[str] = field(default_factory=list)
    load_per_level_mm3: dict[int, float] = field(default_factory=dict)
    load_no_level_mm3: float | None = None  # lesion volume where the levels image is 0 (None: no levels image)
    tract_lesioned_pct: dict[str, float] = field(default_factory=dict)  # % of each tract lesioned (all lesions)
    centerline_length_mm: float = 0.0

    @property
    def n_lesions(self) -> int:
        return len(self.lesions)

    @property
    def total_volume_mm3(self) -> float:
        return float(sum(r.volume_mm3 for r in self.lesions))

    def totals(self) -> dict:
        return {"n_lesions": self.n_lesions, "total_volume_mm3": round(self.total_volume_mm3, 4),
                "n_outside_cord": sum(r.outside_cord for r in self.lesions),
                "min_midsagittal_dorsal_bridge_mm": _nanmin([r.dorsal_bridge_mm for r in self.lesions]),
                "min_midsagittal_ventral_bridge_mm": _nanmin([r.ventral_bridge_mm for r in self.lesions]),
                "load_per_level_mm3": {str(k): round(v, 4) for k, v in self.load_per_level_mm3.items()},
                "load_no_level_mm3": None if self.load_no_level_mm3 is None else round(self.load_no_level_mm3, 4),
                "tract_lesioned_pct": {k: round(v, 4) for k, v in self.tract_lesioned_pct.items()},
                "notes": list(self.notes)}

    def csv_rows(self) -> list[dict[str, object]]:
        return [r.csv_row() for r in self.lesions]


def _nanmin(v: list[float]) -> float | None:
    f = [x for x in v if np.isfinite(x)]
    return round(min(f), 4) if f else None


# -- inputs --------------------------------------------------------------------------------------
def _load(img: Image | str | Path, what: str) -> Image:
    from spinereg.io.image import Image as _Image
    from spinereg.io.image import load_image

    return img if isinstance(img, _Image) else load_image(img, ndim=3, what=what)


def _world_box(img: Image) -> tuple[np.ndarray, np.ndarray]:
    sh = np.array(img.shape[:3]) - 1
    corners = np.array([[i, j, k] for i in (0, sh[0]) for j in (0, sh[1]) for k in (0, sh[2])], float)
    w = img.grid.voxel_to_world(corners)
    return w.min(0), w.max(0)


def on_lesion_grid(img: Image, ref: Image, interp: str, what: str) -> np.ndarray:
    """``img``'s data on ``ref``'s grid: the same voxels in another order moved exactly, otherwise
    sampled at ``ref``'s voxel centres through world coordinates (``interp``). Refused when the two
    fields of view do not overlap."""
    from spinereg.io.image import on_grid_of
    from spinereg.io.resample import sample_image

    moved = on_grid_of(img, ref)
    if moved.grid.same_as(ref.grid):
        return np.asarray(moved.data, dtype=np.float64)
    (a0, a1), (b0, b1) = _world_box(img), _world_box(ref)
    if np.any(a1 < b0 - 1e-3) or np.any(b1 < a0 - 1e-3):
        raise InputError(f"the {what} does not overlap the lesion mask in world space", img.name,
                         "give images of the same subject and session")
    sh = ref.shape[:3]
    out = np.zeros(sh, dtype=np.float64)
    for k0, k1 in ref.grid.chunks():  # slabs of the last axis, C order within
        vals = sample_image(img, ref.grid.world_coords(k0, k1), interp=interp)
        out[:, :, k0:k1] = vals.reshape(sh[0], sh[1], k1 - k0)
    return out


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components with 18-connectivity (face or edge neighbours), as SCT."""
    lab, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 2))
    return lab.astype(np.int32), int(n)


# -- geometry ------------------------------------------------------------------------------------
def voxel_extent_along(affine: np.ndarray, direction: np.ndarray) -> float:
    """Width of one voxel (a box) projected onto a unit world ``direction`` (mm)."""
    return float(np.sum(np.abs(np.asarray(affine)[:3, :3].T @ np.asarray(direction, float))))


def _slab_mass(s: np.ndarray, e: float, edges: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Number of voxels (fractions; each voxel weighted by ``w``, default 1) in each slab between
    ``edges``, each voxel spread evenly over ``[s - e/2, s + e/2]``."""
    if len(s) == 0:
        return np.zeros(len(edges) - 1)
    # F(x) = sum_v w_v clip((x - s_v) / e + 1/2, 0, 1) from the sorted arc lengths (no N x edges array)
    o = np.argsort(s, kind="stable")
    ss = s[o]
    ww = np.ones(len(ss)) if w is None else np.asarray(w, float)[o]
    cw = np.r_[0.0, np.cumsum(ww)]
    cs = np.r_[0.0, np.cumsum(ww * ss)]
    i0 = np.searchsorted(ss, edges - 0.5 * e, side="right")  # voxels wholly below the edge: w each
    i1 = np.searchsorted(ss, edges + 0.5 * e, side="left")  # from here on: 0 each
    f = cw[i0] + (cw[i1] - cw[i0]) * (edges / e + 0.5) - (cs[i1] - cs[i0]) / e
    return np.diff(f)


def _area_weights(cl: Centerline, abs_: np.ndarray) -> np.ndarray:
    """``1 / J`` per point of local coordinates ``(a, b, s)``: a voxel's share of a section's area
    per unit of its volume. ``J = 1 - k . offset`` (``k`` the curvature vector, ``offset`` the point's
    in-section offset from the centerline) is the volume element's stretch between two sections:
    on the outer side of a bend sections lie further apart than along the centerline, on the inner
    side closer (a torus section of radius ``r`` whose axis is ``d`` outward of a centerline of bend
    radius ``Rb`` holds ``pi r^2 (Rb + d) / Rb`` per mm of centerline). 1 on a straight cord."""
    if len(abs_) == 0:
        return np.ones(0)
    s = np.clip(abs_[:, 2], 0.0, cl.length)
    k = cl.curvature_vector(s)
    f = cl.frame(s)
    kb, kn = np.einsum("ni,ni->n", k, f[:, :, 0]), np.einsum("ni,ni->n", k, f[:, :, 1])
    j = 1.0 - (abs_[:, 0] * kb + abs_[:, 1] * kn)
    return 1.0 / np.clip(j, 0.25, None)  # beyond the radius of curvature the sections fold: capped


def _measure(pts: np.ndarray, inside: np.ndarray, cl: Centerline, affine: np.ndarray,
             cord_abs: np.ndarray, voxvol: float) -> dict:
    from spinereg.lesion.bridges import bridge_sections

    abs_ = cl.local_coords(pts)
    s, cord_s = abs_[:, 2], cord_abs[:, 2]
    s_mid = 0.5 * (s.min() + s.max())
    e = voxel_extent_along(affine, cl.tangent(float(np.clip(s_mid, 0.0, cl.length))))
    lo, hi = float(s.min() - 0.5 * e), float(s.max() + 0.5 * e)
    nb = max(1, int(np.ceil((hi - lo) / e - 1e-6)))
    edges = lo + e * np.arange(nb + 1)
    w = _area_weights(cl, abs_)
    les = _slab_mass(s, e, edges, w)
    les_in = _slab_mass(s[inside], e, edges, w[inside])
    near = (cord_s > lo - e) & (cord_s < edges[-1] + e)
    cord = _slab_mass(cord_s[near], e, edges, _area_weights(cl, cord_abs[near]))
    area = les * voxvol / e
    ok = cord > 0.5 * (cord.max() if len(cord) else 0.0)  # sections the cord fills (not its cut end)
    ratio = float(np.max(les_in[ok] / cord[ok])) if ok.any() else float("nan")
    t_mid = float(np.clip(s_mid, 0.0, cl.length))
    width_a = voxel_extent_along(affine, cl.binormal(t_mid))
    sections = bridge_sections(abs_[inside], cord_abs, width_a, e)
    dorsal = min((d for _, d, _ in sections), default=float("nan"))
    ventral = min((v for _, _, v in sections), default=float("nan"))
    return {"s": s, "length": hi - lo, "dorsal": dorsal, "ventral": ventral, "sections": sections, "s_range": (lo, hi), "max_area": float(area.max()),
            "ratio": ratio}


# -- the analysis --------------------------------------------------------------------------------
def analyze_lesions(lesion_seg: Image | str | Path, cord_seg: Image | str | Path, *,
                    levels: Image | str | Path | None = None,
                    atlas_folder: str | Path | None = None,
                    centerline: Centerline | None = None) -> LesionReport:
    """Lesion metrics of ``lesion_seg`` (binary or soft; > 0.5 is lesion) along the cord of
    ``cord_seg`` (any grid in the same world space: moved or sampled onto the lesion grid).

    ``levels``: vertebral levels image (cord voxels valued by level, e.g. a warped PAM50_levels or
    a labelled segmentation; any grid): levels each lesion touches and its volume per level.
    ``atlas_folder``: a warped template's atlas folder (``label/atlas`` or ``label``, with
    ``info_label.txt``): each lesion's share per tract and the share of each tract lesioned;
    ``label/template/PAM50_levels.nii.gz`` is used as ``levels`` when none is given.
    ``centerline``: the cord's centerline (default: fitted to ``cord_seg``).
    """
    from spinereg.cord import Centerline as _Centerline
    from spinereg.io.sanity import require_segmentation

    les_img = _load(lesion_seg, "lesion mask")
    cord_img = _load(cord_seg, "cord segmentation")
    # an intensity image in either place measured a 141190 mm3 "lesion" (or a damage ratio of 0.013
    # against the true 0.25), exit 0, before session 48
    require_segmentation(les_img, "lesion mask", "-m", points_ok=True)
    require_segmentation(cord_img, "segmentation", "-s")
    notes: list[str] = []
    cord = on_lesion_grid(cord_img, les_img, "linear", "cord segmentation") >= 0.5
    if not np.any(np.asarray(cord_img.data) > 0):
        raise InputError("cord segmentation is empty", cord_img.name, "give the spinal cord segmentation")
    mask = np.asarray(les_img.data, dtype=np.float64) > 0.5
    atlas = None
    if atlas_folder is not None:
        from spinereg.lesion.atlas import levels_of_folder, load_atlas

        atlas = load_atlas(atlas_folder, les_img)
        cover = atlas.cover(cord)
        if cover < ATLAS_COVER_MIN:
            raise InputError(f"the atlas covers {100 * cover:.0f} % of the cord (tracts' partial volumes summed "
                             "over the cord voxels): it is not on this subject", atlas_folder,
                             "give the atlas warped to this image (sct_warp_template / spinereg warp-template)")
        if levels is None:
            levels = levels_of_folder(atlas_folder)
    lev = None
    if levels is not None:
        lev_img = _load(levels, "levels image")
        lev = np.rint(on_lesion_grid(lev_img, les_img, "nn", "levels image")).astype(int)
        share = float(np.mean(lev[cord] > 0)) if cord.any() else 0.0
        if share < 0.1:
            notes.append(f"the levels image gives a level to {100 * share:.0f} % of the cord voxels only "
                         "(a point-label file, or not on this subject?)")
    labels, n = label_components(mask)
    grid = les_img.grid
    voxvol = float(abs(np.linalg.det(grid.affine[:3, :3])))
    if n == 0:
        notes.append("the lesion mask is empty: no lesion")
        return LesionReport([], labels, voxvol, notes)
    cl = centerline if centerline is not None else _Centerline.from_mask(cord_img)
    cord_pts = grid.voxel_to_world(np.argwhere(cord))
    cord_abs = cl.local_coords(cord_pts) if len(cord_pts) else np.zeros((0, 3))
    rows: list[LesionRow] = []
    for k in range(1, n + 1):
        idx = np.argwhere(labels == k)
        pts = grid.voxel_to_world(idx)
        inside = cord[tuple(idx.T)]
        m = _measure(pts, inside, cl, grid.affine, cord_abs, voxvol)
        row = LesionRow(label=k, n_voxels=len(idx), volume_mm3=len(idx) * voxvol, length_mm=m["length"],
                        max_equivalent_diameter_mm=2.0 * np.sqrt(m["max_area"] / np.pi),
                        max_axial_damage_ratio=m["ratio"], centre_mm=tuple(float(v) for v in pts.mean(0)),
                        s_range_mm=m["s_range"], inside_cord_fraction=float(inside.mean()),
                        dorsal_bridge_mm=m["dorsal"], ventral_bridge_mm=m["ventral"], bridge_sections=m["sections"])
        if lev is not None:
            vals, counts = np.unique(lev[tuple(idx.T)], return_counts=True)
            row.volume_per_level_mm3 = {int(v): float(c) * voxvol for v, c in zip(vals, counts, strict=True) if v > 0}
            row.volume_no_level_mm3 = float(counts[vals <= 0].sum()) * voxvol
            row.levels = tuple(sorted(row.volume_per_level_mm3))
        if atlas is not None:
            row.tract_share_pct = atlas.lesion_share(idx)
        rows.append(row)
    # number from superior to inferior along the cord (independent of the voxel order)
    order = sorted(range(n), key=lambda i: -0.5 * (rows[i].s_range_mm[0] + rows[i].s_range_mm[1]))
    relabel = np.zeros(n + 1, dtype=np.int32)
    for new, i in enumerate(order, start=1):
        relabel[rows[i].label] = new
        rows[i].label = new
    labels = relabel[labels]
    rows = [rows[i] for i in order]
    out = sum((r.outside_cord for r in rows), 0)
    if out:
        notes.append(f"{out} lesion(s) lie mostly outside the cord segmentation (flagged outside_cord)")
    if mask.sum() and lev is not None and not np.any(lev[mask] > 0):
        notes.append("no lesion voxel has a vertebral level in the levels image")
    report = LesionReport(rows, labels, voxvol, notes, centerline_length_mm=cl.length)
    for r in rows:
        for lv, vol in r.volume_per_level_mm3.items():
            report.load_per_level_mm3[lv] = report.load_per_level_mm3.get(lv, 0.0) + vol
    report.load_per_level_mm3 = dict(sorted(report.load_per_level_mm3.items()))
    if lev is not None:
        report.load_no_level_mm3 = float(sum(r.volume_no_level_mm3 for r in rows))
        if report.load_no_level_mm3 > 0 and np.any(lev[mask] > 0):
            notes.append(f"{report.load_no_level_mm3:.1f} mm3 of lesion lie where the levels image has no level "
                         "(outside its labelled cord): in vol_no_level, not in the per-level volumes")
    if atlas is not None:
        report.tract_lesioned_pct = atlas.tract_lesioned(mask)
    return report
