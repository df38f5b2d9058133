"""Templates: roles from info_label.txt, kinds, atlas parsing, name and folder resolution."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.errors import DataNotFoundError, InputError
from spinereg.io.template import classify, load_template, parse_ids, role_names

PAM50_ROLES = ("cord", "wm", "gm", "csf", "levels", "levels_continuous", "disc", "disc_posterior",
               "body", "spine", "centerline", "spinal_levels", "spinal_midpoint", "rootlets",
               "rootlets_midpoint")


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path, data_root):
    monkeypatch.setenv("SPINEREG_DATA", str(data_root))
    monkeypatch.setenv("SPINEREG_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def pam50():
    return load_template("PAM50")


def test_role_names():
    assert role_names() == (
        "t1", "t2", "t2s", "cord", "wm", "gm", "csf", "levels", "levels_continuous", "disc",
        "disc_posterior", "body", "spine", "centerline", "spinal_levels", "spinal_midpoint",
        "rootlets", "rootlets_midpoint")


@pytest.mark.parametrize("desc, role, kind", [
    ("spinal cord mask with discrete vertebral levels", "levels", "levels"),  # not 'disc'
    ("spinal cord mask with continuous vertebral levels", "levels_continuous", "levels"),
    ("point-wise intervertebral disc labels", "disc", "point_labels"),
    ("point-wise posterior intervertebral disc labels", "disc_posterior", "point_labels"),
    ("spinal cord mask with discrete spinal levels", "spinal_levels", "levels"),
    ("point-wise spinal level labels", "spinal_midpoint", "point_labels"),
    ("spinal dorsal nerve rootlets center of mass with discrete spinal levels", "rootlets_midpoint",
     "point_labels"),
    ("T2S-weighted template", "t2s", "intensity"),
    ("spinal cord", "cord", "mask"),
    ("vertebral labeling", "levels", "levels"),
    ("cerebrospinal fluid", "csf", "mask"),
    ("something point-wise", None, "point_labels"),
    ("a probabilistic map", None, "probabilistic"),
    ("unknown", None, "mask"),
])
def test_classify(desc, role, kind):
    assert classify(desc) == (role, kind)


def test_parse_ids():
    assert parse_ids("0:35") == tuple(range(36))
    assert parse_ids("0,1,15,16") == (0, 1, 15, 16)
    assert parse_ids("36") == (36,)
    assert parse_ids("0:2, 7") == (0, 1, 2, 7)
    for bad in ("a", "3:1", "1:2:3"):
        with pytest.raises(InputError, match="bad label id group"):
            parse_ids(bad)


# -- PAM50 -------------------------------------------------------------------------------------
def _expected_roles(pam50_dir: Path) -> tuple[str, ...]:
    """PAM50's roles in this copy: the intensity templates only where present (full release)."""
    return tuple(r for r in ("t1", "t2", "t2s") if (pam50_dir / "template" / f"PAM50_{r}.nii.gz").is_file()) \
        + PAM50_ROLES


def test_pam50_roles_and_objects(pam50, pam50_dir):
    assert pam50.name == "PAM50"
    assert pam50.root == pam50_dir
    assert pam50.roles == _expected_roles(pam50_dir)  # t1/t2/t2s: listed, present in the full release only
    assert [o.id for o in pam50.objects] == list(range(18))
    assert all(o.listed for o in pam50.objects)
    assert pam50.path("cord") == pam50_dir / "template" / "PAM50_cord.nii.gz"
    assert pam50.path("levels").name == "PAM50_levels.nii.gz"
    assert pam50.path("disc").name == "PAM50_label_disc.nii.gz"
    assert pam50.path("disc_posterior").name == "PAM50_label_discPosterior.nii.gz"
    assert pam50.path("body").name == "PAM50_label_body.nii.gz"
    assert pam50.path("spinal_levels").name == "PAM50_spinal_levels.nii.gz"
    assert pam50.path("spinal_midpoint").name == "PAM50_spinal_midpoint.nii.gz"
    assert pam50.path("rootlets_midpoint").name == "PAM50_rootlets_midpoint.nii.gz"
    kinds = {o.role: o.kind for o in pam50.objects}
    assert kinds == {
        "t1": "intensity", "t2": "intensity", "t2s": "intensity", "cord": "mask",
        "wm": "probabilistic", "gm": "probabilistic", "csf": "mask", "levels": "levels",
        "levels_continuous": "levels", "body": "point_labels", "disc": "point_labels",
        "disc_posterior": "point_labels", "spine": "mask", "centerline": "point_labels",
        "spinal_midpoint": "point_labels", "spinal_levels": "levels", "rootlets": "levels",
        "rootlets_midpoint": "point_labels"}
    interp = {o.role: o.interp for o in pam50.objects}
    assert interp["cord"] == "nn" and interp["levels"] == "nn"
    assert interp["disc"] == "label" and interp["wm"] == "linear" and interp["t1"] == "linear"


