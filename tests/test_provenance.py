"""provenance.json: the command line, UTC times, sha256 of every input, the code version (and git
commit from a checkout), one record per registration step, timings adding up to the wall time."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from spinereg.cli.main import main
from spinereg.io.provenance import RunRecord, describe_inputs, sha256_file

pytestmark = pytest.mark.realdata


def _utc(text: str) -> dt.datetime:
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text[:-1] + "+00:00")


@pytest.fixture(autouse=True)
def _fresh_code_version():
    from spinereg.io.provenance import code_version

    code_version.cache_clear()  # the commit is read when the run starts, as in a fresh process


def _check_common(prov: dict, argv: list[str], inputs: dict[str, Path]) -> None:
    assert prov["command_line"] == "spinereg " + " ".join(argv)
    start, end = _utc(prov["started_utc"]), _utc(prov["finished_utc"])
    assert start <= end and abs((end - start).total_seconds() - prov["wall_seconds"]) < 0.5
    # the stages (and their parts) plus "other" add up to the wall time
    assert sum(prov["timings_s"].values()) == pytest.approx(prov["wall_seconds"], abs=0.02)
    assert prov["timings_s"]["other"] < 0.1 * prov["wall_seconds"] + 0.2
    for key, path in inputs.items():
        rec = prov["input_files"][key]
        assert rec["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert rec["path"] == str(Path(path).resolve()) and rec["bytes"] == Path(path).stat().st_size
    v = prov["versions"]
    assert v["spinereg"] and v["numpy"] and v["nibabel"]
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert v["git_commit"] == head.stdout.strip()


def test_register_to_template_provenance(tmp_path, capsys, sct_data):
    t2 = sct_data / "t2"
    inputs = {"image": t2 / "t2.nii.gz", "seg": t2 / "t2_seg-manual.nii.gz", "labels": t2 / "labels.nii.gz"}
    argv = ["register-to-template", "-i", str(inputs["image"]), "-s", str(inputs["seg"]), "-l",
            str(inputs["labels"]), "-t", "PAM50_small", "-o", str(tmp_path / "r"), "--allow-fail"]
    assert main(argv) == 0
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    _check_common(prov, argv, inputs)
    # a record for every step, the label step (cord mapping) included
    assert [r["step"] for r in prov["step_records"]] == prov["steps"]
    assert prov["step_records"][0]["transform"] == "CordMapping" and prov["step_records"][0]["seconds"] > 0
    # the registration's own parts and the output stages are all there
    assert {"load", "steps", "fields", "write outputs", "metrics", "verdict"} <= set(prov["timings_s"])
    assert prov["template"]["image"].startswith(("real template image", "synthesised"))
    assert prov["grids"]["template_output_is_template_grid"] is True


def test_register_provenance(tmp_path, sct_data):
    inputs = {"input": sct_data / "t2/t2.nii.gz", "iseg": sct_data / "t2/t2_seg-manual.nii.gz",
              "dest": sct_data / "t2s/t2s.nii.gz", "dseg": sct_data / "t2s/t2s_seg.nii.gz"}
    argv = ["register", "-i", str(inputs["input"]), "--iseg", str(inputs["iseg"]), "-d", str(inputs["dest"]),
            "--dseg", str(inputs["dseg"]), "--identity", "-o", str(tmp_path / "m"), "--allow-fail"]
    assert main(argv) == 0
    prov = json.loads((tmp_path / "m" / "provenance.json").read_text())
    _check_common(prov, argv, inputs)
    assert [r["step"] for r in prov["step_records"]] == prov["steps"]


def test_run_record_library(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("abc")
    assert sha256_file(f) == hashlib.sha256(b"abc").hexdigest()
    assert describe_inputs({"a": f, "b": None, "c": "PAM50", "d": [f, None]})["d"][1] is None
    run = RunRecord("x")
    with run.stage("one"):
        pass
    with run.stage("two"):
        pass
    run.add_parts("two", {"p": 0.0})
    rec = run.as_dict({"a": f})
    assert rec["command_line"] is None and rec["input_files"]["a"]["bytes"] == 3
    assert sum(rec["timings_s"].values()) == pytest.approx(rec["wall_seconds"], abs=0.01)
