"""spinereg batch's group outputs after a run on a selection (--participant-label): they cover
every unit of the output folder. Before, rerunning one subject replaced OUT/group/subjects.tsv,
metrics_per_level.tsv and the QC index with tables of that subject alone (exit 0, no word)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from spinereg.batch.run import run_batch

CONFIG = "qc: false\ncontrasts:\n  T2w: {steps: [register-to-template]}\n" + "".join(
    f"  {c}: {{steps: []}}\n" for c in ("T2starw", "MTS", "T1w", "dwi", "bold"))


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.float32), np.eye(4)), str(path))


def _tsv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_selection_rerun_keeps_every_unit_in_the_group_tables(tmp_path: Path):
    bids, out, cfg = tmp_path / "ds", tmp_path / "out", tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    for s in ("01", "02", "03"):  # no segmentation given, no segment step: each unit fails at once
        _img(bids / f"sub-{s}/anat/sub-{s}_T2w.nii.gz")
    first = run_batch(bids, out, config=cfg, workers=1, report=lambda line: None, live=False)
    assert sorted(first.failed_units) == ["sub-01", "sub-02", "sub-03"]
    # sub-01 completed meanwhile (as a later run would leave it): its folder, provenance and table
    done = out / "sub-01"
    (done / "anat").mkdir(parents=True)
    (done / "provenance.json").write_text(json.dumps({"verdict": "pass", "steps": []}))
    (done / "anat" / "sub-01_desc-csa_perlevel.tsv").write_text(
        "participant_id\tsession_id\tcontrast\tmetric\tlabel\tmethod\tlevel\tslices\tsize_vox\tvalue\tstd\n"
        "sub-01\tn/a\tT2w\tcsa\tspinal cord\tangle-corrected\t3\t1,2\t2\t80.0\t1.0\n")
    res = run_batch(bids, out, config=cfg, workers=1, participant_label=["02"], report=lambda line: None,
                    live=False)
    rows = {r["unit"]: r for r in _tsv(out / "group" / "subjects.tsv")}
    assert sorted(rows) == ["sub-01", "sub-02", "sub-03"], rows
    assert rows["sub-01"]["status"] == "done"
    assert rows["sub-02"]["status"] == "failed" and "segmentation" in rows["sub-02"]["reason"]
    # outside the selection, never completed: the previous run's reason is kept
    assert rows["sub-03"]["status"] == "failed" and "segmentation" in rows["sub-03"]["reason"]
    assert [r["participant_id"] for r in _tsv(out / "group" / "metrics_per_level.tsv")] == ["sub-01"]
    assert list(res.failed_units) == ["sub-02"]  # the exit code counts this run's selection
