"""spine-metrics --warp on an image whose grid reaches beyond the warp's field of view.

The template's bodies are placed on the measured image's grid through the registration's warp.
Where the image's grid is larger than the warp's (here sct_testing_data's t2 zero-padded by 20
voxels at both S-I ends; in practice another image of the subject, or a padded copy), a body cut
by the warp's field of view does not touch the image grid's edge, so it was not recognised as
cut: C2's visible sliver was reported 0.19 mm tall (posterior), unflagged, before session 40.
Truth: the same command on t2 itself, where the grid's edge cuts C2 and it is flagged. The same
pair also checks that a cut body does not set its whole neighbour's frame (session 41; PAM50-only
cases in tests/test_spine_metrics_cut_neighbour.py)."""

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


@pytest.fixture(scope="module")
def t2_warp(sct_data, tmp_path_factory):
    """warp_template2anat of t2 registered with its manual segmentation and labels.nii.gz."""
    tmp = tmp_path_factory.mktemp("warp_fov_reg")
    t2 = sct_data / "t2"
    assert main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
                 "-l", str(t2 / "labels.nii.gz"), "-c", "t2", "-o", str(tmp / "reg"), "--allow-fail"]) == 0
    return tmp / "reg" / "warp_template2anat.nii.gz"


@pytest.fixture(scope="module")
def own_and_padded(sct_data, t2_warp, tmp_path_factory) -> tuple[dict, dict]:
    """spine-metrics rows of t2 and of t2 zero-padded by 20 voxels at both S-I ends, through one
    registration's warp_template2anat (t2 with its manual segmentation and labels.nii.gz)."""
    tmp = tmp_path_factory.mktemp("warp_fov")
    t2 = sct_data / "t2"
    im = nib.load(str(t2 / "t2.nii.gz"))
    ax = int(np.argmax(np.abs(im.affine[2, :3])))  # the S-I voxel axis
    pad = [(0, 0)] * 3
    pad[ax] = (20, 20)
    aff = im.affine.copy()
    aff[:3, 3] -= aff[:3, ax] * 20
    nib.save(nib.Nifti1Image(np.pad(np.asanyarray(im.dataobj), pad), aff, im.header), str(tmp / "padded.nii.gz"))
    warp = str(t2_warp)
    for name, image in (("own", t2 / "t2.nii.gz"), ("padded", tmp / "padded.nii.gz")):
        assert main(["spine-metrics", "-w", warp, "--image", str(image), "-o", str(tmp / name)]) == 0
    return _rows(tmp / "own"), _rows(tmp / "padded")


def test_body_cut_by_the_warps_field_of_view_is_flagged(own_and_padded):
    own, padded = own_and_padded
    for rows in (own, padded):
        for m in ("height_anterior", "height_middle", "height_posterior"):
            r = rows[(m, "2")]
            assert r["value"] == "nan" and "body cut by the edge" in r["flag"], r
        assert rows[("segmental_angle", "C2-C3")]["value"] == "nan"
        assert rows[("height_posterior", "4")]["value"] != "nan"  # a whole body is measured
    # C4 lies away from both cut bodies' neighbours: the same on both grids
    assert float(own[("height_posterior", "4")]["value"]) == pytest.approx(
        float(padded[("height_posterior", "4")]["value"]), abs=1e-6)


