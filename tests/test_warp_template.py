"""warp-template: SCT's sct_warp_template on real data (sct_testing_data t2 and mt, PAM50)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io.image import load_image
from spinereg.io.template import load_template, parse_info_label
from spinereg.phantom.tissue_contrast import SMALL_TO_PAM50_MM
from spinereg.register.warp_template import DestinationMap, warp_template
from spinereg.transforms import AffineTransform, apply_transforms, read_displacement, write_affine

#: sct_testing_data/mt/label was made with the PAM50 that predates its 2018 realignment to
#: ICBM152: old RAS coordinates + this offset are current PAM50 coordinates (registry note).
OLD_TO_CURRENT_PAM50_MM = tuple(SMALL_TO_PAM50_MM)  # PAM50_small's older coordinates -> PAM50's


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _shift() -> AffineTransform:
    m = np.eye(4)
    m[:3, 3] = OLD_TO_CURRENT_PAM50_MM
    return AffineTransform(m)


@pytest.fixture(scope="module")
def t2_out(sct_data: Path, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("wt_t2") / "label"
    res = warp_template(sct_data / "t2" / "t2.nii.gz", [sct_data / "t2" / "warp_template2anat.nii.gz"],
                        out, template="PAM50_small")
    return res, out


@pytest.fixture(scope="module")
def mt_out(sct_data: Path, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("wt_mt") / "label"
    res = warp_template(sct_data / "mt" / "mt1.nii.gz",
                        [_shift(), sct_data / "mt" / "warp_template2mt.nii.gz"], out, template="PAM50",
                        atlas=True)
    return res, out


# -- t2 with PAM50_small ---------------------------------------------------------------------------
def test_t2_writes_every_listed_object_with_its_interpolation(t2_out) -> None:
    res, out = t2_out
    tpl = load_template("PAM50_small")
    assert [w.file for w in res.written] == [o.file for o in tpl.objects]
    assert res.skipped == []
    interp = {w.file: w.interp for w in res.written}
    assert interp["PAM50_small_cord.nii.gz"] == "nn"
    assert interp["PAM50_small_levels.nii.gz"] == "nn"
    assert interp["PAM50_small_label_disc.nii.gz"] == "label"
    assert interp["PAM50_small_t2.nii.gz"] == "linear"
    for w in res.written:
        assert w.path == out / "template" / w.file and w.path.is_file()
        img = nib.load(str(w.path))
        assert img.shape == (60, 55, 52)
    # dtypes: integer files stay integer, linear outputs are float32
    assert _data(res.path("PAM50_small_levels.nii.gz")).dtype == np.uint16
    assert _data(res.path("PAM50_small_rootlets.nii.gz")).dtype == np.uint8
    assert _data(res.path("PAM50_small_t2.nii.gz")).dtype == np.float32
    info = parse_info_label(out / "template" / "info_label.txt")
    assert [f[-1] for _, f in info["IndivLabels"]] == [w.file for w in res.written]
    assert not list(out.glob(".warp_template*"))


def test_t2_cord_dice(t2_out, sct_data: Path) -> None:
    res, _ = t2_out
    cord = _data(res.path("PAM50_small_cord.nii.gz")) > 0.5
    seg = _data(sct_data / "t2" / "t2_seg-manual.nii.gz") > 0.5
    # measured 0.9424 with nearest-neighbour (SCT's choice for the binary cord; SCT's own output
    # on mt is binary too); a linear warp thresholded at 0.5 would give 0.951
    assert _dice(cord, seg) >= 0.94


def test_t2_levels(t2_out, sct_data: Path) -> None:
    res, _ = t2_out
    lv = _data(res.path("PAM50_small_levels.nii.gz")).astype(int)
    assert set(np.unique(lv)) == {0, 3, 4, 5, 6}
    # the subject's own vertebral labels (used for the registration) fall in their level
    for name in ("labels.nii.gz", "t2_labeled_center_manual.nii.gz"):
        lab = _data(sct_data / "t2" / name)
        pts = np.argwhere(lab > 0)
        assert len(pts) >= 2
        assert [int(lv[tuple(p)]) for p in pts] == [int(lab[tuple(p)]) for p in pts]
    # t2_seg-manual_labeled is numbered one level lower than labels.nii.gz (its 2 covers body
    # label 3): agreement of (level - 1) inside the cord, measured 0.871 (0.087 unshifted)
    ref = np.rint(_data(sct_data / "t2" / "t2_seg-manual_labeled.nii.gz")).astype(int)
    inside = (_data(sct_data / "t2" / "t2_seg-manual.nii.gz") > 0.5) & (ref > 0)
    assert set(np.unique(ref[inside])) == {2, 3, 4, 5}
    assert np.mean(lv[inside] - 1 == ref[inside]) >= 0.86  # measured 0.8710 (0.85 before session 41)


def test_t2_disc_points_each_one_voxel_where_they_map(t2_out, sct_data: Path) -> None:
    res, _ = t2_out
    tpl = load_template("PAM50_small")
    timg = load_image(tpl.path("disc"), check_finite=False)
    ref = load_image(sct_data / "t2" / "t2.nii.gz").grid
    warp = read_displacement(sct_data / "t2" / "warp_template2anat.nii.gz")
    # independent check: for each template disc, the subject voxel whose pulled position is
    # nearest (brute force over every voxel)
    pulled = warp.map(ref.world_coords())
    out = _data(res.path("PAM50_small_label_disc.nii.gz"))
    expected = {}
    for ijk in np.argwhere(timg.data > 0):
        p = timg.grid.voxel_to_world(ijk)
        d = np.linalg.norm(pulled - p, axis=1)
        n = int(np.nanargmin(d))
        if d[n] <= 0.75:  # the disc has a pre-image in the image (template voxels 1x1x2 mm)
            expected[int(timg.data[tuple(ijk)])] = np.array(np.unravel_index(n, ref.shape))
    assert sorted(expected) == [3, 4, 5, 6]
    vals, counts = np.unique(out[out > 0], return_counts=True)
    assert vals.astype(int).tolist() == sorted(expected)
    assert counts.tolist() == [1] * len(expected)
    # measured: all 4 on the brute-force voxel itself (0 voxels off); disc 3's two nearest
    # candidates pull to 0.546 / 0.597 mm of it, a near-tie another valid rounding may resolve the
    # other way, so one disc may be one voxel off (before session 41: every disc within 1 voxel)
    off = {v: int(np.abs(np.argwhere(out == v)[0] - ijk).max()) for v, ijk in expected.items()}
    assert max(off.values()) <= 1 and sum(o == 0 for o in off.values()) >= 3, off


def test_crop_gives_the_uncropped_result(t2_out, sct_data: Path) -> None:
    res, _ = t2_out
    tpl = load_template("PAM50_small")
    dest = load_image(sct_data / "t2" / "t2.nii.gz")
    warp = read_displacement(sct_data / "t2" / "warp_template2anat.nii.gz")
    for role, interp in (("t2", "linear"), ("cord", "nn"), ("levels", "nn")):
        full = apply_transforms(load_image(tpl.path(role), check_finite=False), dest.grid, [warp], interp)
        mine = _data(res.path(tpl.path(role).name))
        # voxel coordinates are kept in float32: linear values agree to 1e-4 relative
        np.testing.assert_allclose(mine, full.data, rtol=1e-4, atol=1e-3 if interp == "linear" else 0)
    # the box really is a crop of the 70x70x275 template
    dmap = DestinationMap(dest.grid, [warp])
    _, box = dmap.voxels(load_image(tpl.path("cord"), check_finite=False).grid)
    assert box is not None and box[2].stop - box[2].start < 40


def _absent_intensity() -> list[str]:
    """PAM50's intensity templates absent from this copy (all three on the mirror, none in the
    full release; both layouts are tested in test_validation_layouts)."""
    folder = load_template("PAM50").template_dir
    return [f for f in ("PAM50_t1.nii.gz", "PAM50_t2.nii.gz", "PAM50_t2s.nii.gz") if not (folder / f).is_file()]


# -- mt with the full PAM50 and atlas, against SCT's own outputs -----------------------------------
def test_mt_against_sct_outputs(mt_out, sct_data: Path) -> None:
    res, out = mt_out
    sct = sct_data / "mt" / "label"
    assert [s.file for s in res.skipped] == _absent_intensity()  # none with the full release
    assert len([w for w in res.written if w.folder == "atlas"]) == 37
    assert _data(res.path("PAM50_cord.nii.gz")).dtype == np.uint8
    assert _data(res.path("PAM50_wm.nii.gz")).dtype == np.float32
    mine_cord = _data(out / "template" / "PAM50_cord.nii.gz") > 0.5
    sct_cord = nib.load(str(sct / "template" / "PAM50_cord.nii.gz")).get_fdata() > 0.5
    # compare on the slices where both have cord: SCT's older PAM50 stops before slice 3, where
    # the current one (and the subject's own cord, mt1_seg) continue
    zs = np.flatnonzero(mine_cord.any(axis=(0, 1)) & sct_cord.any(axis=(0, 1)))
    assert zs.tolist() == [1, 2]
    assert _dice(mine_cord[..., zs], sct_cord[..., zs]) >= 0.96  # measured 0.969 (0.95 before session 41)
    seg = nib.load(str(sct_data / "mt" / "mt1_seg.nii.gz")).get_fdata() > 0.5
    assert _dice(mine_cord, seg) >= 0.71  # measured 0.722 (SCT's own output: 0.556); 0.70 before session 41
    csf = _data(out / "template" / "PAM50_csf.nii.gz")[..., zs] > 0.5
    sct_csf = nib.load(str(sct / "template" / "PAM50_csf.nii.gz")).get_fdata()[..., zs] > 0.5
    assert _dice(csf, sct_csf) >= 0.99  # measured 0.995 (0.98 before session 41)

    def corr(folder: str, name: str) -> float:
        a = _data(out / folder / name).astype(float)[..., zs].ravel()
        b = nib.load(str(sct / folder / name)).get_fdata()[..., zs].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    assert corr("template", "PAM50_wm.nii.gz") >= 0.982  # measured 0.987 (0.98 before session 41)
    assert corr("template", "PAM50_gm.nii.gz") >= 0.99  # measured 0.994 (0.98 before session 41)
    tracts = np.array([corr("atlas", w.file) for w in res.written if w.folder == "atlas"])
    # measured (session 41): median 0.980, 33 of 37 >= 0.9 (the nearest to 0.9: 0.896 and 0.916),
    # min 0.759 (lateral vestibulospinal tracts 18/19, whose maps changed between PAM50 releases);
    # the comment here said median 0.978, 30 of 37, asserted >= 0.95 / 30 / 0.7 before session 41
    assert np.median(tracts) >= 0.975
    assert np.count_nonzero(tracts >= 0.9) >= 33
    assert tracts.min() >= 0.74


def test_mt_info_labels_copied_and_parseable(mt_out, pam50_dir: Path) -> None:
    res, out = mt_out
    atlas = parse_info_label(out / "atlas" / "info_label.txt")
    assert atlas == parse_info_label(pam50_dir / "atlas" / "info_label.txt")
    files = [f[-1] for _, f in atlas["IndivLabels"]]
    assert len(files) == 37 and all((out / "atlas" / f).is_file() for f in files)
    assert {int(f[0]) for _, f in atlas["CombinedLabels"]} >= {50, 51, 52}
    tpl = parse_info_label(out / "template" / "info_label.txt")
    listed = [f[-1] for _, f in tpl["IndivLabels"]]
    assert not set(_absent_intensity()) & set(listed)  # rows of skipped files are dropped
    assert listed == [w.file for w in res.written if w.folder == "template"]
    assert sorted(p.name for p in (out / "template").iterdir()) == sorted(listed + ["info_label.txt"])


def test_mt_provenance(mt_out) -> None:
    import json

    res, out = mt_out
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command"] == "warp-template"
    assert prov["template"]["name"] == "PAM50"
    assert len(prov["inputs"]["warps"]) == 2
    assert len(prov["objects"]) == len(res.written) == 15 + (3 - len(_absent_intensity())) + 37
    by = {o["file"]: o["interpolation"] for o in prov["objects"]}
    assert by["PAM50_label_disc.nii.gz"] == "label" and by["PAM50_levels.nii.gz"] == "nn"
    assert by["PAM50_atlas_00.nii.gz"] == "linear"
    assert [s["file"] for s in prov["skipped"]] == _absent_intensity()
    assert prov["time"] and prov["seconds"]["total"] > 0


# -- failures leave nothing behind ------------------------------------------------------------------
def test_unreadable_template_file_leaves_no_output(sct_data: Path, tmp_path: Path) -> None:
    src = sct_data / "template"
    tpl = tmp_path / "tpl"
    shutil.copytree(src, tpl)
    (tpl / "template" / "PAM50_small_levels.nii.gz").write_bytes(b"\x1f\x8bnot really gzip")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="PAM50_small_levels"):
        warp_template(sct_data / "t2" / "t2.nii.gz", [sct_data / "t2" / "warp_template2anat.nii.gz"],
                      out, template=tpl)
    assert not out.exists()


# -- CLI ------------------------------------------------------------------------------------------
def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_runs_and_refuses_to_overwrite(sct_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "label"
    argv = ["warp-template", "-d", str(sct_data / "t2" / "t2.nii.gz"),
            "-w", str(sct_data / "t2" / "warp_template2anat.nii.gz"), "-o", str(out), "-t", "PAM50_small"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "7 files" in printed
    names = {p.name for p in (out / "template").iterdir()}
    assert {"PAM50_small_cord.nii.gz", "PAM50_small_levels.nii.gz", "PAM50_small_label_disc.nii.gz",
            "info_label.txt"} <= names
    import hashlib
    import json

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command_line"] == "spinereg " + " ".join(argv)
    warp = sct_data / "t2" / "warp_template2anat.nii.gz"
    assert prov["input_files"]["warps"][0]["sha256"] == hashlib.sha256(warp.read_bytes()).hexdigest()
    assert prov["input_files"]["dest"]["path"] == str((sct_data / "t2" / "t2.nii.gz").resolve())
    assert prov["versions"]["numpy"] and "git_commit" in prov["versions"]
    before = _tree_digest(out)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exist" in err and "--overwrite" in err
    assert _tree_digest(out) == before
    assert main(argv + ["--overwrite"]) == 0
    assert set(_tree_digest(out)) == set(before)


def test_cli_missing_warp_is_one_line(sct_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "label"
    code = main(["warp-template", "-d", str(sct_data / "t2" / "t2.nii.gz"), "-w", str(tmp_path / "nope.nii.gz"),
                 "-o", str(out), "-t", "PAM50_small"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.nii.gz" in err and "warp not found" in err
    assert not out.exists()


def test_cli_warp_for_the_other_direction_is_refused(sct_data: Path, tmp_path: Path, capsys) -> None:
    """A warp that lives on another space's grid (as warp_anat2template lives on the template's)
    given where warp_template2anat belongs: exit 2 before any work, one line naming the warp, no
    folder (before session 36: 15 all-zero files, exit 0)."""
    from spinereg.io.grid import Grid
    from spinereg.transforms.displacement import DisplacementField
    from spinereg.transforms.itk import write_displacement

    g = load_image(sct_data / "t2" / "t2.nii.gz").grid
    far = Grid(g.shape, np.array(g.affine) + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, -400.0], [0, 0, 0, 0]]))
    warp = write_displacement(DisplacementField(far, np.zeros(tuple(far.shape) + (3,), np.float32)),
                              tmp_path / "warp_anat2template.nii.gz")
    out = tmp_path / "wt"
    assert main(["warp-template", "-d", str(sct_data / "t2" / "t2.nii.gz"), "-w", str(warp), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warp_anat2template.nii.gz" in err and "far from" in err, err
    assert not out.exists()


def test_cli_chain_of_two_with_affine_file_and_atlas(sct_data: Path, tmp_path: Path, capsys) -> None:
    shift = write_affine(_shift(), tmp_path / "old2current_pam50.txt")
    out = tmp_path / "label"
    code = main(["warp-template", "-d", str(sct_data / "mt" / "mt1.nii.gz"),
                 "-w", str(shift), str(sct_data / "mt" / "warp_template2mt.nii.gz"),
                 "-o", str(out), "--atlas", "--spinal-levels"])
    assert code == 0
    printed = capsys.readouterr().out
    assert all(f"skipped template/{f}" in printed for f in _absent_intensity())
    assert "note: template PAM50 has no spinal_levels" in printed
    assert len(list((out / "atlas").glob("PAM50_atlas_*.nii.gz"))) == 37
    cord = _data(out / "template" / "PAM50_cord.nii.gz")
    # measured 305, as with the in-memory shift (mt_out); 250-350 before session 41
    assert 300 <= np.count_nonzero(cord) <= 310
