"""A cord with an intramedullary lesion: sct_testing_data's t2_fake_lesion (a real sagittal T2
image, 0.8 mm, cervicothoracic, a CSF-bright lesion painted into its cord; its cord mask
``t2_fake_lesion_sc_seg`` is SCT's, its lesion mask ``t2_fake_lesion_lesion_seg``; none of them
used to train or set anything).

Before ``segment.refine``'s lesion rule the model drew the lesion alone as the "cord" on 8
working slices and left the cord around it out: a 7 mm hole (94 of the lesion's 163 voxels inside
the mask, Dice 0.876 against SCT's mask). The automatic labeling read that narrowing as the
lower end of the cord and named the discs T11/T12-T12/L1 (flagged, one disc skipped); the bare
job registered PAM50's thoracolumbar levels onto the image (verdict warn). Now the mask holds the
whole lesion (Dice 0.909), and the labeling names the discs as it does on SCT's mask
(C7/T1-T3/T4; placed within 0.5 mm of each other until session 26, which lets T2 images read
dark discs: SCT's mask's labeling now reads them dark, on the image's dark disc bands, ours stays
bright, 4.4 mm above, and is flagged). Which levels are truly shown is not known (no vertebral labels come
with the image): the figure is the agreement of two independent segmentations, not accuracy.

The labeling's second pass (cord width down-weighted, when the image alone prefers levels one or
two away) is kept only when it moves the levels by at most two: with SCT's mask cut down to the
lesion on its slices and two beyond (what the model drew), the second pass jumped ten levels
(T9/T10-T10/T11); the first labeling is now kept, flagged with the cues' disagreement (the bare
job's verdict: fail, landmark_levels_contradicted).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.metrics import dice
from spinereg.segment import segment
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.label import CUES_DISAGREE, level_shift

pytestmark = [pytest.mark.realdata]


@pytest.fixture(scope="module")
def lesion_case(sct_data):
    d = sct_data / "t2"
    img = load_image(d / "t2_fake_lesion.nii.gz")
    return img, load_image(d / "t2_fake_lesion_sc_seg.nii.gz"), load_image(d / "t2_fake_lesion_lesion_seg.nii.gz")


@pytest.fixture(scope="module")
def auto_seg(lesion_case):
    return segment(lesion_case[0], "t2")


def test_the_segmentation_keeps_the_cord_around_a_lesion(lesion_case, auto_seg):
    img, sct_seg, lesion = lesion_case
    les = np.asarray(lesion.data) > 0
    mask = np.asarray(auto_seg.seg.data) > 0
    assert (mask & les).sum() == les.sum() == 163  # before: 94 of 163
    assert dice(auto_seg.seg, sct_seg).dice >= 0.905  # measured 0.9086 (0.8756 before)
    assert len(auto_seg.info["refined"]["gap_slices_filled"]) == 9  # working slices 17-25


def test_labels_as_on_sct_s_mask(lesion_case, auto_seg):
    img, sct_seg, _ = lesion_case
    ours = label_vertebrae(img, auto_seg.seg, contrast="t2")
    theirs = label_vertebrae(img, sct_seg, contrast="t2")
    assert [d.name for d in ours.discs] == [d.name for d in theirs.discs] == ["C7/T1", "T1/T2", "T2/T3", "T3/T4"]
    # the image's thoracic discs are dark bands (thin, between dark endplates): since session 26
    # T2 images try dark discs too, and on SCT's mask they win (by 2.01 with bright's prior of 2):
    # the discs sit on the dark bands, 4.5-5 mm below where the bright reading put them (on the
    # marrow above each band); flagged on its identity margin (1.24)
    assert theirs.polarity < 0 and theirs.ambiguous
    # on our mask bright still wins, by 0.53 < POLARITY_MARGIN: flagged with that reason (before,
    # unflagged at margin 2.15 with the discs on the marrow; the two masks' labelings agreed within 1.13 mm)
    assert ours.polarity > 0 and ours.ambiguous and ours.identity_margin >= 2.05
    assert any("bright and dark discs fit alike" in r for r in ours.report["ambiguous_reasons"])
    far = max(float(np.linalg.norm(np.subtract(a.point, b.point))) for a, b in zip(ours.discs, theirs.discs, strict=True))
    assert 4.1 <= far <= 4.7, far  # measured 4.39


def test_a_second_pass_far_from_the_first_is_not_taken(lesion_case):
    img, sct_seg, lesion = lesion_case
    les = np.asarray(lesion.data) > 0
    rows = np.unique(np.nonzero(les)[1])  # voxel axis 1 is S-I here (PSR)
    cut = np.asarray(sct_seg.data) > 0
    lo, hi = rows.min() - 2, rows.max() + 3
    cut[:, lo:hi, :] = les[:, lo:hi, :]
    lab = label_vertebrae(img, img.with_data(cut.astype(np.uint8)), contrast="t2")
    assert [d.name for d in lab.discs] == ["C6/C7", "C7/T1", "T1/T2"] and lab.ambiguous
    second = lab.report["second_pass"]
    assert second["kept"] is False and second["level_shift"] == 10, second
    assert second["discs"] == ["T9/T10", "T10/T11"]
    reasons = lab.report["ambiguous_reasons"]
    assert "the first labeling is kept" in reasons[0]
    assert any(r.startswith(CUES_DISAGREE) for r in reasons)  # the bare job's verdict: fail
    assert "first_pass" not in lab.report


def test_level_shift_reads_the_renaming_at_shared_places(lesion_case, auto_seg):
    img = lesion_case[0]
    lab = label_vertebrae(img, auto_seg.seg, contrast="t2")
    assert level_shift(lab, lab) == 0
    moved = label_vertebrae(img, auto_seg.seg, contrast="t2")
    for d in moved.discs:
        d.value += 1
    assert level_shift(lab, moved) == 1 and level_shift(moved, lab) == -1
    for d in moved.discs:
        d.s += 9.0  # half-way between discs ~18-20 mm apart: none within 6 mm
    assert level_shift(lab, moved) is None
