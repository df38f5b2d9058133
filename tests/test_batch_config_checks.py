"""spinereg batch and qc-scores, fixes of session 48 (fast: refusals, synthetic folders, no registration).

* the configuration's engine values and template are checked with the rest of the file, before
  any work (one line naming the file and the key, exit 2, no output folder), --dry-run included:
  ``engine: {workers: -3}`` started a cluster of no worker that waited forever, ``abc`` was an
  internal error, ``template: NOPE`` failed every subject once their work had started (exit 3);
* qc-scores leaves out run folders below a hidden folder (a killed batch's
  ``.sub-01.<pid>.<random>.part/`` staging copies were counted as runs);
* the batch's ``group/qc_scores.csv`` names each row's subject by its participant id (it held the
  image stem, ``sub-01_T2w``, or a chain's folder name, ``dwi_chain``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.batch.bids import discover
from spinereg.batch.config import load_config
from spinereg.batch.group import write_group
from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.metrics.cohort import find_output_folders


def _img(path: Path, shape: tuple[int, ...] = (4, 4, 3)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(path))


@pytest.fixture
def bids(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    _img(root / "sub-01/anat/sub-01_T2w.nii.gz")
    _img(root / "sub-02/ses-01/anat/sub-02_ses-01_T2w.nii.gz")
    _img(root / "sub-02/ses-01/dwi/sub-02_ses-01_dwi.nii.gz", (4, 4, 3, 2))
    return root


BAD_CONFIGS = {
    "engine: {workers: -3}\n": "engine.workers",
    "engine: {workers: 0}\n": "engine.workers",
    "engine: {workers: abc}\n": "engine.workers",
    "engine: {workers: 2.5}\n": "engine.workers",
    "engine: {workers: true}\n": "engine.workers",
    "engine: {threads_per_worker: 0}\n": "engine.threads_per_worker",
    "engine: {threads_per_worker: auto}\n": "engine.threads_per_worker",
    "engine: {memory_per_worker_gb: lots}\n": "engine.memory_per_worker_gb",
    "engine: {memory_per_worker_gb: -1}\n": "engine.memory_per_worker_gb",
    "template: NOPE\n": "template: no template named or at 'NOPE'",
    "template: [PAM50]\n": "template: ['PAM50'] is not a template",
    "template: ''\n": "template: '' is not a template",
}


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("text", list(BAD_CONFIGS), ids=[t.strip() for t in BAD_CONFIGS])
def test_bad_engine_or_template_refused_before_any_work(bids: Path, tmp_path: Path, capsys, monkeypatch,
                                                       text: str, dry: bool):
    import spinereg.batch.engine as engine

    def no_cluster(*args, **kwargs):  # a regression fails here instead of waiting on no worker forever
        raise AssertionError("the cluster was started")

    monkeypatch.setattr(engine, "cluster", no_cluster)
    cfg, out = tmp_path / "c.yaml", tmp_path / "out"
    cfg.write_text(text)
    assert main(["batch", str(bids), "-o", str(out), "--config", str(cfg), *(["--dry-run"] if dry else [])]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(cfg) in err and BAD_CONFIGS[text] in err and "fix:" in err, err
    assert "internal error" not in err and "worker(s)" not in captured.out
    assert not out.exists()


def test_template_given_as_a_file_or_a_folder_without_template(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    for where, words in ((tmp_path / "afile", "a template is a folder"), (tmp_path / "empty", "not a template folder")):
        cfg.write_text(f"template: {where}\n")
        with pytest.raises(InputError, match=words) as exc:
            load_config(cfg)
        line = exc.value.one_line()
        assert line.startswith(f"{cfg}: template: ") and str(where) in line and "fix:" in line


def test_good_engine_and_template_values_kept(tmp_path: Path):
    """What the run takes: workers auto / a whole number (also as text, as the CLI flag reads it),
    threads null (1), memory auto / a number; a template name in any case, or a template folder.
    A named template's data is not looked for by the check."""
    tpl = tmp_path / "mytpl"
    (tpl / "template").mkdir(parents=True)
    (tpl / "template" / "info_label.txt").write_text("# Keyword=IndivLabels\n0, T2-weighted template, my_t2.nii.gz\n")
    cfg = tmp_path / "c.yaml"
    for text in ("engine: {workers: auto, threads_per_worker: 2, memory_per_worker_gb: 3.5}\n",
                 "engine: {workers: 4, threads_per_worker: null, memory_per_worker_gb: auto}\n",
                 "engine: {workers: '3'}\n", "template: pam50_small\n", "template: MNI-Poly-AMU\n",
                 f"template: {tpl}\n", f"template: {tpl / 'template'}\n"):
        cfg.write_text(text)
        load_config(cfg)


