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

import pytest

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


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the drop is the point
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


# -- dir= / suffix=, release ------------------------------------------------------------------------

def test_dir_and_suffix_are_honoured(tmp_path):
    made = tempdirs.make_temp_dir(".out.", ".part", tmp_path)
    try:
        assert made.parent == tmp_path and made.name.startswith(".out.") and made.name.endswith(".part")
        assert made in tempdirs._LIVE
    finally:
        tempdirs.remove_temp_dir(made)
    with tempdirs.temporary_directory(prefix=".stage-", suffix=".x", dir=tmp_path / ".") as d:
        assert d.parent == tmp_path and d.name.startswith(".stage-") and d.name.endswith(".x")
        assert d in tempdirs._LIVE  # recorded under its absolute name however dir was spelt
    assert not d.exists() and d not in tempdirs._LIVE
    assert list(tmp_path.iterdir()) == []


def test_a_released_folder_survives_remove_leftovers(tmp_path):
    part = tempdirs.make_temp_dir(".out.", ".part", tmp_path)
    (part / "result.txt").write_text("kept")
    final = tmp_path / "out"
    os.rename(part, final)
    tempdirs.release_temp_dir(part)
    other = tempdirs.make_temp_dir(".other.", dir=tmp_path)
    kept = tempdirs.make_temp_dir(".kept.", dir=tmp_path)
    (kept / "f").write_text("x")
    tempdirs.release_temp_dir(kept)
    left = tempdirs.remove_leftovers()
    assert other in left and part not in left and kept not in left
    assert (final / "result.txt").read_text() == "kept" and (kept / "f").read_text() == "x"
    assert not other.exists()


def test_a_forked_child_forgets_the_parents_folders(tmp_path):
    made = tempdirs.make_temp_dir(".parent.", dir=tmp_path)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0 if not tempdirs._LIVE and not tempdirs.remove_leftovers() else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0 and made.is_dir()
    finally:
        tempdirs.remove_temp_dir(made)


# -- io.staging: the .part and the .old of an output folder --------------------------------------

def _previous_output(dest):
    dest.mkdir()
    (dest / "provenance.json").write_text("previous")
    (dest / "a.nii.gz").write_text("previous a")


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_staging_interrupted_inside_the_with_leaves_no_part_and_the_previous_output(tmp_path):
    from spinereg.errors import Terminated
    from spinereg.io.staging import OutputFolder

    dest = tmp_path / "out"
    _previous_output(dest)
    for kwargs in ({"replace": True}, {"names": ["a.nii.gz"], "overwrite": True}):
        part = None
        try:
            with OutputFolder(dest, **kwargs) as part:
                assert part.name.startswith(".out.") and part.name.endswith(".part") and part in tempdirs._LIVE
                (part / "a.nii.gz").write_text("new a")
                (part / "provenance.json").write_text("new")
                raise Terminated()
        except Terminated:
            pass
        assert part is not None and not part.exists() and part not in tempdirs._LIVE
        assert _hidden(tmp_path) == []
        assert (dest / "provenance.json").read_text() == "previous"
        assert (dest / "a.nii.gz").read_text() == "previous a"


def test_staging_part_renamed_into_place_is_released(tmp_path):
    from spinereg.io.staging import OutputFolder

    for dest, prev in ((tmp_path / "new", False), (tmp_path / "replaced", True)):
        if prev:
            _previous_output(dest)
        with OutputFolder(dest, replace=True) as part:
            (part / "a.nii.gz").write_text("new a")
        assert part not in tempdirs._LIVE
        assert not any(p.parent == tmp_path for p in tempdirs._LIVE)  # no .old either
        tempdirs.remove_leftovers()
        assert sorted(p.name for p in dest.iterdir()) == ["a.nii.gz"] and (dest / "a.nii.gz").read_text() == "new a"
    assert _hidden(tmp_path) == []


