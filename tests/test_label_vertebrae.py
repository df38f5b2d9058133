"""Automatic vertebral labeling on real data, with truth the method does not use.

Truth: ``sct_testing_data/t2``'s manually labelled segmentation (its level boundaries along the
cord are discs; it numbers the cord one level lower than PAM50, so its boundary k|k+1 is disc
k+2), ``labels.nii.gz`` (mid-body of C3 and C5) for identity, and ``t1``'s
``init_label_vertebrae.txt`` (slice 55 = C2/C3). t1 and t2 are one subject in one world space
(their cords agree within 1 mm), which also shows that t2's own ``init_label_vertebrae.txt``
(``34,3``) is one level off: slice 34 of t2 is the C3/C4 disc.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spinereg.cord.centerline import Centerline
from spinereg.cord.landmarks import read_point_labels
from spinereg.io.image import load_image
from spinereg.vertebrae import label_vertebrae, level_name, level_number
from spinereg.vertebrae.init import init_from_slice

pytestmark = pytest.mark.realdata


def _t1_c2c3_world(sct_data) -> np.ndarray:
    seg = load_image(sct_data / "t1" / "t1w_seg-manual.nii.gz")
    text = (sct_data / "t1" / "init_label_vertebrae.txt").read_text().split()
    point, value = init_from_slice(text[1], seg)
    assert value == 3
    return point


def _t2_truth(sct_data) -> tuple[dict[int, float], Centerline, dict[int, float]]:
    """Disc arc lengths from the labelled segmentation's boundaries (PAM50 values) and the body
    labels' arc lengths, on the manual segmentation's centerline."""
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    lab = load_image(sct_data / "t2" / "t2_seg-manual_labeled.nii.gz")
    cl = Centerline.from_mask(seg)
    data = np.rint(np.asarray(lab.data)).astype(int)
    idx = np.argwhere(data > 0)
    s, _ = cl.project(lab.grid.voxel_to_world(idx))
    vals = data[tuple(idx.T)]
    discs = {}
    for k in np.unique(vals):
        if k + 1 in vals:  # boundary between its level k (above) and k + 1 (below) = disc k + 2
            lower = np.percentile(s[vals == k], 2)
            upper = np.percentile(s[vals == k + 1], 98)
            discs[int(k + 2)] = 0.5 * (lower + upper)
    bodies = read_point_labels(load_image(sct_data / "t2" / "labels.nii.gz"), "body")
    sb, _ = cl.project(bodies.points)
    return discs, cl, {int(v): float(x) for v, x in zip(bodies.values, sb, strict=True)}


def test_level_names():
    assert [level_name(v) for v in (1, 7, 8, 19, 20, 24)] == ["C1", "C7", "T1", "T12", "L1", "L5"]
    assert level_number("T1") == 8 and level_number("c3") == 3 and level_number(5) == 5


def test_t2_init_file_is_one_level_off(sct_data):
    """t2's init file names slice 34 C2/C3, but t1's C2/C3 (same world space) is 19 mm higher,
    where the labelled segmentation's top boundary and labels.nii.gz's body 3 say it is."""
    seg2 = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    p2, v2 = init_from_slice((sct_data / "t2" / "init_label_vertebrae.txt").read_text().split()[1], seg2)
    p1 = _t1_c2c3_world(sct_data)
    assert v2 == 3
    assert abs(p1[2] - p2[2] - 19.0) < 0.5  # one cervical vertebra apart (measured 19.0 mm)
    discs, cl, bodies = _t2_truth(sct_data)
    s2, _ = cl.project(p2[None])
    assert abs(s2[0] - discs[4]) < 1.6  # slice 34 is the C3/C4 disc (measured 1.49 mm off it)
    assert discs[4] < bodies[3]  # body 3 above the C3/C4 disc


def test_t1_c2c3_without_init(sct_data):
    """t1: C2/C3 within 2 mm of slice 55 without -initz (the issue's target; measured -0.24 mm,
    asserted within 0.02 of that (measured 0.0007); 0.1 before, 0.5 of the site before session 36), identity not ambiguous, and the next discs within 2 mm of t2's boundaries
    (same world space; measured -1.25, -0.09 mm, asserted within 1.35 / 0.11; 1.45 / 0.3 in session 32)."""
    img = load_image(sct_data / "t1" / "t1w.nii.gz")
    seg = load_image(sct_data / "t1" / "t1w_seg-manual.nii.gz")
    lab = label_vertebrae(img, seg, contrast="t1")
    assert not lab.ambiguous
    got = {d.value: d for d in lab.discs}
    assert 3 in got
    from spinereg.vertebrae.outputs import disc_landmarks

    lm = disc_landmarks(lab, img.grid)
    assert lm.kind == "disc" and lm.values.tolist() == [d.value for d in lab.discs if not d.estimated]
    assert [d.value for d in lab.discs if d.estimated] == [2]  # C1/C2 in view, placed by the spacing
    c2c3 = _t1_c2c3_world(sct_data)
    s_true, _ = lab.centerline.project(c2c3[None])
    assert abs(got[3].s - s_true[0] - (-0.24)) <= 0.02, got[3].s - s_true[0]
    discs, cl2, _ = _t2_truth(sct_data)
    for v, within in ((4, 1.35), (5, 0.11)):  # measured 1.248 / 0.089
        # the t2 truth's world point at that arc length, projected on t1's centerline
        s1, _ = lab.centerline.project(cl2.points(discs[v])[None])
        assert abs(got[v].s - s1[0]) <= within, (v, got[v].s, s1[0])


@pytest.fixture(scope="module")
def t2_labeled(sct_data):
    img = load_image(sct_data / "t2" / "t2.nii.gz")
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    # identity pinned from t1's init file (same subject, same world space): C2/C3 at z of t1's slice 55
    return label_vertebrae(img, seg, contrast="t2", init=(_t1_c2c3_world(sct_data), 3)), img, seg


def test_t2_positions_and_identity_with_init(sct_data, t2_labeled):
    """t2 with the C2/C3 disc pinned: every disc more than 5 mm inside the segmented cord on the
    labelled boundaries (the issue's mean <= 1.5 mm, max <= 3 mm; measured 0.80 / 1.05 mm: C3/C4
    -1.05, C4/C5 -0.55; asserted at 0.85 / 1.12; 0.9 / 1.2 in session 32) and every level right against
    labels.nii.gz. Not found: C5/C6, 2.5 mm from the bottom edge."""
    lab, _, _ = t2_labeled
    discs, cl, bodies = _t2_truth(sct_data)
    got = {d.value: d for d in lab.discs}
    errs = []
    inner = {v: s for v, s in discs.items() if 5.0 <= s <= cl.length - 5.0}
    assert sorted(inner) == [4, 5]
    for v, s_true in inner.items():
        assert v in got, f"disc {v} not found ({sorted(got)})"
        s_got, _ = cl.project(got[v].point[None])
        errs.append(abs(s_got[0] - s_true))
    assert np.mean(errs) <= 0.85 and np.max(errs) <= 1.12, errs  # measured 0.80 / 1.05
    for body, s in bodies.items():
        s_lab, _ = lab.centerline.project(cl.points(s)[None])
        assert lab.level_at(s_lab)[0] == body


def test_t2_without_init(sct_data):
    """Without -initz, the 55 mm t2 field of view (C2/C3 at its top edge, C5/C6 4 mm above its
    bottom): C2/C3, C3/C4 and C4/C5 found with the right identity (the C3-C4 step of the cord's
    width tells it from one level lower), mean / max absolute S-I error 0.80 / 1.05 mm against the
    labelled segmentation's boundaries, every body of labels.nii.gz in its level. The margin over
    the labeling one level lower is 1.31, under the 2.0 at which the labeling calls itself sure:
    it is flagged ambiguous, with that reason (with the automatic segmentation: 0.67 in session 32,
    1.85 in an earlier session). C5/C6, at the bottom edge with no band, is not
    reported."""
    img = load_image(sct_data / "t2" / "t2.nii.gz")
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    lab = label_vertebrae(img, seg, contrast="t2")
    discs, cl, bodies = _t2_truth(sct_data)
    assert [d.value for d in lab.discs] == [3, 4, 5]
    errs = [abs(cl.project(d.point[None])[0][0] - discs[d.value]) for d in lab.discs if d.value != 3]
    top, _ = cl.project(lab.discs[0].point[None])
    assert top[0] >= cl.length - 1.0  # C2/C3 at the top edge
    assert np.mean(errs) <= 0.85 and np.max(errs) <= 1.12, errs  # measured 0.80 / 1.05
    for body, s in bodies.items():
        s_lab, _ = lab.centerline.project(cl.points(s)[None])
        assert lab.level_at(s_lab)[0] == body
    assert lab.ambiguous and abs(lab.identity_margin - 1.31) <= 0.1 and lab.identity_margin < 2.0
    assert any("identity margin" in r for r in lab.report["ambiguous_reasons"])
    # flagged: every disc reports half the chain's confidence (none reaches the QC's 0.5)
    assert lab.report["confidence_scaled_by_flag"] == 0.5
    assert all(0.0 < d.confidence < 0.5 for d in lab.discs), [d.confidence for d in lab.discs]
    from spinereg.qc.labeling import warnings_of

    assert any("confidences are halved" in w for w in warnings_of(lab))


def test_flagged_confidence_scales_every_disc():
    """label._with_flag_confidence: a flagged labeling's discs keep their order of confidence at
    FLAGGED_CONFIDENCE of it; an unflagged one is untouched."""
    from spinereg.vertebrae.label import FLAGGED_CONFIDENCE, _with_flag_confidence
    from spinereg.vertebrae.result import Disc, VertebralLabeling

    def lab(ambiguous):
        discs = [Disc(v, 10.0 * v, np.zeros(3), c, 1.0, 0.0) for v, c in ((3, 0.9), (4, 0.6), (5, 0.2))]
        return VertebralLabeling(discs, None, 1.0, 1.0, ambiguous, 1, "chain", report={})

    flagged = _with_flag_confidence(lab(True))
    assert [d.confidence for d in flagged.discs] == pytest.approx([0.9 * FLAGGED_CONFIDENCE, 0.6 * FLAGGED_CONFIDENCE,
                                                                    0.2 * FLAGGED_CONFIDENCE])
    assert flagged.report["confidence_scaled_by_flag"] == FLAGGED_CONFIDENCE
    sure = _with_flag_confidence(lab(False))
    assert [d.confidence for d in sure.discs] == [0.9, 0.6, 0.2] and "confidence_scaled_by_flag" not in sure.report


def test_outputs_and_cli(sct_data, tmp_path):
    """CLI: labelled segmentation (levels), one voxel per disc, JSON; QC page; refuses to
    overwrite (exit 2, one line, nothing changed)."""
    d = sct_data / "t1"
    cmd = [sys.executable, "-m", "spinereg.cli.main", "label-vertebrae", "-i", str(d / "t1w.nii.gz"),
           "-s", str(d / "t1w_seg-manual.nii.gz"), "-c", "t1", "-o", str(tmp_path / "out"),
           "--qc", str(tmp_path / "qc")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    doc = json.loads((out / "t1w_discs.json").read_text())
    # C1/C2 (no disc band) in view: reported at the chain's place, marked estimated, and kept out
    # of the disc label file (the registration's landmarks)
    assert [x["name"] for x in doc["discs"]][:4] == ["C1/C2", "C2/C3", "C3/C4", "C4/C5"]
    assert doc["discs"][0].get("estimated") is True and "estimated" not in doc["discs"][1]
    assert [x["source"] for x in doc["discs"][:2]] == ["estimated", "band"]  # t1: no C1/C2 from the CSF
    assert all(0 <= x["confidence"] <= 1 for x in doc["discs"])
    labels = load_image(out / "t1w_labels-disc.nii.gz")
    vals = np.unique(np.asarray(labels.data))
    assert {3, 4, 5} <= set(vals.tolist()) and 2 not in vals
    assert all((np.asarray(labels.data) == v).sum() == 1 for v in vals if v)
    # the JSON says which discs the label file holds (it did not before session 49)
    assert [x["value"] for x in doc["discs"] if x["in_label_file"]] == sorted(int(v) for v in vals if v)
    assert doc["discs"][0]["in_label_file"] is False and "listed here only" in doc["label_file"]
    painted = np.asarray(load_image(out / "t1w_seg_labeled.nii.gz").data)
    seg = np.asarray(load_image(d / "t1w_seg-manual.nii.gz").data) > 0.5
    assert set(np.unique(painted[seg]).tolist()) <= {1, 2, 3, 4, 5, 6}
    assert (painted[~seg] == 0).all()
    # the run's entry in the HTML QC report: one page with the labeling picture and confidences
    entries = json.loads((tmp_path / "qc" / "entries.json").read_text())["entries"]
    (entry,) = [e for e in entries if e["command"] == "label-vertebrae"]
    assert entry["subject"] == "t1w" and (tmp_path / "qc" / "index.html").is_file()
    panels = json.dumps(entry)
    assert "C2/C3" in panels and "labeling.png" in panels
    assert not list(out.glob(".label-vertebrae-qc-*"))
    before = (out / "t1w_discs.json").stat().st_mtime_ns
    r2 = subprocess.run(cmd, capture_output=True, text=True)
    assert r2.returncode == 2 and len(r2.stderr.strip().splitlines()) == 1 and "overwrite" in r2.stderr
    assert (out / "t1w_discs.json").stat().st_mtime_ns == before


def test_cli_bad_initz(sct_data, tmp_path):
    d = sct_data / "t2"
    r = subprocess.run([sys.executable, "-m", "spinereg.cli.main", "label-vertebrae", "-i", str(d / "t2.nii.gz"),
                        "-s", str(d / "t2_seg-manual.nii.gz"), "-initz", "900,3", "-o", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "initz" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spinereg.cli.main", "label-vertebrae", *args],
                          capture_output=True, text=True)


def test_cli_bad_inputs_leave_nothing(sct_data, tmp_path):
    """Segmentation on another grid, empty segmentation: one line naming the file, exit 2, no
    output folder."""
    import nibabel as nib

    t2, t1 = sct_data / "t2", sct_data / "t1"
    r = _cli("-i", str(t2 / "t2.nii.gz"), "-s", str(t1 / "t1w_seg-manual.nii.gz"), "-o", str(tmp_path / "a"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "same voxel grid" in r.stderr
    seg = nib.load(str(t2 / "t2_seg-manual.nii.gz"))
    empty = tmp_path / "empty_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(seg.shape, np.uint8), seg.affine, seg.header), str(empty))
    r = _cli("-i", str(t2 / "t2.nii.gz"), "-s", str(empty), "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "empty" in r.stderr
    assert str(empty) in r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_field_of_view_cropped_to_the_cord(sct_data, tmp_path):
    """sct_testing_data's t2s: 9 axial slices over 60 mm of cord, but cropped to 24 x 27 mm
    around it, so no vertebral body is in view: one line saying so and what to do instead (before:
    "covers less than 1 cm of the cord"), exit 2, no output."""
    d = sct_data / "t2s"
    r = _cli("-i", str(d / "t2s.nii.gz"), "-s", str(d / "t2s_seg.nii.gz"), "-c", "t2s", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "field of view shows 26% of the 105 mm" in r.stderr and "wider field of view" in r.stderr
    assert not (tmp_path / "o").exists()


def test_cli_initlabel(sct_data, tmp_path):
    """-initlabel: a one-voxel disc label file pins that disc (t2's C2/C3 at t1's slice 55)."""
    import nibabel as nib

    from spinereg.io.resample import place_labels

    t2 = sct_data / "t2"
    img = load_image(t2 / "t2.nii.gz")
    lab = place_labels(_t1_c2c3_world(sct_data)[None], np.array([3]), img.grid, dtype=np.uint8)
    path = tmp_path / "init.nii.gz"
    nib.save(nib.Nifti1Image(lab, img.affine), str(path))
    r = _cli("-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"), "-c", "t2", "-initlabel",
             str(path), "-o", str(tmp_path / "out"), "--qc", str(tmp_path / "qc"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "t2_discs.json").read_text())
    assert [d["name"] for d in doc["discs"]] == ["C2/C3", "C3/C4", "C4/C5"] and doc["identity_source"] == "init"
    # the weak C3/C4 band is a gap: the QC entry says warn, with the reason
    (entry,) = json.loads((tmp_path / "qc" / "entries.json").read_text())["entries"]
    assert doc["gaps"] == ["C3/C4"] and entry["verdict"] == "warn" and "C3/C4" in entry["reasons"][0]


def test_cli_refuses_an_image_given_as_the_segmentation(sct_data, tmp_path):
    """t2.nii.gz as -s ran before (session 18) and wrote a labelling of nothing (no disc, a warning):
    now one line, exit 2, no output folder. A labelled segmentation (SCT's *_seg_labeled) is still
    a segmentation."""
    d = sct_data / "t2"
    r = _cli("-i", str(d / "t2.nii.gz"), "-s", str(d / "t2.nii.gz"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "not a mask" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    r = _cli("-i", str(d / "t2.nii.gz"), "-s", str(d / "t2_seg-manual_labeled.nii.gz"), "-c", "t2",
             "-o", str(tmp_path / "o2"))
    assert r.returncode == 0, r.stderr
