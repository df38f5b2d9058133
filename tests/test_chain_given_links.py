"""chain with links given as SCT's own warps (--link-warp) and no direct registration.

SCT's ``mt/warp_t22mt1.nii.gz`` holds its 'no value' marker (3.4e38, float32's largest) on a fifth
of mt1's grid: spinereg reads those voxels as undefined (NaN). Composed with the anatomical cord
mapping, those NaN points reached the centreline's KD-tree and ``chain`` ended in an internal
error (ValueError) before session 40. And an image whose every link is given had its --seg used
unchecked: one on another grid ended in an internal IndexError after the anatomical registration.
Truth: SCT's mt1_seg, which no step of the composed path used (--no-direct)."""

from __future__ import annotations

import json

import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image
from spinereg.transforms.itk import load_transform, write_displacement

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def mt12t2(sct_data, tmp_path_factory):
    """warp_mt12t2 (on t2's grid): SCT's warp_t22mt1 inverted onto t2's grid."""
    w = load_transform(sct_data / "mt" / "warp_t22mt1.nii.gz")
    inv = w.inverse(load_image(sct_data / "t2" / "t2.nii.gz").grid)
    return write_displacement(inv, tmp_path_factory.mktemp("links") / "warp_mt12t2.nii.gz")


def _chain(sct_data, seg0, link, out):
    d = sct_data
    return main(["chain", "-i", str(d / "mt" / "mt1.nii.gz"), str(d / "t2" / "t2.nii.gz"),
                 "--seg", str(seg0), str(d / "t2" / "t2_seg-manual.nii.gz"), "-l", str(d / "t2" / "labels.nii.gz"),
                 "--link-warp", "0", str(link), str(d / "mt" / "warp_t22mt1.nii.gz"), "--no-direct",
                 "-o", str(out), "--allow-fail"])


def test_sct_link_with_undefined_voxels(sct_data, mt12t2, tmp_path, capsys):
    assert _chain(sct_data, sct_data / "mt" / "mt1_seg.nii.gz", mt12t2, tmp_path / "o") == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["mt1"]["mode"] == "composed"
    # measured 0.956 on the part of mt1's cord within t2's field of view (0.8975 whole, 38 % outside)
    assert m["mt1"]["cord_dice_in_anat_fov"] >= 0.951, m["mt1"]  # measured 0.956 again (session 37)
    assert abs(m["mt1"]["cord_outside_anat_fov"] - 0.379) < 0.02, m["mt1"]


def test_seg_on_another_grid_refused_before_work(sct_data, mt12t2, tmp_path, capsys):
    out = tmp_path / "o"
    assert _chain(sct_data, sct_data / "t2s" / "t2s_seg.nii.gz", mt12t2, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not on the same voxel grid" in err[0] and "t2s_seg.nii.gz" in err[0], err
    assert not out.exists()


def _chain_links(sct_data, first, second, out):
    d = sct_data
    return main(["chain", "-i", str(d / "mt" / "mt1.nii.gz"), str(d / "t2" / "t2.nii.gz"),
                 "--seg", "none", str(d / "t2" / "t2_seg-manual.nii.gz"), "-l", str(d / "t2" / "labels.nii.gz"),
                 "--link-warp", "0", str(first), str(second), "-o", str(out)])


def test_link_warp_of_another_space_refused_before_work(sct_data, tmp_path, capsys):
    """t2's warp_template2anat given as the mt1 -> t2 link: the template cord landed on mt1 at Dice
    0.39 (0.89 with the right warp), exit 0 with only the field-of-view warning the right pair gets
    too, before session 48."""
    out = tmp_path / "o"
    assert _chain_links(sct_data, sct_data / "t2" / "warp_template2anat.nii.gz",
                        sct_data / "mt" / "warp_t22mt1.nii.gz", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warp_template2anat.nii.gz" in err[0] and "no common extent" in err[0], err
    assert not out.exists()


def test_link_warps_swapped_refused_before_work(sct_data, mt12t2, tmp_path, capsys):
    """The right pair the other way round: Dice 0.76 instead of 0.89, exit 0, before session 48."""
    out = tmp_path / "o"
    assert _chain_links(sct_data, sct_data / "mt" / "warp_t22mt1.nii.gz", mt12t2, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "look swapped" in err[0] and "warp_mt12t2 (on t2.nii.gz's grid) first" in err[0], err
    assert not out.exists()