def test_staging_replace_whose_second_rename_fails_puts_the_previous_output_back(tmp_path, monkeypatch):
    """The previous output moved aside into ``.out.XXXX.old``, then the new one cannot be moved in
    (an error, or the exception of a signal another thread took): the previous output goes back,
    the ``.old`` folder goes away."""
    from spinereg.errors import OutputError, Terminated
    from spinereg.io.staging import OutputFolder

    dest = tmp_path / "out"
    _previous_output(dest)
    real_rename = os.rename
    for exc in (OSError(28, "No space left on device"), Terminated()):
        calls = []

        def rename(src, dst, exc=exc, calls=calls):
            calls.append((src, dst))
            if len(calls) == 2:  # dest -> .old/out went through; .part -> dest fails
                assert os.path.isdir(os.path.dirname(dst)) and not os.path.lexists(dst)
                raise exc
            return real_rename(src, dst)

        with pytest.raises((OutputError, Terminated)):
            with OutputFolder(dest, replace=True) as part:
                (part / "a.nii.gz").write_text("new a")
                monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "rename", real_rename)
        assert len(calls) == 3 and str(calls[0][1]).endswith(".old/out")
        assert (dest / "provenance.json").read_text() == "previous"
        assert (dest / "a.nii.gz").read_text() == "previous a"
        assert _hidden(tmp_path) == [] and not any(p.parent == tmp_path for p in tempdirs._LIVE)


def test_staging_previous_output_that_cannot_be_put_back_is_kept(tmp_path, monkeypatch):
    """Should moving the previous output back fail too, its ``.old`` folder is its only copy: it
    is released (never removed by remove_leftovers) and the error says where it is."""
    from spinereg.errors import OutputError
    from spinereg.io.staging import OutputFolder

    dest = tmp_path / "out"
    _previous_output(dest)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) >= 2:
            raise OSError(5, "Input/output error")
        return real_rename(src, dst)

    with pytest.raises(OutputError, match="previous output") as info:
        with OutputFolder(dest, replace=True) as part:
            (part / "a.nii.gz").write_text("new a")
            monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "rename", real_rename)
    old = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert len(old) == 1 and str(old[0] / "out") in info.value.one_line()
    tempdirs.remove_leftovers()
    assert (old[0] / "out" / "provenance.json").read_text() == "previous"
    assert not dest.exists() and not part.exists()


