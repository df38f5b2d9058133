"""Cord shape per slice (spinereg csa's diameter_AP/RL, compression ratio, eccentricity,
orientation, solidity; metrics.cord_shape).

Truth from outside the method: elliptic cylinders (semi-axes a along RL, b along AP, in the plane
perpendicular to the cylinder's axis) partial-volume voxelised here by supersampling (6 x 6 samples
per voxel in plane for straight cylinders, 4 x 4 x 4 -- 4 x 4 x 8 on 3 mm slices -- for tilted
ones), centred 0.23 / 0.31 mm off the grid; the ellipse of the same second moments has diameters
2a, 2b and eccentricity sqrt(1 - (b/a)^2). The notched ellipse's solidity comes from a dense
polygon (200000 ellipse points, the notch's arc) and scipy's ConvexHull. Binary phantoms are the
partial-volume maps thresholded at 0.5. The errors asserted are those measured (in each comment)
plus a small margin; binary masks carry the grid's staircase (a fixed phase), hence their wider
bounds.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from helpers import ORIENTATIONS, reoriented, save
from spinereg.cli.main import main
from spinereg.io.image import Image, load_image
from spinereg.metrics.cord_shape import SHAPE_FIELDS
from spinereg.metrics.morphometry import CSV_COLUMNS, cross_sectional_area


def _frame(tilt_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(RL, AP, axis) of a cylinder tilted by ``tilt_deg`` from S-I towards anterior."""
    th = np.deg2rad(tilt_deg)
    t = np.array([0.0, np.sin(th), np.cos(th)])
    ap = np.array([0.0, 1.0, 0.0]) - t[1] * t
    ap /= np.linalg.norm(ap)
    return np.cross(ap, t), ap, t


def _phantom(zooms, a: float, b: float, *, rot: float = 0.0, tilt: float = 0.0, notch: float | None = None,
             sub=(6, 6, 1), nz: int | None = None, binary: bool = False) -> Image:
    """Elliptic cylinder (semi-axes a: RL, b: AP; rotated by ``rot`` deg about its axis from RL
    towards AP), optionally minus a disc of radius ``notch`` centred on its anterior edge."""
    zooms = np.asarray(zooms, float)
    ext = max(a, b) + 2 + (np.tan(np.deg2rad(tilt)) * 12 if tilt else 0)
    n_ip = int(np.ceil(2 * ext / zooms[0])) + 4
    nz = nz or max(int(round(16 / zooms[2])), 6)
    shape = (n_ip, n_ip, nz)
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = -(np.array(shape) - 1) / 2 * zooms
    rl, ap, _ = _frame(tilt)
    r = np.deg2rad(rot)
    e1, e2 = np.cos(r) * rl + np.sin(r) * ap, -np.sin(r) * rl + np.cos(r) * ap
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3).astype(float)
    acc = np.zeros(len(idx))
    fs = [(np.arange(s) + 0.5) / s - 0.5 for s in sub]
    offs = [(i, j, k) for i in fs[0] for j in fs[1] for k in fs[2]]
    for o in offs:
        p = (idx + o) @ aff[:3, :3].T + aff[:3, 3] - [0.23, 0.31, 0.0]
        u, v = p @ e1, p @ e2
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        if notch is not None:
            inside &= u**2 + (v - b) ** 2 > notch**2
        acc += inside
    w = (acc / len(offs)).reshape(shape)
    return Image((w >= 0.5).astype(np.uint8), aff) if binary else Image(w.astype(np.float32), aff)


def _shape(img: Image, inner: int = 3) -> dict[str, float]:
    """Mean shape over the slices, leaving ``inner`` at each end (the centerline's ends)."""
    res = cross_sectional_area(img)
    sl = res.slices[inner:len(res.slices) - inner]
    return {f: float(np.mean([getattr(s.shape, f) for s in sl])) for f in SHAPE_FIELDS}


# (zooms, a, b, binary, max |diameter error| mm): measured worst of AP/RL in the comment
ELLIPSES = [
    ((0.5, 0.5, 0.5), 6.5, 4.0, False, 0.006),  # 0.0024
    ((0.5, 0.5, 0.5), 7.0, 3.0, False, 0.006),  # 0.0036
    ((1.0, 1.0, 1.0), 6.5, 4.0, False, 0.006),  # 0.0037
    ((1.0, 1.0, 1.0), 7.0, 3.0, False, 0.035),  # 0.0295
    ((0.5, 0.5, 3.0), 6.5, 4.0, False, 0.006),  # 0.0024
    ((0.5, 0.5, 3.0), 7.0, 3.0, False, 0.006),  # 0.0036
    ((0.5, 0.5, 0.5), 6.5, 4.0, True, 0.055),  # 0.048
    ((0.5, 0.5, 0.5), 7.0, 3.0, True, 0.040),  # 0.0368
    ((1.0, 1.0, 1.0), 6.5, 4.0, True, 0.075),  # 0.0681
    ((1.0, 1.0, 1.0), 7.0, 3.0, True, 0.095),  # 0.0905
]


