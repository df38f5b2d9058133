"""``spinereg csa`` on slices whose segmentation holds two or more separate pieces
(metrics.cord_pieces; morphometry's flags and means).

Truth from outside the method: a straight elliptic cylinder (semi-axes a = 6.5 mm RL, b = 4 mm AP,
centred 0.23 / 0.31 mm off the grid) and a disc of radius 1.5 mm whose centre lies 12 mm anterior
of the cylinder's axis (a gap of 6.5 mm) on some slices, each partial-volume voxelised here by 6 x 6
in-plane supersampling; binary phantoms are the maps thresholded at 0.5. The disc's share of the
section is pi r^2 / (pi a b + pi r^2) = 0.07965; the lone cylinder's section is 13 x 8 mm. Before
this change the shape of such a slice was that of both pieces together: AP 14.86 mm, RL 12.57,
orientation 89.3 deg, solidity 0.594 (binary, 0.5 mm grid) for a 13 x 8 mm cord. Everything here
is deterministic (no random seed).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from helpers import ORIENTATIONS, reoriented, save
from spinereg.cli.main import main
from spinereg.io.image import Image, load_image
from spinereg.metrics.cord_pieces import slice_pieces
from spinereg.metrics.cord_shape import SHAPE_FIELDS
from spinereg.metrics.morphometry import CSV_COLUMNS, cross_sectional_area
from test_csa_split import t2_with_a_blob

A, B, R, DY = 6.5, 4.0, 1.5, 12.0
SHARE = np.pi * R**2 / (np.pi * R**2 + np.pi * A * B)  # 0.079646


def _sections(zooms, *, soft: bool, sub: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-plane maps (ellipse, disc) and the affine of a grid holding them, 18 mm long."""
    zooms = np.asarray(zooms, float)
    n_ip = int(np.ceil(26.0 / zooms[0])) + 4
    shape = (n_ip, n_ip, int(round(18.0 / zooms[2])))
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = -(np.array(shape) - 1) / 2 * zooms
    i, j = np.meshgrid(np.arange(n_ip), np.arange(n_ip), indexing="ij")
    ell, disc = np.zeros((n_ip, n_ip)), np.zeros((n_ip, n_ip))
    f = (np.arange(sub) + 0.5) / sub - 0.5
    for di in f:
        for dj in f:
            x = (i + di) * zooms[0] + aff[0, 3] - 0.23
            y = (j + dj) * zooms[1] + aff[1, 3] - 0.31
            ell += (x / A) ** 2 + (y / B) ** 2 <= 1
            disc += x**2 + (y - DY) ** 2 <= R**2
    ell, disc = ell / sub**2, disc / sub**2
    if not soft:
        ell, disc = (ell >= 0.5).astype(float), (disc >= 0.5).astype(float)
    return ell, disc, aff


def _cord(zooms, *, soft: bool = False, blob_slices=()) -> tuple[Image, Image, float]:
    """(the cylinder with the disc on ``blob_slices``, the lone cylinder, the disc's area in mm2
    as voxelised); one dtype for both."""
    ell, disc, aff = _sections(zooms, soft=soft)
    nz = int(round(18.0 / zooms[2]))
    lone = np.repeat(ell[:, :, None], nz, 2)
    vol = lone.copy()
    for k in blob_slices:
        vol[:, :, k] = np.maximum(vol[:, :, k], disc)
    dt = np.float32 if soft else np.uint8
    return Image(vol.astype(dt), aff), Image(lone.astype(dt), aff), float(disc.sum() * zooms[0] * zooms[1])


def _shapes(res) -> np.ndarray:
    return np.array([[getattr(s.shape, f) for f in SHAPE_FIELDS] for s in res.slices])


# zooms, soft, slices with the disc, |diameter - 2a or 2b| of the lone cylinder (measured in the
# comment), |share - 0.07965| (measured)
CASES = [
    ((0.5, 0.5, 0.5), False, range(12, 18), 0.053, 0.0035),  # AP -0.0436, RL +0.0480 mm; share 0.07649
    ((0.5, 0.5, 0.5), True, range(12, 18), 0.003, 0.0003),  # +0.0021, +0.0024; 0.07951
    ((0.5, 0.5, 3.0), False, (2, 3), 0.053, 0.0035),  # as 0.5 iso: -0.0436, +0.0480; 0.07649
    ((0.5, 0.5, 3.0), True, (2, 3), 0.003, 0.0003),  # +0.0021, +0.0024; 0.07951
]


