"""Work folders an interruption cannot leave behind (``spinereg.io.tempdirs``): SIGTERM landing
right after a work folder's ``mkdir`` (the window ``tempfile.TemporaryDirectory`` leaves open, the
cause of tests/test_cli_sigterm.py's rare leftover ``spinereg-autolabel-*`` folder) is delivered
only once the folder is recorded, and the command's way out removes what it recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

from spinereg.io import tempdirs


def test_made_removed_and_forgotten(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with tempdirs.temporary_directory("spinereg-t-") as d:
        assert d.is_dir() and d.parent == tmp_path and d.name.startswith("spinereg-t-")
        assert d in tempdirs._LIVE
    assert not d.exists() and d not in tempdirs._LIVE
    kept = tempdirs.make_temp_dir("spinereg-t-")
    (kept / "f").write_text("x")
    assert tempdirs.remove_leftovers() == [kept] and not kept.exists() and not tempdirs._LIVE


def test_sigterm_right_after_mkdir_leaves_nothing(tmp_path):
    """The signal is sent from inside ``mkdtemp`` just after its ``mkdir`` (the exact window), in a
    process that handles SIGTERM as the ``spinereg`` command does and exits through ``os._exit``."""
    script = textwrap.dedent("""
        import os, signal, sys, tempfile
        from spinereg.cli import main as cli
        from spinereg.io import tempdirs
        signal.signal(signal.SIGTERM, cli._terminate)
        real_mkdir = os.mkdir
        def mkdir_then_signal(path, mode=0o777):
            real_mkdir(path, mode)
            os.kill(os.getpid(), signal.SIGTERM)
        os.mkdir = mkdir_then_signal
        code = 0
        try:
            with tempdirs.temporary_directory(sys.argv[1]):
                code = 1  # the signal must have been delivered before the block
        except cli.Terminated:
            code = 143
        finally:
            os.mkdir = real_mkdir
        tempdirs.remove_leftovers()
        os._exit(code)
    """)
    for prefix in ("spinereg-autolabel-", "spinereg-ants-"):
        proc = subprocess.run([sys.executable, "-c", script, prefix], env=dict(os.environ, TMPDIR=str(tmp_path)),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 143, proc.stderr
        assert list(tmp_path.iterdir()) == []


def test_sigterm_dropped_in_a_finalizer_is_raised_at_the_next_stage():
    """Python runs a signal handler wherever the main thread is; raised inside a ``__del__`` the
    exception is printed and dropped ("Exception ignored in ..."), and the command went on as if
    never signalled (a clean-clone CI run, session 39: test_cli_sigterm got exit 0). The request
    is recorded and the next stage boundary raises it again."""
    import gc

    import pytest

    from spinereg import errors
    from spinereg.io.provenance import RunRecord

    class Finalized:
        def __del__(self):
            errors.request_termination()

    run = RunRecord("test")
    try:
        Finalized()  # dropped at once: its __del__ raises, Python prints and ignores it
        gc.collect()
        with pytest.raises(errors.Terminated):
            with run.stage("next"):
                pass
    finally:
        errors._TERMINATE["requested"] = False
    with run.stage("after"):  # cleared: stages run again
        pass
