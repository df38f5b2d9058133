"""The pontomedullary junction when the image shows it (spinereg.vertebrae.pmj).

Truth: SCT's manual PMJ label on PAM50_small_t2 (a real T2 average showing the medulla and the
pons), and that label moved with copies of the image turned, shifted, resampled onto other grids
and degraded by numpy/scipy alone (spinereg.phantom.moved_copies). The detector was developed on
the original image (the one image at hand that shows a PMJ), so its copies test the reading's
stability under motion, grids and noise, not another anatomy. Errors are signed along the cord's
axis (found minus manual; the PMJ is an S-I reference). Measured (session 22): original -2.81 mm;
copies seeds 0-11 -0.57..-5.03 (mean -2.28; 2 mm axial slices -2.62..-5.03). No PMJ is reported on
any image that does not show one (sct_testing_data t2, t1, mt1, both CSF polarities; the
independent phantoms)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.cord.centerline import centerline_from_seg
from spinereg.io.image import load_image
from spinereg.vertebrae.pmj import PMJ_VALUE, find_pmj, front_profile

pytestmark = pytest.mark.realdata

#: axis error (mm) of the moved copies, seeds 0-5 (measured; asserted within 0.3 mm)
COPIES = {0: -1.61, 1: -1.30, 2: -3.48, 3: -2.62, 4: -1.54, 5: -1.94}
ORIGINAL = -2.81


def _axis_error(image, seg, lab_or_cl, point, truth) -> float:
    cl = getattr(lab_or_cl, "centerline", lab_or_cl)
    up = front_profile(image, seg, cl, 1)["up"]
    return float((np.asarray(point) - truth) @ up)


def test_original_through_the_command(sct_data, tmp_path):
    """label-vertebrae on PAM50_small_t2 with its automatic segmentation: <img>_pmj.nii.gz (one
    voxel, 50), the JSON's pmj, the QC page's PMJ row; the point 2.8 mm below the manual label."""
    from spinereg.phantom.moved_copies import source

    t2 = sct_data / "template" / "template" / "PAM50_small_t2.nii.gz"
    seg = tmp_path / "seg.nii.gz"
    assert main(["segment", "-i", str(t2), "-c", "t2", "-o", str(seg)]) == 0
    out = tmp_path / "lab"
    assert main(["label-vertebrae", "-i", str(t2), "-s", str(seg), "-c", "t2", "-o", str(out),
                 "--qc", str(tmp_path / "qc")]) == 0
    doc = json.loads((out / "PAM50_small_t2_discs.json").read_text())
    pmj = doc["pmj"]
    assert pmj["value"] == PMJ_VALUE and pmj["pons_step_mm"] > 15
    lab_img = load_image(out / "PAM50_small_t2_pmj.nii.gz")
    vals = np.asarray(lab_img.data)
    assert np.unique(vals[vals > 0]).tolist() == [PMJ_VALUE] and (vals > 0).sum() == 1
    _, _, truth, _ = source()
    image, s = load_image(t2), load_image(seg)
    err = _axis_error(image, s, centerline_from_seg(s), pmj["point_mm"], truth)
    assert abs(err - ORIGINAL) <= 0.3, err
    page = next((tmp_path / "qc").rglob("*.html"))
    assert "PMJ" in "".join(p.read_text() for p in (tmp_path / "qc").rglob("*.html")), page


@pytest.mark.parametrize("seed", sorted(COPIES))
def test_moved_copies(seed):
    from spinereg.phantom.moved_copies import moved_copy
    from spinereg.segment import segment
    from spinereg.vertebrae import label_vertebrae

    c = moved_copy(seed)
    seg = segment(c.image, "t2").seg
    lab = label_vertebrae(c.image, seg, "t2")
    assert lab.pmj is not None
    err = _axis_error(c.image, seg, lab, lab.pmj["point_mm"], c.pmj)
    assert abs(err - COPIES[seed]) <= 0.3, (seed, c.grid, err)


@pytest.mark.parametrize("image,seg", [("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz"),
                                       ("t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz"),
                                       ("mt/mt1.nii.gz", "mt/mt1_seg.nii.gz")])
def test_no_pmj_where_the_image_shows_none(sct_data, image, seg):
    img, s = load_image(sct_data / image), load_image(sct_data / seg)
    cl = centerline_from_seg(s)
    assert find_pmj(img, s, cl, 1) is None and find_pmj(img, s, cl, -1) is None


@pytest.mark.parametrize("variant", ["cervical", "full", "iso1mm_t1", "sagittal_thick"])
def test_no_pmj_on_the_phantoms(variant):
    """The independent phantoms' fields start at or below C1 (no brainstem)."""
    from spinereg.phantom.independent import make_independent_subject

    ph = make_independent_subject(variant, seed=0)
    assert find_pmj(ph.image, ph.seg, centerline_from_seg(ph.seg), -1 if ph.contrast == "t1" else 1) is None


def test_a_labeling_without_it_says_none(sct_data, tmp_path):
    out = tmp_path / "lab"
    assert main(["label-vertebrae", "-i", str(sct_data / "t2" / "t2.nii.gz"), "-s",
                 str(sct_data / "t2" / "t2_seg-manual.nii.gz"), "-c", "t2", "-o", str(out)]) == 0
    assert json.loads((out / "t2_discs.json").read_text())["pmj"] is None
    assert not (out / "t2_pmj.nii.gz").exists()
