"""QC verdicts track accuracy: the cases of issue 11, each on data with known truth.

Registrations run through the library into minimal output folders (the warps the verdict reads,
the command's own metrics, the provenance fields it needs) and are judged by
:func:`spinereg.metrics.verdict.score_output_folder`, the command's own verdict path. Thresholds:
``spinereg/data/qc_thresholds.json``, calibrated in docs/qc_calibration.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.io.image import Image, load_image, save_image
from spinereg.metrics.verdict import judge, score_output_folder
from spinereg.phantom.independent import make_independent_subject
from spinereg.pipelines.multimodal_outputs import write_multimodal_outputs
from spinereg.pipelines.template_outputs import registration_metrics, write_json
from spinereg.register.multimodal import register_multimodal
from spinereg.register.template import register_to_template
from spinereg.transforms.itk import write_displacement


def template_run(out: Path, image: Path, seg: Path, labels: Path, contrast: str = "t2", ref: str = "template"):
    """register-to-template into ``out`` (warp_template2anat, metrics.json, provenance.json) and
    its verdict."""
    reg = register_to_template(load_image(image), load_image(seg), labels=load_image(labels), template="PAM50",
                               contrast=contrast, ref=ref)
    out.mkdir(parents=True, exist_ok=True)
    inv = reg.warp_template2anat()
    write_displacement(inv, out / "warp_template2anat.nii.gz", overwrite=True)
    metrics = registration_metrics(reg, reg.anat2template, inv)
    write_json(out / "metrics.json", metrics, overwrite=True)
    prov = {"command": "register-to-template",
            "inputs": {"image": str(image), "seg": str(seg), "labels": str(labels), "template": "PAM50",
                       "contrast": contrast},
            "template": {"name": reg.template.name, "root": str(reg.template.root)},
            "landmarks": {"kind": reg.landmarks.kind, "subject_mm": reg.landmarks.as_dict()}}
    write_json(out / "provenance.json", prov, overwrite=True)
    return score_output_folder(out), reg


def _phantom_files(ph, folder: Path, labels=(3, 5), values=None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    lab = ph.labels("body", labels).data.copy()
    if values is not None:
        for old, new in zip(labels, values, strict=True):
            lab[ph.labels("body", labels).data == old] = new
    return {"image": save_image(ph.image, folder / f"{ph.contrast}.nii.gz", overwrite=True),
            "seg": save_image(ph.seg, folder / "seg.nii.gz", overwrite=True),
            "labels": save_image(Image(lab, ph.grid.affine), folder / "labels.nii.gz", overwrite=True)}


@pytest.fixture(scope="module")
def longer(data_root, tmp_path_factory):
    """A subject 5 % longer than the template, registered correctly. Seed 8 since session 24:
    seed 5's automatic labeling (what the verdict checks the levels with) was wrong, C3/C4 8 mm
    high and C2/C3 missed, unflagged; the disc-step check flags it now (C3/C4-C4/C5 1.38 times the
    template's), so its levels stay unverified and the verdict warns. Seed 8's labeling is right
    (MAE 0.47 mm, unflagged)."""
    ph = make_independent_subject("test", seed=8, length_scale=1.05)
    f = _phantom_files(ph, tmp_path_factory.mktemp("longer"))
    v, reg = template_run(f["image"].parent / "run", f["image"], f["seg"], f["labels"])
    return ph, f, v, reg


@pytest.mark.slow
def test_subject_5_percent_longer_passes(longer):
    ph, _, v, reg = longer
    # measured 0.683 mm mean, label_si_scale 1.0615 (asserted < 1.0 and 1.0-1.12 before session 41)
    assert ph.error(reg.template2anat)["mean_mm"] < 0.75  # a correct registration ...
    assert v.verdict == "pass", v.reasons  # ... passes
    assert 1.04 < v.scores["label_si_scale"] < 1.08  # the subject is 1.05 times the template's length
    for key in ("similarity_after", "similarity_shift_gain", "image_structure", "hausdorff95_vox"):
        assert key in v.scores, key  # image-driven: the images' similarity is measured and judged


@pytest.mark.slow
def test_noise_image_in_place_of_the_anatomy_fails(longer):
    ph, f, _, _ = longer
    rng = np.random.default_rng(0)
    level = float(np.percentile(ph.image.data, 99))
    noise = np.hypot(rng.normal(0, 0.3 * level, ph.grid.shape), rng.normal(0, 0.3 * level, ph.grid.shape))
    path = save_image(Image(noise.astype(np.float32), ph.grid.affine), f["image"].parent / "noise.nii.gz",
                      overwrite=True)
    v, _ = template_run(f["image"].parent / "run_noise", path, f["seg"], f["labels"])
    assert v.verdict == "fail"
    assert any("image_structure" in r or "similarity_after" in r for r in v.reasons), v.reasons


@pytest.mark.slow
def test_wrong_level_is_flagged(longer, tmp_path):
    ph, f, _, _ = longer
    g = _phantom_files(ph, tmp_path, values=(4, 6))  # the C3 and C5 bodies labelled C4 and C6
    v, reg = template_run(tmp_path / "run", g["image"], g["seg"], g["labels"])
    assert max(ph.level_errors(reg.template2anat).values()) > 10  # the registration follows the labels
    assert v.verdict in ("warn", "fail"), v.scores


@pytest.mark.slow
def test_wrong_level_on_axial_stack_warns_through_the_unverified_reading(tmp_path):
    """5 mm axial slices, the C3 / C5 bodies labelled C2 / C4 (calibration case level_high, seed 2):
    the automatic labeling was ambiguous there, so the levels were not verified, and the S-I scale the
    wrong labels impose is only 0.03 % off: the run passed (3 of 3 such runs, 2026-12-04). The
    ambiguous labeling's best reading, one level off, then warned (``level_offset_unverified``).
    Since session 51 the labeling reads this stack's cord width right (pooled over its 5 mm slices)
    and is no longer ambiguous: the levels are verified and the wrong labels warn through
    ``level_offset_vertebrae`` (median offset 0.94, margin 0.90, 3 discs); the right labels pass
    (0.0; median -0.01). tests/test_verdict.py keeps the unverified reading's case."""
    ph = make_independent_subject("axial_thick", seed=2)
    for values, verdict, offset in (((2, 4), "warn", 1.0), (None, "pass", 0.0)):
        f = _phantom_files(ph, tmp_path / str(values), values=values)
        v, reg = template_run(f["image"].parent / "run", f["image"], f["seg"], f["labels"])
        assert v.verdict == verdict, v.reasons
        assert v.scores["level_offset_vertebrae"] == offset and "level_offset_unverified" not in v.scores
        worst = max(ph.level_errors(reg.template2anat).values())
        # measured: 17.4 mm with the wrong labels, 2.53 mm with the right ones (5 mm slices; the
        # right ones were only asserted < 10 mm before session 41)
        assert worst > 10 if values is not None else worst < 2.8, worst


@pytest.mark.slow
def test_thick_slices_do_not_fail_hausdorff_by_construction(data_root, tmp_path):
    ph = make_independent_subject("axial_7p5", seed=1)
    f = _phantom_files(ph, tmp_path)
    v, reg = template_run(tmp_path / "run", f["image"], f["seg"], f["labels"])
    # Hausdorff is judged in 7.5 mm voxels over the slices both masks hold: no failure by construction
    # (measured 0.0; asserted <= 2.0 before session 41)
    assert v.scores["hausdorff95_vox"] < 0.2 and not any("hausdorff" in r for r in v.reasons), (v.scores, v.reasons)
    # the real S-I error (3.6 mm mean: labels on 7.5 mm slices are known to +-3.75 mm only) is said;
    # measured 3.59 (asserted > 2.0 before session 41)
    assert 3.4 < ph.error(reg.template2anat)["mean_mm"] < 3.8
    assert v.verdict in ("warn", "fail") and any(r.startswith("warn: label_si_uncertainty_mm") for r in v.reasons)


# -- register (two images) ---------------------------------------------------------------------------
def _register_run(out: Path, src: Path, dest: Path, iseg: Path | None = None, dseg: Path | None = None,
                  identity: bool = False):
    reg = register_multimodal(src, dest, iseg=iseg, dseg=dseg, identity=identity)
    write_multimodal_outputs(reg, out, overwrite=True,
                             inputs={"input": src, "dest": dest, "iseg": iseg, "dseg": dseg})
    return json.loads((out / "metrics.json").read_text())["qc"]


def test_t2_to_t2s_with_both_segs_does_not_fail_on_coverage(sct_data, tmp_path):
    t2, t2s = sct_data / "t2", sct_data / "t2s"
    qc = _register_run(tmp_path / "r", t2 / "t2.nii.gz", t2s / "t2s.nii.gz", t2 / "t2_seg-manual.nii.gz",
                       t2s / "t2s_seg.nii.gz")
    assert qc["scores"]["cord_dice"] > 0.96  # measured 0.9685 (> 0.95 before session 41)
    assert qc["verdict"] != "fail", qc["reasons"]
    # distances are judged over the slices both cover, in voxels of the coarsest axis (5 mm);
    # measured 0.0098 and 0.0667 (asserted < 0.5 and < 1.0 before session 41)
    assert qc["scores"]["inverse_consistency_vox"] < 0.015 and qc["scores"]["hausdorff95_vox"] < 0.1, qc["scores"]
    # 7.5 mm slices do not resolve the vertebral pattern: the S-I peak is not judged
    assert "similarity_si_peak" not in qc["scores"]


def _upside_down(src: Path, dst: Path) -> Path:
    im = nib.load(str(src))
    ax = [i for i, c in enumerate(nib.aff2axcodes(im.affine)) if c in "SI"][0]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(np.flip(np.asanyarray(im.dataobj), ax)), im.affine, im.header),
             str(dst))
    return dst