def _run_folder(folder: Path, command: str, inputs: dict, verdict: str = "pass") -> None:
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text(json.dumps({"command": command, "inputs": inputs}))
    (folder / "metrics.json").write_text(json.dumps(
        {"qc": {"verdict": verdict, "reasons": [], "scores": {"cord_dice": 0.97}}}))


def test_qc_scores_skips_hidden_staging_folders(tmp_path: Path, capsys):
    """A killed or running batch leaves ``.sub-01.<pid>.<random>.part/``: not a run of the cohort."""
    root = tmp_path / "b_kill"
    done = root / "sub-02" / "sct" / "T2w_register-to-template"
    _run_folder(done, "register-to-template", {"image": "/d/sub-02_T2w.nii.gz"})
    part = root / ".sub-01.11666.whqgcbtf.part" / "sct" / "T2w_register-to-template"
    _run_folder(part, "register-to-template", {"image": "/d/sub-01_T2w.nii.gz"}, "fail")
    _run_folder(root / "sub-03" / ".staging" / "run", "register-to-template", {"image": "/d/sub-03_T2w.nii.gz"})
    assert find_output_folders([root]) == [done.resolve()]
    out = tmp_path / "scores.csv"
    assert main(["qc-scores", str(root), "-o", str(out)]) == 0
    assert "1 runs: 1 pass, 0 warn, 0 fail" in capsys.readouterr().out
    assert [r["subject"] for r in csv.DictReader(out.open())] == ["sub-02_T2w"]
    # a hidden folder given itself is scanned: the choice was the user's
    assert find_output_folders([part.parent.parent]) == [part.resolve()]


def test_group_qc_scores_subject_is_the_participant_id(bids: Path, tmp_path: Path):
    out = tmp_path / "out"
    _run_folder(out / "sub-01" / "sct" / "T2w_register-to-template", "register-to-template",
                {"image": str(bids / "sub-01/anat/sub-01_T2w.nii.gz")})
    ses = out / "sub-02" / "ses-01" / "sct"
    _run_folder(ses / "T2w_register-to-template", "register-to-template",
                {"image": str(bids / "sub-02/ses-01/anat/sub-02_ses-01_T2w.nii.gz")})
    _run_folder(ses / "dwi_chain", "chain", {"images": [str(bids / "sub-02/ses-01/dwi/sub-02_ses-01_dwi.nii.gz"),
                                                        str(bids / "sub-02/ses-01/anat/sub-02_ses-01_T2w.nii.gz")]},
                "warn")
    write_group(out, discover(bids).units, {})
    with open(out / "group" / "qc_scores.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0])[:8] == ["run_id", "subject", "session_id", "image", "command", "verdict", "reasons",
                                  "folder"]
    got = [(r["run_id"], r["subject"], r["session_id"], r["image"], r["command"], r["verdict"]) for r in table]
    assert got == [
        ("sub-01/sct/T2w_register-to-template", "sub-01", "n/a", "sub-01_T2w", "register-to-template", "pass"),
        ("sub-02/ses-01/sct/T2w_register-to-template", "sub-02", "ses-01", "sub-02_ses-01_T2w",
         "register-to-template", "pass"),
        ("sub-02/ses-01/sct/dwi_chain", "sub-02", "ses-01", "sub-02_ses-01_dwi", "chain", "warn"),
    ]
    assert all(float(r["cord_dice"]) == 0.97 for r in table)
    # the participant ids are those of subjects.tsv
    with open(out / "group" / "subjects.tsv", newline="") as fh:
        ids = {r["participant_id"] for r in csv.DictReader(fh, delimiter="\t")}
    assert {r["subject"] for r in table} == ids
