"""``spinereg qc`` on a run folder whose provenance.json was edited by hand: one line naming the
file and the fix, exit 2, nothing in the QC root. Before session 39 an input removed, a number for
a path or for the command, or a list for the inputs ended 'internal error (TypeError /
AttributeError)'."""

from __future__ import annotations

import json
import shutil

import pytest

from spinereg.cli.main import main

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def run_dir(sct_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("qcprov") / "run"
    t2 = sct_data / "t2"
    assert main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
                 "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small", "-o", str(out), "--allow-fail"]) == 0
    return out


EDITS = {
    "inputs removed": (lambda p: p.pop("inputs"), "names no image"),
    "command a number": (lambda p: p.update(command=5), "not a command name"),
    "inputs a list": (lambda p: p.update(inputs=["t2.nii.gz"]), "not a table of files"),
    "image a number": (lambda p: p["inputs"].update(image=3), "inputs.image is 3"),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_hand_edited_provenance(run_dir, tmp_path, capsys, name):
    edit, words = EDITS[name]
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    prov = json.loads((d / "provenance.json").read_text())
    edit(prov)
    (d / "provenance.json").write_text(json.dumps(prov))
    capsys.readouterr()
    assert main(["qc", str(d), "--root", str(tmp_path / "qc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "internal error" not in err[0] and "fix:" in err[0], err
    assert not list((tmp_path / "qc" / "entries").glob("*")) if (tmp_path / "qc" / "entries").exists() else True
