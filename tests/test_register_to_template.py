"""register-to-template on SCT's test subject: SCT's criteria and the issue's numbers."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io import Image, load_image, reorient
from spinereg.metrics import dice
from spinereg.pipelines.template_outputs import write_outputs
from spinereg.register.template import register_to_template
from spinereg.transforms import apply_transforms, read_displacement


def _bin(img: Image) -> Image:
    return img.with_data((np.asarray(img.data) > 0.5).astype(np.uint8))


@pytest.fixture(scope="module")
def t2_run(sct_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("t2reg")
    t2 = sct_data / "t2"
    rc = main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
               "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small", "-o", str(out)])
    assert rc == 0
    return out


def test_outputs_have_sct_names(t2_run):
    for name in ("warp_anat2template.nii.gz", "warp_template2anat.nii.gz", "anat2template.nii.gz",
                 "template2anat.nii.gz", "metrics.json", "provenance.json"):
        assert (t2_run / name).is_file(), name
    prov = json.loads((t2_run / "provenance.json").read_text())
    assert prov["steps"] and prov["versions"]["spinereg"]
    assert set(prov["timings_s"]) >= {"load", "steps", "fields"}
    w = nib.load(str(t2_run / "warp_template2anat.nii.gz"))
    assert w.shape[3:] == (1, 3) and int(w.header["intent_code"]) == 1007


def test_t2_dice_both_spaces(t2_run, sct_data):
    m = json.loads((t2_run / "metrics.json").read_text())
    # measured 0.9759 / 0.9828 (SCT's criterion: >= 0.95), landmarks 0.414 mm (SCT's: < sqrt(3))
    assert m["cord_dice_subject_space"] >= 0.970, m["cord_dice_subject_space"]
    assert m["cord_dice_template_space_zb"] >= 0.977, m["cord_dice_template_space_zb"]
    assert m["jacobian_template2anat_in_cord"]["pct_folding"] == 0.0
    assert m["landmarks"]["max_residual_mm"] <= 0.45, m["landmarks"]
    # recompute independently from the written files, with the generic apply
    tcord = load_image(sct_data / "template/template/PAM50_small_cord.nii.gz")
    seg = load_image(sct_data / "t2/t2_seg-manual.nii.gz")
    warped = apply_transforms(tcord, seg.grid, [read_displacement(t2_run / "warp_template2anat.nii.gz")], "linear")
    d = dice(_bin(warped), _bin(seg)).dice
    assert d >= 0.970 and abs(d - m["cord_dice_subject_space"]) < 1e-3


def test_written_warps_are_inverse(t2_run):
    fwd = read_displacement(t2_run / "warp_anat2template.nii.gz")
    inv = read_displacement(t2_run / "warp_template2anat.nii.gz")
    m = json.loads((t2_run / "metrics.json").read_text())
    assert m["inverse_consistency_mm"]["p95"] < 0.045, m["inverse_consistency_mm"]  # measured 0.023
    # subject cord points -> template -> back
    x = inv.grid.voxel_to_world(np.argwhere(np.ones(inv.grid.shape, bool))[::97])
    back = fwd.map(inv.map(x))
    ok = np.all(np.isfinite(back), axis=1)
    assert np.median(np.linalg.norm(back[ok] - x[ok], axis=1)) < 0.025  # measured 0.0043


def _disc_labels_from_levels(levels: Image, offset: int = 2) -> Image:
    """Disc labels from a level-labelled cord segmentation: the boundary between its levels v and
    v + 1 is disc ``v + offset``. sct_testing_data's ``t2_seg-manual_labeled`` numbers the cord one
    level lower than ``labels.nii.gz``, PAM50 and SCT's own warp (its 2 spans the C3 body; issue
    12), so its boundary 2/3 is C3/C4, PAM50 disc 4: offset 2. Until session 49 these tests used
    v + 1, registering t2 one level low; only the Dice was asserted, and it did not show."""
    data = np.asarray(levels.data)
    grid = levels.grid
    out = np.zeros(data.shape, np.uint8)
    for v in np.unique(data[data > 0]).astype(int):
        lo = np.argwhere(data == v)
        hi = np.argwhere(data == v + 1)
        if len(hi) == 0:
            continue
        zlo = grid.voxel_to_world(lo)[:, 2]
        zhi = grid.voxel_to_world(hi)[:, 2]
        z = 0.5 * (zlo.min() + zhi.max())
        cord = np.argwhere(data > 0)
        w = grid.voxel_to_world(cord)
        near = np.abs(w[:, 2] - z) < 1.0
        p = w[near].mean(0)
        ijk = np.rint(grid.world_to_voxel(p[None]))[0].astype(int)
        out[tuple(ijk)] = v + offset
    return levels.with_data(out)


def test_three_disc_labels_piecewise(sct_data, tmp_path):
    t2 = sct_data / "t2"
    discs = _disc_labels_from_levels(load_image(t2 / "t2_seg-manual_labeled.nii.gz"))
    assert sorted(np.unique(discs.data[discs.data > 0]).tolist()) == [4, 5, 6]
    reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", ldisc=discs, template="PAM50_small")
    write_outputs(reg, tmp_path, metrics=True)
    res = reg.metrics["landmarks"]["residual_mm"]
    # measured 0.78 / 0.65 / 0.32 (SCT's criterion: < sqrt(3)); 0.13 at most with the discs one level
    # low before session 49, which the registration could fit as well as the right ones
    assert len(res) == 3 and max(res.values()) <= 0.83, res
    assert reg.metrics["cord_dice_subject_space"] >= 0.967  # measured 0.9722 (0.9723 one level low)
    # the held-out body labels (not given) say the levels are right: C3 / C5 0.84 / 2.01 mm from
    # PAM50_small's (17.0 / 14.4 mm, a level off, with the discs of before session 49)
    assert _held_out_body_errors(reg, "PAM50_small", t2 / "labels.nii.gz") == pytest.approx({3: 0.84, 5: 2.01}, abs=0.1)


def test_rootlets(sct_data, tmp_path):
    t2 = sct_data / "t2"
    reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz",
                               lrootlet=t2 / "t2_seg-deepseg_rootlets-manual.nii.gz", template="PAM50_small")
    write_outputs(reg, tmp_path)
    res = reg.metrics["landmarks"]["residual_mm"]
    assert set(res) == {5, 6, 7}
    assert max(res.values()) <= 0.47, res  # measured 0.444 (SCT's criterion: < sqrt(3))


@pytest.mark.parametrize("code", ["sct:RPI", "sct:LPI", "PSR", "oblique"])
def test_orientation_invariance(sct_data, tmp_path, t2_run, code):
    t2 = sct_data / "t2"
    img, seg, lab = (load_image(t2 / f) for f in ("t2.nii.gz", "t2_seg-manual.nii.gz", "labels.nii.gz"))
    if code == "oblique":
        rot = _rotation(8.0, 5.0)
        img, seg, lab = (Image(i.data, rot @ i.affine, i.header) for i in (img, seg, lab))
    else:
        img, seg, lab = (reorient(i, code) for i in (img, seg, lab))
    reg = register_to_template(img, seg, labels=lab, template="PAM50_small")
    tcord = load_image(sct_data / "template/template/PAM50_small_cord.nii.gz")
    here = apply_transforms(tcord, img.grid, [reg.warp_template2anat()], "linear")
    base_warp = read_displacement(t2_run / "warp_template2anat.nii.gz")
    base = apply_transforms(tcord, load_image(t2 / "t2.nii.gz").grid, [base_warp], "linear")
    if code == "oblique":
        # the oblique copy is a rigidly moved subject: compare on its own grid
        base_on = apply_transforms(base, img.grid, [_affine_of(np.linalg.inv(rot))], "linear")
    else:
        base_on = apply_transforms(base, img.grid, [], "nn")
    d = dice(_bin(here), _bin(base_on)).dice
    # measured 1.0 on the reoriented copies, 0.9934 on the oblique one
    assert d >= 0.999 if code != "oblique" else d >= 0.987, d
    # never a left-right flip: the template cord's left half lands on the subject's left
    assert _lr_centroid_offset(here, base_on) < 0.05  # measured 0.0 / 0.028 mm (oblique)


def _affine_of(m):
    from spinereg.transforms import AffineTransform

    return AffineTransform(m)


def _rotation(a_deg: float, b_deg: float) -> np.ndarray:
    a, b = np.deg2rad([a_deg, b_deg])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(a), -np.sin(a), 0], [0, np.sin(a), np.cos(a), 0], [0, 0, 0, 1]])
    rz = np.array([[np.cos(b), -np.sin(b), 0, 0], [np.sin(b), np.cos(b), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    return rz @ rx


def _lr_centroid_offset(a: Image, b: Image) -> float:
    wa = a.grid.voxel_to_world(np.argwhere(np.asarray(a.data) > 0.5))
    wb = b.grid.voxel_to_world(np.argwhere(np.asarray(b.data) > 0.5))
    return float(abs(wa[:, 0].mean() - wb[:, 0].mean()))


def test_full_pam50_and_mni(sct_data, tmp_path):
    t2 = sct_data / "t2"
    for name in ("PAM50", "MNI-Poly-AMU"):
        reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz"
                                   if name == "PAM50" else None,
                                   ldisc=None if name == "PAM50" else _disc_labels_from_levels(
                                       load_image(t2 / "t2_seg-manual_labeled.nii.gz")), template=name)
        write_outputs(reg, tmp_path / name)
        # measured 0.9766 (PAM50, body labels) / 0.9721 (MNI-Poly-AMU, discs from the labelled mask), session 32
        assert reg.metrics["cord_dice_subject_space"] >= 0.965, (name, reg.metrics)
        if name == "MNI-Poly-AMU":
            # held-out body labels: C3 / C5 1.83 / 2.89 mm from MNI-Poly-AMU's (session 49; the discs one
            # level low and MNI's disc file read as PAM50's, two errors of one level that cancelled here)
            assert _held_out_body_errors(reg, name, t2 / "labels.nii.gz") == pytest.approx({3: 1.83, 5: 2.89}, abs=0.15)


def _held_out_body_errors(reg, template: str, labels) -> dict[int, float]:
    """Distance (mm) between t2's labels.nii.gz bodies pushed into the template and the template's."""
    from spinereg.cord.landmarks import read_point_labels
    from spinereg.io.template import load_template
    from spinereg.register.template import template_landmarks

    body = read_point_labels(load_image(labels), "body")
    tb = template_landmarks(load_template(template), "body")
    pushed = reg.template2anat.map(body.points)
    return {int(v): float(np.linalg.norm(pushed[i] - tb.point(int(v)))) for i, v in enumerate(body.values)}


def test_label_errors(sct_data, tmp_path):
    t2 = sct_data / "t2"
    lab = load_image(t2 / "labels.nii.gz")
    data = np.asarray(lab.data).copy()
    data[data == 5] = 99
    with pytest.raises(InputError, match="99"):
        register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=lab.with_data(data),
                             template="PAM50_small")
    dup = np.asarray(lab.data).copy()
    dup[5, 5, 5] = 3
    with pytest.raises(InputError, match="appears 2 times"):
        register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=lab.with_data(dup),
                             template="PAM50_small")
    empty = lab.with_data(np.zeros_like(data))
    with pytest.raises(InputError, match="no labels"):
        register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=empty, template="PAM50_small")
    frac = lab.with_data(np.asarray(lab.data, float) * 1.5)
    with pytest.raises(InputError, match="non-integer"):
        register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=frac, template="PAM50_small")
    # a segmentation given as labels (session 17: it registered "C1" at the cord's centre of mass,
    # verdict pass) and a labelled segmentation given as disc labels are regions, not points
    for kind, path in (("labels", "t2_seg-manual.nii.gz"), ("ldisc", "t2_seg-manual_labeled.nii.gz")):
        with pytest.raises(InputError, match="covers a region, not a point"):
            register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", **{kind: t2 / path},
                                 template="PAM50_small")
    # a blob of a few voxels is still a point (3 x 3 x 3 voxels round body label 3)
    i, j, k = np.argwhere(np.asarray(lab.data) == 3)[0]
    blob = np.asarray(lab.data).copy()
    blob[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2] = 3
    register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=lab.with_data(blob),
                         template="PAM50_small")


def test_cli_label_error_exit_code(sct_data, tmp_path, capsys):
    t2 = sct_data / "t2"
    bad = tmp_path / "bad.nii.gz"
    img = nib.load(str(t2 / "labels.nii.gz"))
    d = np.asanyarray(img.dataobj).copy()
    d[d == 3] = 42
    nib.save(nib.Nifti1Image(d, img.affine, img.header), str(bad))
    rc = main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
               "-l", str(bad), "-t", "PAM50_small", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "42" in err and "fix" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "warp_anat2template.nii.gz").exists()


def test_cli_labels_in_the_wrong_order_name_the_label_file(sct_data, tmp_path, capsys):
    """t2's labels 3 and 5 swapped: "landmarks are not in the same order along the cord as in the
    template" named no file (before session 37); now the label file and the order found."""
    t2 = sct_data / "t2"
    img = nib.load(str(t2 / "labels.nii.gz"))
    d = np.asanyarray(img.dataobj).copy()
    d[np.asanyarray(img.dataobj) == 3], d[np.asanyarray(img.dataobj) == 5] = 5, 3
    swapped = tmp_path / "swapped.nii.gz"
    nib.save(nib.Nifti1Image(d, img.affine, img.header), str(swapped))
    rc = main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
               "-l", str(swapped), "-t", "PAM50_small", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "not in the same order" in err and str(swapped) in err and "run 3, 5 in the subject" in err, err
    assert not (tmp_path / "o").exists()