def test_sigterm_between_the_renames_of_a_replace_waits_for_the_second(tmp_path):
    """A real SIGTERM sent just after the previous output was moved aside (from inside the first
    rename) is held back until the new output is in: the command still ends as terminated, the
    new output is complete, nothing hidden is left (.part released, .old removed)."""
    script = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        from spinereg.cli import main as cli
        from spinereg.io import tempdirs
        from spinereg.io.staging import OutputFolder
        signal.signal(signal.SIGTERM, cli._terminate)
        dest = Path(sys.argv[1])
        real_rename = os.rename
        def rename_then_signal(src, dst):
            real_rename(src, dst)
            if str(dst).endswith(".old/" + dest.name):
                os.kill(os.getpid(), signal.SIGTERM)
        code = 0
        try:
            with OutputFolder(dest, replace=True) as part:
                (part / "provenance.json").write_text("new")
                os.rename = rename_then_signal
        except cli.Terminated:
            code = 143
        finally:
            os.rename = real_rename
        tempdirs.remove_leftovers()
        os._exit(code)
    """)
    dest = tmp_path / "out"
    _previous_output(dest)
    proc = subprocess.run([sys.executable, "-c", script, str(dest)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in dest.iterdir()) == ["provenance.json"]
    assert (dest / "provenance.json").read_text() == "new"


def test_sigterm_inside_the_with_of_an_output_folder_leaves_the_previous_output(tmp_path):
    """A real SIGTERM while the run writes into its ``.part`` folder: the command exits as
    terminated (``os._exit``), no ``.part`` is left, the previous output is as it was."""
    script = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        from spinereg.cli import main as cli
        from spinereg.io import tempdirs
        from spinereg.io.staging import OutputFolder
        signal.signal(signal.SIGTERM, cli._terminate)
        code = 0
        try:
            with OutputFolder(Path(sys.argv[1]), replace=True) as part:
                (part / "provenance.json").write_text("new")
                os.kill(os.getpid(), signal.SIGTERM)
                code = 1
        except cli.Terminated:
            code = 143
        tempdirs.remove_leftovers()
        os._exit(code)
    """)
    dest = tmp_path / "out"
    _previous_output(dest)
    proc = subprocess.run([sys.executable, "-c", script, str(dest)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (dest / "provenance.json").read_text() == "previous"
    assert (dest / "a.nii.gz").read_text() == "previous a"


# -- a hold in one thread, the signal handled in the main thread -----------------------------------

_THREADED_SWAP = textwrap.dedent("""
    import os, signal, sys, threading, time
    from pathlib import Path
    from spinereg.cli import main as cli
    from spinereg.io import tempdirs
    from spinereg.io.staging import OutputFolder
    signal.signal(signal.SIGTERM, cli._terminate)
    dest, where = Path(sys.argv[1]), sys.argv[2]
    real_rename = os.rename
    aside = threading.Event()
    def slow_rename(src, dst):  # the previous output moved aside, then a slow second rename
        real_rename(src, dst)
        if str(dst).endswith(".old/" + dest.name):
            if where == "main":
                os.kill(os.getpid(), signal.SIGTERM)
            aside.set()
            time.sleep(0.5)
    def swap():
        with OutputFolder(dest, replace=True) as part:
            (part / "provenance.json").write_text("new")
            os.rename = slow_rename
    idle = threading.Event()
    threading.Thread(target=idle.wait, daemon=True).start()  # a thread that takes signals
    code = 0
    try:
        if where == "worker":
            th = threading.Thread(target=swap, daemon=True)
            th.start()
            aside.wait(10)
            os.kill(os.getpid(), signal.SIGTERM)
            th.join()
        else:
            swap()
        time.sleep(0.2)  # (the re-sent signal)
    except cli.Terminated:
        code = 143
    tempdirs.remove_leftovers()
    os._exit(code)
""")


@pytest.mark.parametrize("where", ["worker", "main"])
def test_sigterm_while_another_thread_holds_waits_for_the_swap(tmp_path, where):
    """``signals_held`` blocks the signals for its own thread only, and Python runs the handler in
    the main thread whichever thread the kernel gave the signal to. worker: SIGTERM while a worker
    thread is between the two renames of a replace; the main thread's handler raised at once, the
    way out removed the ``.old`` folder (the previous output, still aside) and ``os._exit`` killed
    the worker before its second rename: no output at all (before: ``out`` missing, 0 files).
    main: the main thread holds, an idle thread takes the signal, the handler ran between the
    renames anyway (the previous output put back, the new one dropped). Now the handler is deferred
    while any thread holds and the signal re-sent to the main thread when the last hold ends: the
    command ends as terminated (143) with the new output complete and nothing hidden left."""
    dest = tmp_path / "out"
    _previous_output(dest)
    proc = subprocess.run([sys.executable, "-c", _THREADED_SWAP, str(dest), where],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in dest.iterdir()) == ["provenance.json"]
    assert (dest / "provenance.json").read_text() == "new"


@pytest.mark.parametrize("idle_thread", [False, True])
def test_sigint_inside_a_hold_of_the_main_thread_is_raised_after_it(idle_thread):
    """The command's SIGINT handler (``hold_aware(default_int_handler)``): Ctrl-C inside a hold
    raises KeyboardInterrupt once the block is done, whether the kernel kept the signal pending
    (no other thread) or gave it to an idle thread (the handler then ran at once, in the hold)."""
    import signal
    import threading

    previous = signal.signal(signal.SIGINT, tempdirs.hold_aware(signal.default_int_handler))
    stop = threading.Event()
    if idle_thread:
        threading.Thread(target=stop.wait, daemon=True).start()
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with tempdirs.signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # bytecodes where an undeferred handler would have raised
                    done.append(1)
            for _ in range(1000):
                pass
        assert len(done) == 1000 and not tempdirs._HOLDS and not tempdirs._DEFERRED
    finally:
        stop.set()
        signal.signal(signal.SIGINT, previous)


def test_remove_leftovers_waits_for_another_threads_hold(tmp_path):
    """A worker's swap under way (its ``.old`` folder holding the previous output, recorded as a
    work folder until the new output is in): the way out waits for the hold before removing."""
    import threading
    import time

    entered, aside = threading.Event(), {}

    def swap():
        with tempdirs.signals_held():
            aside["old"] = tempdirs.make_temp_dir(".out.", ".old", tmp_path)
            entered.set()
            time.sleep(0.3)
            tempdirs.release_temp_dir(aside["old"])  # (the previous output kept, say)

    th = threading.Thread(target=swap)
    th.start()
    entered.wait(5)
    t0 = time.monotonic()
    left = tempdirs.remove_leftovers()
    waited = time.monotonic() - t0
    th.join()
    assert aside["old"] not in left and aside["old"].is_dir()
    assert 0.2 < waited < 5
    tempdirs.remove_temp_dir(aside["old"])
