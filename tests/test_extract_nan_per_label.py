"""extract-metric reports the share of each reported label's weight on NaN metric voxels (per row).

Before session 41 the share was of all the loaded tracts together (one warning, naming the worst
tract): a label asked with -l whose own voxels were half NaN was said with a small share or not at
all, and the CSV did not say which rows lost what.

Truth: mt's real MTR with NaN planted on known voxels; the weighted averages and the shares are
computed with numpy from the atlas files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.metrics.extract import NAN_COLUMN, extract_metric


@pytest.fixture(scope="module")
def planted(sct_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    atlas = sct_data / "mt" / "label" / "atlas"
    img = nib.load(sct_data / "mt" / "mtr.nii.gz")
    y = img.get_fdata()
    w = {i: nib.load(atlas / f"PAM50_atlas_{i:02d}.nii.gz").get_fdata() for i in range(36)}
    # every other voxel of the left fasciculus gracilis (tract 0) in slices 1..4: about half its weight
    idx = np.argwhere((w[0] > 0) & (np.arange(y.shape[2]) >= 1)[None, None, :])[::2]
    y[tuple(idx.T)] = np.nan
    path = tmp_path_factory.mktemp("nan_per_label") / "mtr_nan.nii.gz"
    nib.save(nib.Nifti1Image(y.astype(np.float32), img.affine), path)
    y = nib.load(path).get_fdata()  # the values as stored (float32)
    return {"path": path, "atlas": atlas, "y": y, "w": w}


def _truth(p: dict, tracts: range | list[int], z: slice = slice(None)) -> tuple[float, float]:
    """(weighted average over finite voxels, share of the weight on NaN voxels), numpy."""
    wl = sum(p["w"][i] for i in tracts)[:, :, z]
    y = p["y"][:, :, z]
    ok = np.isfinite(y)
    if wl.sum() == 0:  # the label has no voxel there: no value, nothing lost
        return float("nan"), 0.0
    kept = (wl * ok).sum()  # 0 where every voxel of the label is NaN: no value (as the method's NaN)
    value = float((wl * np.where(ok, y, 0)).sum() / kept) if kept > 0 else float("nan")
    return value, float(wl[~ok].sum() / wl.sum())


def test_each_row_has_its_own_nan_share(planted, caplog):
    with caplog.at_level("WARNING"):
        rows = extract_metric(planted["path"], planted["atlas"], "0,51,52")
    truth = {0: _truth(planted, [0]), 51: _truth(planted, range(30)), 52: _truth(planted, range(30, 36))}
    for r in rows:
        value, share = truth[r.label_id]
        assert r.value == pytest.approx(value, rel=1e-6)
        assert r.nan_share == pytest.approx(share, abs=1e-6)
    shares = {r.label_id: r.nan_share for r in rows}
    # measured 0.497 (tract 0), 0.071 (white matter), 0.020 (gray matter: its maps overlap tract 0's)
    assert shares[0] == pytest.approx(0.497, abs=0.002) and shares[51] == pytest.approx(0.071, abs=0.002)
    assert shares[52] == pytest.approx(0.020, abs=0.002)
    msg = caplog.text
    assert "0 (WM left fasciculus gracilis): 50 %" in msg and "51 (white matter): 7 %" in msg
    assert "52 (gray matter): 2 %" in msg


def test_per_slice_rows_and_csv_column(planted, tmp_path, capsys):
    from spinereg.cli.main import main

    out = tmp_path / "m.csv"
    assert main(["extract-metric", "-i", str(planted["path"]), "-f", str(planted["atlas"]), "-l", "0",
                 "--perslice", "-o", str(out)]) == 0
    assert "NaN on" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5
    for r in rows:
        z = int(r["Slice (I->S)"])  # mtr is LAS: slice z is voxel plane z
        value, share = _truth(planted, [0], slice(z, z + 1))
        assert float(r[NAN_COLUMN]) == pytest.approx(100 * share, abs=0.01)
        assert r["WA()"] == "" if np.isnan(value) else float(r["WA()"]) == pytest.approx(value, rel=1e-5)
    # tract 0 lies in slices 1 and 2: measured 100 % (no value left) and 1.01 %
    assert [float(r[NAN_COLUMN]) for r in rows] == [0.0, 100.0, pytest.approx(1.01, abs=0.01), 0.0, 0.0]


def test_append_to_a_csv_written_before_the_nan_column(planted, tmp_path):
    from spinereg.metrics.extract import csv_columns, write_metric_csv

    out = tmp_path / "old.csv"
    out.write_text(",".join(csv_columns("wa")[:-1]) + "\n")
    rows = extract_metric(planted["path"], planted["atlas"], "51")
    write_metric_csv(rows, out, append=True)
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[1].count(",") == lines[0].count(",")
