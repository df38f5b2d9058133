"""``moco`` on a series that moves several voxels between volumes (truth from outside the method).

The temporal mean of SCT's fmri (68x68x6, 0.956 mm in-plane) is moved in-plane by a known
translation per volume (``scipy.ndimage.shift``, cubic, content moved by ``s``: moco's pull shift
is then ``s``), Rician noise sigma 45 (the fmri's single-volume level). Error per volume and slice
in mm after removing the mean over volumes (the reference is the series mean: the shifts are
defined up to a constant per slice).

Before session 51 the first reference was the plain mean of the volumes, which for such a series
shows the subject several times over; slices settled on different copies and the later passes
(finest level only) kept them. Random jumps up to 8 voxels, 15 volumes, seeds 0-4: max error
0.320 / 0.170 / 0.150 / 0.192 / 2.828 mm (seed 4: mean 1.254 mm, the slices of volume 0 1.9-5.6
voxels apart; the session-49 open item). Pre-aligned by whole-volume phase correlation
(:func:`spinereg.epi.moco_estimate.prealign_shifts`): max 0.133 / 0.091 / 0.110 / 0.088 / 0.140 mm, held-out
seeds 5-9 0.067-0.177. A drift of 8 voxels over 20 volumes: seeds 0 / 4 max 0.186 / 0.369 mm ->
0.083 / 0.028. The verdict of such series is fail (most volumes over the motion threshold): what
this fixes is the motion table and the corrected series one is given with --allow-fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.epi.moco import motion_correct
from spinereg.io.image import Image, load_image

pytestmark = pytest.mark.realdata

VOX_MM = 0.9558824
#: seed: measured (mean, max) error in mm, random jumps up to 8 voxels, 15 volumes
JUMPS = {0: (0.041, 0.133), 1: (0.036, 0.091), 2: (0.040, 0.110), 3: (0.030, 0.088), 4: (0.045, 0.140)}
#: seed: measured max error in mm, drift of 8 voxels over 20 volumes
DRIFT = {0: 0.083, 4: 0.028}


@pytest.fixture(scope="module")
def fmri_mean(sct_data):
    img = load_image(sct_data / "fmri" / "fmri.nii.gz")
    return np.asarray(img.data, dtype=np.float64).mean(-1), img.affine


def _series(vol: np.ndarray, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ser = np.stack([np.stack([ndimage.shift(vol[:, :, k], st, order=3, mode="nearest") for k in range(vol.shape[2])],
                             -1) for st in s], -1)
    return np.sqrt((ser + rng.normal(0, 45.0, ser.shape)) ** 2 + rng.normal(0, 45.0, ser.shape) ** 2)


def _errors_mm(fmri_mean, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    vol, aff = fmri_mean
    res = motion_correct(Image(_series(vol, s, rng).astype(np.float32), aff))
    e = res.shifts - s[:, None, :]
    return np.linalg.norm(e - e.mean(axis=0), axis=-1) * VOX_MM


@pytest.mark.parametrize("seed", sorted(JUMPS))
def test_random_jumps_up_to_8_voxels(fmri_mean, seed):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-8.0, 8.0, (15, 2))
    s[0] = 0.0
    err = _errors_mm(fmri_mean, s, rng)
    mean, worst = JUMPS[seed]
    assert err.mean() <= mean * 1.2 + 0.01, err.mean()
    assert err.max() <= worst * 1.2 + 0.03, err.max()


@pytest.mark.parametrize("seed", sorted(DRIFT))
def test_drift_of_8_voxels(fmri_mean, seed):
    rng = np.random.default_rng(seed)
    end = rng.uniform(-1, 1, 2)
    s = np.linspace(0, 1, 20)[:, None] * (end / np.abs(end).max() * 8.0) + rng.normal(0, 0.1, (20, 2))
    err = _errors_mm(fmri_mean, s, rng)
    assert err.max() <= DRIFT[seed] * 1.2 + 0.03, err.max()