#: similarity_si_peak of t1 -> t2 and t2 -> t1 (both segmentations), as they are and with the
#: destination's data flipped S-I (header unchanged): bench/qc_si_peak.py, docs/qc_calibration.md
SI_PEAK = {("t1", False): 0.3721, ("t1", True): 0.0349, ("t2", False): 0.3124, ("t2", True): -0.0157}
#: cord Dice of the same runs, measured (session 41; asserted > 0.94 for all four before)
#: session 50 (the imseg demons image term leaves out what the source does not cover): SI_PEAK
#: was 0.396 / 0.059 / 0.336 / -0.035 and CORD_DICE 0.969 / 0.973 / 0.946 / 0.956
#: session 51 (the imseg demons image term kept out of the field's edge extension,
#: tests/test_register_thick_slice_segs.py): SI_PEAK was 0.3665 / -0.0085 / 0.3207 / -0.0157 (the flipped
#: pairs still warn, < 0.15) and CORD_DICE 0.970 / 0.9734 / 0.9494 / 0.9611
CORD_DICE = {("t1", False): 0.970, ("t1", True): 0.9734, ("t2", False): 0.9494, ("t2", True): 0.9545}


@pytest.mark.parametrize("src_name", ["t1", "t2"])
def test_destination_stored_upside_down_warns(sct_data, tmp_path, src_name):
    """A cord-driven registration aligns the cords of a destination whose data runs the other way
    along S-I (cord Dice 0.955 / 0.973 for t2 -> t1 / t1 -> t2, every other score passes): the vertebral pattern does not peak
    along S-I there, and the verdict warns; the same pair as it is passes."""
    files = {"t1": (sct_data / "t1" / "t1w.nii.gz", sct_data / "t1" / "t1w_seg-manual.nii.gz"),
             "t2": (sct_data / "t2" / "t2.nii.gz", sct_data / "t2" / "t2_seg-manual.nii.gz")}
    (src, iseg), (dest, dseg) = files[src_name], files["t2" if src_name == "t1" else "t1"]
    ud, ud_seg = _upside_down(dest, tmp_path / "ud.nii.gz"), _upside_down(dseg, tmp_path / "ud_seg.nii.gz")
    for flipped, d, ds in ((False, dest, dseg), (True, ud, ud_seg)):
        qc = _register_run(tmp_path / f"r{int(flipped)}", src, d, iseg, ds)
        s = qc["scores"]
        assert s["cord_dice"] >= CORD_DICE[src_name, flipped] - 0.006, s["cord_dice"]
        # measured within 0.0005 of SI_PEAK (abs=0.02 before session 41)
        assert s["similarity_si_peak"] == pytest.approx(SI_PEAK[src_name, flipped], abs=0.005)
        if flipped:
            assert qc["verdict"] == "warn" and any("similarity_si_peak" in r for r in qc["reasons"]), qc
        else:
            assert qc["verdict"] == "pass", qc["reasons"]


