"""Per-vertebra masks: PAM50's spine mask split by level, and user segmentations (SCT or
TotalSpineSeg values)."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.cord.vertebra_masks import (
    detect_convention,
    split_spine_mask,
    vertebrae_from_segmentation,
    vertebrae_on_grid,
)
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image
from spinereg.transforms.affine import AffineTransform


@pytest.fixture(scope="module")
def pam50_split(pam50_dir):
    tpl = pam50_dir / "template"
    spine = load_image(tpl / "PAM50_spine.nii.gz")
    return spine, np.asarray(split_spine_mask(spine, load_image(tpl / "PAM50_levels.nii.gz")).data)


@pytest.mark.slow
@pytest.mark.realdata
def test_pam50_spine_split_by_level(pam50_split, pam50_dir):
    spine, lab = pam50_split
    sp = np.asarray(spine.data) > 0
    assert np.array_equal(lab > 0, sp)  # every spine voxel labelled, nothing else
    assert set(np.unique(lab[lab > 0]).tolist()) == set(range(1, 21))
    discs = load_image(pam50_dir / "template" / "PAM50_label_disc.nii.gz")
    dz = {int(v): spine.grid.voxel_to_world(np.argwhere(np.asarray(discs.data) == v))[0][2] for v in range(2, 21)}
    cord_y = spine.grid.voxel_to_world(np.array([[70, 70, 0]]))[0][1]
    shares = {}
    for v in range(2, 20):  # each body (bone > 5 mm anterior to the cord) lies between its discs
        x = spine.grid.voxel_to_world(np.argwhere(lab == v))
        body = x[x[:, 1] > cord_y + 5]
        shares[v] = float(((body[:, 2] < dz[v] + 1.0) & (body[:, 2] > dz[v + 1] - 1.0)).mean())
    assert min(shares.values()) > 0.965, shares  # measured: C6 0.969, the others higher


def test_totalspineseg_and_sct_values():
    aff = np.eye(4)
    tss = np.zeros((6, 6, 6), np.int16)
    tss[0, 0, :3] = 13  # C3
    tss[1, 1, :3] = 21  # T1
    tss[2, 2, :3] = 41  # L1
    tss[3, 3, :3] = 1  # cord: dropped
    tss[4, 4, :3] = 64  # disc C3-C4: dropped
    out = np.asarray(vertebrae_from_segmentation(Image(tss, aff)).data)
    assert out[0, 0, 0] == 3 and out[1, 1, 0] == 8 and out[2, 2, 0] == 20
    assert out[3, 3, 0] == 0 and out[4, 4, 0] == 0
    sct = np.zeros((4, 4, 4), np.int16)
    sct[0, 0, 0], sct[1, 1, 1] = 3, 20
    assert detect_convention([3, 20]) == "sct"
    assert np.array_equal(np.asarray(vertebrae_from_segmentation(Image(sct, aff)).data), sct)
    # C1-C7 only, as 11-17: ambiguous, so the caller says which
    only_c = np.where(sct > 0, 13, 0).astype(np.int16)
    assert np.asarray(vertebrae_from_segmentation(Image(only_c, aff), "totalspineseg").data).max() == 3
    with pytest.raises(InputError, match="not SCT levels"):
        vertebrae_from_segmentation(Image(np.where(sct > 0, 41, 0).astype(np.int16), aff), "sct")
    with pytest.raises(InputError, match="non-integer"):
        vertebrae_from_segmentation(Image(sct + 0.5, aff))


def test_labels_move_with_a_transform():
    aff = np.eye(4)
    lab = np.zeros((20, 20, 20), np.int16)
    lab[5:10, 5:10, 5:10] = 4
    img = Image(lab, aff)
    shifted = vertebrae_on_grid(img, img.grid, AffineTransform.from_params(translation=(2.0, 0, 0)))
    assert shifted.dtype == np.int16 and set(np.unique(shifted)) == {0, 4}
    assert np.array_equal(np.argwhere(shifted == 4).min(0), [3, 5, 5])
