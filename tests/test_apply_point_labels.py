"""``spinereg apply`` on a point-label file (one voxel per value, as SCT's labels.nii.gz and
PAM50_label_disc) with an -x other than label: warned, with -x label as the fix
(transforms.interp_check).

Before session 39 the image's values were judged on a sample of one voxel in ``size // 2M``: on a
large grid (PAM50's, one in 9) the sample missed most of the few labelled voxels. PAM50_label_disc
warped with -x linear gave three voxels 0.13-0.43 and no warning; with spline it was called a mask,
with the advice '-x linear'; with nn the points were lost without a word about -x label.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image
from spinereg.io.sanity import values_of


def _coarse() -> np.ndarray:
    a = np.diag([4.0, 4.0, 4.0, 1.0])
    a[:3, 3] = 0.5  # centres between the source's: linear / spline give fractions of a point
    return a


@pytest.fixture
def files(tmp_path):
    shape = (200, 200, 100)  # 4 M voxels: values_of samples every second voxel
    data = np.zeros(shape, np.uint8)
    for k in range(22):  # 9 mm apart; odd flat indices (z odd) are never sampled, but the first point's
        data[5 + 9 * k, 100, 52 if k == 0 else 53] = k + 1
    src = tmp_path / "points.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(src))
    dest = tmp_path / "dest.nii.gz"  # a coarser grid over the same field of view
    nib.save(nib.Nifti1Image(np.ones((50, 50, 25), np.float32), _coarse()), str(dest))
    assert values_of(load_image(src)).n_distinct == 2  # the sample sees one label: the old check's view
    return src, dest, tmp_path


@pytest.mark.parametrize("interp", ["linear", "spline", "nn"])
def test_point_labels_warned_under_any_other_interpolation(files, capsys, interp):
    src, dest, tmp = files
    rc = main(["apply", "-i", str(src), "-d", str(dest), "-x", interp, "-o", str(tmp / f"{interp}.nii.gz")])
    err = capsys.readouterr().err
    assert "point-label file (22 labelled voxels for 22 values)" in err and "-x label" in err, err
    assert "is a mask" not in err and err.count("warning") == 1, err
    if interp == "nn":  # 4 mm voxels' centres miss the 1 mm points: the result is empty (exit 3)
        assert rc == 3 and "all zero" in err, err
    else:  # fractions of a point, no label value among them
        assert rc == 0, err
        v = np.asanyarray(nib.load(str(tmp / f"{interp}.nii.gz")).dataobj)
        assert (v != np.round(v)).any() and np.abs(v).max() < 22


def test_label_interpolation_carries_the_points_without_a_warning(files, capsys):
    src, dest, tmp = files
    out = tmp / "label.nii.gz"
    assert main(["apply", "-i", str(src), "-d", str(dest), "-x", "label", "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert sorted(np.unique(np.asanyarray(nib.load(str(out)).dataobj)))[1:] == list(range(1, 23))


@pytest.mark.parametrize("kind", ["intensity", "mask", "series"])
def test_label_interpolation_on_what_is_no_point_label_file_is_warned(tmp_path, capsys, kind):
    """-x label carries every non-zero voxel as a point: on an image, a mask or a 4D series (an fMRI
    gave 280k scattered points, exit 0, no word before session 39) it is warned, with the -x to use."""
    rng = np.random.default_rng(0)
    shape = (20, 20, 10)
    data = {"intensity": rng.uniform(1, 100, shape).astype(np.float32),
            "mask": np.pad(np.ones((6, 6, 4), np.uint8), ((7, 7), (7, 7), (3, 3))),
            "series": rng.uniform(1, 100, (*shape, 3)).astype(np.float32)}[kind]
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(src))
    rc = main(["apply", "-i", str(src), "-d", str(src), "-x", "label", "-o", str(tmp_path / "out.nii.gz")])
    err = capsys.readouterr().err
    assert rc == 0 and err.count("warning") == 1, err
    assert "-x label carries" in err and ("-x linear" in err and "-x nn" in err), err