def test_t2_and_padded_t2_agree_on_the_whole_bodies(own_and_padded, sct_data):
    """t2 vs t2 zero-padded along S-I, through the same warp: every C3, C4 and C5 template-shape
    row identical (before session 41 C3 anterior / middle / posterior 6.88 / 10.17 / 8.90 vs
    7.09 / 10.14 / 9.20 mm, tilts -28.33 / -29.33 vs -27.13 / -28.62 deg, C3-C4 -13.54 vs -12.83,
    C4-C5 1.68 vs 0.87 deg). Against the reference tilts, C3 superior -19.6 -> -0.3, C3 inferior
    -12.7 -> -1.7, C5 superior -12.2 -> +0.2 deg (C4, between two whole bodies, unchanged)."""
    import spine_reference_t2 as ref
    from spinereg.io.image import load_image

    t2 = sct_data / "t2"
    own, padded = own_and_padded
    shape = ("height_anterior", "height_middle", "height_posterior", "wedge_ratio", "biconcave_ratio",
             "endplate_superior_tilt", "endplate_inferior_tilt")
    for v in ("3", "4", "5"):
        for m in shape:
            assert float(own[(m, v)]["value"]) == pytest.approx(float(padded[(m, v)]["value"]), abs=1e-6), (m, v)
    for k in ("C3-C4", "C4-C5"):
        a, b = own[("segmental_angle", k)], padded[("segmental_angle", k)]
        assert float(a["value"]) == pytest.approx(float(b["value"]), abs=1e-6), k
    assert float(own[("height_posterior", "3")]["value"]) == pytest.approx(10.83, abs=0.05)  # 8.90 before
    # a segmental angle pairing a whole body with a cut one is withheld, flagged
    for k in ("C2-C3", "C5-C6"):
        for rows in (own, padded):
            r = rows[("segmental_angle", k)]
            assert r["value"] == "nan" and "body cut by the edge" in r["flag"], r
    # the template-shape tilts of the bodies next to the cut ones, against the reference
    truth = ref.reference(np.asarray(load_image(t2 / "t2.nii.gz").data, float))["tilts"]
    for (v, side), claim in {(3, "superior"): -0.31, (3, "inferior"): -1.65, (5, "superior"): 0.18}.items():
        err = float(own[(f"endplate_{side}_tilt", str(v))]["value"]) - truth[(v, side)]
        assert abs(err - claim) < 0.2, (v, side, err)


@pytest.mark.parametrize("kept", [0.55, 0.65])
def test_a_warp_cut_inside_a_body_leaves_it_and_its_lone_neighbour_unmeasured(t2_warp, sct_data, tmp_path, kept):
    """t2's warp cropped along S-I to its superior 55 / 65 % (another image of the subject with a
    smaller field of view than the measured one): C4 is placed only in part, C3 is the one whole
    body. Before session 41 C4's image rows were measured on the partial placement (65 % kept:
    inferior tilt -15.10 deg against -17.01 with the whole warp, unflagged) and C3's followed how
    much of C4 was placed (superior tilt -9.78 / -10.96 / -8.64 deg and template-shape posterior
    height 8.83 / 8.22 / 6.97 mm with 65 / 55 / 45 % kept, against -9.66 deg and 10.83 mm with the
    whole warp). Now C4 is flagged as cut by the warp's
    field of view, C3 as left without a whole neighbour; nothing measured on either."""
    from spinereg.metrics.endplates import WARP_CUT_REASON
    from spinereg.metrics.spine import LONE_BODY_FLAG

    w = nib.load(str(t2_warp))
    ax = int(np.argmax(np.abs(w.affine[2, :3])))
    d = np.asanyarray(w.dataobj)
    n = d.shape[ax]
    k = n - int(round(n * kept))  # slices dropped at the inferior end
    sl = [slice(None)] * d.ndim
    aff = w.affine.copy()
    if w.affine[2, ax] > 0:  # superior at the high index
        sl[ax] = slice(k, n)
        aff[:3, 3] += aff[:3, ax] * k
    else:
        sl[ax] = slice(0, n - k)
    cut_warp = tmp_path / "warp_cut.nii.gz"
    nib.save(nib.Nifti1Image(d[tuple(sl)], aff, w.header), str(cut_warp))
    # nothing is measured: outputs written, exit 3 (0 before session 48, a run that looked fine)
    assert main(["spine-metrics", "-w", str(cut_warp), "--image", str(sct_data / "t2" / "t2.nii.gz"),
                 "-o", str(tmp_path / "out")]) == 3
    rows = _rows(tmp_path / "out")
    for m in ("height_posterior", "endplate_superior_tilt", "image_height_posterior",
              "image_endplate_superior_tilt", "image_endplate_inferior_tilt"):
        assert rows[(m, "3")]["value"] == "nan" and LONE_BODY_FLAG in rows[(m, "3")]["flag"], (m, rows[(m, "3")])
        c4 = rows[(m, "4")]
        assert c4["value"] == "nan", (m, c4)
        assert (WARP_CUT_REASON if m.startswith("image_") else "body cut by the edge") in c4["flag"], (m, c4)
