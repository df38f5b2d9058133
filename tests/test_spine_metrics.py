"""Spine measures on phantoms of known design.

Constant-tissue phantoms at fine voxels (0.4-0.5 mm) check the arithmetic: heights within 0.35 %
(lumbar) / 1.1 % (cervical), endplate and segmental angles within 0.08 / 0.40 degree, Cobb within
0.05 degree, disc-label angles within 0.27 degree (2 % and 1 degree were asserted before session 41),
VBQ and trabecular HU exact (trivially: every tissue is constant).
Realistic phantoms (marrow and soft-tissue texture 15 %, noise 5 %, partial volume from a grid
twice as fine) at clinical voxels give the honest figures (``REALISTIC``): lumbar at 1 mm, VBQ
within 0.8 %, mean trabecular HU within 2.2 HU, heights within 3.0 %, endplate angles within 0.26
degree, Cobb within 0.03 degree (seeds 0-2: VBQ 0.52 / 0.79 / 0.55 %, HU 2.16 / 1.48 / 1.41; heights
and angles depend only on the masks, not on the seed); cervical at 0.8 mm (14 mm tall bodies),
heights within 4.0 %, endplate angles within 3.5 degrees, Cobb within 0.42 and disc-label angles
within 0.47 degree (seeds 0-2 alike; session 41: 11 % and 4.0 degrees were written before, the
measure is better). Tests assert these with small margins."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from helpers import rotation
from spinereg.cli.main import main
from spinereg.io.image import save_image
from spinereg.metrics import spine as S
from spinereg.phantom.spine import make_spine_phantom


@pytest.fixture(scope="module")
def lumbar():
    # L1-L5, 30 degrees of lordosis, an anterior wedge fracture of L3 (anterior/posterior 0.7)
    return make_spine_phantom((20, 21, 22, 23, 24), lordosis_deg=30.0, wedge={22: 0.7})


@pytest.fixture(scope="module")
def cervical():
    # C2-C7, 25 degrees of lordosis, a mild wedge of C5
    return make_spine_phantom(tuple(range(2, 8)), height_mm=14.0, depth_mm=16.0, width_mm=20.0, disc_mm=5.0,
                              lordosis_deg=25.0, wedge={5: 0.8}, cortex_mm=1.0, voxel_mm=0.4,
                              cord_radius_mm=4.0, csf_radius_mm=6.0)


def test_vbq_exact(lumbar):
    r = S.vbq(lumbar.t1, lumbar.bodies, lumbar.csf)
    assert r.vbq == pytest.approx(lumbar.truth["vbq"], abs=1e-12)  # 115 / 50 = 2.3
    assert r.csf_median == lumbar.truth["csf_t1"]
    assert r.level_medians == {v: lumbar.truth["levels"][v]["marrow_t1"] for v in (20, 21, 22, 23)}


def test_trabecular_hu_exact_and_flags(lumbar):
    rows = {r.level: r for r in S.trabecular_hu(lumbar.ct, lumbar.bodies)}
    for v, r in rows.items():
        hu = lumbar.truth["levels"][v]["trabecular_hu"]
        assert r.mean_hu == hu and r.median_hu == hu and r.sd_hu == 0.0 and r.n_voxels > 1000
    assert [rows[v].flag for v in (20, 21, 22, 23, 24)] == [
        "normal", "normal", "osteopenia likely", "osteoporosis likely", "osteoporosis likely"]  # 200..80 HU


@pytest.mark.parametrize("which", ["lumbar", "cervical"])
def test_heights_within_2_percent(which, request):
    # measured max |rel. error|: lumbar heights 0.34 %, wedge 0.09 %, biconcave 0.30 %; cervical
    # 1.02 / 0.40 / 1.09 % (2 % asserted before session 41)
    rel = {"lumbar": 0.004, "cervical": 0.012}[which]
    ph = request.getfixturevalue(which)
    for h in S.vertebral_heights(ph.bodies):
        t = ph.truth["levels"][h.level]
        for got, key in ((h.anterior_mm, "height_anterior_mm"), (h.middle_mm, "height_middle_mm"),
                         (h.posterior_mm, "height_posterior_mm")):
            assert got == pytest.approx(t[key], rel=rel), (h.name, key)
        assert h.wedge_ratio == pytest.approx(t["wedge_ratio"], rel=rel)
        assert h.biconcave_ratio == pytest.approx(t["biconcave_ratio"], rel=rel)


def test_wedge_fracture_detected(lumbar):
    by = {h.level: h for h in S.vertebral_heights(lumbar.bodies)}
    assert by[22].wedge_ratio < 0.8 < min(by[v].wedge_ratio for v in (20, 21, 23, 24))


@pytest.mark.parametrize("which", ["lumbar", "cervical"])
def test_endplate_and_segmental_angles_within_1_degree(which, request):
    # measured max |error| (deg): lumbar endplates 0.068, segmental 0.076, Cobb 0.022; cervical
    # 0.28, 0.40, 0.045 (1 degree each asserted before session 41)
    endplate, segmental, cobb = {"lumbar": (0.09, 0.10, 0.05), "cervical": (0.31, 0.43, 0.07)}[which]
    ph = request.getfixturevalue(which)
    rows = S.endplate_angles(ph.bodies)
    for e in rows:
        t = ph.truth["levels"][e.level]
        assert abs(e.superior_deg - t["endplate_superior_deg"]) < endplate
        assert abs(e.inferior_deg - t["endplate_inferior_deg"]) < endplate
    seg = S.segmental_angles(rows)
    truth = ph.truth["disc_angles_deg"]
    assert len(seg) == len(truth)
    for got, want in zip(seg.values(), truth.values(), strict=True):
        assert abs(got - want) < segmental
    levels = sorted(ph.truth["levels"])
    assert abs(S.cobb_angle(rows, levels[0], levels[-1]) - ph.truth["cobb_deg"]) < cobb


def test_sagittal_tilt_is_read_in_the_bodys_own_plane():
    """An endplate normal tilted 12 deg towards posterior: 12 deg in the scanner's frame; the same
    body turned about S-I (its L-R axis with it) still 12 (the scanner's plane would read
    atan(tan 12 cos 40) = 9.3); pitched 5 deg about L-R, 17; an L-R axis along S-I falls back to
    the scanner's plane."""
    t = np.radians(12.0)
    n, lr = np.array([0.0, -np.sin(t), np.cos(t)]), np.array([1.0, 0.0, 0.0])
    assert S.sagittal_tilt_deg(n) == pytest.approx(12.0) and S.sagittal_tilt_deg(n, lr) == pytest.approx(12.0)
    for deg in (-40.0, 25.0, 40.0):
        r = rotation((0.0, 0.0, deg))
        assert S.sagittal_tilt_deg(r @ n, r @ lr) == pytest.approx(12.0)
    assert S.sagittal_tilt_deg(rotation((0.0, 0.0, 40.0)) @ n) == pytest.approx(np.degrees(np.arctan(np.tan(t) * np.cos(np.radians(40)))))
    # 5 deg about L-R (+x): +S turns towards posterior
    assert S.sagittal_tilt_deg(rotation((5.0, 0.0, 0.0)) @ n, lr) == pytest.approx(17.0)
    assert S.sagittal_tilt_deg(n, np.array([0.0, 0.05, 1.0])) == pytest.approx(12.0)


