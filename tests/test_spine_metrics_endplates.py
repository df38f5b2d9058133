"""Subject vertebral heights and endplate tilts measured through the registration (issue 15, item 5):
the template's bodies placed by the registration say which level is where, the endplates are
located in the image (spinereg.metrics.endplates).

Truth:
- real ``sct_testing_data/t2``: the reference endplates of ``tests/spine_reference_t2.py``
  (manual-style 6-point morphometry on the mid-sagittal slab, no registration; frozen in its own
  commit before the method was scored). t2 shows C3 and C4 whole, C5 without its inferior disc,
  C2 and C6 hardly at all.
- articulated phantoms (PAM50's vertebrae moved rigidly, MR and CT contrasts, 1 mm voxels): the
  extent of the template's body label along the very lines the method measured on, pulled
  through the exact truth field (geometry, not intensities); for tilts, the endplate measured on
  the phantom's template image turned by the vertebra's known rotation (a body moved rigidly
  must show the same endplate turned by the same angle).
- the analytic spine phantom (spinereg.phantom.spine: flat trapezoid bodies, texture, noise,
  partial volume; no PAM50): its design tilts.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from spinereg.metrics.endplates import find_edge

STEP = 0.25


def _profile(top: float, bottom: float, fov=(-20.0, 20.0), blur_mm: float = 0.6, disc: float = 1.5,
             marrow: float = 1.0, cortex: float = 0.3, s_range=16.0):
    """A T2-like column: marrow between dark cortical lines (1 mm) at ``bottom``/``top``, bright
    discs (4 mm) beyond, marrow again; blurred; NaN outside ``fov``."""
    from scipy import ndimage

    s = np.arange(-s_range, s_range + 1e-9, STEP)
    p = np.full_like(s, marrow)
    for e, side in ((top, 1), (bottom, -1)):
        inside = side * (s - e)
        p[(inside < 0) & (inside >= -1.0)] = cortex
        p[(inside >= 0) & (inside < 4.0)] = disc
    p = ndimage.gaussian_filter1d(p, blur_mm / STEP)
    p[(s < fov[0]) | (s > fov[1])] = np.nan
    return s, p


def test_find_edge_locates_the_disc_bone_boundary():
    s, p = _profile(7.3, -6.9)
    for side, want, prior, off in ((1, 7.3, 5.0, 0.30), (-1, -6.9, -4.0, 0.20)):
        got, why = find_edge(s, p, prior, side, +1, 4.5, 1.0)
        # the blurred 1 mm dark line pulls the steepest edge outwards (into the disc): measured 0.302
        # (superior) / 0.202 mm (inferior) here (T2; 0 < offset < 0.4 asserted before session 41)
        assert why == "" and abs(side * (got - want) - off) < 0.02, (side, got)
    # CT-like: bright cortex, dark disc -> polarity -1
    s, p = _profile(7.3, -6.9, disc=0.4, marrow=1.0, cortex=3.0)
    got, why = find_edge(s, p, 6.0, 1, -1, 4.5, 1.0)
    assert why == "" and abs(got - 7.3 - 0.365) < 0.02, got  # measured 0.365 mm (bright cortex; < 0.4 before)


def test_find_edge_refuses_a_disc_outside_the_image():
    # the image ends 1 mm beyond the superior endplate: its disc is not there
    s, p = _profile(7.3, -6.9, fov=(-20.0, 8.3))
    got, why = find_edge(s, p, 6.0, 1, +1, 4.5, 1.0)
    assert np.isnan(got) and "disc" in why
    # no disc at all (marrow on both sides of a dark line): no edge
    s, p = _profile(7.3, -6.9, disc=1.0)
    got, why = find_edge(s, p, 6.0, 1, +1, 4.5, 1.0)
    assert np.isnan(got) and why


@pytest.mark.realdata
def test_reference_is_repeatable(sct_data):
    """The reference's own spread: the same procedure on a 5 mm slab instead of the 3 mm one moves
    heights by <= 0.2 mm (measured 0.01-0.199) and the endplate tilts of C3 superior/inferior and
    C4 superior by <= 1.2 deg (C4 inferior and C5 superior: 0.0 deg)."""
    import spine_reference_t2 as ref
    from spinereg.io.image import load_image

    d = np.asarray(load_image(sct_data / "t2" / "t2.nii.gz").data, float)
    a, b = ref.reference(d), ref.reference(d, slab=(23, 28))
    dh = [abs(a["heights"][v][k] - b["heights"][v][k]) for v in (3, 4) for k in ref.FRACTIONS]
    assert max(dh) < 0.22, dh  # measured 0.199 (0.25 asserted before session 41)
    dt = [abs(a["tilts"][k] - b["tilts"][k]) for k in a["tilts"]]
    assert max(dt) < 1.2, dt  # measured 1.10 (1.5 asserted before session 41)
    # the published reference values (README, bench/constraints.py)
    assert a["heights"][3]["middle"] == pytest.approx(16.40, abs=0.01)
    assert a["heights"][4]["middle"] == pytest.approx(14.67, abs=0.01)


@pytest.mark.realdata
@pytest.mark.slow
def test_t2_heights_and_tilts_through_the_registration(sct_data):
    """Default preset, method minus reference: middle/posterior heights C3 -0.06/-0.33, C4
    +0.01/+0.04 mm, anterior C3 -0.26, C4 +0.10 mm (its superior end from the endplate plane);
    tilts C3s -1.0, C3i +0.9, C4s +1.0, C4i +3.8, C5s +1.0 deg; segmental C3-C4 -0.1, C4-C5 +2.8
    (since session 34, the body's mid-sagittal centre placed in its own frame, see
    test_endplates_follow_a_turned_subject; session 33: heights C3 -0.08/-0.35, C4 +0.01/+0.01,
    anterior -0.32/+0.17 mm, tilts -1.9, +1.0, +1.0, +3.5, +0.9, segmental -0.1, +2.6; before
    session 33 placed the bodies with the rotation the centermassrot step found about the cord:
    heights C3 -0.08/-0.32, C4 +0.02/+0.01, anterior -0.43/+0.15 mm; tilts -2.8, +1.0, +0.6, +3.1,
    +0.6; segmental +0.4, +2.5; before the wall axis and the refit: C4i +5.7, C4-C5 +7.5). C4i stays just
    outside 3 deg: the curved C4 inferior endplate, whose reference tilt itself moves -4.5 to
    +3.4 deg when its walls are read 0.5 mm off (the reference's stated reading precision).
    Images of noise in t2's place: nothing measured."""
    import spine_reference_t2 as ref
    from spinereg.io.image import load_image
    from spinereg.metrics.endplates import endplate_rows
    from spinereg.metrics.spine_registration import subject_endplates
    from spinereg.register.template import register_to_template

    d = sct_data / "t2"
    reg = register_to_template(d / "t2.nii.gz", d / "t2_seg-manual.nii.gz", labels=d / "labels.nii.gz",
                               template="PAM50")
    img = load_image(d / "t2.nii.gz")
    truth = ref.reference(np.asarray(img.data, float))
    rows = {r.level: r for r in subject_endplates(img, reg.warp_template2anat())}
    for v in (3, 4):
        for k in ("middle", "posterior"):  # measured -0.06 / -0.33 (C3), +0.01 / +0.04 mm (C4)
            err = rows[v].heights[k] - truth["heights"][v][k]
            claim = {(3, "middle"): -0.06, (3, "posterior"): -0.33, (4, "middle"): 0.01, (4, "posterior"): 0.04}[(v, k)]
            assert abs(err - claim) < 0.15 and abs(err) < 1.0, (v, k, err)
        # the anterior annulus is as dark as the marrow on this T2: the anterior column's superior
        # end has no edge of its own and is read off the fitted endplate plane, and the row says
        # so (measured -0.26 mm at C3, +0.10 mm at C4; -0.32 / +0.17 before session 34, -0.43 / +0.15
        # before session 33; refused before session 6)
        claim = {3: -0.26, 4: 0.10}[v]
        err = rows[v].anterior_mm - truth["heights"][v]["anterior"]
        assert abs(err - claim) < 0.2 and abs(err) < 1.0, (v, err)
        assert "from its endplate plane" in rows[v].status
    # C5's inferior disc is outside the image: refused, not measured short
    assert all(np.isnan(x) for x in rows[5].heights.values()) and "inferior" in rows[5].status
    assert np.isnan(rows[5].inferior_deg)
    assert all(np.isnan(rows[v].middle_mm) for v in (2, 6) if v in rows)
    tilt = {(v, s): getattr(rows[v], f"{s}_deg") for v, s in truth["tilts"]}
    # each within 0.3 deg of its claim (0.7 before session 36: C4 inferior at +4.5 would have
    # passed), all but C4 inferior within the 3 deg target
    claims = {(3, "superior"): -0.96, (3, "inferior"): 0.89, (4, "superior"): 1.03, (4, "inferior"): 3.83,
              (5, "superior"): 1.01}
    for key, claim in claims.items():
        err = tilt[key] - truth["tilts"][key]
        assert abs(err - claim) < 0.3 and (abs(err) < 3.0 or key == (4, "inferior")), (key, err)
    seg = {"C3-C4": (tilt[(3, "inferior")] - tilt[(4, "superior")]) - truth["segmental"]["C3-C4"],
           "C4-C5": (tilt[(4, "inferior")] - tilt[(5, "superior")]) - truth["segmental"]["C4-C5"]}
    for k, claim in {"C3-C4": -0.14, "C4-C5": 2.82}.items():
        assert abs(seg[k] - claim) < 0.3 and abs(seg[k]) < 3.0, seg
    # an image of noise in t2's place (white, and smoothed over 1 mm): nothing measured
    from scipy import ndimage

    from spinereg.io.image import Image

    for seed in (2, 6):  # seeds whose white noise once gave an endplate tilt
        noise = np.random.default_rng(seed).normal(100.0, 30.0, img.data.shape)
        for data in (noise, 3.0 * ndimage.gaussian_filter(noise, 1.0)):
            got = subject_endplates(Image(data.astype(np.float32), img.affine), reg.warp_template2anat())
            assert all(np.isnan([*r.heights.values(), r.superior_deg, r.inferior_deg]).all() for r in got), seed
    out = endplate_rows(list(rows.values()))
    assert {"image_height_middle", "image_endplate_superior_tilt", "image_segmental_angle"} <= {r["measure"] for r in out}
    assert any(r["flag"].startswith("not measured") for r in out if r["name"] == "C5")


@pytest.mark.realdata
def test_endplates_follow_a_turned_subject(sct_data):
    """t2 with its bodies placed once (the default registration), then the image's and the
    bodies' headers turned together (the subject turned in the scanner; data untouched): the same
    heights at any turn, the same tilts when turned about S-I (20, -30 deg; read in the body's own
    sagittal plane, ``metrics.spine.sagittal_tilt_deg``), tilts changed by the pitch and the same
    segmental angles when pitched 10 deg about L-R. Before session 34 each body's mid-sagittal
    centre was placed with its frame's transpose (off by ~1.5 mm at 20 deg) and the tilts were
    read in the scanner's sagittal plane: at -30 deg C3's anterior height 16.59 -> 16.24 mm, its
    inferior tilt -15.6 -> -6.5 deg."""
    from helpers import rotation
    from spinereg.io.image import Image, load_image
    from spinereg.metrics.endplates import measure_endplates
    from spinereg.metrics.spine_registration import bodies_from_warp
    from spinereg.register.template import register_to_template

    d = sct_data / "t2"
    img = load_image(d / "t2.nii.gz")
    reg = register_to_template(img, d / "t2_seg-manual.nii.gz", labels=d / "labels.nii.gz", template="PAM50")
    bodies = bodies_from_warp(reg.warp_template2anat(), img.grid, supersample=2, levels=[3, 4, 5])

    def measured(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = measure_endplates(*(Image(np.asarray(x.data), a @ x.affine, x.header) for x in (img, bodies)), "t2")
        return (np.array([list(r.heights.values()) for r in rows]),
                np.array([(r.superior_deg, r.inferior_deg) for r in rows]))

    h0, t0 = measured(np.eye(4))
    assert np.isfinite(h0[:2]).all() and np.isfinite(t0).sum() == 5  # C3, C4 whole; C5 superior only
    c = img.grid.center_world()
    for angles, shift in (((0.0, 0.0, 20.0), 0.0), ((0.0, 0.0, -30.0), 0.0), ((10.0, 0.0, 0.0), 10.0)):
        a = np.eye(4)
        a[:3, :3] = rotation(angles)
        a[:3, 3] = c - a[:3, :3] @ c
        h, t = measured(a)
        np.testing.assert_allclose(h, h0, atol=0.01, err_msg=str(angles))
        np.testing.assert_allclose(t, t0 + shift, atol=0.05, err_msg=str(angles))


@pytest.mark.realdata
@pytest.mark.slow
def test_the_whole_measure_on_a_subject_turned_about_si(sct_data):
    """register-to-template then spine-metrics' endplates on t2 with every header turned 20 deg
    about S-I (the registration places the bodies anew): C3 and C4 measured, heights within
    0.13 mm and tilts within 1.1 deg of the unturned run's (C3 superior; 10 / -15 deg: 0.15 /
    0.02 mm, 1.2 / 0.1 deg). Before session 34 C4 was not measured at 20 deg ("only one endplate
    found"), and at -15 deg C3's inferior tilt moved by 2.5 deg."""
    from helpers import rotation
    from spinereg.io.image import Image, load_image
    from spinereg.metrics.spine_registration import subject_endplates
    from spinereg.register.template import register_to_template

    d = sct_data / "t2"
    img, seg, lab = (load_image(d / f) for f in ("t2.nii.gz", "t2_seg-manual.nii.gz", "labels.nii.gz"))
    c = img.grid.center_world()
    out = []
    for deg in (0.0, 20.0):
        a = np.eye(4)
        a[:3, :3] = rotation((0.0, 0.0, deg))
        a[:3, 3] = c - a[:3, :3] @ c
        im, sg, lb = (Image(np.asarray(x.data), a @ x.affine, x.header) for x in (img, seg, lab))
        reg = register_to_template(im, sg, labels=lb, template="PAM50")
        rows = {r.level: r for r in subject_endplates(im, reg.warp_template2anat())}
        out.append((np.array([list(rows[v].heights.values()) for v in (3, 4)]),
                    np.array([rows[3].superior_deg, rows[3].inferior_deg, rows[4].superior_deg, rows[4].inferior_deg,
                              rows[5].superior_deg])))
    (h0, t0), (h1, t1) = out
    assert np.isfinite(h1).all() and np.isfinite(t1).all(), (h1, t1)
    assert np.abs(h1 - h0).max() <= 0.2 and np.abs(t1 - t0).max() <= 1.3, (h1 - h0, t1 - t0)


class _Misplaced:
    """A registration that misplaces the bodies: x -> truth(c + s (x - c) + shift)."""

    def __init__(self, pull, shift, scale, centre):
        self.pull, self.shift, self.scale, self.centre = pull, np.asarray(shift, float), scale, centre

    def map(self, x):
        return self.pull.map(self.centre + (x - self.centre) * self.scale + self.shift)


@functools.lru_cache(maxsize=6)
def _phantom(seed: int, contrast: str):
    """The articulated phantom C2-C6 (read only here), built once for its height (exact and
    misplaced) and tilt measurements: seeds 0-2 MR and CT (~5 s CPU each, each built once)."""
    from spinereg.phantom.articulated import make_articulated_phantom

    return make_articulated_phantom((2, 6), seed=seed, contrast=contrast, margin_mm=10.0)


def phantom_height_errors(seed: int, contrast: str, shift=(0.0, 0.0, 0.0), scale: float = 1.0) -> dict:
    """(level, column) -> measured minus true height (mm) on an articulated phantom C2-C6 (bodies
    C3-C5 measured), bodies placed by the truth field (optionally misplaced)."""
    from scipy import ndimage

    from spinereg.io.template import load_template
    from spinereg.metrics.endplates import measure_endplates
    from spinereg.metrics.spine_registration import bodies_from_warp, template_bodies

    ph = _phantom(seed, contrast)
    pull = ph.truth_template2anat
    centre = ph.grid.voxel_to_world(np.argwhere(np.asarray(ph.vertebrae.data) > 0)).mean(0)
    bodies = bodies_from_warp(_Misplaced(pull, shift, scale, centre), ph.grid, supersample=2, levels=[3, 4, 5])
    tb = template_bodies(load_template("PAM50"))
    tlab = np.asarray(tb.data)
    out = {}
    for r in measure_endplates(ph.subject, bodies, "t2" if contrast == "mr" else "ct", levels=[3, 4, 5]):
        mask = (tlab == r.level).astype(np.float32)
        for k in ("anterior", "middle", "posterior"):
            s = np.arange(-14.0, 14.0 + 1e-9, 0.1)
            x = r.columns[k] + s[:, None] * r.axes[2] if np.isfinite(r.columns[k]).all() else None
            if x is None or not np.isfinite(r.heights[k]):
                out[(r.level, k)] = np.nan
                continue
            inside = ndimage.map_coordinates(mask, tb.grid.world_to_voxel(pull.map(x)).T, order=1) > 0.5
            idx = np.flatnonzero(inside)
            runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
            run = min(runs, key=lambda q: np.min(np.abs(s[q])))
            out[(r.level, k)] = r.heights[k] - (s[run[-1]] - s[run[0]] + 0.1)
    return out


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("contrast", ["mr", "ct"])
def test_phantom_heights_against_the_geometry(pam50_dir, contrast):
    """Seed 0 (seeds 0-2 in bench/constraints.py --part endplates), bodies placed exactly and
    misplaced (2 mm S-I, 1 mm A-P, 10 % scale about the spine's centre). Exact: every height within
    1.1 mm of the body label's extent (seed 0: <= 1.00; seeds 0-2: <= 1.48, MR seed 1 C4 anterior,
    1.18 before the refit; middle/posterior <= 1.04), mean bias +0.51-0.73 mm per case (seed 0:
    MR +0.51, CT +0.67, asserted within 0.08; the blurred 1 mm cortical line pulls the steepest
    edge outwards). Misplaced: middle and posterior heights of C3-C4 within 1.1 mm (seed 0: MR
    0.87, CT 0.92; seeds 0-2: <= 1.03; anterior up to 2.36 mm, where the column lands on the
    rounded anterior corner); C5, misplaced by ~4 mm, is refused, not measured wrong."""
    exact = phantom_height_errors(0, contrast)
    moved = phantom_height_errors(0, contrast, shift=(0.0, 1.0, 2.0), scale=0.9)
    e = np.array([v for v in exact.values()])
    bias = {"mr": 0.51, "ct": 0.67}[contrast]  # 0.2 < mean < 0.75 before session 36
    # measured (session 41): exact max MR 0.82, CT 1.099 (the docstring's "seed 0: <= 1.00" is not
    # met on CT); bias within 0.002 of its figure; misplaced max MR 0.866, CT 0.915 (asserted before:
    # 1.1, 0.08, 1.1)
    worst, moved_worst = {"mr": (0.88, 0.92), "ct": (1.1, 0.97)}[contrast]
    assert np.isfinite(e).all() and np.abs(e).max() < worst and abs(e.mean() - bias) < 0.02, exact
    m = np.array([v for (lev, k), v in moved.items() if lev in (3, 4) and k != "anterior"])
    assert np.isfinite(m).all() and np.abs(m).max() < moved_worst, moved
    assert all(np.isnan(v) for (lev, _), v in moved.items() if lev == 5)


@pytest.mark.realdata
@pytest.mark.slow
def test_phantom_misplaced_body_is_refused_not_measured_wrong(pam50_dir):
    """CT seed 2, bodies misplaced: C5's endplates were once taken from trabecular texture (planes
    tilted 27 deg, heights off by +8.3 / -4.2 mm). Planes tilted more than 25 deg from the spine
    or a body outside 0.6-1.6 times the placed height are refused; C3-C4 stay measured (middle
    and posterior within 1.1 mm, measured <= 0.88; C4 anterior 2.36 mm at its rounded corner,
    2.61 before session 34; C3 anterior 0.47 mm since session 34, 2.66 mm before it: its
    superior end is read off the endplate plane where the column has no edge, session 6)."""
    e = phantom_height_errors(2, "ct", shift=(0.0, 1.0, 2.0), scale=0.9)
    assert all(np.isnan(v) for (lev, _), v in e.items() if lev == 5), e
    m = np.array([v for (lev, k), v in e.items() if lev in (3, 4) and k != "anterior"])
    assert np.isfinite(m).all() and np.abs(m).max() < 0.93, e  # measured 0.881 (1.1 before session 41)
    # anterior: C4 2.36 mm (the rounded anterior corner), C3 0.47 mm (< 2.8 each before session 36;
    # measured 2.356 / 0.472 in session 41, asserted within 0.15 of them before it)
    assert np.isfinite(e[(4, "anterior")]) and abs(e[(4, "anterior")] - 2.36) < 0.05, e
    assert abs(e[(3, "anterior")] - 0.47) < 0.03, e


class _Identity:
    def map(self, x):
        return x


def phantom_tilt_errors(seed: int, contrast: str, **kw) -> dict:
    """(level, side) -> measured minus expected endplate tilt (deg) on an articulated phantom C2-C6
    (bodies C3-C5 placed exactly): expected = the endplate measured on the phantom's template
    image (bodies in place, no motion, no noise) turned by the vertebra's known rotation."""
    from spinereg.metrics.endplates import measure_endplates
    from spinereg.metrics.spine import sagittal_tilt_deg
    from spinereg.metrics.spine_registration import bodies_from_warp

    ph = _phantom(seed, contrast)
    c = "t2" if contrast == "mr" else "ct"
    at_rest = bodies_from_warp(_Identity(), ph.grid, supersample=2, levels=[3, 4, 5])
    moved = bodies_from_warp(ph.truth_template2anat, ph.grid, supersample=2, levels=[3, 4, 5])
    rest = {r.level: r for r in measure_endplates(ph.template, at_rest, c, levels=[3, 4, 5], **kw)}
    got = {r.level: r for r in measure_endplates(ph.subject, moved, c, levels=[3, 4, 5], **kw)}
    out = {}
    for v in (3, 4, 5):
        for side in ("superior", "inferior"):
            n = getattr(rest[v], f"{side}_normal")
            rot = ph.motions[v][:3, :3]
            out[(v, side)] = (getattr(got[v], f"{side}_deg") - sagittal_tilt_deg(rot @ np.array(n),
                                                                                 rot @ rest[v].sagittal_lr)
                              if n else np.nan)
    return out


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(("contrast", "rms", "worst"), [("mr", 2.50, 5.39), ("ct", 1.23, 2.21)])
def test_phantom_tilts_follow_the_vertebra(pam50_dir, contrast, rms, worst):
    """Seeds 0-2 (as bench/constraints.py --part endplates), the six endplates of C3-C5 against the
    template's endplate turned by the known rotation: RMS 2.50 (MR) / 1.23 (CT) deg, max 5.39 (MR
    seed 0, C3 superior; MR seed 1 C4 superior -5.06: the rounded anterior corner, where the
    phantom has no disc, enters the refitted plane) / 2.21 deg; 36 endplates RMS 1.97, mean
    |error| 1.46 (since session 34 placed each body's mid-sagittal centre in its own frame; before:
    MR 2.16 / CT 1.61, max 5.63 / 2.75, 36 endplates RMS 1.91, mean |error| 1.56, seed 0 max 2.2 /
    2.7; before the wall axis and the refit: RMS 2.0, mean +0.8, C3 inferior +3.4 on average)."""
    e = np.array([x for seed in (0, 1, 2) for x in phantom_tilt_errors(seed, contrast).values()])
    assert np.isfinite(e).all() and len(e) == 18, e
    # measured (session 41): RMS 2.498 / 1.225, max 5.385 / 2.212 (MR / CT; margins 0.1 / 0.25 before)
    assert np.sqrt((e ** 2).mean()) <= rms + 0.06 and np.abs(e).max() <= worst + 0.11, e


# seed 0 measured (session 41): T1 tilts max 1.71, middle heights +0.58 to +0.83; CT 1.109 (the
# docstring's 1.1 deg over seeds 0-2 is exceeded by 0.009), +0.29 to +0.54 (asserted before: T1 2.7,
# 0.4-0.9; CT 1.2, 0.25-0.6)
@pytest.mark.parametrize(("contrast", "max_tilt", "heights"), [("t1", 1.85, (0.55, 0.87)), ("ct", 1.16, (0.27, 0.57))])
def test_flat_endplates_of_the_analytic_phantom(contrast, max_tilt, heights):
    """Analytic cervical phantom (flat trapezoid bodies C2-C7, 25 deg lordosis, a wedge at C5,
    texture, noise, partial volume at 0.8 mm), bodies labelled. Seeds 0-2 (seed 0 asserted): CT
    tilts within 1.1 deg of the design, middle heights +0.29 to +0.56 mm; T1 tilts within 2.5 deg,
    middle heights +0.48 to +0.83 mm (the edge from the dark cortical line to the grey disc: the
    edge from the marrow into the cortex, taken before, made T1 bodies 2.0-2.5 mm short and its
    tilts 1.0 deg). The outer endplates of C2 and C7, with no disc beyond, are not measured on T1
    (before: C7 inferior taken from the marrow-cortex edge). C2's superior end is never reported
    (a real C2 has the dens there, not an endplate; the phantom's flat C2 had one): 7 tilts on CT."""
    from spinereg.metrics.endplates import measure_endplates
    from spinereg.phantom.spine import make_spine_phantom

    ph = make_spine_phantom(tuple(range(2, 8)), height_mm=14.0, depth_mm=16.0, width_mm=20.0, disc_mm=5.0,
                            lordosis_deg=25.0, wedge={5: 0.8}, cortex_mm=1.0, voxel_mm=0.8, cord_radius_mm=4.0,
                            csf_radius_mm=6.0, pv_factor=2, texture=0.15, noise=0.05, seed=0)
    rows = measure_endplates(ph.t1 if contrast == "t1" else ph.ct, ph.bodies, contrast)
    err = [getattr(r, f"{s}_deg") - ph.truth["levels"][r.level][f"endplate_{s}_deg"]
           for r in rows for s in ("superior", "inferior")]
    err = np.array([x for x in err if np.isfinite(x)])
    assert len(err) >= 7 and np.abs(err).max() < max_tilt, err
    dh = np.array([r.middle_mm - ph.truth["levels"][r.level]["height_middle_mm"] for r in rows])
    dh = dh[np.isfinite(dh)]
    assert len(dh) >= 3 and heights[0] < dh.min() and dh.max() < heights[1], dh
