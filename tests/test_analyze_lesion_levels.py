"""``analyze-lesion``'s volume per vertebral level (``vol_level_<k> [mm3]``) against truth made here.

Phantoms: a cylinder cord (radius 4 mm, 0.5 mm voxels, straight or tilted 25 deg in the x-z plane)
with a levels image made analytically -- level k for the arc length along the cord's axis in a
known interval, boundaries at -6.3, 1.17 and 8.61 mm (not on voxel edges), levels 4..1 from the
bottom, given to the cord voxels only (as a PAM50_levels) -- and two ellipsoid lesions. Two truths,
neither from :mod:`spinereg.lesion`:

- analytic: the ellipsoid's volume between two planes perpendicular to its axis along the cord,
  ``pi a b [(t2 - t1) - (t2^3 - t1^3) / (3 c^2)]``. It differs from any voxel count by the levels
  image's own staircase (a boundary moves to the nearest voxel edge: up to the section area x 0.25 mm)
  and by the lesion's rasterisation.
- super-sampled: 5 x 5 x 5 points per lesion-grid voxel inside the ellipsoid, each given the level
  of the levels image's voxel that holds it (nearest centre, on the levels image's own grid). This
  is the partial-volume truth for the levels image as given: what is left is the lesion mask's
  rasterisation (voxel centre inside = lesion).
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from spinereg.io.image import Image
from spinereg.lesion import analyze_lesions
from spinereg.lesion.outputs import csv_text
from test_analyze_lesion import reordered

R = 4.0  # cord radius (mm)
BOUNDS = np.array([-20.0, -6.3, 1.17, 8.61, 20.0])  # arc length along the cord: levels 4, 3, 2, 1 upwards
LESIONS = [((0.0, 0.0, -4.0), (1.5, 2.0, 5.0)), ((-0.3, 0.4, 6.0), (2.0, 1.5, 3.5))]  # (across, A-P, along), (a, b, c)


def _frame(tilt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    th = np.radians(tilt)
    return np.array([np.sin(th), 0, np.cos(th)]), np.array([np.cos(th), 0, -np.sin(th)]), np.array([0, 1.0, 0])


def _level_of(s: np.ndarray) -> np.ndarray:
    nb = len(BOUNDS) - 1
    k = np.searchsorted(BOUNDS, s, side="right") - 1  # interval [BOUNDS[k], BOUNDS[k + 1])
    return np.where((k >= 0) & (k < nb), nb - k, 0)


def phantom(tilt: float, lesions: list, h: float = 0.5, shape: tuple = (72, 32, 80),
            levels_everywhere: bool = False) -> tuple[Image, Image, Image]:
    """(lesion, cord, levels) on a grid centred on the origin; the levels on the cord voxels only
    unless ``levels_everywhere``."""
    u, e1, e2 = _frame(tilt)
    aff = np.diag([h, h, h, 1.0])
    aff[:3, 3] = -0.5 * h * (np.array(shape) - 1)
    p = np.indices(shape).reshape(3, -1).T * h + aff[:3, 3]
    s = p @ u
    cord = np.linalg.norm(p - s[:, None] * u, axis=1) < R
    les = np.zeros(len(p), bool)
    for o, (a, b, c) in lesions:
        q = p - (o[0] * e1 + o[1] * e2 + o[2] * u)
        les |= ((q @ e1) / a) ** 2 + ((q @ e2) / b) ** 2 + ((q @ u) / c) ** 2 <= 1
    lev = _level_of(s)
    if not levels_everywhere:
        lev[~cord] = 0
    return (Image(les.reshape(shape).astype(np.uint8), aff), Image(cord.reshape(shape).astype(np.uint8), aff),
            Image(lev.reshape(shape).astype(np.int16), aff))


def analytic(lesion: tuple) -> dict[int, float]:
    """Volume of the ellipsoid per level interval (closed form, slabs perpendicular to its c axis)."""
    o, (a, b, c) = lesion
    out = {}
    nb = len(BOUNDS) - 1
    for k in range(nb):
        t1, t2 = np.clip(BOUNDS[k] - o[2], -c, c), np.clip(BOUNDS[k + 1] - o[2], -c, c)
        v = np.pi * a * b * ((t2 - t1) - (t2**3 - t1**3) / (3 * c * c))
        if v > 0:
            out[nb - k] = float(v)
    return out


def supersampled(tilt: float, lesion: tuple, les_img: Image, lev_img: Image, n: int = 5) -> dict[int, float]:
    """Volume of the ellipsoid per level of ``lev_img`` (level 0: no level): ``n^3`` points per
    lesion-grid voxel, each point's level from ``lev_img``'s voxel holding it."""
    u, e1, e2 = _frame(tilt)
    o, (a, b, c) = lesion
    A = les_img.grid.affine
    Ai = np.linalg.inv(A)
    Li = np.linalg.inv(lev_img.grid.affine)
    ldat = np.asarray(lev_img.data)
    cen = o[0] * e1 + o[1] * e2 + o[2] * u
    rr = max(a, b, c) + 1.0
    i0 = np.floor(Ai[:3, :3] @ (cen - rr) + Ai[:3, 3]).astype(int)
    i1 = np.ceil(Ai[:3, :3] @ (cen + rr) + Ai[:3, 3]).astype(int)
    g = np.stack(np.meshgrid(*[np.arange(i0[d], i1[d] + 1) for d in range(3)], indexing="ij"), -1).reshape(-1, 3)
    sub = (np.arange(n) + 0.5) / n - 0.5
    off = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)
    pts = ((g[:, None, :] + off[None]).reshape(-1, 3)) @ A[:3, :3].T + A[:3, 3]
    q = pts - cen
    pts = pts[((q @ e1) / a) ** 2 + ((q @ e2) / b) ** 2 + ((q @ u) / c) ** 2 <= 1]
    vi = np.floor(pts @ Li[:3, :3].T + Li[:3, 3] + 0.5).astype(int)
    ok = np.all((vi >= 0) & (vi < np.array(ldat.shape)), axis=1)
    lv = np.zeros(len(pts), int)
    lv[ok] = ldat[tuple(vi[ok].T)]
    vals, cnt = np.unique(lv, return_counts=True)
    dv = abs(np.linalg.det(A[:3, :3])) / n**3
    return {int(v): float(k) * dv for v, k in zip(vals, cnt, strict=True)}


def _errors(tilt: float, h_levels: float = 0.5, seeds: int = 8) -> tuple[np.ndarray, np.ndarray, list]:
    """Per (case, lesion, level with > 1 mm3 of truth): reported - truth, analytic and super-sampled
    (mm3); lesion offsets uniform in +-0.5 mm (seed 0)."""
    ea, es, rows = [], [], []
    for d in np.random.default_rng(0).uniform(-0.5, 0.5, size=(seeds, 3)):
        L = [((o[0] + d[0], o[1] + d[1], o[2] + d[2]), abc) for o, abc in LESIONS]
        les, cord, lev = phantom(tilt, L)
        if h_levels != 0.5:
            lev = phantom(tilt, L, h=h_levels, shape=tuple(int(round(n * 0.5 / h_levels)) for n in les.shape))[2]
        rep = analyze_lesions(les, cord, levels=lev)
        assert rep.n_lesions == 2
        for x, lesion in zip(rep.lesions, sorted(L, key=lambda t: -t[0][2]), strict=True):  # numbered from the top
            ta, ts = analytic(lesion), supersampled(tilt, lesion, les, lev)
            assert x.volume_no_level_mm3 == 0.0 and ts.get(0, 0.0) == 0.0  # inside the labelled cord
            assert set(x.volume_per_level_mm3) <= set(ts)
            for k in ta:
                if ta[k] > 1.0:
                    got = x.volume_per_level_mm3.get(k, 0.0)
                    ea.append(got - ta[k])
                    es.append(got - ts.get(k, 0.0))
            rows.append((x, ta, ts))
    return np.array(ea), np.array(es), rows


def _rasterised_per_level(les: Image, lev: Image) -> dict[int, float]:
    """Voxel count per level of the lesion mask as rasterised above (voxel centre inside), the level
    at each voxel centre: numpy here, not the code under test."""
    m = np.asarray(les.data) > 0
    vals, cnt = np.unique(np.asarray(lev.data)[m], return_counts=True)
    dv = abs(np.linalg.det(les.grid.affine[:3, :3]))
    return {int(v): float(c) * dv for v, c in zip(vals, cnt, strict=True)}


@pytest.mark.parametrize("tilt", [0.0, 25.0])
def test_volume_per_level_against_truth(tilt):
    """8 sub-voxel offsets of the two lesions (seed 0), 29 (lesion, level) pairs with over 1 mm3 of
    analytic volume (per-level truths 2.1 to 54.4 mm3). Measured, reported - truth (mm3), 0 / 25 deg:
    super-sampled truth max |err| 1.591 / 1.548, mean |err| 0.414 / 0.442, mean -0.058 / -0.125
    (the lesion mask's rasterisation: its total volume is off by -3.7..+2.1 %); analytic truth max
    |err| 2.510 / 1.603, mean |err| 1.207 / 0.485 (plus the levels image's staircase: the boundary
    at -6.3 mm lies 0.05 mm from a voxel centre of the straight grid, 0.2 mm from the voxel edge
    where a voxel count puts it)."""
    ea, es, _ = _errors(tilt)
    assert len(ea) == 29
    ref = {0.0: (1.591, 0.414, 2.510, 1.207), 25.0: (1.548, 0.442, 1.603, 0.485)}[tilt]
    assert np.abs(es).max() < 1.1 * ref[0] and np.abs(es).mean() < 1.1 * ref[1]
    assert abs(es.mean()) < 0.15
    assert np.abs(ea).max() < 1.1 * ref[2] and np.abs(ea).mean() < 1.1 * ref[3]
    # the voxel-wise definition, exactly: the mask's voxels counted per level with numpy
    les, cord, lev = phantom(tilt, LESIONS)
    rep = analyze_lesions(les, cord, levels=lev)
    want = _rasterised_per_level(les, lev)
    assert 0 not in want
    assert rep.load_per_level_mm3 == pytest.approx(want, abs=1e-9)
    assert rep.load_no_level_mm3 == 0.0


@pytest.mark.parametrize("tilt", [0.0, 25.0])
def test_levels_on_a_coarser_grid(tilt):
    """Levels image on a 1 mm grid (sampled nearest-neighbour onto the 0.5 mm lesion grid; every
    lesion voxel centre lies on a 1 mm voxel face along each axis, the ties of the nearest
    neighbour). Measured (0 / 25 deg), against the super-sampled truth of that 1 mm image: max |err|
    1.510 / 1.471 mm3, mean |err| 0.419 / 0.414; against the analytic truth 2.996 / 2.103, mean
    1.756 / 0.629 (the 1 mm staircase)."""
    ea, es, _ = _errors(tilt, h_levels=1.0)
    ref = {0.0: (1.510, 0.419, 2.996, 1.756), 25.0: (1.471, 0.414, 2.103, 0.629)}[tilt]
    assert np.abs(es).max() < 1.1 * ref[0] and np.abs(es).mean() < 1.1 * ref[1]
    assert np.abs(ea).max() < 1.1 * ref[2] and np.abs(ea).mean() < 1.1 * ref[3]


def test_voxel_order_and_flips_give_identical_levels():
    """Lesion, cord and levels stored in other axis orders / flipped (affine adjusted), together or
    the levels image alone, on the lesion's grid or a 1 mm one: identical per-level volumes."""
    for h_lev in (0.5, 1.0):
        les, cord, lev = phantom(25.0, LESIONS)
        if h_lev != 0.5:
            lev = phantom(25.0, LESIONS, h=1.0, shape=(36, 16, 40))[2]
        base = analyze_lesions(les, cord, levels=lev)
        assert len(base.load_per_level_mm3) == 4
        for perm, flip in [((2, 0, 1), 0), ((1, 2, 0), 2), ((0, 1, 2), 1), ((0, 2, 1), 2)]:
            for rep in (analyze_lesions(reordered(les, perm, flip), reordered(cord, perm, flip),
                                        levels=reordered(lev, perm, flip)),
                        analyze_lesions(les, cord, levels=reordered(lev, perm, flip))):
                for a, b in zip(base.lesions, rep.lesions, strict=True):
                    assert a.volume_per_level_mm3 == b.volume_per_level_mm3
                    assert a.volume_no_level_mm3 == b.volume_no_level_mm3 and a.levels == b.levels
                assert rep.load_per_level_mm3 == base.load_per_level_mm3


def test_sum_over_levels_and_no_level(tmp_path):
    """Per-level volumes sum to ``volume [mm3]`` when the lesion lies in the labelled cord; a lesion
    crossing the cord's edge (sphere-like ellipsoid centred 3.2 mm off the axis) has its part off the
    cord voxels in ``vol_no_level`` (PAM50_levels labels the cord only, as SCT's voxel-wise
    ``im_vert * im_lesion``): measured 28.5 mm3 = 18.25 (level 3) + 6.75 (level 2) + 3.5 (no level);
    super-sampled truth 3.892 mm3 without level (error -0.392 mm3, the mask's rasterisation). With levels everywhere the sum is the volume again."""
    les, cord, lev = phantom(0.0, LESIONS)
    for x in analyze_lesions(les, cord, levels=lev).lesions:
        assert sum(x.volume_per_level_mm3.values()) == pytest.approx(x.volume_mm3, abs=1e-9)
        assert x.volume_no_level_mm3 == 0.0
    edge = ((3.2, 0.0, 0.0), (1.5, 1.5, 3.0))
    les, cord, lev = phantom(0.0, [edge])
    rep = analyze_lesions(les, cord, levels=lev)
    x = rep.lesions[0]
    assert x.volume_mm3 == pytest.approx(28.5) and x.volume_per_level_mm3 == pytest.approx({2: 6.75, 3: 18.25})
    assert x.volume_no_level_mm3 == pytest.approx(3.5)
    assert sum(x.volume_per_level_mm3.values()) + x.volume_no_level_mm3 == pytest.approx(x.volume_mm3, abs=1e-9)
    ts = supersampled(0.0, edge, les, lev)
    assert ts[0] == pytest.approx(3.892, abs=0.001)
    assert x.volume_no_level_mm3 - ts[0] == pytest.approx(-0.392, abs=0.04)
    assert rep.load_no_level_mm3 == pytest.approx(3.5) and any("no level" in n for n in rep.notes)
    assert rep.totals()["load_no_level_mm3"] == 3.5
    # CSV: the per-level columns and vol_no_level; without a levels image neither, and no note
    row = next(csv.DictReader(csv_text(rep).splitlines()))
    assert row["vol_level_2 [mm3]"] == "6.75" and row["vol_level_3 [mm3]"] == "18.25" and row["vol_no_level [mm3]"] == "3.5"
    plain = analyze_lesions(les, cord)
    assert "vol_no_level [mm3]" not in csv_text(plain) and plain.totals()["load_no_level_mm3"] is None
    assert not any("no level" in n for n in plain.notes)
    _, _, lev_all = phantom(0.0, [edge], levels_everywhere=True)
    y = analyze_lesions(les, cord, levels=lev_all).lesions[0]
    assert y.volume_no_level_mm3 == 0.0 and sum(y.volume_per_level_mm3.values()) == pytest.approx(y.volume_mm3)


def test_cli_levels(tmp_path):
    """``spinereg analyze-lesion --levels``: the CSV holds each lesion's per-level volumes as the API."""
    from spinereg.cli.main import main

    les, cord, lev = phantom(25.0, LESIONS)
    paths = {}
    for name, img in (("les", les), ("cord", cord), ("lev", lev)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(img.data), img.grid.affine), paths[name])
    out = tmp_path / "o"
    assert main(["analyze-lesion", "-m", str(paths["les"]), "-s", str(paths["cord"]), "--levels", str(paths["lev"]),
                 "-o", str(out)]) == 0
    rows = list(csv.DictReader((out / "les_analysis.csv").read_text().splitlines()))
    api = analyze_lesions(les, cord, levels=lev)
    assert len(rows) == 2
    for r, x in zip(rows, api.lesions, strict=True):
        for k, v in x.volume_per_level_mm3.items():
            assert float(r[f"vol_level_{k} [mm3]"]) == pytest.approx(v, abs=1e-4)
        assert float(r["vol_no_level [mm3]"]) == 0.0
        assert r["levels"] == " ".join(str(k) for k in x.levels)


