"""metrics.run_scores.input_path: where the QC scoring reads a run's inputs from."""

from __future__ import annotations

import pytest

from spinereg.errors import InputError
from spinereg.metrics.run_scores import input_path


def test_automatic_file_is_the_run_folders_even_beside_a_same_named_file(tmp_path, monkeypatch):
    """A bare run names its own segmentation "t2_seg.nii.gz (automatic: ...)"; a user's own
    t2_seg.nii.gz in the working directory must not be scored in its place."""
    run, cwd = tmp_path / "out", tmp_path / "cwd"
    run.mkdir()
    cwd.mkdir()
    (run / "t2_seg.nii.gz").write_bytes(b"run")
    (cwd / "t2_seg.nii.gz").write_bytes(b"user")
    monkeypatch.chdir(cwd)
    inputs = {"seg": "t2_seg.nii.gz (automatic: spinereg segment of the image)", "image": "t2_seg.nii.gz"}
    assert input_path(inputs, "seg", run) == run / "t2_seg.nii.gz"
    # a given input keeps its path (relative to where the command ran)
    assert input_path(inputs, "image", run).resolve() == (cwd / "t2_seg.nii.gz").resolve()
    (run / "t2_seg.nii.gz").unlink()
    with pytest.raises(InputError):
        input_path(inputs, "seg", run)
