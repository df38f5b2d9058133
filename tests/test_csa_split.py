"""csa on a segmentation whose slices hold two separate pieces (a false-positive blob beside the
cord): their areas were summed in silence (SCT gives such a slice no value at all). Now
warned of, naming the slices. Case: sct_testing_data's t2 manual cord plus a disk of 13 voxels
12 mm in front of its centre on six slices; the manual cord alone, and t1's, get no warning."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.metrics.morphometry import cross_sectional_area

pytestmark = pytest.mark.realdata


def t2_with_a_blob(sct_data: Path, out: Path) -> Path:
    """t2's manual cord plus a disk of 13 voxels 12 mm in front of its centre on slices 20-25."""
    im = nib.load(str(sct_data / "t2" / "t2_seg-manual.nii.gz"))
    d = np.asanyarray(im.dataobj).astype(np.uint8).copy()
    c = np.argwhere(d > 0).mean(0).round().astype(int)
    ii, kk = np.mgrid[:d.shape[0], :d.shape[2]]
    blob = ((ii - (c[0] + 12)) ** 2 + (kk - c[2]) ** 2) <= 4  # t2 is PSR: axis 1 is S-I
    for j in range(20, 26):
        d[:, j, :][blob] = 1
    nib.save(nib.Nifti1Image(d, im.affine, im.header), str(out))
    return out


def test_split_slices_are_warned_of(sct_data, tmp_path, caplog):
    t2_with_a_blob(sct_data, tmp_path / "blob.nii.gz")
    with caplog.at_level("WARNING"):
        cross_sectional_area(load_image(sct_data / "t2" / "t2_seg-manual.nii.gz"))
        cross_sectional_area(load_image(sct_data / "t1" / "t1w_seg-manual.nii.gz"))
    assert "separate pieces" not in caplog.text
    with caplog.at_level("WARNING"):
        res = cross_sectional_area(load_image(tmp_path / "blob.nii.gz"))
    assert "6 slice(s) hold two or more separate pieces" in caplog.text and "20, 21, 22, 23, 24, 25" in caplog.text
    ref = {s.slice: s.area_slice_mm2 for s in cross_sectional_area(load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")).slices}
    added = {s.slice: s.area_slice_mm2 - ref[s.slice] for s in res.slices if 20 <= s.slice <= 25}
    # the area counts every piece: the 13-voxel blob adds 13 mm2 on each of those slices (measured 13.0 each)
    assert all(abs(a - 13.0) < 1e-3 for a in added.values()), added