def test_bridge_sections_against_analytic(tmp_path):
    """Tissue bridges per section on the midsagittal plane (JSON ``bridge_sections``), straight cord
    with its exact centerline given (arc length s = z + 30 mm), ellipsoid 1.5 x 2 x 5 mm at across
    offset 0.2 u, A-P offset 0.8 + v, along offset w (u, v, w uniform in +-0.5, seed 1; 8 cases, 158
    sections). Truth per section centre z: ventral R - d - b', dorsal R + d - b', b' = b sqrt(1 -
    (x0 / a)^2 - ((z - z0) / c)^2). Measured: all sections -0.231..+0.312 mm, mean |err| 0.128;
    sections within 0.8 c of the centre -0.231..+0.263 mm (0.5 mm voxels). The smallest per-section
    values are the midsagittal_* columns."""
    from spinereg.cord import Centerline
    from spinereg.lesion.outputs import write_report

    cl = Centerline(np.array([0.0, 60.0]), np.array([[0, 0, -30.0], [0, 0, 30.0]]))
    a, b, c = 1.5, 2.0, 5.0
    ea, ei, n = [], [], 0
    for u, v, w in np.random.default_rng(1).uniform(-0.5, 0.5, size=(8, 3)):
        o = (0.2 * u, 0.8 + v, w)
        les, cord, _ = phantom(0.0, [(o, (a, b, c))])
        rep = analyze_lesions(les, cord, centerline=cl)
        x = rep.lesions[0]
        sec = np.array(x.bridge_sections)
        n += len(sec)
        z = sec[:, 0] - 30.0
        assert np.all(np.diff(z) > 0) and z.min() > o[2] - c - 0.5 and z.max() < o[2] + c + 0.5
        bh = b * np.sqrt(np.clip(1 - (o[0] / a) ** 2 - ((z - o[2]) / c) ** 2, 0, None))
        e = np.r_[sec[:, 2] - (R - o[1] - bh), sec[:, 1] - (R + o[1] - bh)]
        ea.append(e)
        ei.append(e[np.r_[np.abs(z - o[2]) < 0.8 * c, np.abs(z - o[2]) < 0.8 * c]])
        assert x.dorsal_bridge_mm == sec[:, 1].min() and x.ventral_bridge_mm == sec[:, 2].min()
    ea, ei = np.concatenate(ea), np.concatenate(ei)
    assert n == 158
    assert -0.231 * 1.1 < ea.min() and ea.max() < 0.312 * 1.1 and np.abs(ea).mean() < 0.128 * 1.1
    assert -0.231 * 1.1 < ei.min() and ei.max() < 0.263 * 1.1
    # in the JSON: one [s, dorsal, ventral] per section; a lesion off the plane has none
    files = write_report(rep, les, tmp_path / "o", stem_from="les.nii.gz")
    doc = json.loads(files["json"].read_text())
    assert np.allclose(doc["lesions"][0]["bridge_sections"], sec)
    # and in <lesion>_bridges.csv: one row per section, the same figures (4 decimals)
    rows = list(csv.DictReader(files["bridges"].read_text().splitlines()))
    assert [r["label"] for r in rows] == ["1"] * len(sec)
    table = np.array([[float(r[k]) for k in ("s [mm]", "dorsal_bridge [mm]", "ventral_bridge [mm]")] for r in rows])
    assert np.allclose(table, sec, atol=5e-5)
    side, _, _ = phantom(0.0, [((2.5, 0, 0), (0.8, 0.8, 2.0))])
    assert analyze_lesions(side, cord, centerline=cl).lesions[0].bridge_sections == []
