"""chain's provenance.json is written last, after the QC stage, as register-to-template's and
register's: its run record holds the "write outputs" and "qc report" stages, and its timings add
up to the wall time. Before, it was written inside "write outputs" (by write_chain_outputs) and the
commit's last write was a no-op: neither stage was in the record."""

from __future__ import annotations

import json

import pytest

from spinereg.cli.main import main

pytestmark = pytest.mark.realdata


def test_chain_provenance_holds_the_qc_stage(sct_data, tmp_path, capsys):
    t2s, t2 = sct_data / "t2s", sct_data / "t2"
    out, qc = tmp_path / "out", tmp_path / "qc"
    assert main(["chain", "-i", str(t2s / "t2s.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2s / "t2s_seg.nii.gz"),
                 str(t2 / "t2_seg-manual.nii.gz"), "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small",
                 "-o", str(out), "--qc", str(qc)]) == 0, capsys.readouterr().err
    prov = json.loads((out / "provenance.json").read_text())
    names = [s["name"] for s in prov["stages"]]
    assert names[-2:] == ["write outputs", "qc report"], names
    assert {"registration", "write outputs", "qc report"} <= set(prov["timings_s"])
    assert prov["timings_s"]["qc report"] > 0
    # the record covers the whole run: stages plus "other" add up to the wall time, the QC included
    assert sum(prov["timings_s"].values()) == pytest.approx(prov["wall_seconds"], abs=0.02)
    assert prov["finished_utc"] >= prov["stages"][-1]["started_utc"]
    # the rest of the record as write_chain_outputs wrote it
    assert prov["command_line"].startswith("spinereg chain -i ") and prov["chain_timings_s"]
    assert len(prov["links"]) == 1 and prov["input_files"]["images"][0]["sha256"]
