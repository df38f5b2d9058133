"""``python -m spinereg`` runs the ``spinereg`` command: same version line, same one-line error and
exit code 2 on a missing input, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import spinereg
from spinereg.cli.main import main


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(spinereg.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "spinereg", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_version_matches_the_library_entry(tmp_path, capsys):
    r = _run(["--version"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert main(["--version"]) == 0
    assert r.stdout.strip() == capsys.readouterr().out.strip()
    assert r.stdout.startswith("spinereg ")


def test_missing_input_is_one_line_exit_2(tmp_path):
    r = _run(["label-vertebrae", "-i", str(tmp_path / "absent.nii.gz"), "-s", str(tmp_path / "seg.nii.gz"),
              "-o", str(tmp_path / "out")], tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "absent.nii.gz" in lines[0] and "fix:" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
