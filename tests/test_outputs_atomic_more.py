"""No half-written outputs (fault injection, see test_outputs_atomic.py) for the other commands that
write several files or folders: phantom, sdc, spine-metrics, segment, label-vertebrae, csa, chain.

Each command runs once counting its writes under the test folder, then once per write with that
write failing as a full disk would: exit 2, one line on stderr, the destination unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faults import WriteFaults, snapshot
from spinereg.cli.main import main
from spinereg.io.image import save_image
from test_outputs_atomic import _every_write_fails

pytestmark = pytest.mark.realdata


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("a user's file next to the outputs\n")
    return work


@pytest.fixture(scope="module")
def epi_phantom(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ph") / "ph"
    assert main(["phantom", "-o", str(d), "--shape", "33", "31", "6", "--volumes", "2", "--seed", "1"]) == 0
    return d


def test_phantom_every_write(capsys, tmp_path):
    work = _work(tmp_path)
    argv = ["phantom", "-o", str(work / "ph"), "--shape", "33", "31", "6", "--volumes", "2", "--seed", "1"]
    # every write fails once in the phantom's first and last thirds (the middle ones are the same
    # kind of file written the same way)
    n = _every_write_fails(capsys, tmp_path, argv, work / "ph",
                           only=lambda n: [*range(1, n // 3 + 1), *range(2 * n // 3, n + 1)])
    assert n >= 10


@pytest.mark.parametrize("method", ["fieldmap", "topup"])
def test_sdc_every_write(capsys, tmp_path, epi_phantom, method):
    work = _work(tmp_path)
    args = (["-i", str(epi_phantom / "epi.nii.gz"), "--fieldmap", str(epi_phantom / "fieldmap_hz.nii.gz")]
            if method == "fieldmap" else
            ["-i", str(epi_phantom / "epi_blipup.nii.gz"), "--reverse", str(epi_phantom / "epi_blipdown.nii.gz")])
    argv = ["sdc", method, *args, "-o", str(work / "sdc")]
    assert _every_write_fails(capsys, tmp_path, argv, work / "sdc") >= 4


@pytest.mark.slow
def test_spine_metrics_every_write(capsys, tmp_path):
    from spinereg.phantom.spine import make_spine_phantom

    ph = make_spine_phantom((20, 21, 22, 23), lordosis_deg=20.0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    paths = {k: save_image(getattr(ph, k), inputs / f"{k}.nii.gz") for k in ("t1", "bodies", "cord", "csf")}
    work = _work(tmp_path)
    argv = ["spine-metrics", "-b", str(paths["bodies"]), "--t1", str(paths["t1"]), "--cord", str(paths["cord"]),
            "--csf", str(paths["csf"]), "-o", str(work / "spine")]
    # the first and the last write (the measures take seconds per run)
    assert _every_write_fails(capsys, tmp_path, argv, work / "spine", only=lambda n: [1, n]) >= 3


def test_single_output_commands_every_write(capsys, tmp_path, sct_data):
    """segment (its file and, with --soft, the probability map), csa, label-vertebrae (folder)."""
    t2 = sct_data / "t2"
    work = _work(tmp_path)

    def drop(pattern: str):
        return lambda: [p.unlink() for p in work.glob(pattern)]

    seg_out = work / "t2_seg.nii.gz"
    n = _every_write_fails(capsys, tmp_path, ["segment", "-i", str(t2 / "t2.nii.gz"), "-o", str(seg_out), "--soft"],
                           work, before=drop("t2_seg*"))
    assert n >= 2
    before = snapshot(work)
    with WriteFaults(tmp_path, fail_at=1):
        rc = main(["csa", "-s", str(t2 / "t2_seg-manual.nii.gz"), "-o", str(work / "csa.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "No space left" in err, err
    assert snapshot(work) == before
    lab = work / "lab"
    argv = ["label-vertebrae", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"), "-c", "t2",
            "-o", str(lab)]
    assert _every_write_fails(capsys, tmp_path, argv, lab) >= 3
    shutil.rmtree(work)