def test_pam50_missing_intensity_template(pam50_mirror):
    """The mirror's layout (no intensity templates; the full release: test_validation_layouts)."""
    pam50 = load_template(pam50_mirror)
    pam50_dir = pam50_mirror
    assert not pam50.has("t2")
    obj = pam50.object("t2")
    assert (obj.id, obj.file, obj.exists) == (1, "PAM50_t2.nii.gz", False)
    with pytest.raises(DataNotFoundError) as info:
        pam50.path("t2")
    text = str(info.value)
    assert text.startswith(str(pam50_dir / "template" / "PAM50_t2.nii.gz"))
    assert "'t2' file (PAM50_t2.nii.gz, T2-weighted template) is missing" in text
    with pytest.raises(InputError, match="unknown template role 'T2w'"):
        pam50.path("T2w")


def test_pam50_label_files_match_their_kind(pam50):
    disc = np.asanyarray(nib.load(pam50.path("disc")).dataobj)
    values = np.unique(disc[disc > 0])
    assert np.count_nonzero(disc) == len(values)  # one voxel per label
    assert {1, 2, 3, 60} <= set(values.tolist())  # 3 = C2/C3, 60 = cauda equina
    body = np.asanyarray(nib.load(pam50.path("body")).dataobj)
    assert np.count_nonzero(body) == len(np.unique(body[body > 0]))


def test_pam50_atlas(pam50, pam50_dir):
    atlas = pam50.atlas
    assert atlas.root == pam50_dir / "atlas"
    assert len(atlas) == 37  # 36 tracts + CSF contour
    assert [t.id for t in atlas] == list(range(37))
    assert atlas[0].name == "WM left fasciculus gracilis"
    assert atlas[0].path == pam50_dir / "atlas" / "PAM50_atlas_00.nii.gz"
    assert atlas[12].name == "WM left spinal lemniscus (spinothalamic and spinoreticular tracts)"
    assert atlas[36].name == "CSF contour" and atlas[36].file == "PAM50_atlas_36.nii.gz"
    assert all(t.exists and t.kind == "probabilistic" and t.ids == (t.id,) for t in atlas)
    assert [(c.id, c.name) for c in atlas.combined] == [
        (50, "spinal cord"), (51, "white matter"), (52, "gray matter"), (53, "dorsal columns"),
        (54, "lateral funiculi"), (55, "ventral funiculi")]
    assert atlas.label(50).ids == tuple(range(36))
    assert atlas.label(51).ids == tuple(range(30))
    assert atlas.label(52).ids == tuple(range(30, 36))
    assert atlas.label(51).combined and atlas.label(51).file is None
    assert [t.name for t in atlas.members(53)] == [
        "WM left fasciculus gracilis", "WM right fasciculus gracilis",
        "WM left fasciculus cuneatus", "WM right fasciculus cuneatus"]
    assert [(c.name, c.ids) for c in atlas.clusters] == [
        ("white matter", tuple(range(30))), ("gray matter", tuple(range(30, 36))), ("CSF", (36,))]
    with pytest.raises(InputError, match="atlas has no label 99"):
        atlas.label(99)


# -- MNI-Poly-AMU ------------------------------------------------------------------------------
def test_mni_roles(data_root):
    tpl = load_template("MNI-Poly-AMU")
    root = data_root / "MNI-Poly-AMU"
    assert tpl.name == "MNI-Poly-AMU" and tpl.root == root
    assert tpl.roles == ("cord", "wm", "gm", "csf", "levels", "disc")
    assert tpl.path("csf").name == "MNI-Poly-AMU_CSF.nii.gz"
    assert tpl.path("levels").name == "MNI-Poly-AMU_level.nii.gz"
    disc = tpl.object("disc")  # present but not listed in info_label.txt
    assert disc.path == root / "template" / "MNI-Poly-AMU_disc.nii.gz"
    assert (disc.id, disc.listed, disc.kind) == (None, False, "point_labels")
    data = np.asanyarray(nib.load(disc.path).dataobj)
    assert np.count_nonzero(data) == 12
    t2 = tpl.object("t2")  # absent from the mirror, present in the full release
    assert t2.file == "MNI-Poly-AMU_T2.nii.gz" and tpl.has("t2") == t2.path.is_file()
    with pytest.raises(DataNotFoundError, match="has no 'body' object"):
        tpl.path("body")
    with pytest.raises(DataNotFoundError, match="spinal_level_maps"):
        tpl.path("spinal_levels")
    maps = tpl.spinal_level_maps
    assert [m.description for m in maps] == [f"spinal level {v}" for v in
                                            ("C3", "C4", "C5", "C6", "C7", "C8", "T1", "T2", "T3", "T4", "T5")]
    assert maps[0].path == root / "spinal_levels" / "spinal_level_C3.nii.gz"
    assert all(m.exists and m.kind == "probabilistic" for m in maps)


