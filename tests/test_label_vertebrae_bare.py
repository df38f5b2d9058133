"""Template registration from a bare image: ``register-to-template -i t2.nii.gz -c t2 -o DIR``
with neither -s nor -l segments the cord (spinereg segment), labels every disc (spinereg
label-vertebrae) and registers with all of them (--ldisc). Scored with what the job did not use:
t2's manual segmentation and labels.nii.gz (mid-body of C3 and C5, held out). ``spinereg demo``
is the same job (tests/test_demo.py asserts the same figures through metrics.json ``held_out``).

Measured (session 32, the demo's metrics.json; segmentation with spinereg.segment.refine): discs
C2/C3, C3/C4, C4/C5 (the right levels; flagged ambiguous, identity margin 0.66 < 2 -- 1.31 with the
manual segmentation --, so the job warns on stderr and records it; why:
docs/labeling_bare_image.md); template cord warped to t2 against the manual segmentation: Dice
0.971; labels.nii.gz's bodies pushed into PAM50 land 0.70 / 0.93 mm (C3 / C5, mean 0.82; S-I
+0.33 / -0.02 mm) from PAM50's body labels, within the issue's 1 mm (earlier sessions: 0.68 /
1.05, S-I +0.28 / -0.59; 0.75 / 1.32 before the segmentation's corrections). The hand-placed
voxels sit 0.93 / 1.23 mm off the manual cord's centre, an offset the cord registration carries
into PAM50 (whose body labels lie on its centerline); moved to the manual segmentation's
centerline at their height they land 0.35 / 0.58 mm.

Not asserted here (40-85 s a seed on a loaded machine), measured in-process on the independent full
phantom (0.8 mm, C1-T6) from the bare image, seeds 0 / 1 / 2 (docs/labeling_bare_image.md): automatic
segmentation Dice 0.944 / 0.944 / 0.948 against the phantom's cord; labeling right on all three
(margins 3.23 / 3.49 / 4.78, disc MAE 0.48 / 0.52 / 0.46 mm); cord mapping error 1.19 / 0.66 /
0.64 mm mean, 1.40 / 1.36 / 1.21 mm p95 (seed 0 was 1.19 / 5.28: the S-I refinement from the image
moved the cord 3-7 mm above the top disc, C2/C3; since it is held beyond an end fitted from several
landmarks, register.si_refine.held_ends, it keeps the discs' extrapolation there); template cord
Dice 0.946 / 0.946 / 0.948 against the true cord (0.971 / 0.974 / 0.977 against the automatic
segmentation it was registered to). The issue's 0.6 mm / 1.5 mm / Dice 0.97 from the bare image is
therefore not met: the Dice is bounded by the segmentation's, the mean (0.61-0.72 on the
right-levelled seeds) by the registration with 11 discs and the extrapolation above C2/C3. Seeds
3-9 (run after): seed 4 right (margin 6.17; 0.61 / 1.46 mm); seeds 5-9 0.72 / 2.27, 0.63 / 1.78,
0.64 / 1.15, 0.65 / 1.70, 0.58 / 1.40 mm (free above C2/C3: seed 6 0.70 / 1.82, seed 9 0.56 / 1.16,
where the image was right; held exactly: 0.59 / 1.79, 0.63 / 1.86; the kept hold allows 3 % of
the distance); seed 3 one level off from its automatic
segmentation with the cord width at full weight; since the image-alone identity check it is
relabelled with the width down-weighted: levels right and flagged (asserted below). Its cervical
discs were then placed 5-6 mm low (disc MAE 2.29 mm; the whole command failed, exit 3, on
label_si_scale_deviation 0.373 at cord error 3.44 / 6.84 mm) until the levels were read on band
tilts within +-15 degrees and the positions refined within 3 mm of that chain: disc MAE 0.51 mm,
cord error 0.66 / 1.63 mm, the whole command warns (ambiguous levels; label_si_scale_deviation
0.163).

Session 10: C1/C2 located from the CSF profile above C2/C3 (spinereg.vertebrae.c1c2) on all 20
full phantoms (seeds 0-9 of both sources, -0.32..+0.87 mm from the truth) joins the landmarks:
seeds 0-9 of this source 0.61 / 1.15, 0.65 / 1.33, 0.58 / 0.97, 0.52 / 1.29, 0.62 / 1.46,
0.53 / 0.94, 0.63 / 1.79, 0.68 / 1.21, 0.67 / 1.70, 0.53 / 0.92 mm (mean of means 0.651 -> 0.601,
p95 <= 1.5 on 8 of 10 instead of 6); figures for the tissue source in docs/labeling_bare_image.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spinereg.cord.landmarks import read_point_labels
from spinereg.io.image import load_image
from spinereg.io.template import load_template
from spinereg.metrics import dice
from spinereg.transforms import apply_transforms
from spinereg.transforms.itk import read_displacement

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_register_to_template_from_bare_t2(sct_data, tmp_path):
    t2 = sct_data / "t2"
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "spinereg.cli.main", "register-to-template", "-i",
                        str(t2 / "t2.nii.gz"), "-c", "t2", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "t2_discs.json").read_text())
    assert [d["name"] for d in doc["discs"]] == ["C2/C3", "C3/C4", "C4/C5"]
    prov = json.loads((out / "provenance.json").read_text())
    assert "automatic: spinereg label-vertebrae" in prov["inputs"]["ldisc"]
    assert "automatic: spinereg segment" in prov["inputs"]["seg"]
    (stage,) = [s for s in prov["stages"] if s["name"] == "vertebral labeling"]
    assert stage["labeling"]["discs"] == ["C2/C3", "C3/C4", "C4/C5"]
    # registered in PAM50_label_disc's convention: C3/C4 and C4/C5 ~1 mm lower (data/template_disc_offsets.json)
    moved = stage["labeling"]["registered_as"]["moved_mm"]
    assert stage["labeling"]["registered_as"]["converted"] and -1.2 < moved["C4/C5"] < -0.8, moved
    assert prov["landmarks"]["kind"] == "disc"
    # an ambiguous identity is said, on stderr and in provenance.json
    assert stage["labeling"]["ambiguous"] == doc["ambiguous"]
    if doc["ambiguous"]:
        assert "warning: automatic vertebral labeling: level identity is ambiguous" in r.stderr
    assert {"t2_seg.nii.gz", "t2_labels-disc.nii.gz", "t2_discs.json"} <= set(prov["outputs"])
    # held-out truth: the manual segmentation and the body labels
    man = load_image(t2 / "t2_seg-manual.nii.gz")
    tpl = load_template("PAM50")
    t2a = read_displacement(out / "warp_template2anat.nii.gz")
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    assert dice(apply_transforms(tcord, man.grid, [t2a], "linear"), man).dice >= 0.965  # measured 0.971
    bodies = read_point_labels(load_image(t2 / "labels.nii.gz"), "body")
    tb = read_point_labels(load_image(tpl.path("body"), ndim=3, check_finite=False), "body")
    moved = t2a.map(bodies.points)
    res = [float(np.linalg.norm(p - tb.points[list(tb.values).index(v)])) for v, p in zip(bodies.values, moved,
                                                                                          strict=True)]
    # measured 0.70 / 0.93 (0.68 / 1.05 before the discs were registered in PAM50_label_disc's convention)
    assert max(res) <= 1.0 and np.mean(res) <= 0.85, res
    # the labels sit 0.93 / 1.23 mm off the manual cord's centre (hand-placed voxels); at their
    # height on that centerline (the manual segmentation is not used by the job either) they land
    # 0.35 / 0.58 mm from PAM50's (S-I +0.33 / -0.01; 0.19 / 0.82, S-I +0.16 / -0.58, with the
    # discs registered at their measured points; 0.30 / 0.81 at the label file's voxels)
    from spinereg.pipelines.registration import held_out_body_residuals

    held = held_out_body_residuals(t2a, t2 / "labels.nii.gz", cord=t2 / "t2_seg-manual.nii.gz")
    oc = {k: v["on_cord_mm"] for k, v in held["body_labels"].items()}
    assert oc["3"] <= 0.40 and oc["5"] <= 0.63 and held["on_cord_max_mm"] <= 0.65, held
    assert held["body_labels"]["5"]["label_off_cord_mm"] > 1.2, held


def _bare_labeling(seed: int):
    """The independent full phantom (0.8 mm, C1-T6) as the bare-image job sees it: its automatic
    segmentation (spinereg segment) and the automatic labeling on it (register-to-template's own
    call, register.template.auto_labeling)."""
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import auto_labeling
    from spinereg.segment import segment
    from spinereg.vertebrae.evaluate import compare_to_truth

    ph = make_independent_subject("full", seed=seed)
    seg = segment(ph.image, ph.contrast).seg
    lab = auto_labeling(ph.image, seg, ph.contrast)
    return ph, seg, lab, compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})


#: seed -> (disc MAE mm, seg Dice, cord error mean mm, p95 mm, template cord Dice vs truth) measured
#: (seed 2 was 0.46 mm MAE, 0.41 / 0.89 mm before session 20 lowered the bright-disc band's
#: half-width floor, vertebrae.label.HALF_WIDTH_MIN_MM: its C3/C4 and C4/C5 0.5 mm further off)
BARE_CLAIMS = {0: (0.46, 0.944, 0.35, 0.67, 0.949), 2: (0.55, 0.948, 0.44, 0.91, 0.948)}
#: seed -> C1/C2 from the CSF profile, found minus true along the cord (mm), measured
C1C2_CLAIMS = {0: -0.32, 2: 0.55}  # seed 0: -0.13 before session 43's vote-free positions


@pytest.mark.parametrize("seed", sorted(BARE_CLAIMS))
def test_full_phantom_from_bare_image(seed):
    """Seeds 0 and 2 (of 0-9, measured in the module docstring and docs/labeling_bare_image.md):
    levels right, not flagged; C1/C2 from the CSF profile above C2/C3 (spinereg.vertebrae.c1c2)
    -0.32 / +0.55 mm from the truth (seed 0 -0.13 before session 43 placed the positions without the
    global match's vote, vertebrae.label.VOTE_FREE_MIN_BANDS); the registration with the measured discs moved to
    PAM50_label_disc's convention and C1/C2 (what the bare job does since session 13) 0.35 / 0.67
    and 0.41 / 0.89 mm cord mapping error mean / p95 (seed 0: 0.39 / 0.76 and C1/C2 -0.32 before
    session 14 levelled the slab's amplitude along the cord for the template match; 0.52 / 1.04 and 0.58 / 1.14 at the measured
    points; 0.61 / 1.15 and 0.58 / 0.97 with the discs at the label file's
    voxels; 0.72 / 1.40 and 0.64 / 1.21 with C1/C2 left to the discs' extrapolation, before
    session 10), template cord Dice
    0.949 / 0.948 against the true cord (the automatic segmentation's own Dice: 0.944 / 0.948):
    the issue's Dice 0.97 is not met. Seed 0 was 1.19 / 5.28 mm before the S-I refinement was held
    beyond the top disc (C2/C3, C3/C4 and C4/C5 within 40 mm of it; the thoracic discs at the
    bottom are further apart, so that end stays free)."""
    from spinereg.register.template import register_to_template
    from spinereg.vertebrae.outputs import disc_landmarks

    mae, seg_dice, mean, p95, cord_dice = BARE_CLAIMS[seed]
    ph, seg, lab, r = _bare_labeling(seed)
    assert r["identity_ok"] and not lab.ambiguous and r["mae_mm"] <= mae + 0.03, r
    assert dice(seg, ph.seg).dice >= seg_dice - 0.003
    c12 = [d for d in lab.discs if d.value == 2]
    assert len(c12) == 1 and c12[0].from_csf, lab.report["c1c2"]
    s2 = lab.centerline.project(np.asarray(ph.disc_points[2], float)[None])[0][0]
    assert abs(c12[0].s - s2 - C1C2_CLAIMS[seed]) <= 0.1, c12[0].s - s2
    reg = register_to_template(ph.image, seg, ldisc=disc_landmarks(lab, ph.image.grid, template="PAM50"), template="PAM50",
                               contrast=ph.contrast)
    assert reg.si_report["held_beyond_mm"][1] is not None, reg.si_report  # the top end (C2/C3) is held
    err = ph.error(reg.template2anat)
    assert err["mean_mm"] <= mean + 0.03 and err["p95_mm"] <= p95 + 0.10, (err["mean_mm"], err["p95_mm"])
    tcord = load_image(load_template("PAM50").path("cord"), ndim=3, check_finite=False)
    assert dice(apply_transforms(tcord, ph.seg.grid, [reg.template2anat], "linear"), ph.seg).dice >= cord_dice - 0.003


def test_full_phantom_seed3_bare_labeling_right():
    """Seed 3 (the shortest subject, length 0.876x) from its automatic segmentation. It was a
    silent failure: with the cord width at full weight the chain was one level off from C6/C7 down
    (disc MAE 17.0 mm, identity margin 2.73), the segmentation's too-wide cord (13.5-15.7 mm
    against PAM50's 11.5-12.5 at C2-C6) fitting the template's wider levels. The image-alone check
    (disc bands, spacing, template match; no cord width) then caught it (image margin -3.04) and the
    chain was run again with the absolute width down-weighted: right, flagged, disc MAE 0.64 mm.
    Since session 20 lowered the bright-disc band's half-width floor (vertebrae.label.
    HALF_WIDTH_MIN_MM, 3.5 -> 3.0 mm: this subject's short cervical discs are thin) the first chain
    is right: identity margin 3.26, image-alone margin +4.50, not flagged, disc MAE 0.52 mm, max
    1.04. The bare job's QC: pass, noting the levels are not independently verified. Registered
    with these discs (what the bare job does, C1/C2 from the CSF profile 0.15 mm off, in
    PAM50_label_disc's convention): cord error 0.411 / 0.895 mm mean / p95 (0.533 / 1.196 flagged
    before; 3.44 / 6.84 before the two-stage tilt reading, 15.05 / 25.23 before the second pass):
    docs/labeling_bare_image.md."""
    from spinereg.metrics.level_check import auto_level_offset, shared_labeling
    from spinereg.metrics.verdict import judge
    from spinereg.vertebrae import label_vertebrae
    from spinereg.vertebrae.evaluate import compare_to_truth

    ph, seg, lab, r = _bare_labeling(3)
    assert r["identity_ok"] and not lab.ambiguous, (r["mae_mm"], lab.report["ambiguous_reasons"])
    assert r["mae_mm"] <= 0.55 and r["max_mm"] <= 1.15, r  # measured 0.52 / 1.04
    assert "first_pass" not in lab.report and lab.report["image_identity"]["margin"] >= 4.0  # measured 4.50
    # the bare job's QC scores of this labeling (its landmarks are its discs): neither ambiguous nor contradicted
    with shared_labeling(lab, ph.image, seg, landmarks=True):
        scores, notes = auto_level_offset(ph.image, seg, "t2", None, load_template("PAM50"))
    assert scores == {"landmark_levels_ambiguous": 0.0, "landmark_levels_contradicted": 0.0}
    assert notes[0].startswith("levels not independently verified"), notes
    assert judge({"qc": {"scores": scores}}).verdict == "pass"
    # registered with these discs, scored against the phantom's known mapping (not given to the job)
    from spinereg.register.template import register_to_template
    from spinereg.vertebrae.outputs import disc_landmarks

    reg = register_to_template(ph.image, seg, ldisc=disc_landmarks(lab, ph.image.grid, template="PAM50"), template="PAM50",
                               contrast=ph.contrast)
    err = ph.error(reg.template2anat)
    # measured 0.467 / 0.959 (0.411 / 0.895 before session 43's vote-free positions: this seed lost
    # 0.06 mm where the `tissue` source gained, docs/labeling_bare_image.md)
    assert err["mean_mm"] <= 0.50 and err["p95_mm"] <= 1.06, (err["mean_mm"], err["p95_mm"])
    # the true segmentation made wide on purpose (dilated one voxel): right from the first chain
    # since session 20 (0.33 mm); before, the first pass named other levels (image-alone margin
    # -3.28) and the second named them right (0.31 mm), flagged
    sys.path.insert(0, str(Path(__file__).parent))
    from test_label_vertebrae_phantoms import dilated_inplane

    lab = label_vertebrae(ph.image, dilated_inplane(ph.seg), contrast="t2")
    r = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})
    assert r["identity_ok"] and not lab.ambiguous and r["mae_mm"] <= 0.36, r  # measured 0.33


def test_cues_disagree_second_pass_is_recorded_and_flagged():
    """When the cord width and the image alone name different levels, the chain is run again with
    the absolute cord width down-weighted, the first pass is recorded and the labeling is flagged. Held-out
    phantom axial_thick 44 (0.5 x 0.5 x 5 mm, C2-C5, true segmentation): both passes name C3/C4-C5/C6
    (one level low), the image alone prefers other levels by 3.29: wrong, and said to be
    (vertebrae.label.CUES_DISAGREE). Since session 23 the CSF around the cord is read on such a
    flagged labeling (vertebrae.csf_identity): it prefers one level higher (evidence 8.9) and the
    stack is relabelled right, still flagged, the passes before it recorded. Until session 51 the
    case was axial_thick 42 (two levels low, CSF evidence 60.0), which the cord width pooled over
    thick slices (vertebrae.cordwidth) now names right by the chain alone (margin 3.59, flagged)."""
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.vertebrae import label_vertebrae
    from spinereg.vertebrae.evaluate import compare_to_truth
    from spinereg.vertebrae.label import CUES_DISAGREE

    ph = make_independent_subject("axial_thick", seed=44)
    lab = label_vertebrae(ph.image, ph.seg, contrast="t2s")
    first = lab.report["first_pass"]
    assert first["discs"][0] == "C3/C4" and first["image_identity"]["margin"] <= -3.0, first  # measured -3.29
    csf = lab.report["csf_identity"]
    assert csf["relabelled"] and csf["shift"] == -1 and csf["discs_before"][0] == "C3/C4", csf
    reasons = lab.report["ambiguous_reasons"]
    assert lab.ambiguous and reasons[0].startswith("the CSF around the cord"), reasons
    assert any(r.startswith("cord width and image disagreed") for r in reasons), reasons
    assert any(r.startswith(CUES_DISAGREE) for r in reasons), reasons
    r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
    assert r["identity_ok"] and r["mae_mm"] <= 0.45, r  # measured 0.40
