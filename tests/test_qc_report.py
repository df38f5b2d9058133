"""HTML QC report: files, figures and data of a real register-to-template run (t2, PAM50_small)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from spinereg.cli.main import main
from spinereg.qc import add_to_report, build_index, load_entries
from spinereg.qc.figures import disc_name, level_name

pytestmark = pytest.mark.realdata

URL = re.compile(r"https?://|//cdn|@import", re.IGNORECASE)


@pytest.fixture(scope="module")
def t2_qc(sct_data, tmp_path_factory):
    """A register-to-template run with --qc (the CLI hook), and its QC root."""
    t2 = sct_data / "t2"
    base = tmp_path_factory.mktemp("qc_report")
    run, root = base / "sub-01_t2", base / "qc"
    rc = main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
               "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small", "-o", str(run), "--qc", str(root)])
    assert rc == 0
    return run, root


def _png_ok(path: Path) -> tuple[int, int]:
    with PILImage.open(path) as im:
        im.verify()
    with PILImage.open(path) as im:
        arr = np.asarray(im.convert("L"), dtype=float)
    assert arr.std() > 5, f"{path.name} is blank"
    return arr.shape


def test_report_files(t2_qc):
    run, root = t2_qc
    for name in ("index.html", "entries.json", "assets/report.js", "assets/report.css"):
        assert (root / name).is_file(), name
    entries = load_entries(root)
    assert len(entries) == 1
    e = entries[0]
    assert e["command"] == "register-to-template"
    assert e["subject"] == "t2"
    assert Path(e["run_dir"]) == run.resolve()
    metrics = json.loads((run / "metrics.json").read_text())
    assert e["verdict"] == (metrics.get("qc") or {}).get("verdict", "not scored")
    expected = ((metrics.get("qc") or {}).get("scores") or {}).get("cord_dice", metrics["cord_dice_subject_space_zb"])
    assert e["scores"]["cord_dice"] == pytest.approx(expected)
    assert e["scores"]["cord_dice"] > 0.9
    assert e["scores"]["pct_folding"] == 0
    # scores beside their bounds and meaning
    rows = {r["name"]: r for r in e["score_table"]}
    assert rows["cord_dice"]["bounds"] == "fail < 0.85, warn < 0.92" and rows["cord_dice"]["state"] == "pass"
    assert all(r["meaning"] for r in e["score_table"] if r["bounds"])
    # command line and version
    assert e["command_line"].startswith("spinereg register-to-template -i ") and e["version"].startswith("spinereg ")
    # one section per stage, in order; every panel's pictures exist and are not blank
    stages = list(dict.fromkeys(p["stage"] for p in e["panels"]))
    assert stages == ["segmentation", "labels", "registration: subject space", "registration: template space"]
    files = [f for p in e["panels"] for f in p["files"].values()]
    assert {p["kind"] for p in e["panels"]} >= {"toggle", "single"}
    assert len(files) == 12
    sizes = {f: _png_ok(root / f) for f in files}
    # the before/after pairs have the same geometry (the toggle swaps aligned pictures), large
    for p in e["panels"]:
        if p["kind"] == "toggle":
            assert sizes[p["files"]["before"]] == sizes[p["files"]["after"]]
    axial = [sizes[f] for f in files if "axial" in f]
    assert min(w for _, w in axial) >= 600, axial  # tiles of 200 px
    # PAM50_small ships its T2 image: nothing says "synthesised"
    assert not any(p["note_after"] for p in e["panels"])
    # the index embeds the entry and references only files next to it
    html = (root / "index.html").read_text()
    assert e["id"] in html
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert (root / src).is_file(), src


def test_no_network_references(t2_qc):
    _, root = t2_qc
    for path in [root / "index.html", *sorted((root / "assets").iterdir())]:
        text = path.read_text()
        assert not URL.search(text), f"{path.name} refers to the network: {URL.search(text).group(0)}"


def test_rerun_replaces_entry_and_index_rebuild(t2_qc, capsys):
    run, root = t2_qc
    first = load_entries(root)[0]
    assert main(["qc", str(run), "--root", str(root)]) == 0
    entries = load_entries(root)
    assert len(entries) == 1 and entries[0]["id"] == first["id"]
    leftovers = [p.name for p in (root / "entries").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    (root / "index.html").unlink()
    assert main(["qc", "--index", str(root)]) == 0
    assert first["id"] in (root / "index.html").read_text()
    assert str(root / "index.html") in capsys.readouterr().out


def test_verdict_block_is_shown(t2_qc, tmp_path):
    run, _ = t2_qc
    bad = tmp_path / "bad"
    shutil.copytree(run, bad, ignore=shutil.ignore_patterns("qc"))
    m = json.loads((bad / "metrics.json").read_text())
    m["qc"] = {"verdict": "fail", "reasons": ["cord Dice 0.61 < 0.85"], "scores": {"cord_dice": 0.61,
                                                                                   "hausdorff95_mm": 4.2}}
    (bad / "metrics.json").write_text(json.dumps(m))
    index = add_to_report(bad, tmp_path / "qc")
    e = load_entries(tmp_path / "qc")[0]
    assert e["verdict"] == "fail" and e["reasons"] == ["cord Dice 0.61 < 0.85"]
    assert e["scores"]["cord_dice"] == 0.61 and e["scores"]["hausdorff95_mm"] == 4.2
    assert "cord Dice 0.61 &lt; 0.85" not in index.read_text()  # data are JSON, escaped by the page's JS
    assert "cord Dice 0.61 < 0.85" in index.read_text()


def test_moco_entry_is_animated(tmp_path):
    rng = np.random.default_rng(0)
    shape, nvol = (16, 16, 8), 6
    base = np.zeros(shape, np.float32)
    base[5:11, 5:11, 2:6] = 100
    moving = np.stack([np.roll(base, t % 3, axis=0) for t in range(nvol)], -1) + rng.normal(0, 1, shape + (nvol,))
    fixed = np.stack([base] * nvol, -1) + rng.normal(0, 1, shape + (nvol,))
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    src = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(moving.astype(np.float32), aff), src)
    run = tmp_path / "moco"
    run.mkdir()
    nib.save(nib.Nifti1Image(fixed.astype(np.float32), aff), run / "fmri_moco.nii.gz")
    (run / "metrics.json").write_text(json.dumps({"command": "moco", "inputs": {"input": str(src)},
                                                  "summary": {"n_volumes": nvol, "max_abs_shift_mm": 4.0}}))
    add_to_report(run, tmp_path / "qc")
    e = load_entries(tmp_path / "qc")[0]
    assert e["command"] == "moco" and e["subject"] == "fmri"
    assert e["scores"] == {"max_abs_shift_mm": 4.0}
    assert e["panels"][0]["stage"] == "motion"
    gifs = e["panels"][0]["files"]
    for key in ("before", "after"):
        with PILImage.open(tmp_path / "qc" / gifs[key]) as im:
            assert im.is_animated and im.n_frames == nvol


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["qc", str(tmp_path)]) == 2
    assert "provenance.json not found" in capsys.readouterr().err
    assert main(["qc", "--index", str(tmp_path)]) == 2
    with pytest.raises(Exception, match="no entries.json"):
        build_index(tmp_path)


def test_page_api(tmp_path):
    """A new kind of run gets its page by registering a renderer (see spinereg.qc.pages)."""
    from spinereg.qc.figures import View, axial_mosaic
    from spinereg.qc.pages import Panel, page

    @page("toy-segment")
    def render(run_dir, prov, outdir):
        vol = np.random.default_rng(0).normal(size=(20, 20, 6)).astype(np.float32)
        mask = np.zeros(vol.shape, bool)
        mask[8:12, 8:12] = True
        axial_mosaic(View(vol, np.ones(3)), outdir / "a.png", mask, slices=[1, 3], tile_labels=["s1", "s3"])
        return [Panel("segmentation", "Toy", "single", {"image": "a.png"}, "a caption")]

    run = tmp_path / "run"
    run.mkdir()
    (run / "provenance.json").write_text(json.dumps({"command": "toy-segment", "inputs": {}}))
    add_to_report(run, tmp_path / "qc")
    e = load_entries(tmp_path / "qc")[0]
    assert e["command"] == "toy-segment" and e["panels"][0]["stage"] == "segmentation"
    assert (tmp_path / "qc" / e["panels"][0]["files"]["image"]).is_file()
    with pytest.raises(ValueError):
        Panel("labels", "bad", "toggle", {"image": "x.png"})
    (run / "provenance.json").write_text(json.dumps({"command": "no-such-kind", "inputs": {}}))
    with pytest.raises(Exception, match="no QC page for runs of 'no-such-kind'"):
        add_to_report(run, tmp_path / "qc2")
    assert not (tmp_path / "qc2").exists()  # a failed first entry leaves no QC folder


def test_level_names():
    assert [level_name(v) for v in (1, 7, 8, 19, 20, 24)] == ["C1", "C7", "T1", "T12", "L1", "L5"]
    assert [disc_name(v) for v in (1, 2, 3, 8, 20)] == ["PMJ", "C1", "C2/C3", "C7/T1", "T12/L1"]


def test_input_changed_since_the_run_is_refused(t2_qc, tmp_path, capsys):
    """QC drew whatever file now sits at the input's path under the run's warps: a t2.nii.gz
    replaced by noise after the run was drawn, exit 0. provenance.json's size/SHA-256 now say so."""
    run, _ = t2_qc
    moved = tmp_path / "run"
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("qc"))
    image = tmp_path / "t2.nii.gz"
    prov = json.loads((moved / "provenance.json").read_text())
    shutil.copy(prov["inputs"]["image"], image)
    prov["inputs"]["image"] = str(image)
    prov["input_files"]["image"]["path"] = str(image.resolve())
    (moved / "provenance.json").write_text(json.dumps(prov))
    assert main(["qc", str(moved), "--root", str(tmp_path / "qc_ok")]) == 0  # the same file: drawn
    capsys.readouterr()
    t2 = nib.load(str(image))
    noise = np.random.default_rng(0).normal(500, 100, t2.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, t2.affine), str(image))
    assert main(["qc", str(moved), "--root", str(tmp_path / "qc_bad")]) == 2
    err = capsys.readouterr().err
    assert "changed since the run" in err and str(image) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "qc_bad").exists() or not any((tmp_path / "qc_bad").rglob("*.png"))


def test_unknown_kind_lists_every_page(tmp_path, capsys):
    """--kind bogus said 'QC covers: chain, register, register-to-template', leaving out moco,
    spine-metrics, label-vertebrae and segment, which `spinereg qc -h` and the pages offer."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "provenance.json").write_text(json.dumps({"command": "register", "inputs": {}}))
    (run / "metrics.json").write_text("{}")
    assert main(["qc", str(run), "--kind", "bogus", "--root", str(tmp_path / "qc")]) == 2
    err = capsys.readouterr().err
    for kind in ("chain", "label-vertebrae", "moco", "register-to-template", "segment", "spine-metrics"):
        assert kind in err, err
