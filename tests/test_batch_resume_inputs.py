"""spinereg batch resumed after an input changed: a complete unit made from other inputs than
today's is redone. Before, the rerun kept it ('kept as they are') with outputs of the old image:
a replaced T2w, an edited or newly added manual segmentation were never used, exit 0."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from spinereg.batch.bids import discover
from spinereg.batch.config import load_config
from spinereg.batch.run import run_batch
from spinereg.batch.unit import stale_inputs
from spinereg.io.provenance import describe_inputs

CONFIG = "qc: false\ncontrasts:\n  T2w: {steps: [register-to-template]}\n" + "".join(
    f"  {c}: {{steps: []}}\n" for c in ("T2starw", "MTS", "T1w", "dwi", "bold"))


def _img(path: Path, value: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full((4, 4, 3), value, np.float32), np.eye(4)), str(path))


def _complete(out: Path, inputs: dict) -> None:
    """A unit folder as a finished run leaves it (provenance with the inputs' sha256)."""
    (out / "anat").mkdir(parents=True)
    (out / "provenance.json").write_text(json.dumps(
        {"verdict": "pass", "steps": [], "inputs": inputs, "input_files": describe_inputs(inputs)}))


def test_changed_or_new_inputs_make_a_complete_unit_stale(tmp_path: Path):
    bids, cfg = tmp_path / "ds", load_config()
    t2 = bids / "sub-01/anat/sub-01_T2w.nii.gz"
    seg = bids / "derivatives/labels/sub-01/anat/sub-01_T2w_seg-manual.nii.gz"
    _img(t2)
    _img(seg)
    folder = tmp_path / "out" / "sub-01"
    _complete(folder, {"T2w": str(t2), "T2w_seg": str(seg)})
    unit = discover(bids).units[0]
    assert stale_inputs(folder, unit, cfg) is None  # same inputs: kept
    _img(seg, 0.0)  # the manual segmentation edited
    assert "T2w_seg input sub-01_T2w_seg-manual.nii.gz changed" in stale_inputs(folder, unit, cfg)
    _img(seg)
    labels = bids / "derivatives/labels/sub-01/anat/sub-01_T2w_labels-manual.nii.gz"
    _img(labels)  # labels given after the run (it labelled the discs itself)
    assert "T2w_labels sub-01_T2w_labels-manual.nii.gz is new" in stale_inputs(folder, unit, cfg)
    labels.unlink()
    seg.unlink()  # the given segmentation removed
    assert "is gone" in stale_inputs(folder, unit, cfg)


def test_rerun_redoes_a_unit_whose_image_changed(tmp_path: Path):
    bids, out, cfg = tmp_path / "ds", tmp_path / "out", tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    for s in ("01", "02"):
        _img(bids / f"sub-{s}/anat/sub-{s}_T2w.nii.gz")
    run_batch(bids, out, config=cfg, workers=1, report=lambda line: None, live=False)  # both fail: no seg
    t1, t2 = (bids / f"sub-{s}/anat/sub-{s}_T2w.nii.gz" for s in ("01", "02"))
    _complete(out / "sub-01", {"T2w": str(t1)})
    _complete(out / "sub-02", {"T2w": str(t2)})
    _img(t2, 2.0)  # sub-02's T2w replaced after its unit completed
    lines: list[str] = []
    res = run_batch(bids, out, config=cfg, workers=1, report=lines.append, live=False)
    assert res.skipped == ["sub-01"]
    assert any("sub-02: its inputs changed" in ln and "sub-02_T2w.nii.gz changed" in ln for ln in lines), lines
    assert list(res.failed_units) == ["sub-02"]  # redone: it fails now (no segmentation), not 'done'
    assert not (out / "sub-02").exists()


def test_numeric_target_entity_keeps_a_complete_unit(tmp_path: Path):
    """``target: {run: 02}`` unquoted (the number 2) picks run-02 for the run and for the resume
    check alike (one filter, ``steps.target_candidates``; the check had its own string comparison,
    which found no T2w there and passed only because a contrast without an image is tolerated)."""
    bids, cfgfile = tmp_path / "ds", tmp_path / "c.yaml"
    for run in ("01", "02"):
        _img(bids / f"sub-01/anat/sub-01_run-{run}_T2w.nii.gz")
    cfgfile.write_text(CONFIG.replace("T2w: {steps: [register-to-template]}",
                                      "T2w: {steps: [register-to-template], target: {run: 02}}"))
    folder = tmp_path / "out" / "sub-01"
    _complete(folder, {"T2w": str(bids / "sub-01/anat/sub-01_run-02_T2w.nii.gz")})
    assert stale_inputs(folder, discover(bids).units[0], load_config(cfgfile)) is None
    _img(bids / "sub-01/anat/sub-01_run-02_T2w.nii.gz", 2.0)  # the image the unit was made from, replaced
    assert "changed" in stale_inputs(folder, discover(bids).units[0], load_config(cfgfile))