@pytest.mark.parametrize("zooms,a,b,binary,tol", ELLIPSES)
def test_ellipse_diameters_eccentricity_ratio(zooms, a, b, binary, tol):
    s = _shape(_phantom(zooms, a, b, binary=binary), inner=0)
    assert abs(s["diameter_rl_mm"] - 2 * a) < tol and abs(s["diameter_ap_mm"] - 2 * b) < tol, s
    # eccentricity 0.7882 / 0.9035: measured within 0.0012 (soft) / 0.0044 (binary)
    assert abs(s["eccentricity"] - np.sqrt(1 - (b / a) ** 2)) < (0.0015 if not binary else 0.005), s
    # ratio 0.6154 / 0.4286: measured within 0.0025 (soft) / 0.0056 (binary)
    assert abs(s["compression_ratio"] - b / a) < (0.003 if not binary else 0.0065), s
    assert s["compression_ratio"] == pytest.approx(s["diameter_ap_mm"] / s["diameter_rl_mm"], rel=1e-9)
    # major axis along RL: orientation measured 0.03-0.08 deg (soft), 0.22-1.51 deg (binary)
    assert s["orientation_deg"] < (0.1 if not binary else 1.7), s


# rot (deg), zooms, binary, diameter tol (mm), orientation tol (deg): measured in the comment
ROTATED = [
    (20.0, (0.5, 0.5, 0.5), False, 0.006, 0.02),  # 0.0029 mm, 0.010 deg
    (20.0, (1.0, 1.0, 1.0), False, 0.006, 0.08),  # 0.0009, 0.060
    (60.0, (0.5, 0.5, 0.5), False, 0.006, 0.02),  # 0.0010, 0.0025
    (60.0, (1.0, 1.0, 1.0), False, 0.012, 0.03),  # 0.0088, 0.016
    (20.0, (0.5, 0.5, 0.5), True, 0.14, 0.42),  # 0.123, 0.36
    (60.0, (1.0, 1.0, 1.0), True, 0.23, 0.52),  # 0.210, 0.46
]


@pytest.mark.parametrize("rot,zooms,binary,tol,otol", ROTATED)
def test_rotated_ellipse_orientation_and_sct_assignment(rot, zooms, binary, tol, otol):
    """The 13 x 8 mm ellipse turned about S-I: orientation = the major axis' angle from RL; SCT's
    rule gives RL = major below 45 deg and AP = major above (so AP/RL > 1 at 60 deg)."""
    s = _shape(_phantom(zooms, 6.5, 4.0, rot=rot, binary=binary), inner=0)
    assert abs(s["orientation_deg"] - rot) < otol, s
    major, minor = ("diameter_rl_mm", "diameter_ap_mm") if rot < 45 else ("diameter_ap_mm", "diameter_rl_mm")
    assert abs(s[major] - 13.0) < tol and abs(s[minor] - 8.0) < tol, s


# zooms, supersampling, binary, diameter tol (mm): measured in the comment
TILTED = [
    ((0.5, 0.5, 0.5), (4, 4, 4), False, 0.006),  # 0.0021
    ((1.0, 1.0, 1.0), (4, 4, 4), False, 0.016),  # 0.0129
    ((0.5, 0.5, 3.0), (4, 4, 8), False, 0.007),  # 0.0050
    ((1.0, 1.0, 1.0), (4, 4, 4), True, 0.035),  # 0.0261
    ((0.5, 0.5, 3.0), (4, 4, 8), True, 0.09),  # 0.080
]


@pytest.mark.parametrize("zooms,sub,binary,tol", TILTED)
def test_tilted_cord_gives_the_perpendicular_section(zooms, sub, binary, tol):
    """Cylinder axis 25 deg from S-I towards anterior: the axial cut's AP extent is 8 / cos 25 =
    8.83 mm; the section perpendicular to the cord keeps 13 x 8 mm."""
    img = _phantom(zooms, 6.5, 4.0, tilt=25.0, sub=sub, binary=binary, nz=max(int(24 / zooms[2]), 8))
    s = _shape(img)
    assert abs(s["diameter_rl_mm"] - 13.0) < tol and abs(s["diameter_ap_mm"] - 8.0) < tol, s
    assert abs(s["diameter_ap_mm"] - 8.0 / np.cos(np.deg2rad(25.0))) > 0.7


