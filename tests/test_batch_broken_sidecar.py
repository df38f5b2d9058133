"""spinereg batch: a sidecar that is not valid JSON fails its unit only (session 49).

Before, ``discover`` raised on it: one subject's truncated ``sub-06_T2w.json`` stopped the whole
batch (and ``--dry-run``) with exit 2 before any unit ran. Now the dataset is discovered (a
note names the file), the unit using that image fails with the one-line reason, the others run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spinereg.batch.bids import discover
from spinereg.batch.config import load_config
from spinereg.batch.unit import run_unit

pytestmark = pytest.mark.realdata


def test_broken_sidecar_fails_only_its_unit(sct_data: Path, tmp_path: Path):
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    for s in ("01", "06"):
        (root / f"sub-{s}" / "anat").mkdir(parents=True)
        os.symlink(sct_data / "t2" / "t2.nii.gz", root / f"sub-{s}/anat/sub-{s}_T2w.nii.gz")
    (root / "sub-01/anat/sub-01_T2w.json").write_text('{"EchoTime": 0.1}')
    (root / "sub-06/anat/sub-06_T2w.json").write_text('{"EchoTime": 0.1,')
    ds = discover(root)  # before: InputError 'sidecar is not valid JSON'
    units = {u.uid: u for u in ds.units}
    assert sorted(units) == ["sub-01", "sub-06"]
    assert units["sub-01"].images[0].sidecar == {"EchoTime": 0.1} and units["sub-01"].images[0].sidecar_error is None
    assert any("sub-06_T2w.json" in n for n in ds.notes), ds.notes
    res = run_unit(units["sub-06"], load_config(None), tmp_path / "out", "test")
    assert res["status"] == "failed", res
    reason = res["reason"]
    assert "sub-06_T2w.json" in reason and "not valid JSON" in reason and "fix:" in reason and "\n" not in reason
    assert not (tmp_path / "out" / "sub-06").exists()
