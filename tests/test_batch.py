"""spinereg batch, fast part: BIDS discovery, configuration checks, names, run-specific records,
and the command's refusals (one line, exit 2, nothing written). The runs themselves:
test_batch_run.py."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.batch.bids import discover, find_given, parse_name
from spinereg.batch.config import load_config
from spinereg.batch.naming import chain_names, template_label, template_names
from spinereg.batch.tables import summarise
from spinereg.batch.unit import split_run_specific
from spinereg.cli.main import main
from spinereg.errors import InputError


def _img(path: Path, shape=(4, 4, 3)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(path))


@pytest.fixture
def tiny_bids(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root).mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    (root / "T2w.json").write_text('{"MagneticFieldStrength": 3, "EchoTime": 0.1}')
    _img(root / "sub-01/ses-01/anat/sub-01_ses-01_T2w.nii.gz")
    (root / "sub-01/ses-01/anat/sub-01_ses-01_T2w.json").write_text('{"EchoTime": 0.12}')
    _img(root / "sub-01/ses-02/anat/sub-01_ses-02_acq-sag_T2w.nii.gz")
    _img(root / "sub-01/ses-02/anat/sub-01_ses-02_flip-1_mt-on_MTS.nii.gz")
    _img(root / "sub-01/ses-02/func/sub-01_ses-02_task-rest_bold.nii.gz", (4, 4, 3, 2))
    _img(root / "sub-02/anat/sub-02_T2starw.nii.gz")
    _img(root / "sub-02/anat/sub-02_T2starw_seg.nii.gz")  # a given file next to the image, not an image
    _img(root / "sub-02/dwi/sub-02_dwi.nii.gz", (4, 4, 3, 2))
    _img(root / "derivatives/labels/sub-01/ses-01/anat/sub-01_ses-01_T2w_seg-manual.nii.gz")
    return root


def test_parse_name():
    assert parse_name("sub-01_ses-02_acq-x_T2w.nii.gz") == ((("sub", "01"), ("ses", "02"), ("acq", "x")), "T2w")
    assert parse_name("sub-01_T2w.json") is None
    assert parse_name("README.nii.gz") is None
    assert parse_name("ses-01_sub-01_T2w.nii") is None


def test_discover_units_sessions_sidecars_given(tiny_bids: Path):
    ds = discover(tiny_bids)
    assert [u.uid for u in ds.units] == ["sub-01_ses-01", "sub-01_ses-02", "sub-02"]
    u1, u2, u3 = ds.units
    assert [im.suffix for im in u1.images] == ["T2w"]
    t2 = u1.images[0]
    # inheritance: the dataset-level T2w.json under the image's own sidecar
    assert t2.sidecar == {"MagneticFieldStrength": 3, "EchoTime": 0.12}
    assert sorted(im.suffix for im in u2.images) == ["MTS", "T2w", "bold"]
    assert u2.of("T2w")[0].prefix == "sub-01_ses-02_acq-sag"
    assert sorted(im.suffix for im in u3.images) == ["T2starw", "dwi"]  # the _seg file is not an image
    assert find_given(t2, tiny_bids, ["_seg-manual"]).name == "sub-01_ses-01_T2w_seg-manual.nii.gz"
    assert find_given(u3.of("T2starw")[0], tiny_bids, ["_seg-manual", "_seg"]).name == "sub-02_T2starw_seg.nii.gz"
    assert find_given(u2.of("T2w")[0], tiny_bids, ["_seg-manual"]) is None
    own = tiny_bids / "derivatives" / "spinereg"  # a batch output inside derivatives is never an input
    _img(own / "sub-01/ses-02/anat/sub-01_ses-02_acq-sag_T2w_seg-manual.nii.gz")
    (own / ".spinereg-batch.json").write_text("{}")
    assert find_given(u2.of("T2w")[0], tiny_bids, ["_seg-manual"]) is None
    # selection
    assert [u.uid for u in discover(tiny_bids, participant_label=["sub-01"], session=["02"]).units] == ["sub-01_ses-02"]
    with pytest.raises(InputError, match="participant label"):
        discover(tiny_bids, participant_label=["03"])


def test_discover_refuses_non_bids(tmp_path: Path):
    with pytest.raises(InputError, match="not a BIDS dataset"):
        discover(tmp_path)
    with pytest.raises(InputError, match="not found"):
        discover(tmp_path / "nope")


def test_config_default_and_errors(tmp_path: Path):
    cfg = load_config()
    assert cfg.anatomical == "T2w" and cfg.steps("MTS") == ["segment", "chain", "mtr", "warp-template", "extract-metric"]
    assert cfg.qc_for("register-to-template")
    user = tmp_path / "c.yaml"
    user.write_text("template: PAM50_small\ncontrasts:\n  T2w: {steps: [register-to-template], preset: template_fast}\n")
    cfg2 = load_config(user)
    assert cfg2.template == "PAM50_small" and cfg2.steps("T2w") == ["register-to-template"]
    assert cfg2.steps("MTS") == cfg.steps("MTS")  # other contrasts kept from the default
    assert cfg2.digest() != cfg.digest()
    bad = {
        "tempalte: PAM50\n": "unknown key",
        "contrasts:\n  T2w: {steps: [registr]}\n": "unknown step",
        "contrasts:\n  T2w: {steps: [register-to-template], preset: nope}\n": "unknown preset",
        "contrasts:\n  MTS: {steps: [chain], via: [T2starw]}\n": "via must end",
        "contrasts:\n  T2starw: {steps: [register-to-template]}\n": "anatomical contrast only",
        "contrasts:\n  Flair: {steps: [chain], via: [T2w]}\n": "unknown contrast",
        "qc: maybe\n": "qc",
        "contrasts:\n  T2w: {steps: [register-to-template, csa]}\n": "csa step needs warp-template",
        "a: [1\n": "not valid YAML",
    }
    for text, msg in bad.items():
        user.write_text(text)
        with pytest.raises(InputError, match=msg) as exc:
            load_config(user)
        assert str(user) in exc.value.one_line() and "fix:" in exc.value.one_line()


def test_names_and_aliases():
    assert template_label("PAM50_small") == "PAM50small"
    n = template_names("sub-01_ses-01", "T2w", "PAM50")
    assert n["warp_anat2template.nii.gz"] == "sub-01_ses-01_from-T2w_to-PAM50_mode-image_xfm.nii.gz"
    assert n["warp_template2anat.nii.gz"] == "sub-01_ses-01_from-PAM50_to-T2w_mode-image_xfm.nii.gz"
    c = chain_names("sub-01", "sub-01_T2starw", "T2starw", "PAM50")
    assert c["warp_sub-01_T2starw2template.nii.gz"] == "sub-01_from-T2starw_to-PAM50_mode-image_xfm.nii.gz"


def test_run_specific_fields_split():
    rec = {"command": "x", "started_utc": "t", "stages": [{"name": "a", "seconds": 1}], "inputs": {"a": "b"},
           "links": [{"k": 0, "timings": {"x": 1.0}}, {"k": 1}], "time": "now"}
    keep, moved = split_run_specific(rec)
    assert keep == {"command": "x", "inputs": {"a": "b"}, "links": [{"k": 0}, {"k": 1}]}
    assert moved["started_utc"] == "t" and moved["time"] == "now" and moved["links"][0] == {"timings": {"x": 1.0}}


def test_summary_per_level():
    rows = [{"contrast": "MTS", "metric": "mtr", "label": "cord", "method": "wa", "level": lv, "value": v}
            for lv, v in (("3", "30.0"), ("3", "34.0"), ("10", "20.0"), ("3", "n/a"))]
    out = summarise(rows)
    assert [r["level"] for r in out] == ["3", "10"]  # numeric order
    assert out[0]["n"] == 2 and out[0]["mean"] == "32.0" and out[0]["units"] == "%"


def test_cli_refusals(tiny_bids: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "nope"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BIDS folder not found" in err and "fix:" in err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("contrasts:\n  T2w: {steps: [registr]}\n")
    assert main(["batch", str(tiny_bids), "-o", str(out), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and err.count("\n") == 1
    assert not out.exists()  # nothing written
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    assert main(["batch", str(tiny_bids), "-o", str(other)]) == 2
    assert "holds no spinereg batch" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["x.txt"]
    assert main(["batch", str(tiny_bids), "-o", str(tiny_bids / "sub-01")]) == 2
    assert "inside the raw BIDS data" in capsys.readouterr().err


def test_cli_dry_run(tiny_bids: Path, tmp_path: Path, capsys):
    assert main(["batch", str(tiny_bids), "-o", str(tmp_path / "o"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "sub-01_ses-02: MTS, T2w, bold" in text and "3 unit(s)" in text
    assert not (tmp_path / "o").exists()


def test_config_file_json(tmp_path: Path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"crop": True, "engine": {"workers": 2}}))
    cfg = load_config(p)
    assert cfg.data["crop"] is True and cfg.data["engine"]["workers"] == 2
    assert cfg.data["engine"]["threads_per_worker"] == 1


def test_segment_step_carries_the_segmentations_warning(tmp_path, monkeypatch):
    """The batch segment step records the segmentation's warnings as its verdict (warn, with the
    reasons): a cord ending well below the top of the image (session 19) was kept silently."""
    from types import SimpleNamespace

    import spinereg.segment as seg_pkg
    from spinereg.batch.bids import BidsImage
    from spinereg.batch.steps import Context, segmentation
    from spinereg.io.image import Image

    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    im = BidsImage(anat / "sub-01_T2w.nii.gz", "anat", (("sub", "01"),), "T2w")
    fake = SimpleNamespace(seg=Image(np.ones((4, 4, 4), np.uint8), np.eye(4)),
                           info={"warnings": ["the segmented cord ends 39 mm below the top of the image"]})
    monkeypatch.setattr(seg_pkg, "segment", lambda path, contrast: fake)
    cfg = SimpleNamespace(data={"given": {"seg": ["_seg-manual"]}}, steps=lambda s: ["segment"],
                          contrast=lambda s: {"contrast": "t2"})
    ctx = Context(SimpleNamespace(root=tmp_path), cfg, tmp_path / "work")
    (tmp_path / "work").mkdir()
    out = segmentation(ctx, "T2w", im, required=True)
    assert out.is_file()
    rec = ctx.records[-1]
    assert rec.step == "segment" and rec.verdict == "warn" and "ends 39 mm below" in rec.reasons[0], rec


def test_cli_dry_run_checks_the_cluster_options(tiny_bids: Path, tmp_path: Path, capsys):
    """--dry-run ('check the inputs') passed --slurm '{bad' (refused only by the real run) and
    --workers 0 (run as 'auto', 2 workers)."""
    for extra, words in ((["--slurm", "{bad"], "--slurm is not JSON"), (["--slurm", "[1]"], "not a JSON object"),
                         (["--workers", "0"], "--workers 0"), (["--threads-per-worker", "0"], "--threads-per-worker 0")):
        for dry in (["--dry-run"], []):
            assert main(["batch", str(tiny_bids), "-o", str(tmp_path / "o"), *extra, *dry]) == 2
            err = capsys.readouterr().err
            assert words in err and len(err.strip().splitlines()) == 1, err
            assert not (tmp_path / "o").exists()


def test_unit_without_the_anatomical_contrast_fails_with_its_reason(tmp_path: Path):
    """A configuration whose other contrasts chain nothing (T2starw: segment only), on a subject
    without T2w: the unit failed with 'internal error (KeyError: 'T2w')' before session 39's fix."""
    from spinereg.batch.unit import run_unit

    root = tmp_path / "ds"
    _img(root / "sub-01/anat/sub-01_T2starw.nii.gz")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("contrasts:\n  T2w: {steps: [register-to-template]}\n  T2starw: {steps: []}\n"
                   "  MTS: {steps: []}\n  T1w: {steps: []}\n  dwi: {steps: []}\n  bold: {steps: []}\n")
    unit = discover(root).units[0]
    res = run_unit(unit, load_config(cfg), tmp_path / "out", "r1")
    assert res["status"] == "failed" and "missing contrast T2w" in res["reason"], res
    assert "internal error" not in res["reason"] and "fix:" in res["reason"]
    assert not (tmp_path / "out" / "sub-01").exists()


