"""``sdc`` arguments that contradict the EPI's sidecar are warned of (truth from outside the method).

SCT's dmri b0 (40x42x5) displaced along j by a known smooth field (three Gaussian bumps around the
subject's centre, main one 80 Hz, 0.04 s; per PE line the inverse map by ``np.interp``, cubic
splines, Jacobian modulation; not spinereg's code), sidecar ``PhaseEncodingDirection`` ``j``,
``TotalReadoutTime`` 0.04, the exact field map in Hz. Correlation of the corrected EPI with the
undistorted b0 over the subject (b0 above 25 % of its 99th percentile), seeds 0-2: uncorrected
0.770 / 0.508 / 0.716, with the sidecar's direction 0.978 / 0.991 / 0.986, with ``--pe j-``
0.605 / 0.315 / 0.464 (the distortion doubled). Before session 51 that ``--pe j-`` ran without a
word (exit 0); the argument still wins (a sidecar can be stale after a reorientation) and the run
now warns, naming the sidecar.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from epi_known_field import bump_field, distort
from spinereg.cli.main import main

pytestmark = pytest.mark.realdata

READOUT = 0.04
#: seed: measured correlation with the truth (uncorrected, sidecar's direction, --pe j-)
MEASURED = {0: (0.770, 0.978, 0.605), 1: (0.508, 0.991, 0.315), 2: (0.716, 0.986, 0.464)}


@pytest.mark.parametrize("seed", sorted(MEASURED))
def test_pe_argument_against_the_sidecar(sct_data, tmp_path, capsys, seed):
    img = nib.load(str(sct_data / "dmri" / "dmri.nii.gz"))
    data = img.get_fdata()
    truth = data[..., 0]
    body = ndimage.binary_opening(truth > 0.25 * np.percentile(truth, 99), np.ones((3, 3, 1)))
    field = bump_field(truth.shape, seed, 80.0, ndimage.center_of_mass(truth * body)[:2])
    noise = 0.3 * float(np.std(data[..., 1] - data[..., 2]) / np.sqrt(2))
    epi = distort(truth, field * READOUT, 1) + np.random.default_rng(100 + seed).normal(0, noise, truth.shape)
    nib.save(nib.Nifti1Image(epi.astype(np.float32), img.affine), str(tmp_path / "epi.nii.gz"))
    (tmp_path / "epi.json").write_text(json.dumps({"PhaseEncodingDirection": "j", "TotalReadoutTime": READOUT}))
    nib.save(nib.Nifti1Image(field.astype(np.float32), img.affine), str(tmp_path / "fm.nii.gz"))

    def cc(a: np.ndarray) -> float:
        return float(np.corrcoef(a[body], truth[body])[0, 1])

    raw, right, reversed_ = MEASURED[seed]
    assert cc(epi) == pytest.approx(raw, abs=0.01)
    got = {}
    for pe in (None, "j", "j-"):
        out = tmp_path / f"o_{pe}"
        rc = main(["sdc", "fieldmap", "-i", str(tmp_path / "epi.nii.gz"), "--fieldmap", str(tmp_path / "fm.nii.gz"),
                   "-o", str(out)] + ([] if pe is None else ["--pe", pe]))
        err = capsys.readouterr().err
        assert rc == 0, err
        got[pe] = (cc(nib.load(str(out / "epi_sdc.nii.gz")).get_fdata()), err)
    for pe in (None, "j"):  # the sidecar's direction, or the same given as an argument: no word
        assert got[pe][0] == pytest.approx(right, abs=0.01)
        assert "warning" not in got[pe][1], got[pe][1]
    assert got["j-"][0] == pytest.approx(reversed_, abs=0.02)
    assert "--pe j- where the sidecar's PhaseEncodingDirection is 'j'" in got["j-"][1]
    assert "epi.json" in got["j-"][1]


def test_readout_argument_against_the_sidecar(tmp_path):
    from spinereg.epi.sidecar import epi_params

    meta = {"PhaseEncodingDirection": "j", "TotalReadoutTime": 0.04, "_path": str(tmp_path / "epi.json")}
    assert epi_params(meta).conflict is None
    assert epi_params(meta, "j", 0.0402).conflict is None  # within 1 %
    note = epi_params(meta, None, 0.03).conflict
    assert note is not None and "--readout-time 0.03 where the sidecar's TotalReadoutTime is 0.04" in note
    assert epi_params({}, "j-", 0.03).conflict is None  # no sidecar: nothing contradicted