@pytest.mark.parametrize(("turn", "lean"), [(30.0, 0.0), (-40.0, 0.0), (20.0, 10.0)])
def test_body_tilts_and_heights_of_a_turned_subject(lumbar, turn, lean):
    """The body labels' header turned about S-I (and leaning about A-P): the same heights and
    endplate tilts (each body's tilts read in its own sagittal plane since session 34; before,
    in the scanner's: off by up to 1.9 / 3.4 / 3.9 deg)."""
    from spinereg.io.image import Image

    def measured(img):
        h = [[r.anterior_mm, r.middle_mm, r.posterior_mm] for r in S.vertebral_heights(img)]
        return np.array(h), np.array([[r.superior_deg, r.inferior_deg] for r in S.endplate_angles(img)])

    a = np.eye(4)
    a[:3, :3] = rotation((0.0, lean, turn))
    h0, t0 = measured(lumbar.bodies)
    h, t = measured(Image(np.asarray(lumbar.bodies.data), a @ lumbar.bodies.affine))
    # measured: equal to 3e-14 mm / deg (1e-3 mm and 0.01 deg asserted before session 41)
    np.testing.assert_allclose(h, h0, atol=1e-6)
    np.testing.assert_allclose(t, t0, atol=1e-6)


def test_c2_c7_cobb(cervical):
    rows = S.endplate_angles(cervical.bodies)
    cobb = S.cobb_angle(rows, 2, 7)
    assert cobb > 15  # lordosis is positive
    assert abs(cobb - cervical.truth["cobb_deg"]) < 0.07  # measured 0.045 (1.0 asserted before session 41)