def test_mni_atlas(data_root):
    atlas = load_template("MNI-Poly-AMU").atlas
    assert len(atlas) == 32
    assert atlas[0].file == "WMtract__00.nii.gz" and atlas[30].name == "gray matter"
    assert {c.id: c.ids for c in atlas.combined} == {
        32: tuple(range(31)), 33: tuple(range(30)), 34: (0, 1, 15, 16),
        35: (2, 3, 4, 5, 6, 17, 18, 19, 20, 21),
        36: (7, 8, 9, 10, 11, 12, 13, 14, 22, 23, 24, 25, 26, 27, 28, 29)}
    assert atlas.label(34).name == "dorsal columns"
    assert [(c.name, c.ids) for c in atlas.clusters][1:] == [("gray matter", (30,)), ("CSF", (31,))]


# -- PAM50_small and folders ---------------------------------------------------------------
def test_pam50_small(sct_data):
    tpl = load_template("PAM50_small")
    assert tpl.name == "PAM50_small" and tpl.root == sct_data / "template"
    assert tpl.roles == ("t2", "cord", "levels", "disc", "disc_posterior", "rootlets",
                         "rootlets_midpoint")
    assert [o.id for o in tpl.objects] == [1, 3, 7, 10, 11, 16, 17]
    assert tpl.path("t2") == sct_data / "template" / "template" / "PAM50_small_t2.nii.gz"
    assert tpl.path("rootlets_midpoint").name == "PAM50_small_rootlets_midpoints.nii.gz"
    assert "-46.22" in tpl.note  # not in the current PAM50 space
    assert tpl.atlas.root is None and len(tpl.atlas) == 0
    assert nib.load(tpl.path("cord")).header.get_zooms() == pytest.approx((1.0, 1.0, 2.0))


def test_folders(pam50_dir, sct_data):
    for arg in (pam50_dir, pam50_dir / "template", str(pam50_dir)):
        tpl = load_template(arg)
        assert tpl.name == "PAM50" and tpl.root == pam50_dir
        assert tpl.roles == _expected_roles(pam50_dir) and len(tpl.atlas) == 37
    small = load_template(sct_data / "template")
    assert small.name == "PAM50_small" and small.note == ""
    assert small.path("disc").name == "PAM50_small_label_disc.nii.gz"


def test_custom_folder(tmp_path):
    tdir = tmp_path / "mytpl" / "template"
    tdir.mkdir(parents=True)
    (tdir / "info_label.txt").write_text(
        "0, T1-weighted template, my_t1.nii.gz\n1, spinal cord mask (binary), my_cord.nii.gz\n"
        "2, some point-wise landmarks, my_marks.nii.gz\n")  # no Keyword lines (old format)
    (tdir / "my_cord.nii.gz").write_bytes(b"")
    tpl = load_template(tmp_path / "mytpl")
    assert tpl.name == "my" and tpl.root == tmp_path / "mytpl"
    assert tpl.roles == ("cord",)
    assert [(o.role, o.kind, o.exists) for o in tpl.objects] == [
        ("t1", "intensity", False), ("cord", "mask", True), (None, "point_labels", False)]
    assert tpl.atlas.root is None


def test_bad_template_arguments(tmp_path, pam50_dir):
    with pytest.raises(InputError, match="no template named or at 'PAM51'.*PAM50, MNI-Poly-AMU, PAM50_small"):
        load_template("PAM51")
    with pytest.raises(InputError, match="not a template folder"):
        load_template(tmp_path)
    with pytest.raises(InputError, match="a template is a folder, not a file"):
        load_template(pam50_dir / "template" / "PAM50_cord.nii.gz")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "info_label.txt").write_text("x, cord, a.nii.gz\n")
    with pytest.raises(InputError, match="line 1: label id 'x' is not an integer"):
        load_template(bad)


def test_named_template_without_data(monkeypatch):
    monkeypatch.delenv("SPINEREG_DATA")
    with pytest.raises(DataNotFoundError, match="spinereg data fetch sct_testing_data"):
        load_template("PAM50_small")


def test_cli_template_info(capsys, data_root):
    assert main(["template-info", "-t", "MNI-Poly-AMU"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"template MNI-Poly-AMU: {data_root / 'MNI-Poly-AMU'}"
    assert out[1].split() == ["0", "t2", "intensity", "linear", "MNI-Poly-AMU_T2.nii.gz", "(missing)"]
    assert out[7].split() == ["-", "disc", "point_labels", "label", "MNI-Poly-AMU_disc.nii.gz"]
    assert out[8].startswith("atlas: 32 tracts, 5 combined labels (32 spinal cord,")
    assert out[9].startswith("spinal level maps: 11 in ")
    assert main(["template-info", "-t", str(Path("/nonexistent/tpl"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spinereg template-info: error: no template named or at '/nonexistent/tpl'")