@pytest.mark.parametrize("zooms,soft,blob,tol,share_tol", CASES)
def test_largest_piece_shape_flags_and_means(zooms, soft, blob, tol, share_tol, caplog):
    img, lone, disc_mm2 = _cord(zooms, soft=soft, blob_slices=blob)
    with caplog.at_level("WARNING"):
        res = cross_sectional_area(img)
    ref = cross_sectional_area(lone)
    n = len(ref.slices)
    assert len(res.slices) == n
    # flags and counts: exact
    assert [s.slice for s in res.slices if s.split] == list(blob) == res.split_slices()
    assert [s.n_pieces for s in res.slices] == [2 if k in blob else 1 for k in range(n)]
    assert f"{len(blob)} slice(s) hold two or more separate pieces" in caplog.text
    assert "left out of the level and summary means" in caplog.text
    # every slice's shape (the disc's slices: the largest piece's) is the lone cylinder's, to the
    # last bit: the centerline is fitted through the largest pieces, so the disc does not tilt it
    # (measured: 0.0 difference on every slice)
    assert np.array_equal(_shapes(res), _shapes(ref))
    assert [s.centre_mm for s in res.slices] == [s.centre_mm for s in ref.slices]
    d = _shapes(ref)[:, :2].mean(0)  # diameter_ap_mm, diameter_rl_mm
    assert abs(d[0] - 2 * B) < tol and abs(d[1] - 2 * A) < tol, d
    for s, r in zip(res.slices, ref.slices, strict=True):
        if s.split:  # CSA counts both pieces: the disc's voxelised area exactly (6.75 / 7.056 mm2)
            assert s.area_slice_mm2 == pytest.approx(r.area_slice_mm2 + disc_mm2, abs=1e-6)
            assert s.outside_share == pytest.approx(disc_mm2 / s.area_slice_mm2, abs=1e-9)
            assert abs(s.outside_share - SHARE) < share_tol, s.outside_share
        else:
            assert (s.csa_mm2, s.area_slice_mm2, s.angle_deg, s.outside_share) == (
                r.csa_mm2, r.area_slice_mm2, r.angle_deg, 0.0)
    # means: the split slices left out, so the lone cylinder's mean over fewer slices
    m, sd, cnt = res.mean_over()
    assert cnt == n - len(blob) and m == pytest.approx(ref.mean_over()[0], rel=1e-12)
    assert res.shape_over()[0] == pytest.approx(ref.shape_over()[0], rel=1e-12)
    # averaged in on request: each adds the disc's area
    inc = cross_sectional_area(img, include_split=True)
    assert inc.mean_over()[2] == n
    assert inc.mean_over()[0] == pytest.approx(ref.mean_over()[0] + disc_mm2 * len(blob) / n, rel=1e-9)


@pytest.mark.parametrize("o", [ORIENTATIONS[13], ORIENTATIONS[42]])
def test_pieces_independent_of_voxel_order_and_flips(o):
    img, _, _ = _cord((0.5, 0.5, 3.0), blob_slices=(2, 3))
    ref, other = cross_sectional_area(img), cross_sectional_area(reoriented(img, *o))
    zs = sorted(round(s.centre_mm[2], 6) for s in ref.slices if s.split)
    assert sorted(round(s.centre_mm[2], 6) for s in other.slices if s.split) == zs and len(zs) == 2
    a, b = _shapes(ref), _shapes(other)
    if ref.slices[0].centre_mm[2] != other.slices[0].centre_mm[2]:
        b = b[::-1]
    assert np.allclose(a, b, rtol=1e-6, atol=1e-9), np.abs(a - b).max()
    assert sorted(s.outside_share for s in other.slices) == pytest.approx(sorted(s.outside_share for s in ref.slices))