def test_several_images_of_a_contrast_are_said_on_the_units_line_and_table(tmp_path: Path):
    """Two T2w runs: the first was used and the other never processed, said only inside
    provenance.json ('T2w: 2 images, using ...'); the unit's line and subjects.tsv said nothing."""
    from spinereg.batch.run import run_batch
    from spinereg.batch.tables import read_tsv

    root = tmp_path / "ds"
    for run in ("01", "02"):
        _img(root / f"sub-01/anat/sub-01_run-{run}_T2w.nii.gz")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("qc: false\ncontrasts:\n  T2w: {steps: [register-to-template]}\n")
    lines: list[str] = []
    run_batch(root, tmp_path / "out", config=cfg, workers=1, report=lines.append, live=False)
    text = "\n".join(lines)
    assert "note: T2w: 2 images (sub-01_run-01_T2w.nii.gz, sub-01_run-02_T2w.nii.gz), using " \
           "sub-01_run-01_T2w.nii.gz" in text and "contrasts.T2w.target (e.g. {run: '02'})" in text, text
    # a complete unit's notes reach group/subjects.tsv
    from spinereg.batch.group import subject_rows

    unit = discover(root).units[0]
    (tmp_path / "out" / "sub-01").mkdir()
    (tmp_path / "out" / "sub-01" / "provenance.json").write_text(json.dumps({"verdict": "pass", "notes": ["T2w: x"]}))
    assert subject_rows(tmp_path / "out", [unit], {})[0]["notes"] == "T2w: x"
    assert "notes" in read_tsv(tmp_path / "out" / "group" / "subjects.tsv")[0]


