"""Inputs a tester gave in session 48 that ran to a meaningless result with exit 0: an intensity
image as a mask (analyze-lesion -m / -s, straighten -s, spine-metrics --cord), a registration's
warp_anat2template given to spine-metrics -w, a straight grid of 1.44e9 voxels, and a spine-metrics
run where nothing was measured. Each is now refused before any work (one line naming the file and
the fix, exit 2, nothing written) or, when the outputs are written but hold nothing, exit 3.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import folder_listing
from spinereg.cli.main import main

pytestmark = pytest.mark.realdata


def _refused(capsys, argv: list, out, *words: str) -> str:
    before = folder_listing(out)
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "fix" in lines[0], err
    for w in words:
        assert w in lines[0], lines[0]
    assert folder_listing(out) == before, "outputs were written"
    return lines[0]


@pytest.fixture
def t2(sct_data):
    return sct_data / "t2"


def test_analyze_lesion_refuses_an_image_as_the_lesion_mask(capsys, t2, tmp_path):
    # measured one "lesion" of 141190 mm3, damage ratio 1.0, exit 0 before
    out = tmp_path / "o"
    _refused(capsys, ["analyze-lesion", "-m", t2 / "t2_fake_lesion.nii.gz", "-s", t2 / "t2_fake_lesion_sc_seg.nii.gz",
                      "-o", out], out, "t2_fake_lesion.nii.gz", "lesion mask (-m) is not a mask", "intensity image")


def test_analyze_lesion_refuses_an_image_as_the_cord(capsys, t2, tmp_path):
    # damage ratio 0.013 (true 0.25) and a 17.8 mm bridge (true 1.47), no warning, before
    out = tmp_path / "o"
    _refused(capsys, ["analyze-lesion", "-m", t2 / "t2_fake_lesion_lesion_seg.nii.gz", "-s",
                      t2 / "t2_fake_lesion.nii.gz", "-o", out], out, "t2_fake_lesion.nii.gz", "(-s) is not a mask")


def test_analyze_lesion_accepts_lesions_numbered_one_by_one(t2, tmp_path):
    """Numbered lesions of a few voxels each are a lesion mask, not a point-label file."""
    from spinereg.lesion.analyze import analyze_lesions

    cord = nib.load(str(t2 / "t2_fake_lesion_sc_seg.nii.gz"))
    c = np.argwhere(np.asarray(cord.dataobj) > 0.5)
    les = np.zeros(cord.shape, np.uint8)
    for k, (i, j, kk) in enumerate(c[len(c) // 4:: len(c) // 3][:2], start=1):
        les[i, j, kk] = k
    path = tmp_path / "lesions.nii.gz"
    nib.save(nib.Nifti1Image(les, cord.affine), str(path))
    report = analyze_lesions(path, t2 / "t2_fake_lesion_sc_seg.nii.gz")
    assert len(report.lesions) == 2


def test_straighten_refuses_an_image_as_the_segmentation(capsys, t2, tmp_path):
    # straightened along t2's "cord" with a warning only (mse 15.5 vox2), exit 0, before
    out = tmp_path / "o"
    _refused(capsys, ["straighten", "-i", t2 / "t2.nii.gz", "-s", t2 / "t2.nii.gz", "-o", out], out,
             "t2.nii.gz", "segmentation (-s) is not a mask")


def test_straighten_refuses_a_grid_too_large(capsys, t2, tmp_path):
    # --voxel-size 0.05 asked for 1.44e9 voxels and ran for minutes before
    out = tmp_path / "o"
    line = _refused(capsys, ["straighten", "-i", t2 / "t2.nii.gz", "-s", t2 / "t2_seg-manual.nii.gz",
                             "--voxel-size", "0.05", "-o", out], out, "voxels", "coarser --voxel-size")
    assert "1.44e+09 voxels" in line and "at most 1.5e+08" in line, line


def test_spine_metrics_refuses_an_image_as_the_cord(capsys, t2, tmp_path):
    # read a curvature of 0.101 /mm (the real cord's 0.0225) before
    out = tmp_path / "o"
    _refused(capsys, ["spine-metrics", "--cord", t2 / "t2.nii.gz", "-o", out], out, "t2.nii.gz",
             "(--cord) is not a mask")


def _zero_warp_on(grid_affine: np.ndarray, shape: tuple[int, int, int], path) -> None:
    from spinereg.io.grid import Grid
    from spinereg.transforms.displacement import DisplacementField
    from spinereg.transforms.itk import write_displacement

    write_displacement(DisplacementField(Grid(shape, grid_affine), np.zeros((*shape, 3), np.float32)), path)


def test_spine_metrics_refuses_warp_anat2template(capsys, data_root, tmp_path):
    """A warp on (a crop of) PAM50's own grid is warp_anat2template: the bodies it placed were all
    cut, 135 NaN rows, exit 0, before."""
    from spinereg.metrics.spine_registration import on_template_lattice

    pam = nib.load(str(data_root / "PAM50" / "template" / "PAM50_cord.nii.gz"))
    crop = pam.affine.copy()
    crop[:3, 3] = (pam.affine @ np.array([50, 50, 600, 1.0]))[:3]
    warp = tmp_path / "warp_anat2template.nii.gz"
    _zero_warp_on(crop, (30, 30, 40), warp)
    out = tmp_path / "o"
    _refused(capsys, ["spine-metrics", "-w", warp, "-o", out], out, "warp_anat2template.nii.gz",
             "lives on PAM50's grid", "give the registration's warp_template2anat")
    # the subject's grid is not the template's lattice: a half-voxel shift or another voxel size
    from spinereg.io.grid import Grid

    shifted = crop.copy()
    shifted[:3, 3] += 0.25
    assert on_template_lattice(Grid((30, 30, 40), crop))
    assert not on_template_lattice(Grid((30, 30, 40), shifted))
    assert not on_template_lattice(Grid((30, 30, 40), np.diag([1.0, 1.0, 1.0, 1.0]) @ crop @ np.diag([2, 2, 2, 1.0])))


def test_spine_metrics_exits_3_when_nothing_is_measured(capsys, tmp_path):
    """Bodies that every edge of the field cuts: every row NaN, outputs written, exit 3."""
    lab = np.zeros((20, 20, 12), np.int16)
    lab[5:15, 5:15, :] = 3  # C3 filling the field along S-I: cut at both ends
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    bodies = tmp_path / "bodies.nii.gz"
    nib.save(nib.Nifti1Image(lab, aff), str(bodies))
    out = tmp_path / "o"
    rc = main(["spine-metrics", "-b", str(bodies), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "every measure is NaN" in err
    assert (out / "spine_metrics.csv").is_file()


def test_register_refuses_a_mask_outside_the_destination(capsys, sct_data, tmp_path):
    """A mask 300 mm from -d was dropped silently (the warp bit-identical to a run without it,
    exit 0, the mask listed among the inputs) before."""
    seg = nib.load(str(sct_data / "t2" / "t2_seg-manual.nii.gz"))
    aff = seg.affine.copy()
    aff[:3, 3] += 300.0
    far = tmp_path / "mask_far.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(seg.dataobj) > 0).astype(np.uint8), aff), str(far))
    out = tmp_path / "o"
    _refused(capsys, ["register", "-i", sct_data / "t1" / "t1w.nii.gz", "-d", sct_data / "t2" / "t2.nii.gz",
                      "-m", far, "-o", out], out, "mask_far.nii.gz", "lies outside -d's field of view")


def test_help_shows_percent_once(capsys):
    main(["metrics", "jacobian", "-h"])
    out = capsys.readouterr().out
    assert "% folded voxels" in out and "%%" not in out