def test_slice_pieces_connectivity_rim_and_faint_fragments():
    # two squares touching at one corner: one piece (8-connected, as SCT's regionprops)
    w = np.zeros((12, 12))
    w[2:6, 2:6] = 1
    w[6:9, 6:9] = 1
    p = slice_pieces(w)
    assert (p.n_pieces, p.outside_share, p.split) == (1, 0.0, False) and p.largest.sum() == 25
    # two cores (>= 0.5) joined by a faint bridge (0.3): two pieces, the bridge split by distance
    w = np.zeros((5, 16))
    w[1:4, 1:6] = 1.0  # 15 voxels
    w[1:4, 10:13] = 0.8  # 9 voxels, mass 7.2
    w[2, 6:10] = 0.3  # bridge: columns 6, 7 nearer the first core, 8, 9 the second
    p = slice_pieces(w)
    assert p.n_pieces == 2 and p.largest.sum() == 15 + 2
    assert p.outside_share == pytest.approx((7.2 + 0.6) / (15 + 7.2 + 1.2), abs=1e-12)
    # faint voxels touching no core (a soft mask's speck, an interpolated mask's ringing): no piece,
    # the slice is not split; their weight counts outside the largest
    w = np.zeros((10, 10))
    w[1:5, 1:5] = 1.0
    w[1:5, 0] = 0.2  # rim of the core
    w[8, 8] = 0.4
    w[0, 9] = 0.01
    p = slice_pieces(w)
    assert (p.n_pieces, p.split) == (1, False) and p.largest.sum() == 20
    assert p.outside_share == pytest.approx(0.41 / (16 + 0.8 + 0.41), abs=1e-12)
    # cores at half the slice's maximum (SCT's binarisation): a slice whose values stay under 0.5
    w = np.zeros((10, 10))
    w[1:4, 1:4] = 0.4
    w[6:9, 6:9] = 0.3
    p = slice_pieces(w)
    assert (p.n_pieces, p.split) == (2, True) and p.largest.sum() == 9


def test_level_all_of_whose_slices_are_split_reads_empty_not_nan(tmp_path, capsys):
    img, _, _ = _cord((0.5, 0.5, 3.0), blob_slices=(2, 3))
    z = np.arange(img.shape[2])[None, None, :]
    lev = Image(np.where(np.asarray(img.data) > 0, np.where((z == 2) | (z == 3), 4, 3), 0).astype(np.int16), img.affine)
    seg, lvp, out = save(img, tmp_path / "seg.nii.gz"), save(lev, tmp_path / "lev.nii.gz"), tmp_path / "c.csv"
    assert main(["csa", "-s", str(seg), "--levels", str(lvp), "--vert", "3:4", "-o", str(out)]) == 0
    rows = {r["scope"] + r["level"]: r for r in csv.DictReader(out.open())}
    assert rows["level4"]["csa_mm2"] == "" and rows["level4"]["n_slices"] == "0"
    assert rows["level4"]["n_split_slices"] == "2" and rows["level3"]["n_split_slices"] == "0"
    assert rows["levels 3:4"]["n_slices"] == "4" and rows["levels 3:4"]["n_split_slices"] == "2"
    printed = json.loads(capsys.readouterr().out)
    assert printed["levels"]["4"] is None and printed["split_in_summary"] == 2


