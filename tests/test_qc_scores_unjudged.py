"""``spinereg qc-scores`` says which output folders it lists no row for (segment, label-vertebrae,
a registration folder without metrics.json): before session 50 they were left out silently, so a
cohort table of 3 runs over 5 folders read as complete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from spinereg.cli.main import main
from spinereg.metrics.cohort import unjudged_folders


def _folder(root: Path, name: str, command: str, metrics: dict | None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "provenance.json").write_text(json.dumps({"command": command, "inputs": {"image": f"{name}.nii.gz"}}))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def test_qc_scores_names_the_folders_it_does_not_list(tmp_path, capsys):
    runs = tmp_path / "runs"
    qc = {"qc": {"verdict": "pass", "reasons": [], "scores": {"cord_dice": 0.95}}}
    _folder(runs, "sub-01_reg", "register-to-template", qc)
    _folder(runs, "sub-02_reg", "register", qc)
    _folder(runs, "sub-01_seg", "segment", None)
    _folder(runs, "sub-01_labels", "label-vertebrae", None)
    gone = _folder(runs, "sub-03_reg", "register-to-template", None)  # metrics.json missing
    _folder(runs, ".sub-04.part", "register", None)  # staging copy: not a run
    _folder(runs, "sub-05", "batch", None)  # a batch unit's folder: its runs lie below it
    left = unjudged_folders([runs])
    assert {k: len(v) for k, v in left.items()} == {"label-vertebrae": 1, "register-to-template": 1, "segment": 1}
    assert left["register-to-template"] == [gone.resolve()]
    out = tmp_path / "c.csv"
    assert main(["qc-scores", str(runs), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 runs: 2 pass, 0 warn, 0 fail" in text
    assert ("not listed: 3 output folders without a QC verdict (1 label-vertebrae, 1 register-to-template, "
            "1 segment)") in text
    assert len(list(csv.DictReader(open(out)))) == 2


def test_qc_scores_all_listed_says_nothing_more(tmp_path, capsys):
    runs = tmp_path / "runs"
    _folder(runs, "a", "register", {"qc": {"verdict": "warn", "reasons": ["x"], "scores": {}}})
    assert unjudged_folders([runs]) == {}
    assert main(["qc-scores", str(runs), "-o", str(tmp_path / "c.csv")]) == 0
    assert "not listed" not in capsys.readouterr().out
