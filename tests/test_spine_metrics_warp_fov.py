"""spine-metrics --warp on an image whose grid reaches beyond the warp's field of view.

The template's bodies are placed on the measured image's grid through the registration's warp.
Where the image's grid is larger than the warp's (here sct_testing_data's t2 zero-padded by 20
voxels at both S-I ends; in practice another image of the subject, or a padded copy), a body cut
by the warp's field of view does not touch the image grid's edge, so it was not recognised as
cut: C2's visible sliver was reported 0.19 mm tall (posterior), unflagged, before session 40.
Truth: the same command on t2 itself, where the grid's edge cuts C2 and it is flagged."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main

pytestmark = pytest.mark.realdata


def _rows(folder) -> dict:
    with open(folder / "spine_metrics.csv") as f:
        return {(r["measure"], r["level"]): r for r in csv.DictReader(f)}


def test_body_cut_by_the_warps_field_of_view_is_flagged(sct_data, tmp_path, capsys):
    t2 = sct_data / "t2"
    assert main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
                 "-l", str(t2 / "labels.nii.gz"), "-c", "t2", "-o", str(tmp_path / "reg"), "--allow-fail"]) == 0
    im = nib.load(str(t2 / "t2.nii.gz"))
    ax = int(np.argmax(np.abs(im.affine[2, :3])))  # the S-I voxel axis
    pad = [(0, 0)] * 3
    pad[ax] = (20, 20)
    aff = im.affine.copy()
    aff[:3, 3] -= aff[:3, ax] * 20
    nib.save(nib.Nifti1Image(np.pad(np.asanyarray(im.dataobj), pad), aff, im.header), str(tmp_path / "padded.nii.gz"))
    warp = str(tmp_path / "reg" / "warp_template2anat.nii.gz")
    for name, image in (("own", t2 / "t2.nii.gz"), ("padded", tmp_path / "padded.nii.gz")):
        assert main(["spine-metrics", "-w", warp, "--image", str(image), "-o", str(tmp_path / name)]) == 0
    capsys.readouterr()
    own, padded = _rows(tmp_path / "own"), _rows(tmp_path / "padded")
    for rows in (own, padded):
        for m in ("height_anterior", "height_middle", "height_posterior"):
            r = rows[(m, "2")]
            assert r["value"] == "nan" and "body cut by the edge" in r["flag"], r
        assert rows[("segmental_angle", "C2-C3")]["value"] == "nan"
        assert rows[("height_posterior", "4")]["value"] != "nan"  # a whole body is measured
    # C4 lies away from both cut bodies' neighbours: the same on both grids
    assert float(own[("height_posterior", "4")]["value"]) == pytest.approx(
        float(padded[("height_posterior", "4")]["value"]), abs=1e-6)