def _bean_solidity(a: float = 6.5, b: float = 4.0, r: float = 2.5) -> float:
    """Solidity of the ellipse minus the disc (radius r) centred on its anterior edge, from a dense
    polygon: the ellipse's points outside the disc and the disc's arc inside the ellipse, ordered by
    angle about (0, -2) (the shape is star-shaped about that point)."""
    t = np.linspace(0, 2 * np.pi, 200001)[:-1]
    ell = np.c_[a * np.cos(t), b * np.sin(t)]
    ell = ell[ell[:, 0] ** 2 + (ell[:, 1] - b) ** 2 > r**2]
    s = np.linspace(np.pi, 2 * np.pi, 100001)
    arc = np.c_[r * np.cos(s), b + r * np.sin(s)]
    arc = arc[(arc[:, 0] / a) ** 2 + (arc[:, 1] / b) ** 2 <= 1]
    poly = np.r_[ell, arc]
    poly = poly[np.argsort(np.arctan2(poly[:, 1] + 2.0, poly[:, 0]))]
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    return float(area / ConvexHull(poly).volume)


# zooms, binary, notch?, expected solidity, tol: measured in the comment
SOLIDITY = [
    ((0.5, 0.5, 0.5), False, True, None, 0.008),  # 0.9032 vs 0.8977: +0.0055
    ((1.0, 1.0, 1.0), False, True, None, 0.017),  # 0.9118: +0.0141
    ((0.5, 0.5, 0.5), True, True, None, 0.02),  # 0.8803: -0.0174
    ((1.0, 1.0, 1.0), True, True, None, 0.01),  # 0.9051: +0.0074
    ((0.5, 0.5, 0.5), False, False, 1.0, 0.003),  # 0.9978
    ((1.0, 1.0, 1.0), False, False, 1.0, 0.003),  # 0.9981
    ((0.5, 0.5, 0.5), True, False, 0.963, 0.003),  # 0.9630 (the binary staircase)
    ((1.0, 1.0, 1.0), True, False, 0.965, 0.003),  # 0.9649
]


@pytest.mark.parametrize("zooms,binary,notch,expected,tol", SOLIDITY)
def test_solidity_of_a_notched_and_a_convex_section(zooms, binary, notch, expected, tol):
    truth = _bean_solidity() if notch else expected
    assert abs(_bean_solidity() - 0.89767) < 1e-4  # dense-polygon truth: 72.416 / 80.671 mm2
    s = _shape(_phantom(zooms, 6.5, 4.0, notch=2.5 if notch else None, binary=binary), inner=0)
    assert abs(s["solidity"] - truth) < tol, s
    assert s["solidity"] <= 1.0


@pytest.mark.parametrize("o", [ORIENTATIONS[5], ORIENTATIONS[13], ORIENTATIONS[22], ORIENTATIONS[42]])
def test_shape_independent_of_voxel_order_and_flips(o):
    for img in (_phantom((1.0, 1.0, 1.0), 6.5, 4.0, tilt=25.0, rot=20.0, sub=(3, 3, 3), nz=24),
                _phantom((0.5, 0.5, 3.0), 7.0, 3.0, rot=60.0, binary=True)):
        ref, other = cross_sectional_area(img), cross_sectional_area(reoriented(img, *o))
        assert len(ref.slices) == len(other.slices)
        a = np.array([[getattr(s.shape, f) for f in SHAPE_FIELDS] for s in ref.slices])
        b = np.array([[getattr(s.shape, f) for f in SHAPE_FIELDS] for s in other.slices])
        if ref.slices[0].centre_mm[2] != other.slices[0].centre_mm[2]:
            b = b[::-1]  # the S-I voxel axis flipped: slices listed in the other order
        assert np.allclose(a, b, rtol=1e-6, atol=1e-9), np.abs(a - b).max()