def test_disc_label_angles_within_1_degree(cervical):
    got = S.disc_label_angles(cervical.discs)
    want = cervical.truth["disc_label_angles_deg"]
    assert got.keys() == want.keys()
    for k in want:  # measured 0.27 / 0.18 / 0.18 deg (1.0 asserted before session 41)
        assert abs(got[k] - want[k]) < 0.3, k


@pytest.mark.parametrize(("turn", "lean"), [(30.0, 0.0), (-40.0, 0.0), (20.0, 10.0)])
def test_disc_label_angles_of_a_turned_subject(cervical, turn, lean):
    """The disc labels' header turned about S-I (and leaning about A-P): the same angles (to 1e-4
    deg), read in the plane the discs lie in; unturned, the same as before (4.84, 5.04, 4.67 deg).
    Before session 34 they were read in the scanner's sagittal plane: off by 0.67 / 1.18 / 0.28 deg
    (a 30 deg turn shrinks each by ~13 %)."""
    from spinereg.io.image import Image

    img = cervical.discs
    a = np.eye(4)
    a[:3, :3] = rotation((0.0, lean, turn))
    got = S.disc_label_angles(Image(np.asarray(img.data), a @ img.affine))
    base = S.disc_label_angles(img)
    for k in base:
        # measured: equal to 4e-14 deg (0.01 asserted before session 41)
        assert got[k] == pytest.approx(base[k], abs=1e-6), (k, got[k], base[k])


def test_cord_curvature_over_levels(lumbar):
    c = S.cord_curvature(lumbar.cord, lumbar.bodies, (21, 23))
    k = lumbar.truth["cord_curvature_per_mm"]
    # measured: mean +1.2 %, max 1.56 k (rel 0.05 and max < 2 k asserted before session 41)
    assert c.mean_per_mm == pytest.approx(k, rel=0.015)
    assert k <= c.max_per_mm < 1.65 * k


def test_level_names():
    assert [S.level_name(v) for v in (2, 7, 8, 19, 20, 24)] == ["C2", "C7", "T1", "T12", "L1", "L5"]
    assert S.parse_level("L3") == 22 and S.parse_level("c2") == 2 and S.parse_level("19") == 19


