"""SIGTERM (a cluster scheduler's time limit, ``kill``) ends a command as an interruption: exit 143,
one line, and every ``with`` / ``finally`` runs, so no temporary folder and no output folder is
left behind. Before, the process died where it stood, its temporary folders left in place (120
``spinereg-autolabel-*`` folders were found in /tmp on the development machine; finished and
refused runs remove theirs, so they came from processes that were killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from spinereg.errors import EXIT_TERMINATED

pytestmark = pytest.mark.realdata


def test_sigterm_mid_job_leaves_nothing(sct_data, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    env = dict(os.environ, TMPDIR=str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "spinereg.cli.main", "register-to-template", "-i",
                             str(sct_data / "t2" / "t2.nii.gz"), "-c", "t2", "-o", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait until the job is inside its work (its temporary folders exist), then terminate it
    deadline = time.monotonic() + 60.0
    while not any(p.name.startswith("spinereg") for p in tmp.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the job made no temporary folder"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED, err
    assert err.strip().splitlines()[-1] == "spinereg: terminated (SIGTERM)" and "Traceback" not in err, err
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("spinereg")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no output folder, no staging copy


def test_sigterm_inside_a_finaliser_is_recorded_not_printed():
    """SIGTERM arriving while an object's ``__del__`` runs (CI, session 43: nibabel's OrderedSet
    during a collection) raised there, and Python printed "Exception ignored in ... Traceback" on
    stderr before the next stage raised it again. Now it is recorded without raising and raised
    at the next stage (``errors.check_terminated``)."""
    from spinereg import errors
    from spinereg.cli.main import _terminate

    seen = []

    class Finalised:
        def __del__(self):
            try:
                _terminate(signal.SIGTERM, sys._getframe())
                seen.append("recorded")
            except errors.Terminated:
                seen.append("raised")

    try:
        obj = Finalised()
        del obj
        assert seen == ["recorded"]
        with pytest.raises(errors.Terminated):
            errors.check_terminated()
        # outside a finaliser it raises at once, as before
        with pytest.raises(errors.Terminated):
            _terminate(signal.SIGTERM, sys._getframe())
    finally:
        errors._TERMINATE["requested"] = False