def test_csa_cli_writes_the_shape_columns(tmp_path, capsys):
    img = _phantom((1.0, 1.0, 1.0), 6.5, 4.0, binary=True)
    lev = Image(np.where(np.asarray(img.data) > 0, 3, 0).astype(np.int16), img.affine)
    seg, lvp = save(img, tmp_path / "seg.nii.gz"), save(lev, tmp_path / "lev.nii.gz")
    out = tmp_path / "csa.csv"
    assert main(["csa", "-s", str(seg), "--levels", str(lvp), "--vert", "3", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0].keys()) == CSV_COLUMNS
    assert CSV_COLUMNS[:11] == ["scope", "slice", "level", "x_mm", "y_mm", "z_mm", "csa_mm2", "csa_std_mm2",
                                "n_slices", "area_slice_mm2", "angle_deg"]
    res = cross_sectional_area(load_image(seg))
    m, _ = res.shape_over()
    for row in (rows[-2], rows[-1]):  # the level row and the summary row
        assert float(row["diameter_AP_mm"]) == pytest.approx(m["diameter_ap_mm"], abs=1e-4)
        assert float(row["compression_ratio"]) == pytest.approx(m["compression_ratio"], abs=1e-4)
        assert float(row["solidity_std"]) == pytest.approx(0.0, abs=1e-4)
    assert rows[0]["diameter_RL_mm"] and rows[0]["diameter_RL_std_mm"] == ""
    printed = json.loads(capsys.readouterr().out)  # the summary the command prints: the same shape
    assert printed["shape"]["diameter_ap_mm"] == pytest.approx(m["diameter_ap_mm"], abs=1e-4)
    assert printed["shape"]["solidity"] == pytest.approx(m["solidity"], abs=1e-4)
    try:
        main(["csa", "-h"])
    except SystemExit:
        pass
    helptext = capsys.readouterr().out
    assert "diameter_AP_mm" in helptext and "solidity" in helptext


@pytest.mark.realdata
def test_real_t2_t1_manual_segmentations_agree_at_c4_c5(sct_data):
    """sct_testing_data's t2 and t1 manual cord segmentations (the same subject, hand-drawn on two
    images sharing the scanner's world space), levels 3 and 4 as t2_seg-manual_labeled numbers them
    (read at the t1 segmentation's world positions too): that file numbers the cord one level lower
    than PAM50 and labels.nii.gz (its 2 spans the C3 body), so these are the C4 and C5 bodies' slices. Measured (AP mm, RL mm, AP/RL, eccentricity,
    solidity): level 3 t2 7.877, 13.107, 0.601, 0.799, 0.973; t1 7.780, 12.175, 0.640, 0.768, 0.949;
    level 4 t2 7.524, 12.718, 0.592, 0.806, 0.967; t1 7.486, 12.072, 0.621, 0.783, 0.946 (T1's
    segmentation is the smaller: CSA 73.8 vs 81.1 mm2 at level 3).

    Broad ranges for healthy adults at C3-C5 (approximate, after the spine-generic multi-subject
    morphometry, Cohen-Adad et al., Sci Data 2021; not re-derived here): AP about 7-9 mm, RL about
    11-14 mm, AP/RL about 0.55-0.75. The assertion that carries weight is the agreement of the two
    independent hand segmentations.
    """
    lev = load_image(sct_data / "t2" / "t2_seg-manual_labeled.nii.gz")
    got = {}
    for name, path in (("t2", "t2/t2_seg-manual.nii.gz"), ("t1", "t1/t1w_seg-manual.nii.gz")):
        res = cross_sectional_area(load_image(sct_data / path), lev)
        got[name] = {lv.level: lv.shape_mean for lv in res.levels}
    tol = {"diameter_ap_mm": 0.15, "diameter_rl_mm": 1.0, "compression_ratio": 0.045, "eccentricity": 0.036,
           "solidity": 0.028}  # measured 0.097 / 0.932 / 0.039 / 0.031 / 0.024 (worst of levels 3, 4)
    for level in (3, 4):
        t2, t1 = got["t2"][level], got["t1"][level]
        for f, tl in tol.items():
            assert abs(t2[f] - t1[f]) < tl, (level, f, t2[f], t1[f])
        for s in (t2, t1):
            assert 7.0 < s["diameter_ap_mm"] < 9.0 and 11.0 < s["diameter_rl_mm"] < 14.0, s
            assert 0.55 < s["compression_ratio"] < 0.75 and 0.9 < s["solidity"] <= 1.0, s
            assert s["orientation_deg"] < 10.0, s
    assert got["t2"][3]["diameter_ap_mm"] == pytest.approx(7.877, abs=0.005)
    assert got["t2"][3]["diameter_rl_mm"] == pytest.approx(13.107, abs=0.005)