def test_cli_writes_csv(lumbar, tmp_path):
    paths = {}
    for k in ("t1", "ct", "bodies", "csf", "cord"):
        paths[k] = save_image(getattr(lumbar, k), tmp_path / f"{k}.nii.gz")
    out = tmp_path / "spine"
    rc = main(["spine-metrics", "-b", str(paths["bodies"]), "--t1", str(paths["t1"]), "--csf", str(paths["csf"]),
               "--ct", str(paths["ct"]), "--cord", str(paths["cord"]), "--levels", "L2:L4", "-o", str(out)])
    assert rc == 0
    rows = list(csv.DictReader((out / "spine_metrics.csv").open()))
    vbq = [r for r in rows if r["measure"] == "vbq"]
    assert len(vbq) == 1 and float(vbq[0]["value"]) == pytest.approx(2.3)
    l3 = {r["measure"]: r for r in rows if r["name"] == "L3"}
    assert float(l3["hu_mean"]["value"]) == 140 and l3["hu_mean"]["flag"] == "osteopenia likely"
    assert float(l3["wedge_ratio"]["value"]) == pytest.approx(lumbar.truth["levels"][22]["wedge_ratio"], rel=0.02)
    assert any(r["measure"] == "cobb_angle" and r["name"] == "L2-L4" for r in rows)
    assert any(r["measure"] == "cord_curvature_mean" for r in rows)
    # a missing input: one line, exit 2, no CSV
    out2 = tmp_path / "bad"
    assert main(["spine-metrics", "--t1", str(paths["t1"]), "-o", str(out2)]) == 2
    assert not out2.exists()
    assert np.isfinite([float(r["value"]) for r in rows]).all()


def test_spine_values_appear_in_the_qc_report(lumbar, tmp_path):
    import json

    paths = {k: save_image(getattr(lumbar, k), tmp_path / f"{k}.nii.gz") for k in ("ct", "bodies")}
    out = tmp_path / "run"
    qc = tmp_path / "qc"
    assert main(["spine-metrics", "-b", str(paths["bodies"]), "--ct", str(paths["ct"]), "-o", str(out),
                 "--qc", str(qc)]) == 0
    assert json.loads((out / "provenance.json").read_text())["command"] == "spine-metrics"
    entries = json.loads((qc / "entries.json").read_text())["entries"]
    assert [e["command"] for e in entries] == ["spine-metrics"]
    figs = entries[0]["panels"]
    assert {f["title"] for f in figs} >= {"Vertebral heights (mm)", "Trabecular HU"}
    for f in figs:
        assert (qc / f["files"]["image"]).stat().st_size > 1000


#: measured on the realistic phantoms (see the module docstring): claim and test bound
REALISTIC = {
    # measured (session 41) seeds 0 / 1 / 2: VBQ 0.0052 / 0.0079 / 0.0055, HU 2.16 / 1.48 / 1.41,
    # heights 0.0303, endplates 0.255, Cobb 0.031 (every seed); bounds before: 0.011, 2.6, 0.034, 0.35, 0.12
    "lumbar": {"vbq_rel": (0.008, 0.0087), "hu_abs": (2.2, 2.35), "height_rel": (0.030, 0.032),
               "endplate_deg": (0.26, 0.28), "cobb_deg": (0.031, 0.05)},
    # measured seeds 0-2 alike: heights 0.0398, endplates 3.52, Cobb 0.422, disc labels 0.472
    # (claimed 0.11 / 4.0 before, bounds 0.12 / 4.3 / 0.5 / 0.55)
    "cervical": {"height_rel": (0.040, 0.043), "endplate_deg": (3.52, 3.75), "cobb_deg": (0.42, 0.45),
                 "disc_label_deg": (0.47, 0.50)},
}


def _realistic(which: str, seed: int):
    common = {"pv_factor": 2, "texture": 0.15, "noise": 0.05, "seed": seed}
    if which == "lumbar":
        return make_spine_phantom((20, 21, 22, 23, 24), lordosis_deg=30.0, wedge={22: 0.7}, voxel_mm=1.0, **common)
    return make_spine_phantom(tuple(range(2, 8)), height_mm=14.0, depth_mm=16.0, width_mm=20.0, disc_mm=5.0,
                              lordosis_deg=25.0, wedge={5: 0.8}, cortex_mm=1.0, voxel_mm=0.8,
                              cord_radius_mm=4.0, csf_radius_mm=6.0, **common)


