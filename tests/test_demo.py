"""The README's main job: the sample subject registered to PAM50 from the bare image (cord
segmented, every disc labelled automatically: register-to-template -i t2.nii.gz -c t2) with its
QC report. labels.nii.gz (mid-body of C3 and C5, by hand) is held out and scores the result.

Measured (session 32, PAM50 at 0.5 mm): discs C2/C3, C3/C4, C4/C5 (the right levels; flagged
ambiguous, identity margin 0.66 < 2: the warning is on stderr), verdict warn (the levels cannot be
verified independently -- the landmarks are the labeling's own discs -- and then a landmark S-I
scale deviation of 0.1023 > 0.05 warns: unverified_si_scale_deviation; and the labeling that gave
the landmarks is ambiguous: landmark_levels_ambiguous), cord Dice 0.9775 against the automatic
segmentation (asserted >= 0.97) and 0.971 against t2_seg-manual.nii.gz (not used); the held-out
bodies land 0.70 (C3) and 0.93 mm (C5) from PAM50's body labels, mean 0.82 (S-I +0.33 / -0.02 mm);
at their height on the manual cord's centerline 0.35 / 0.58 mm (the hand-placed voxels sit 0.93 /
1.23 mm off the cord's centre). Earlier: margin 0.72, 0.68 / 1.05 mm (S-I +0.28 / -0.59).

The full run is marked slow: scripts/test.sh runs it in its second stage.
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image

OUTPUTS = ("warp_anat2template.nii.gz", "warp_template2anat.nii.gz", "anat2template.nii.gz",
           "template2anat.nii.gz", "metrics.json", "provenance.json", "qc/index.html", "qc/entries.json",
           "t2_seg.nii.gz", "t2_labels-disc.nii.gz", "t2_discs.json")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


@pytest.mark.slow
def test_demo_main_job(tmp_path, capsys, data_root, sct_data, monkeypatch):
    import spinereg.register.template as template_mod

    real, seen = template_mod.register_to_template, []

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(template_mod, "register_to_template", spy)
    out = tmp_path / "spinereg_demo"
    assert main(["demo", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert printed.startswith("demo: WARN"), printed  # levels unverifiable from the bare image (below)
    assert f"QC report: {out / 'qc' / 'index.html'}" in printed and "cord Dice" in printed
    for f in OUTPUTS:
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cord_dice_subject_space"] >= 0.972  # measured 0.9775 (the issue asks 0.95 against the manual mask)
    qc = metrics["qc"]
    assert qc["verdict"] == "warn" and qc["reasons"] == ["warn: unverified_si_scale_deviation 0.1023 > 0.05",
                                                          "warn: landmark_levels_ambiguous 1 > 0.5"], qc
    assert qc["scores"]["landmark_levels_contradicted"] == 0.0  # ambiguous (margin 0.66), not contradicted
    assert any(n.startswith("levels not independently verified") for n in qc["notes"]), qc
    assert qc["scores"]["cord_dice"] >= 0.972 and "similarity_after" in qc["scores"], qc  # image scores computed
    # the S-I peak is judged for ``register`` only: not computed here (session 38)
    assert "similarity_si_peak" not in qc["scores"], qc
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["template"]["name"] == "PAM50" and prov["versions"]["spinereg"]
    assert prov["invoked_as"] == "demo" and prov["command_line"].startswith("spinereg demo -o ")
    # from the bare image: the segmentation and the discs are the job's own, labels.nii.gz is not used
    assert "automatic: spinereg segment" in prov["inputs"]["seg"] and not prov["inputs"].get("labels")
    assert "automatic: spinereg label-vertebrae" in prov["inputs"]["ldisc"]
    discs = json.loads((out / "t2_discs.json").read_text())
    assert [d["name"] for d in discs["discs"]] == ["C2/C3", "C3/C4", "C4/C5"]
    # measured: margin 0.66 < 2, flagged and said on stderr (asserted since session 36; the check was
    # conditional on the flag before)
    assert discs["ambiguous"] and abs(discs["identity_margin"] - 0.66) <= 0.05, discs["identity_margin"]  # 0.67
    assert "level identity is ambiguous" in captured.err
    # held-out truth: the hand-placed C3/C5 bodies pushed into PAM50 (measured 0.70 / 0.93 mm; 0.68 /
    # 1.05 before the discs were registered in PAM50_label_disc's convention)
    held = metrics["held_out"]
    assert set(held["body_labels"]) == {"3", "5"}
    assert held["mean_mm"] <= 0.85 and held["max_mm"] <= 1.0, held
    # at their height on the manual segmentation's centerline (measured 0.35 / 0.58 mm)
    assert held["on_cord_mean_mm"] <= 0.50 and held["on_cord_max_mm"] <= 0.63, held
    assert "held out (labels.nii.gz" in printed
    # and the manual segmentation (measured Dice 0.971)
    from spinereg.io.template import load_template
    from spinereg.metrics import dice
    from spinereg.transforms import apply_transforms

    man = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    tcord = load_image(load_template("PAM50").path("cord"), ndim=3, check_finite=False)
    assert dice(apply_transforms(tcord, man.grid, [seen[-1].template2anat], "linear"), man).dice >= 0.966  # measured 0.9709
    # the QC report says where the template image is synthesised (no PAM50_t2 in the data here)
    entry = json.loads((out / "qc" / "entries.json").read_text())["entries"][0]
    has_t2 = (data_root / "PAM50" / "template" / "PAM50_t2.nii.gz").exists()
    notes = [p["note_after"] for p in entry["panels"] if p["stage"].startswith("registration") and p["kind"] == "toggle"]
    assert notes and all(("SYNTHESISED" in n) != has_t2 for n in notes), notes
    assert any(p["title"] == "Atlas tract groups on the subject" for p in entry["panels"])
    # template-space outputs on PAM50's own grid (shape and affine of PAM50_cord)
    cord = nib.load(str(data_root / "PAM50" / "template" / "PAM50_cord.nii.gz"))
    for name in ("anat2template.nii.gz", "warp_anat2template.nii.gz"):
        img = nib.load(str(out / name))
        assert img.shape[:3] == cord.shape == (141, 141, 991), name
        assert np.allclose(img.affine, cord.affine, atol=1e-4), name
    assert nib.load(str(out / "warp_anat2template.nii.gz")).header.get_intent()[0] == "vector"
    # files readable as the umask allows (not 0600)
    want = 0o666 & ~_umask()
    for p in out.rglob("*"):
        if p.is_file() and p.name != ".lock":
            assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode))
    # outside the region the subject maps into, the constant fill sends template points outside the
    # subject's field of view: resampling there gives the zeros anat2template holds
    from spinereg.transforms.itk import read_displacement
    from spinereg.transforms.sanity import inside

    w = read_displacement(out / "warp_anat2template.nii.gz")
    a2t = np.asarray(nib.load(str(out / "anat2template.nii.gz")).dataobj)
    t2 = load_image(sct_data / "t2" / "t2.nii.gz")
    ijk = np.stack([np.random.default_rng(0).integers(0, s, 100_000) for s in w.grid.shape], 1)
    lands = inside(t2.grid, w.map(w.grid.voxel_to_world(ijk)))
    vals = a2t[tuple(ijk.T)]
    assert lands.sum() > 1000 and np.all(vals[~lands] == 0) and np.mean(vals[lands] != 0) > 0.99
    # --crop keeps the small grid (a voxel-aligned part of PAM50's)
    from spinereg.pipelines.template_outputs import write_outputs

    reg = seen[-1]
    files = write_outputs(reg, tmp_path / "cropped", crop=True)
    img = nib.load(str(files["anat2template"]))
    assert img.shape == tuple(reg.template_grid.shape) and img.shape[2] < 991
    off = np.linalg.solve(cord.affine, img.affine)
    assert np.allclose(off[:3, :3], np.eye(3)) and np.allclose(off[:3, 3], np.round(off[:3, 3]), atol=1e-3)


def test_held_out_body_residuals(pam50_dir):
    """The demo's held-out score: the template's own body labels through the identity land on
    themselves (0 mm); moved 2 mm along S-I, 2 mm with S-I part -2; no body labels in the
    template: not scored."""
    from spinereg.pipelines.registration import held_out_body_residuals
    from spinereg.transforms.affine import AffineTransform

    body = pam50_dir / "template" / "PAM50_label_body.nii.gz"
    same = held_out_body_residuals(AffineTransform(np.eye(4)), body)
    assert same["max_mm"] <= 1e-6 and len(same["body_labels"]) >= 5
    shift = np.eye(4)
    shift[2, 3] = -2.0
    moved = held_out_body_residuals(AffineTransform(shift), body)
    assert all(abs(v["mm"] - 2.0) < 1e-3 and abs(v["si_mm"] + 2.0) < 1e-3 for v in moved["body_labels"].values())
    # a template without body labels (PAM50_small): said, not scored
    small = held_out_body_residuals(AffineTransform(np.eye(4)), body, "PAM50_small")
    assert small["mean_mm"] is None and "no vertebral body labels" in small["what"]


def test_held_out_body_residuals_on_the_cord(pam50_dir, tmp_path):
    """With the subject's cord: PAM50's body labels placed 3 mm anterior of where they are (off
    the cord, as a hand-placed voxel can be) score 3 mm as placed and ~0 at their height on the
    cord; moved 2 mm along S-I as well, 2 mm (S-I -2) on the cord."""
    from spinereg.cord.landmarks import read_point_labels
    from spinereg.io.image import Image, load_image, save_image
    from spinereg.io.resample import place_labels
    from spinereg.pipelines.registration import held_out_body_residuals
    from spinereg.transforms.affine import AffineTransform

    tpl = pam50_dir / "template"
    lab = read_point_labels(load_image(tpl / "PAM50_label_body.nii.gz", ndim=3, check_finite=False), "body")
    keep = (lab.values >= 2) & (lab.values <= 12)
    grid = load_image(tpl / "PAM50_cord.nii.gz", ndim=3, check_finite=False).grid
    off = np.asarray(lab.points, float)[keep] + [0.0, 3.0, 0.0]
    arr = place_labels(off, lab.values[keep].astype(int), grid, dtype=np.uint8)
    save_image(Image(arr, grid.affine), tmp_path / "off.nii.gz")
    cord = tpl / "PAM50_cord.nii.gz"
    r = held_out_body_residuals(AffineTransform(np.eye(4)), tmp_path / "off.nii.gz", cord=cord)
    assert len(r["body_labels"]) == keep.sum()
    assert all(abs(v["mm"] - 3.0) < 1e-3 for v in r["body_labels"].values()), r  # measured 0 (3 decimals)
    assert r["on_cord_max_mm"] <= 0.065, r  # measured 0.044
    shift = np.eye(4)
    shift[2, 3] = -2.0
    r = held_out_body_residuals(AffineTransform(shift), tmp_path / "off.nii.gz", cord=cord)
    assert all(abs(v["on_cord_si_mm"] + 2.0) < 0.065 and abs(v["on_cord_mm"] - 2.0) < 0.065
               for v in r["body_labels"].values()), r  # measured <= 0.044 off each
