"""``sdc topup`` with a blip-down read out in another time than blip-up (truth from outside the method).

SCT's dmri b0 (40x42x5, 0.84 mm in-plane) is the undistorted subject. A smooth field (three
Gaussian bumps around the subject's centre, the main one 80 Hz, sigma 4-8 voxels, 30 % S-I
gradient, a linear gradient of up to 10 Hz across j) displaces it along j (``epi_known_field.distort``: per PE
line the inverse map by ``np.interp`` on a fine grid, cubic splines of image and shift, Jacobian
modulation; not spinereg's code), by the field times 0.04 s for blip-up (``j``) and by minus the
field times blip-down's own readout time (``j-``), both stated in the sidecars; Gaussian noise at
0.3 times the SD of two b=750 volumes' difference over sqrt 2. Error of the estimated blip-up shift
over the subject (b0 above 25 % of its 99th percentile, opened).

Before session 51 the blip-down's ``TotalReadoutTime`` was not read: the pair was solved as mirror
images. Blip-down read out in 0.02 s (seeds 0-2): 95th percentile error 0.590 / 1.153 / 0.445 voxel
(true peaks 3.6 / 5.7 / 2.3), corrected image's correlation with the truth 0.971 / 0.895 / 0.967,
exit 0, no word. Now 0.072 / 0.097 / 0.065 and 0.991 / 0.993 / 0.992; the same pair read out
equally (0.04 s both) 0.084 / 0.078 / 0.047, unchanged by the fix.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from epi_known_field import bump_field, distort
from spinereg.epi.topup import correct_reverse_pe

pytestmark = pytest.mark.realdata

UP_READOUT = 0.04
#: (seed, blip-down readout s): measured 95th percentile |blip-up shift error| (voxels) in the subject
MEASURED = {(0, 0.02): 0.072, (1, 0.02): 0.097, (2, 0.02): 0.065, (1, 0.04): 0.078}


@pytest.fixture(scope="module")
def b0(sct_data):
    img = nib.load(str(sct_data / "dmri" / "dmri.nii.gz"))
    data = img.get_fdata()
    truth = data[..., 0]
    noise = 0.3 * float(np.std(data[..., 1] - data[..., 2]) / np.sqrt(2))
    body = ndimage.binary_opening(truth > 0.25 * np.percentile(truth, 99), np.ones((3, 3, 1)))
    return truth, img.affine, noise, body


@pytest.mark.parametrize(("seed", "down_readout"), sorted(MEASURED))
def test_blip_down_readout_time_from_its_sidecar(b0, tmp_path, seed, down_readout):
    truth, aff, noise, body = b0
    field = bump_field(truth.shape, seed, 80.0, ndimage.center_of_mass(truth * body)[:2])
    rng = np.random.default_rng(100 + seed)
    up = distort(truth, field * UP_READOUT, 1) + rng.normal(0, noise, truth.shape)
    down = distort(truth, -field * down_readout, 1) + rng.normal(0, noise, truth.shape)
    for name, d, pe, t in (("up", up, "j", UP_READOUT), ("dn", down, "j-", down_readout)):
        nib.save(nib.Nifti1Image(d.astype(np.float32), aff), str(tmp_path / f"{name}.nii.gz"))
        (tmp_path / f"{name}.json").write_text(json.dumps({"PhaseEncodingDirection": pe, "TotalReadoutTime": t}))
    res = correct_reverse_pe(tmp_path / "up.nii.gz", tmp_path / "dn.nii.gz")
    err = np.abs(res.vsm.data - field * UP_READOUT)[body]
    p95 = float(np.percentile(err, 95))
    assert p95 <= MEASURED[(seed, down_readout)] * 1.15 + 0.02, p95
    cc = float(np.corrcoef(np.asarray(res.corrected.data)[body], truth[body])[0, 1])
    assert cc >= 0.985, cc
    if down_readout != UP_READOUT:
        assert res.info["reverse_shift_scale"] == pytest.approx(down_readout / UP_READOUT)
    else:
        assert "reverse_shift_scale" not in res.info
    assert "warning" not in res.info, res.info["warning"]