def _geometry_errors(ph) -> dict[str, float]:
    he = []
    for h in S.vertebral_heights(ph.bodies):
        t = ph.truth["levels"][h.level]
        he += [abs(got / t[key] - 1) for got, key in ((h.anterior_mm, "height_anterior_mm"),
                                                       (h.middle_mm, "height_middle_mm"),
                                                       (h.posterior_mm, "height_posterior_mm"))]
    rows = S.endplate_angles(ph.bodies)
    ae = []
    for e in rows:
        t = ph.truth["levels"][e.level]
        ae += [abs(e.superior_deg - t["endplate_superior_deg"]), abs(e.inferior_deg - t["endplate_inferior_deg"])]
    lv = sorted(ph.truth["levels"])
    return {"height_rel": max(he), "endplate_deg": max(ae),
            "cobb_deg": abs(S.cobb_angle(rows, lv[0], lv[-1]) - ph.truth["cobb_deg"])}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_realistic_lumbar_at_the_claim(seed):
    ph = _realistic("lumbar", seed)
    got = _geometry_errors(ph)
    got["vbq_rel"] = abs(S.vbq(ph.t1, ph.bodies, ph.csf).vbq / ph.truth["vbq"] - 1)
    got["hu_abs"] = max(abs(r.mean_hu - ph.truth["levels"][r.level]["trabecular_hu"])
                        for r in S.trabecular_hu(ph.ct, ph.bodies))
    for key, (_claim, bound) in REALISTIC["lumbar"].items():
        assert got[key] <= bound, (key, got[key])
    # the realistic phantom is not the trivial one: HU and VBQ are no longer exact
    assert got["hu_abs"] > 0.1 and got["vbq_rel"] > 1e-4


def test_realistic_cervical_at_the_claim():
    ph = _realistic("cervical", 0)
    got = _geometry_errors(ph)
    want = ph.truth["disc_label_angles_deg"]
    got_d = S.disc_label_angles(ph.discs)
    got["disc_label_deg"] = max(abs(got_d[k] - want[k]) for k in want)
    for key, (_claim, bound) in REALISTIC["cervical"].items():
        assert got[key] <= bound, (key, got[key])


def _cropped_below(img, k0: int):
    """``img`` without its first ``k0`` slices along the third voxel axis (same world positions)."""
    from spinereg.io.image import Image

    aff = img.affine.copy()
    aff[:3, 3] += aff[:3, 2] * k0
    return Image(np.asarray(img.data)[:, :, k0:].copy(), aff)


def test_asked_cobb_range_that_cannot_be_measured_is_said(cervical):
    """``--levels C2:C7`` asks for the Cobb angle C2-C7: when C7 is cut by the field of view or not
    labelled, the row is there, NaN, with why. Before, it was left out of the CSV without a word
    (exit 0), as if nothing had been asked."""
    cut = _cropped_below(cervical.bodies, 30)  # C7 spans slices 10-52: cut by the new lower edge
    rows = [r for r in S.spine_metrics_rows(bodies=cut, levels="C2:C7") if r["measure"] == "cobb_angle"]
    assert len(rows) == 1 and rows[0]["name"] == "C2-C7" and np.isnan(rows[0]["value"]), rows
    assert rows[0]["flag"].startswith("not measured") and "C7" in rows[0]["flag"] and "cut" in rows[0]["flag"]
    no_c7 = cervical.bodies.with_data(np.where(np.asarray(cervical.bodies.data) == 7, 0, cervical.bodies.data))
    rows = [r for r in S.spine_metrics_rows(bodies=no_c7, levels="C2:C7") if r["measure"] == "cobb_angle"]
    assert len(rows) == 1 and np.isnan(rows[0]["value"]) and "C7 not labelled" in rows[0]["flag"], rows
    rows = [r for r in S.spine_metrics_rows(bodies=cut, levels="C2:C6") if r["measure"] == "cobb_angle"]
    assert len(rows) == 1 and np.isfinite(rows[0]["value"]) and rows[0]["flag"] == ""  # measurable: as before


