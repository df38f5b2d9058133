"""label-vertebrae under one dent in the segmentation (session 16): sct_testing_data's t2 manual
mask with one side cut off (25-45 % of the section, a random direction) on 3-6 consecutive slices
at a random height, seeds 0-19. Reference: the labeling on the intact mask (C2/C3-C4/C5, right,
flagged: three discs in 55 mm). Measured: 17 of 20 as the reference, the three others flagged
(seeds 3 and 10 one level low, 19 read as T1/T2-T2/T3); 18 of 20 before session 20 lowered the
bright-disc band's half-width floor (seed 19 then kept its levels), 13 before the width was read
from the intact side of a one-sided section (one was unflagged then)."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.vertebrae import label_vertebrae

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _dented(mask: np.ndarray, siax: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mm = np.moveaxis(mask, siax, 2)
    zs = np.flatnonzero(mm.any((0, 1)))
    n = int(rng.integers(3, 7))
    z0 = int(rng.integers(zs[0], zs[-1] - n + 2))
    ang, frac = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.45)
    out = mm.copy()
    for z in range(z0, min(z0 + n, zs[-1] + 1)):
        ij = np.argwhere(mm[:, :, z])
        proj = (ij - ij.mean(0)) @ np.array([np.cos(ang), np.sin(ang)])
        rm = ij[proj > np.quantile(proj, 1 - frac)]
        out[rm[:, 0], rm[:, 1], z] = False
    return np.moveaxis(out, 2, siax)


def test_one_dent_rarely_moves_t2_levels_and_never_unflagged(sct_data):
    img = load_image(sct_data / "t2" / "t2.nii.gz")
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    ref = label_vertebrae(img, seg, contrast="t2")
    names = [d.name for d in ref.discs]
    assert names == ["C2/C3", "C3/C4", "C4/C5"]
    siax = int(np.argmax(np.abs(img.affine[2, :3])))
    mask = np.asarray(seg.data) > 0
    same, wrong_unflagged = 0, []
    for seed in range(20):
        lab = label_vertebrae(img, img.with_data(_dented(mask, siax, seed).astype(np.uint8)), contrast="t2")
        if [d.name for d in lab.discs] == names:
            same += 1
        elif not lab.ambiguous:
            wrong_unflagged.append(seed)
    assert same >= 17  # measured 17 (seeds 3, 10, 19 differ, flagged)
    assert wrong_unflagged == []
