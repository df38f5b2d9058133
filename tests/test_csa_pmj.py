"""PMJ-based CSA (spinereg csa --pmj --pmj-distance --pmj-extent; metrics.pmj_distance).

Truth from outside the method: an analytic curved tube (tests/test_centerline.py ``tube``) cut
below a PMJ point placed on the analytic curve's continuation, distances by numerical
integration of the analytic curve's arc length, CSA pi r^2 cos(theta) of the tube's tilt; and
SCT's PAM50_small cord with its manual PMJ label against an independent numpy computation.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from helpers import reoriented, save
from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image
from spinereg.metrics.morphometry import cross_sectional_area
from test_centerline import _fx, _fy, tube

R = 4.0
TOP = 69  # last slice of the cut tube (z = 19.5 mm)


def _arc(z0: float, z1: float, n: int = 20001) -> float:
    z = np.linspace(z0, z1, n)
    p = np.column_stack([_fx(z), _fy(z), z])
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def _cos_tilt(z: np.ndarray) -> np.ndarray:
    """cos of the analytic curve's angle to S-I: the tube is a disc of radius R in each axial
    plane, so its perpendicular section is pi R^2 cos(theta) (to first order in curvature)."""
    h = 1e-4
    dx = (_fx(z + h) - _fx(z - h)) / (2 * h)
    dy = (_fy(z + h) - _fy(z - h)) / (2 * h)
    return 1.0 / np.sqrt(1.0 + dx**2 + dy**2)


def _cut_tube() -> tuple[Image, np.ndarray]:
    img = tube(shape=(64, 64, 100), radius=R)
    d = img.data.copy()
    d[:, :, TOP + 1:] = 0
    kz = np.arange(100)
    z = img.grid.voxel_to_world(np.column_stack([0 * kz, 0 * kz, kz]))[:, 2]
    return Image(d, img.affine), z


def _pmj_at(point: np.ndarray) -> Image:
    """A 3 x 3 x 3, 1 mm label image whose centre voxel (valued 50, as sct_detect_pmj) is ``point``."""
    aff = np.eye(4)
    aff[:3, 3] = np.asarray(point) - 1.0
    data = np.zeros((3, 3, 3), np.float32)
    data[1, 1, 1] = 50
    return Image(data, aff)


@pytest.fixture(scope="module")
def cut_tube():
    return _cut_tube()


@pytest.mark.parametrize(("gap", "bias", "distance", "moved"), [
    # gap: arc length (mm) of the analytic curve from the top slice to the PMJ; bias: measured
    # (distance - analytic arc length), the straight extension's shortfall ~ k^2 L^3 / 6;
    # moved: slices the window gains / loses at each end for it (the slices are 1.03 mm apart)
    (10.0, -0.112, 30.0, 0),
    (20.0, -0.571, 40.0, 1),
])
def test_pmj_distance_analytic_tube(cut_tube, gap, bias, distance, moved):
    seg, z = cut_tube
    # the PMJ on the analytic curve's continuation, ``gap`` of arc length above the top slice
    zs = np.linspace(z[TOP], z[TOP] + 2 * gap, 4001)
    arcs = np.array([_arc(z[TOP], v, 2001) for v in zs])
    zp = float(np.interp(gap, arcs, zs))
    pmj = _pmj_at(np.array([_fx(zp), _fy(zp), zp]))
    ks = np.arange(TOP + 1)
    truth = np.array([_arc(z[k], zp) for k in ks])
    # a window of 20 slices from ``distance + 10`` mm down, its edges midway between slices (by the
    # analytic distances)
    i0 = int(np.argmin(np.abs(truth - (distance + 10))))
    hi, lo = 0.5 * (truth[i0 - 1] + truth[i0]), 0.5 * (truth[i0 + 19] + truth[i0 + 20])
    d, e = 0.5 * (lo + hi), hi - lo
    res = cross_sectional_area(seg, pmj=pmj, pmj_distance=d, pmj_extent=e)
    assert [s.slice for s in res.slices] == ks.tolist()
    dist = np.array([s.dist_pmj_mm for s in res.slices])
    err = dist - truth
    # every slice is off by the same amount (the extension's): mean -0.112 / -0.571 mm; along the
    # fitted centerline the spread is 0.0122 mm in both cases
    assert err.mean() == pytest.approx(bias, abs=0.01)
    assert np.ptp(err) < 0.014
    # the gap is counted from the centerline's top end, half a slice above the top slice's centre
    assert res.pmj.gap_mm == pytest.approx(dist[-1] - _arc(z[TOP], z[TOP] + 0.5), abs=0.01)
    # slices selected: those whose analytic distance is in the window (edges between slices)
    sel = [s.slice for s in res.slices if res.in_scope(s, None)]
    want = ks[np.abs(truth - d) <= e / 2]
    assert len(want) == 20 and len(sel) == 20
    # a 0.57 mm shortfall is more than half a slice (0.51 mm here): the window holds the slice
    # below its lower end instead of its top slice
    assert sel == (want - moved).tolist()
    # mean CSA over the window vs the analytic section pi R^2 cos(theta) at those slices
    m, sd, n = res.mean_over()
    true_mean = float(np.mean(np.pi * R**2 * _cos_tilt(z[np.array(sel)])))
    assert n == 20
    # measured 48.751 vs 48.662 (+0.18 %) and 48.764 vs 48.668 mm2: the soft tube's partial volume
    # on its 0.8 mm grid, as without a PMJ
    assert 0 < m - true_mean < 0.105
    whole = cross_sectional_area(seg)
    same = {s.slice: s.csa_mm2 for s in whole.slices}
    assert all(same[s.slice] == s.csa_mm2 for s in res.slices)  # the PMJ changes no slice's CSA


def test_pmj_voxel_orders_identical(cut_tube):
    seg, z = cut_tube
    zp = z[TOP] + 12.0
    pmj = _pmj_at(np.array([_fx(zp), _fy(zp), zp]))
    ref = cross_sectional_area(seg, pmj=pmj, pmj_distance=25.0, pmj_extent=16.0)
    ref_d = {tuple(np.round(s.centre_mm, 6)): (s.dist_pmj_mm, s.csa_mm2) for s in ref.slices}
    for perm, flips in (((0, 1, 2), (True, False, True)), ((2, 0, 1), (False, True, False))):
        r = cross_sectional_area(reoriented(seg, perm, flips), pmj=reoriented(pmj, perm, flips),
                                 pmj_distance=25.0, pmj_extent=16.0)
        got = {tuple(np.round(s.centre_mm, 6)): (s.dist_pmj_mm, s.csa_mm2) for s in r.slices}
        assert got.keys() == ref_d.keys()
        for k, (dd, cc) in got.items():
            assert dd == pytest.approx(ref_d[k][0], abs=1e-6) and cc == pytest.approx(ref_d[k][1], abs=1e-6)
        assert r.mean_over()[:2] == pytest.approx(ref.mean_over()[:2], abs=1e-6)
        assert r.mean_over()[2] == ref.mean_over()[2]


def _independent(seg_path, pmj_path, distance: float, extent: float, nfit: int = 10):
    """Numpy only: slice centres of mass (world), a polyline through them, extended straight from the
    top one along a line fitted to the top ``nfit`` centres, the PMJ projected onto that line;
    cumulative distance; per-slice area x |cos| of the polyline's tangent to the slice normal."""
    si = nib.load(str(seg_path))
    a = np.asarray(si.dataobj, float)
    aff = si.affine
    assert nib.aff2axcodes(aff)[2] in "SI"  # this file: LAS, slices along voxel axis 2
    pm = nib.load(str(pmj_path))
    lab = np.argwhere(np.asarray(pm.dataobj) > 0)
    assert len(lab) == 1
    p = (pm.affine @ np.r_[lab[0], 1.0])[:3]
    ks = np.flatnonzero(a.sum((0, 1)) > 0)
    ii, jj = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
    com = np.array([[(a[:, :, k] * ii).sum() / a[:, :, k].sum(), (a[:, :, k] * jj).sum() / a[:, :, k].sum(), k]
                    for k in ks])
    c = (aff @ np.c_[com, np.ones(len(ks))].T).T[:, :3]
    if c[-1, 2] < c[0, 2]:
        c, ks = c[::-1], ks[::-1]
    below_top = np.r_[np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1)[::-1])[::-1], 0.0]
    u = np.r_[np.polyfit(c[-nfit:, 2], c[-nfit:, :2], 1)[0], 1.0]
    u /= np.linalg.norm(u)
    dist = (p - c[-1]) @ u + below_top
    t = np.gradient(c, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    normal = np.cross(aff[:3, 0], aff[:3, 1])
    area = a.sum((0, 1))[ks] * np.linalg.norm(normal)
    csa = area * np.abs(t @ (normal / np.linalg.norm(normal)))
    sel = np.abs(dist - distance) <= extent / 2
    return dict(zip(ks.tolist(), dist, strict=True)), csa[sel].mean(), ks[sel].tolist()


@pytest.mark.parametrize(("distance", "extent", "mean_mm2", "n"), [(64.0, 30.0, 68.066, 15), (100.0, 20.0, 73.597, 10)])
def test_pmj_real_pam50_small(sct_data, distance, extent, mean_mm2, n):
    tpl = sct_data / "template" / "template"
    seg_p, pmj_p = tpl / "PAM50_small_cord.nii.gz", tpl / "PAM50_small_t2_pmj_manual.nii.gz"
    res = cross_sectional_area(load_image(seg_p), pmj=load_image(pmj_p), pmj_distance=distance, pmj_extent=extent)
    dist, mean, sel = _independent(seg_p, pmj_p, distance, extent)
    mine = {s.slice: s.dist_pmj_mm for s in res.slices}
    assert mine.keys() == dist.keys() and len(mine) == 199
    diff = np.array([mine[k] - dist[k] for k in mine])
    # measured: every slice 0.18-0.23 mm below the polyline's figure (mean -0.205): the smoothed
    # centerline is shorter than the polyline through 199 centres, and its end tangent differs
    assert np.abs(diff).max() < 0.25 and diff.mean() == pytest.approx(-0.205, abs=0.02)
    assert res.pmj.off_line_mm == pytest.approx(10.877, abs=0.01)  # the PMJ lies on the brainstem's front
    assert res.pmj.gap_mm == pytest.approx(40.771, abs=0.01)
    got = [s.slice for s in res.slices if res.in_scope(s, None)]
    assert got == sel
    m, _, count = res.mean_over()
    # measured 68.066 vs 68.064 and 73.597 vs 73.593 mm2 (same slices; 2 mm slices)
    assert count == n and m == pytest.approx(mean, abs=0.01) and m == pytest.approx(mean_mm2, abs=1e-3)


def test_pmj_cli_and_refusals(tmp_path, capsys, cut_tube):
    seg, z = cut_tube
    zp = z[TOP] + 12.0
    seg_p = save(seg, tmp_path / "seg.nii.gz")
    pmj_p = save(_pmj_at(np.array([_fx(zp), _fy(zp), zp])), tmp_path / "pmj.nii.gz")
    out = tmp_path / "csa.csv"
    assert main(["csa", "-s", str(seg_p), "--pmj", str(pmj_p), "--pmj-distance", "25", "--pmj-extent", "16",
                 "-o", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(out.open()))
    lib = cross_sectional_area(load_image(seg_p), pmj=load_image(pmj_p), pmj_distance=25, pmj_extent=16)
    last = rows[-1]
    assert last["scope"] == printed["scope"] == "pmj 25+-8"
    m, sd, n = lib.mean_over()
    assert float(last["csa_mm2"]) == pytest.approx(m, abs=1e-4) and int(last["n_slices"]) == n == 15
    assert printed["csa_mean_mm2"] == pytest.approx(m, abs=1e-3) and printed["pmj"]["window_mm"] == [17.0, 33.0]
    sl = [r for r in rows if r["scope"] == "slice"]
    assert len(sl) == TOP + 1 and all(r["dist_pmj_mm"] != "" for r in sl)
    assert [float(r["dist_pmj_mm"]) for r in sl] == pytest.approx([s.dist_pmj_mm for s in lib.slices], abs=1e-3)
    # --pmj alone: the distance column, the usual 'all' summary
    assert main(["csa", "-s", str(seg_p), "--pmj", str(pmj_p), "-o", str(tmp_path / "all.csv")]) == 0
    capsys.readouterr()
    assert list(csv.DictReader((tmp_path / "all.csv").open()))[-1]["scope"] == "all"

    g = seg.grid
    blank = np.zeros(g.shape, np.float32)
    two_d = np.zeros(g.shape, np.float32)
    two_d[32, 32, 80] = two_d[32, 32, 90] = 50  # 10 mm apart (one label is a point: within 3 mm)
    low = np.zeros(g.shape, np.float32)
    low[32, 32, 50] = 50  # inside the cord, below its top
    far = _pmj_at(np.array([_fx(zp) + 40.0, _fy(zp), zp]))
    lev = np.zeros(g.shape, np.float32)
    lev[np.asarray(seg.data) > 0] = 3
    files = {"none": Image(blank, g.affine), "two": Image(two_d, g.affine), "low": Image(low, g.affine),
             "far": far}
    paths = {k: save(v, tmp_path / f"{k}.nii.gz") for k, v in files.items()}
    lev_p = save(Image(lev, g.affine), tmp_path / "lev.nii.gz")
    bad = tmp_path / "bad.csv"
    cases = [
        (["--pmj", str(paths["none"]), "--pmj-distance", "25"], "holds no label"),
        (["--pmj", str(paths["two"]), "--pmj-distance", "25"], "several labels"),
        (["--pmj", str(paths["low"]), "--pmj-distance", "25"], "below the top of the cord segmentation"),
        (["--pmj", str(paths["far"]), "--pmj-distance", "25"], "from the cord's centerline extended"),
        (["--pmj", str(pmj_p), "--pmj-distance", "200"], "its slices lie 11.9-82.7 mm below it"),
        (["--pmj-distance", "25"], "--pmj-distance needs --pmj"),
        (["--pmj", str(pmj_p), "--pmj-distance", "25", "--levels", str(lev_p), "--vert", "3"], "give one"),
        (["--pmj", str(pmj_p), "--pmj-distance", "25", "--pmj-extent", "0"], "--pmj-extent must be > 0"),
    ]
    for args, words in cases:
        rc = main(["csa", "-s", str(seg_p), *args, "-o", str(bad)])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not bad.exists()
    with pytest.raises(InputError, match="needs the PMJ label"):
        cross_sectional_area(seg, pmj_distance=10.0)