def test_csa_cli_flags_split_slices(tmp_path, capsys, caplog):
    img, lone, disc_mm2 = _cord((0.5, 0.5, 0.5), blob_slices=range(12, 18))
    z = np.arange(img.shape[2])[None, None, :]
    lev = Image(np.where(np.asarray(img.data) > 0, np.where(z < 18, 3, 2), 0).astype(np.int16), img.affine)
    seg, lvp = save(img, tmp_path / "seg.nii.gz"), save(lev, tmp_path / "lev.nii.gz")
    out = tmp_path / "csa.csv"
    with caplog.at_level("WARNING"):
        assert main(["csa", "-s", str(seg), "--levels", str(lvp), "--vert", "2:3", "-o", str(out)]) == 0
    assert "6 slice(s) hold two or more separate pieces" in caplog.text
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_split_slices"] == 6 and printed["split_slices"] == list(range(12, 18))
    assert printed["split_in_summary"] == 6 and printed["split_averaged"] is False
    assert printed["n_slices"] == 30 and printed["csa_mean_mm2"] == pytest.approx(81.5, abs=1e-3)  # 326 voxels
    assert printed["shape"]["diameter_ap_mm"] == pytest.approx(7.9564, abs=1e-4)  # the lone cylinder's
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0].keys()) == CSV_COLUMNS and CSV_COLUMNS[-3:] == ["n_pieces", "outside_largest_share",
                                                                     "n_split_slices"]
    sl = [r for r in rows if r["scope"] == "slice"]
    assert [r["slice"] for r in sl if r["n_pieces"] == "2"] == [str(k) for k in range(12, 18)]
    assert {r["outside_largest_share"] for r in sl if r["n_pieces"] == "2"} == {"0.0765"}  # 27 / 353 voxels
    lv = {r["level"]: r for r in rows if r["scope"] == "level"}
    assert (lv["3"]["n_slices"], lv["3"]["n_split_slices"], lv["2"]["n_split_slices"]) == ("12", "6", "0")
    assert float(lv["3"]["diameter_AP_mm"]) == pytest.approx(7.9564, abs=1e-4)
    assert (rows[-1]["scope"], rows[-1]["n_slices"], rows[-1]["n_split_slices"]) == ("levels 2:3", "30", "6")
    out2 = tmp_path / "csa2.csv"
    assert main(["csa", "-s", str(seg), "--include-split", "-o", str(out2)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_slices"] == 36 and printed["split_averaged"] is True
    assert printed["csa_mean_mm2"] == pytest.approx(81.5 + 6.75 * 6 / 36, abs=1e-3)
    try:
        main(["csa", "-h"])
    except SystemExit:
        pass
    assert "n_pieces" in capsys.readouterr().out


# the summary rows spinereg csa wrote on sct_testing_data's t2 manual segmentation before this
# change (columns up to solidity_std): unchanged, as every other row (checked by a diff of the CSVs)
T2_ALL = "all,,,,,,77.4727,4.004,55,,,7.8227,0.3529,12.6119,0.4611,0.6214,0.0407,0.7818,0.0326,2.9882,2.0467,0.972,0.0126"
T2_LEVELS = ("levels 2:5,,,,,,77.6663,3.8724,52,,,7.8168,0.345,12.6535,0.4393,0.6188,0.0393,0.784,0.0312,2.976,"
             "1.9562,0.9717,0.0124")


@pytest.mark.realdata
def test_real_t2_with_a_blob_keeps_every_single_piece_row(sct_data, tmp_path, capsys):
    """t2's manual cord (one piece on all 55 slices) and the same plus a disc of 13 voxels 12 mm
    in front of the cord's centre on slices 20-25: the CSV rows of the other 49 slices identical
    byte for byte; those six keep the plain slices' shape columns and centre, their area grows by 13
    mm2, and the level / summary means are the plain ones over the slices left."""
    t2 = sct_data / "t2"
    t2_with_a_blob(sct_data, tmp_path / "blob.nii.gz")
    lev = str(t2 / "t2_seg-manual_labeled.nii.gz")
    got = {}
    for name, seg in (("plain", str(t2 / "t2_seg-manual.nii.gz")), ("blob", str(tmp_path / "blob.nii.gz"))):
        for tag, extra in (("", []), ("_lev", ["--levels", lev, "--vert", "2:5"])):
            out = tmp_path / f"{name}{tag}.csv"
            assert main(["csa", "-s", seg, *extra, "-o", str(out)]) == 0
            got[name + tag] = out.read_text().splitlines()
            capsys.readouterr()
    n_old = CSV_COLUMNS.index("solidity_std") + 1
    assert ",".join(got["plain"][-1].split(",")[:n_old]) == T2_ALL
    assert ",".join(got["plain_lev"][-1].split(",")[:n_old]) == T2_LEVELS
    for tag in ("", "_lev"):
        plain = [r for r in csv.DictReader(got["plain" + tag]) if r["scope"] == "slice"]
        withb = [r for r in csv.DictReader(got["blob" + tag]) if r["scope"] == "slice"]
        assert len(plain) == len(withb) == 55 and {r["n_pieces"] for r in plain} == {"1"}
        split = [r["slice"] for r in withb if r["n_pieces"] != "1"]
        assert split == [str(k) for k in range(20, 26)]
        for p, b in zip(plain, withb, strict=True):
            if b["slice"] in split:
                assert float(b["area_slice_mm2"]) == pytest.approx(float(p["area_slice_mm2"]) + 13.0, abs=1e-9)
                assert b["n_pieces"] == "2" and float(b["outside_largest_share"]) == pytest.approx(
                    13.0 / float(b["area_slice_mm2"]), abs=1e-4)
                same = [k for k in CSV_COLUMNS if k not in ("csa_mm2", "area_slice_mm2", "n_pieces",
                                                             "outside_largest_share")]
                assert [b[k] for k in same] == [p[k] for k in same]
            else:
                assert b == p
    # the summary: the plain slices' mean over the 49 single-piece slices (n_slices counts them)
    plain = cross_sectional_area(load_image(t2 / "t2_seg-manual.nii.gz"))
    keep = [s.csa_mm2 for s in plain.slices if not 20 <= s.slice <= 25]
    last = dict(zip(CSV_COLUMNS, next(csv.reader([got["blob"][-1]])), strict=True))
    assert (last["n_slices"], last["n_split_slices"]) == ("49", "6")
    assert float(last["csa_mm2"]) == pytest.approx(np.mean(keep), abs=1e-4)