def test_participants_without_a_folder_are_noted(tiny_bids: Path):
    """participants.tsv listing a subject whose folder is missing (not copied, renamed): nothing
    said before, the subject was simply absent from every group table."""
    (tiny_bids / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t30\tF\nsub-02\t41\tM\nsub-07\t25\tF\n")
    notes = discover(tiny_bids).notes
    assert any("participants.tsv: 1 participant(s) without a sub-* folder, not processed: sub-07" in n
               for n in notes), notes
    assert not any("participants.tsv" in n for n in discover(tiny_bids, participant_label=["01"]).notes)
    (tiny_bids / "participants.tsv").write_text("id\tage\n7\t3\n")  # no participant_id column: nothing to say
    assert not any("participants.tsv" in n for n in discover(tiny_bids).notes)


def test_target_entity_given_as_a_number(tmp_path: Path):
    """``target: {run: 02}`` unquoted is the number 2 in YAML: it matched no ``run-02`` file, so the
    contrast had no image ('no image matching {'run': 2}'); now it selects run-02."""
    from spinereg.batch import steps as st

    root = tmp_path / "ds"
    for run in ("01", "02"):
        _img(root / f"sub-01/anat/sub-01_run-{run}_T2w.nii.gz")
    for target, chosen in (("{run: 02}", "run-02"), ("{run: '02'}", "run-02"), ("{run: 1}", "run-01"),
                           ("{run: '2'}", "run-02"), ("{run: '3'}", None)):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"qc: false\ncontrasts:\n  T2w: {{steps: [register-to-template], target: {target}}}\n")
        ctx = st.Context(discover(root).units[0], load_config(cfg), tmp_path)
        im = st.target_image(ctx, "T2w")
        assert (im.path.name if im else None) == (f"sub-01_{chosen}_T2w.nii.gz" if chosen else None), target