def test_image_only_run_gets_a_similarity_score(sct_data, tmp_path):
    qc = _register_run(tmp_path / "r", sct_data / "t2" / "t2.nii.gz", sct_data / "t2s" / "t2s.nii.gz")
    s = qc["scores"]
    assert {"similarity_before", "similarity_after", "similarity_shift_gain"} <= set(s)
    assert s["similarity_after"] > s["similarity_before"]
    assert qc["verdict"] != "fail", qc["reasons"]


def test_identity_onto_an_empty_destination_fails(sct_data, tmp_path):
    t2 = sct_data / "t2" / "t2.nii.gz"
    ref = nib.load(str(t2))
    zero = tmp_path / "zero.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(ref.shape, np.float32), ref.affine), str(zero))
    qc = _register_run(tmp_path / "r", t2, zero, identity=True)
    assert qc["verdict"] == "fail"
    assert any("image_empty" in r for r in qc["reasons"]) and any("identity_result" in r for r in qc["reasons"])


def test_identity_fails_unless_the_images_are_aligned(sct_data, tmp_path):
    t2, t2s = sct_data / "t2" / "t2.nii.gz", sct_data / "t2s" / "t2s.nii.gz"
    mt0, mt1 = sct_data / "mt" / "mt0.nii.gz", sct_data / "mt" / "mt1.nii.gz"
    far = _register_run(tmp_path / "far", t2, t2s, identity=True)
    assert far["scores"]["identity_result"] == 1.0 and far["verdict"] == "fail"
    # a registration that does nothing on the same image is right, and says so
    import shutil

    copy = shutil.copy(mt1, tmp_path / "mt1_copy.nii.gz")
    same = _register_run(tmp_path / "same", mt1, Path(copy), identity=True)
    assert same["scores"]["identity_result"] == 0.0, same["scores"]
    # mt0 and mt1 are one acquisition apart (the gold standard moves them by < 1 mm): not flagged either
    near = _register_run(tmp_path / "near", mt0, mt1, identity=True)
    assert near["scores"]["identity_result"] == 0.0, near["scores"]


def test_judge_uses_the_new_scores():
    base = {"cord_dice_dest_zb": 0.96}
    assert judge(base, "register", extra_scores={"image_empty": 1.0}).verdict == "fail"
    assert judge(base, "register", extra_scores={"image_structure": 0.05}).verdict == "fail"
    assert judge(base, "register", extra_scores={"hausdorff95_vox": 0.9}).verdict == "pass"
    assert judge(base, "register", extra_scores={"inverse_consistency_vox": 1.5}).verdict == "fail"
