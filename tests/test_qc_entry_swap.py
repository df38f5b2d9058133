"""Replacing a QC entry (``qc.report.PendingEntry.commit``): the previous ``entries/ID`` is moved
aside and the new one renamed in. Before session 41 the pair ran with SIGTERM free to land
between the renames: the command ended as terminated (143) with ``entries/ID`` gone and the
previous pictures left hidden in ``entries/.ID-old-PID``, while entries.json still listed the
entry (a report with a broken entry). Now the pair runs with the signals held and an entry cut
short is put back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spinereg.errors import OutputError
from spinereg.io import tempdirs
from spinereg.qc import report

EID = "0123456789ab"


def _pending(qc_root: Path) -> report.PendingEntry:
    """A previous entry (entries.json, entries/ID) and a new one staged as prepare_entry does."""
    (qc_root / "entries" / EID).mkdir(parents=True)
    (qc_root / "entries" / EID / "panel.png").write_text("previous")
    (qc_root / report.ENTRIES).write_text(json.dumps({"version": 2, "entries": [{"id": EID, "n": 1}]}))
    stage = tempdirs.make_temp_dir(f".{EID}-new", dir=qc_root / "entries")
    (stage / "panel.png").write_text("new")
    return report.PendingEntry(qc_root, {"id": EID, "n": 2}, stage, qc_root, [])


def _state(qc_root: Path) -> tuple[list[str], str, int]:
    entries = qc_root / "entries"
    return (sorted(p.name for p in entries.iterdir()), (entries / EID / "panel.png").read_text(),
            report.load_entries(qc_root)[0]["n"])


_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from test_qc_entry_swap import _pending
    from spinereg.cli import main as cli
    from spinereg.io import tempdirs
    signal.signal(signal.SIGTERM, cli._terminate)
    qc_root = Path(sys.argv[1])
    pending = _pending(qc_root)
    real_replace, real_rename = os.replace, os.rename
    def then_signal(real):
        def move(src, dst):
            real(src, dst)
            if Path(src).name == "0123456789ab":  # the previous entry just moved aside
                os.kill(os.getpid(), signal.SIGTERM)
        return move
    os.replace, os.rename = then_signal(real_replace), then_signal(real_rename)
    code = 0
    try:
        pending.commit()
    except cli.Terminated:
        code = 143
    finally:
        os.replace, os.rename = real_replace, real_rename
    tempdirs.remove_leftovers()
    os._exit(code)
""")


def test_sigterm_between_the_renames_waits_for_the_new_entry(tmp_path):
    qc_root = tmp_path / "qc"
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(qc_root), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert _state(qc_root) == ([EID], "new", 2)
    assert (qc_root / report.INDEX).is_file()


def _renames_failing(monkeypatch, fails, exc: OSError) -> list:
    """os.replace / os.rename raising ``exc`` on the n-th call (1-based) for which ``fails(n)``;
    returns the list of their sources, call by call."""
    calls: list = []

    def move(real):
        def fn(src, dst):
            calls.append(src)
            if fails(len(calls)):
                raise exc
            return real(src, dst)
        return fn

    monkeypatch.setattr(os, "replace", move(os.replace))
    monkeypatch.setattr(os, "rename", move(os.rename))
    return calls


def test_a_failed_second_rename_puts_the_previous_entry_back(tmp_path, monkeypatch):
    qc_root = tmp_path / "qc"
    pending = _pending(qc_root)
    # the previous entry aside; the new one cannot go in
    calls = _renames_failing(monkeypatch, lambda n: n == 2, OSError(28, "No space left on device"))
    with pytest.raises((OSError, OutputError)):
        pending.commit()
    monkeypatch.undo()
    assert len(calls) == 3
    assert _state(qc_root) == ([EID], "previous", 1)
    assert not any(p.parent == qc_root / "entries" for p in tempdirs._LIVE)


def test_a_previous_entry_that_cannot_be_put_back_is_kept_and_named(tmp_path, monkeypatch):
    qc_root = tmp_path / "qc"
    pending = _pending(qc_root)
    _renames_failing(monkeypatch, lambda n: n >= 2, OSError(5, "Input/output error"))
    with pytest.raises(OutputError, match="previous entry") as info:
        pending.commit()
    monkeypatch.undo()
    tempdirs.remove_leftovers()
    kept = [p for p in (qc_root / "entries").iterdir() if p.name != EID and (p / EID).is_dir()]
    assert len(kept) == 1 and str(kept[0] / EID) in info.value.one_line()
    assert (kept[0] / EID / "panel.png").read_text() == "previous"