def test_chain_step_carries_the_chains_verdict(tmp_path, monkeypatch):
    """The batch chain step records the chain's own verdict (metrics.json's qc block) with its
    reasons and scores: before session 50 a chain that warned or failed left its unit "pass" in
    provenance.json and group/subjects.tsv while qc_scores.csv said warn / fail."""
    from types import SimpleNamespace

    import spinereg.pipelines.chain_outputs as co
    import spinereg.register.chain as rc
    from spinereg.batch.bids import BidsImage
    from spinereg.batch.steps import Context, chain

    anat = tmp_path / "work" / "anat"
    anat.mkdir(parents=True)
    im = BidsImage(tmp_path / "sub-01_T2starw.nii.gz", "anat", (("sub", "01"),), "T2starw")
    t2 = BidsImage(tmp_path / "sub-01_T2w.nii.gz", "anat", (("sub", "01"),), "T2w")
    qc = {"verdict": "warn", "reasons": ["warn: cord_outside_anat_fov 0.4462 > 0.1"],
          "scores": {"cord_dice": 0.937, "cord_outside_anat_fov": 0.4462}}
    res = SimpleNamespace(metrics={"sub-01_T2starw": {"mode": "composed"}, "qc": qc})
    monkeypatch.setattr(rc, "register_chain", lambda *a, **k: res)

    def write(result, run, inputs, which):
        (run / "warp_template2sub-01_T2starw.nii.gz").write_bytes(b"x")

    monkeypatch.setattr(co, "write_chain_outputs", write)
    cfg = SimpleNamespace(contrast=lambda s: {"via": ["T2w"], "direct": False, "contrast": "t2s"},
                          anatomical="T2w", template="PAM50")
    ctx = Context(SimpleNamespace(root=tmp_path, rel="sub-01"), cfg, tmp_path / "work")
    ctx.targets["T2w"] = t2
    chain(ctx, "T2starw", im)
    rec = ctx.records[-1]
    assert rec.step == "chain" and rec.kind == "chain" and rec.verdict == "warn"
    assert rec.reasons == qc["reasons"] and rec.scores == qc["scores"]
    assert ctx.warps["T2starw"].name.endswith("T2starw_mode-image_xfm.nii.gz")