def _t1_disc_label(sct_data) -> Image:
    """One disc label placed by hand on t1w, as a user would from SCT's own hint.

    ``t1/init_label_vertebrae.txt`` says ``-initz 55,3``: the C2/C3 disc (value 3) is at slice 55
    (third voxel axis, S-I in this RAS image). We put label 3 at the centre of mass of the manual
    cord segmentation in that slice, which is where SCT's viewer would project it.
    """
    seg = load_image(sct_data / "t1/t1w_seg-manual.nii.gz")
    d = np.asarray(seg.data)
    ij = np.argwhere(d[:, :, 55] > 0).mean(0)
    lab = np.zeros(d.shape, np.uint8)
    lab[int(round(ij[0])), int(round(ij[1])), 55] = 3
    return seg.with_data(lab)


@pytest.mark.parametrize("ref", ["template", "subject"])
def test_t1_one_disc_label_both_modes(sct_data, tmp_path, ref):
    t1 = sct_data / "t1"
    reg = register_to_template(t1 / "t1w.nii.gz", t1 / "t1w_seg-manual.nii.gz", ldisc=_t1_disc_label(sct_data),
                               template="PAM50_small", contrast="t1", ref=ref)
    write_outputs(reg, tmp_path)
    m = reg.metrics
    # measured 0.9383 (template) / 0.9447 (subject), landmark 0.062 / 0.038 mm
    assert m["cord_dice_subject_space"] >= {"template": 0.932, "subject": 0.938}[ref], m
    assert m["jacobian_template2anat_in_cord"]["pct_folding"] == 0.0
    assert m["landmarks"]["max_residual_mm"] < 0.085, m["landmarks"]
    assert json.loads((tmp_path / "provenance.json").read_text())["ref"] == ref


