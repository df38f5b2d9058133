"""The README's main job: the sample subject registered to PAM50 with its QC report."""

from __future__ import annotations

import json

from spinereg.cli.main import main


def test_demo_main_job(tmp_path, capsys, data_root):
    out = tmp_path / "spinereg_demo"
    assert main(["demo", "-o", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cord_dice_subject_space"] >= 0.95
    for f in ("warp_anat2template.nii.gz", "warp_template2anat.nii.gz", "anat2template.nii.gz",
              "template2anat.nii.gz", "metrics.json", "provenance.json", "qc/index.html", "qc/entries.json"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["qc"]["verdict"] == "pass", metrics["qc"]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["template"]["name"] == "PAM50" and prov["versions"]["spinereg"]
    # nothing is overwritten without --overwrite
    assert main(["demo", "-o", str(out)]) == 2
