"""Registration jobs without a cord segmentation: the image is segmented automatically, the mask is
written into the output folder (SCT's ``<image>_seg.nii.gz``) and provenance.json records it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image
from spinereg.metrics.cordseg import dice_same_grid


def _stage(prov: dict, name: str) -> dict:
    stages = prov.get("stages") or prov.get("run", {}).get("stages") or []
    return next(s for s in stages if s["name"] == name)


def test_register_with_auto_segmentations(tmp_path, capsys, sct_data):
    mt = sct_data / "mt"
    out = tmp_path / "reg"
    rc = main(["register", "-i", str(mt / "mt0.nii.gz"), "-d", str(mt / "mt1.nii.gz"), "--iseg", "auto",
               "--dseg", "auto", "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    for name, ref in (("mt0_seg.nii.gz", "mt0_seg.nii.gz"), ("mt1_seg.nii.gz", "mt1_seg.nii.gz")):
        seg = load_image(out / name)
        # measured mt0 0.9003, mt1 0.9084 (as segment alone: test_segment_realdata)
        assert dice_same_grid(seg.data, load_image(mt / ref).data) >= 0.895
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["inputs"]["iseg"].startswith("mt0_seg.nii.gz (automatic")
    rec = _stage(prov, "segmentation")["segmentation"]
    assert set(rec) == {"mt0_seg.nii.gz", "mt1_seg.nii.gz"}
    assert rec["mt1_seg.nii.gz"]["by"] == "spinereg segment (automatic)" and rec["mt1_seg.nii.gz"]["models"]
    assert not list(tmp_path.glob("spinereg-autoseg-*"))


def test_register_auto_segmentation_of_a_noise_image_fails_cleanly(tmp_path, capsys, sct_data):
    import nibabel as nib

    mt = sct_data / "mt"
    ref = nib.load(str(mt / "mt1.nii.gz"))
    noise = tmp_path / "noise.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(np.abs(rng.standard_normal(ref.shape)).astype(np.float32) * 100, ref.affine),
             str(noise))
    out = tmp_path / "reg"
    rc = main(["register", "-i", str(noise), "-d", str(mt / "mt1.nii.gz"), "--iseg", "auto", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no spinal cord found" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_register_to_template_from_image_and_labels_alone(tmp_path, capsys, sct_data):
    """t2 with its C3/C5 body labels and no segmentation: the template cord warped onto the image
    overlaps the *manual* segmentation (the method never saw it)."""
    from spinereg.io.template import load_template
    from spinereg.transforms.apply import apply_transforms
    from spinereg.transforms.itk import load_transform

    t2 = sct_data / "t2"
    out = tmp_path / "rt"
    rc = main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-l", str(t2 / "labels.nii.gz"),
               "-o", str(out), "--allow-fail"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert (out / "t2_seg.nii.gz").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert "automatic" in prov["inputs"]["seg"]
    assert _stage(prov, "segmentation")["segmentation"]["t2_seg.nii.gz"]["segmented"] == "the image"
    tpl = load_template("PAM50")
    manual = load_image(t2 / "t2_seg-manual.nii.gz")
    cord = apply_transforms(load_image(tpl.path("cord"), ndim=3), manual.grid,
                            [load_transform(out / "warp_template2anat.nii.gz")], "linear")
    assert dice_same_grid(np.asarray(cord.data) >= 0.5, manual.data) >= 0.93