def test_t2_ref_subject(sct_data, tmp_path):
    t2 = sct_data / "t2"
    reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz",
                               template="PAM50_small", ref="subject")
    write_outputs(reg, tmp_path)
    assert reg.metrics["cord_dice_subject_space"] >= 0.975, reg.metrics  # measured 0.9816
    assert reg.metrics["jacobian_template2anat_in_cord"]["pct_folding"] == 0.0


def test_default_steps_do_not_fold(t2_run):
    m = json.loads((t2_run / "metrics.json").read_text())
    assert m["jacobian_template2anat_in_cord"]["min"] > 0.70  # measured 0.783
    assert m["jacobian_anat2template_in_cord"]["min"] > 0.55  # measured 0.613


def test_deterministic(sct_data, tmp_path):
    t2 = sct_data / "t2"
    fields = []
    for _ in range(2):
        reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz",
                                   template="PAM50_small")
        fields.append(reg.warp_template2anat().data)
    assert np.array_equal(fields[0], fields[1])


def test_straight_outputs(sct_data, tmp_path):
    """--straight writes SCT's straightening outputs; the written warp straightens the cord to SCT's
    criteria (max distance of slice centres to the straight line < 1.2 voxel)."""
    t2 = sct_data / "t2"
    out = tmp_path / "st"
    assert main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
                 "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small", "--straight", "-o", str(out)]) == 0
    for f in ("warp_curve2straight.nii.gz", "warp_straight2curve.nii.gz", "straight_ref.nii.gz"):
        assert (out / f).is_file()
    ref = load_image(out / "straight_ref.nii.gz")
    seg = load_image(t2 / "t2_seg-manual.nii.gz")
    st = apply_transforms(seg, ref.grid, [read_displacement(out / "warp_curve2straight.nii.gz")], "linear").data > 0.5
    ks = [k for k in range(st.shape[2]) if st[:, :, k].sum() > 5][2:-2]
    com = np.array([np.argwhere(st[:, :, k]).mean(0) for k in ks])
    dist = np.linalg.norm(com - np.median(com, axis=0), axis=1)
    assert dist.max() < 0.53 and (dist ** 2).mean() < 0.07, dist  # measured 0.487 / 0.061 (SCT's: 1.2 / 0.8)