def test_cord_curvature_range_ending_in_a_cut_body_is_flagged(lumbar):
    """``--cord --levels L2:L4`` with L4 cut by the field of view: the range ends at the centre of
    L4's visible part, not of L4; the curvature rows say so. Before, they were reported as L2-L4
    with no flag."""
    z = np.argwhere(np.asarray(lumbar.bodies.data) == 23)[:, 2]
    k0 = int((z.min() + z.max()) // 2) if z.min() > 0 else 0
    lower_first = np.argwhere(np.asarray(lumbar.bodies.data) == 24)[:, 2].mean() < z.mean()
    assert lower_first and k0 > 0  # L5 lies below L4 along the third axis: cropping below cuts L4
    bodies, cord = _cropped_below(lumbar.bodies, k0), _cropped_below(lumbar.cord, k0)
    rows = {r["measure"]: r for r in S.spine_metrics_rows(bodies=bodies, cord=cord, levels="L2:L4")}
    for m in ("cord_curvature_max", "cord_curvature_mean"):
        assert rows[m]["name"] == "L2-L4" and "L4 cut" in rows[m]["flag"], rows[m]
    whole = {r["measure"]: r for r in S.spine_metrics_rows(bodies=lumbar.bodies, cord=lumbar.cord, levels="L2:L4")}
    assert whole["cord_curvature_mean"]["flag"] == ""  # a whole range: unflagged, as before


def test_an_image_without_negative_values_is_refused_as_ct(lumbar, tmp_path):
    """``--ct`` given an MR image (or a CT stored without its rescale intercept): no voxel below 0,
    so no fat (about -100 HU) and no air (-1000). Before, its intensities were read as HU and
    flagged 'osteopenia likely' / 'osteoporosis likely' (sct_testing_data t2 with the bodies
    placed by its registration: 120-127 'HU', exit 0). Now exit 2, one line naming the file, no
    output folder. The phantom CT (fat at -80 HU) is measured as before."""
    from spinereg.errors import InputError

    assert [r.mean_hu for r in S.trabecular_hu(lumbar.ct, lumbar.bodies)][2] == 140  # L3, as before
    mr_like = lumbar.ct.with_data(np.asarray(lumbar.ct.data, np.float32) + 200.0)  # every voxel > 0
    with pytest.raises(InputError, match="no negative value"):
        S.trabecular_hu(mr_like, lumbar.bodies)
    ct = save_image(mr_like, tmp_path / "ct.nii.gz")
    bodies = save_image(lumbar.bodies, tmp_path / "bodies.nii.gz")
    out = tmp_path / "spine"
    assert main(["spine-metrics", "-b", str(bodies), "--ct", str(ct), "-o", str(out)]) == 2
    assert not out.exists()


def test_an_image_without_negative_values_is_refused_as_contrast_ct(cervical, tmp_path):
    """``--image IMG --contrast ct`` on an MR image: measured with CT's edge polarities, it gave
    other heights without a word (sct_testing_data t2, bodies placed by its registration: C4
    20.2 mm against 15.0 as t2; exit 0). Now refused as ``--ct`` is (exit 2, one line, no output)."""
    from spinereg.errors import InputError
    from spinereg.metrics.endplates import measure_endplates

    mr_like = cervical.ct.with_data(np.asarray(cervical.ct.data, np.float32) + 200.0)
    with pytest.raises(InputError, match="no negative value"):
        measure_endplates(mr_like, cervical.bodies, "ct")
    img = save_image(mr_like, tmp_path / "img.nii.gz")
    bodies = save_image(cervical.bodies, tmp_path / "bodies.nii.gz")
    out = tmp_path / "spine"
    assert main(["spine-metrics", "-b", str(bodies), "--image", str(img), "--contrast", "ct", "-o", str(out)]) == 2
    assert not out.exists()
