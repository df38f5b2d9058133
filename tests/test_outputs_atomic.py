"""No output folder is left half-written, whatever write fails (fault injection).

For each main multi-file command, a first run counts the files it opens for writing; then, for
every N, the run is repeated with the N-th write failing as a full disk would. Each failing run
must exit 2 with one line on stderr and leave the destination (and an external QC folder)
exactly as it was: no output, no hidden temporary file or folder. The registration itself is
computed once (its result is reused), since only the writing is under test.
"""

from __future__ import annotations

import shutil

import pytest

from faults import WriteFaults, snapshot
from spinereg.cli.main import main

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def t2_reg(sct_data):
    from spinereg.register.template import register_to_template

    t2 = sct_data / "t2"
    return register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz",
                                template="PAM50_small")


def _every_write_fails(capsys, tmp_path, argv, dest, watch=(), before=None, only=None):
    """Run ``argv`` once counting writes under tmp_path, then once per write with that write
    failing (``only``: a function of the count giving the writes to fail instead of all);
    return the number of writes."""
    work = tmp_path / "work"
    snaps = {p: snapshot(p) for p in (work, *watch)}
    with WriteFaults(tmp_path) as count:
        judged = argv[0] in ("register", "register-to-template", "demo", "chain") and "--allow-fail" not in argv
        assert main(argv + ["--allow-fail"] if judged else argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    n = len(count.opened)
    assert n >= 2, count.opened
    done = snapshot(dest)
    if before is not None:
        before()  # restore the state before the run
    else:
        shutil.rmtree(dest)
    assert {p: snapshot(p) for p in (work, *watch)} == snaps
    for k in (range(1, n + 1) if only is None else sorted(set(only(n)))):
        with WriteFaults(tmp_path, fail_at=k) as faults:
            rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (k, faults.opened[-1], err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "No space left" in lines[0] and "Traceback" not in err, (k, err)
        for p in (work, *watch):
            assert snapshot(p) == snaps[p], f"write {k}/{n} ({faults.opened[-1]}) left something in {p}"
    assert done  # the successful run wrote something
    return n


@pytest.mark.slow
def test_register_to_template_every_write(capsys, tmp_path, sct_data, t2_reg, monkeypatch):
    import spinereg.register.template as template_mod

    monkeypatch.setattr(template_mod, "register_to_template", lambda *a, **k: t2_reg)
    t2 = sct_data / "t2"
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("a user's file next to the outputs\n")
    dest = work / "sub-01"
    argv = ["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
            "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small", "-o", str(dest)]
    n = _every_write_fails(capsys, tmp_path, argv, dest)
    assert n >= 8  # 4 images/warps, metrics (twice), provenance (twice)


def test_register_with_external_qc_every_write(capsys, tmp_path, sct_data):
    """register --qc into a QC folder that already holds another run: every write of the run (its
    outputs, its QC pictures, the report's entries.json, index.html and assets) fails in turn,
    and neither the output folder nor the QC folder changes."""
    work = tmp_path / "work"
    qc = tmp_path / "qc"
    base = ["register", "-i", str(sct_data / "t2/t2.nii.gz"), "--iseg", str(sct_data / "t2/t2_seg-manual.nii.gz"),
            "-d", str(sct_data / "t2s/t2s.nii.gz"), "--dseg", str(sct_data / "t2s/t2s_seg.nii.gz"), "--identity",
            "--qc", str(qc)]
    assert main([*base, "-o", str(work / "earlier"), "--allow-fail"]) in (0, 3)  # the QC folder's earlier entry
    capsys.readouterr()
    kept = snapshot(qc)
    shutil.copytree(qc, tmp_path / "qc_before")
    dest = work / "t2_to_t2s"

    def restore():
        shutil.rmtree(dest)
        shutil.rmtree(qc)
        shutil.copytree(tmp_path / "qc_before", qc)

    n = _every_write_fails(capsys, tmp_path, [*base, "-o", str(dest)], dest, watch=(qc,), before=restore)
    assert snapshot(qc) == kept and n > 10


def test_register_every_write(capsys, tmp_path, sct_data):
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "t2_to_t2s"
    argv = ["register", "-i", str(sct_data / "t2/t2.nii.gz"), "--iseg", str(sct_data / "t2/t2_seg-manual.nii.gz"),
            "-d", str(sct_data / "t2s/t2s.nii.gz"), "--dseg", str(sct_data / "t2s/t2s_seg.nii.gz"),
            "--identity", "-o", str(dest)]
    assert _every_write_fails(capsys, tmp_path, argv, dest) >= 6


@pytest.mark.slow
def test_demo_rerun_every_write(capsys, tmp_path, t2_reg, monkeypatch):
    """The demo (QC inside its folder): a failing re-run leaves the previous demo output as it was;
    a successful one replaces it without --overwrite; a folder holding other things is refused."""
    import spinereg.register.template as template_mod

    monkeypatch.setattr(template_mod, "register_to_template", lambda *a, **k: t2_reg)
    work = tmp_path / "work"
    dest = work / "spinereg_demo"
    argv = ["demo", "-t", "PAM50_small", "-o", str(dest), "--allow-fail"]
    assert main(argv) == 0
    capsys.readouterr()
    first = snapshot(dest)
    shutil.copytree(dest, tmp_path / "demo_before")

    def restore():
        shutil.rmtree(dest)
        shutil.copytree(tmp_path / "demo_before", dest)

    # (every write of register-to-template's outputs and of a QC report fails in turn in the tests
    # above) the first write, and the last one: the QC report's commit inside the folder
    n = _every_write_fails(capsys, tmp_path, argv, dest, before=restore, only=lambda n: [1, n])
    assert n > 12 and snapshot(dest) == first
    assert main(argv) == 0  # replaces its own output
    assert sorted(p.name for p in work.iterdir()) == ["spinereg_demo"]
    (dest / "mine.txt").write_text("not a demo output")
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err


def test_single_file_commands_leave_nothing(capsys, tmp_path, sct_data):
    work = tmp_path / "work"
    work.mkdir()
    t2, fmri = sct_data / "t2" / "t2.nii.gz", sct_data / "fmri" / "fmri.nii.gz"
    warp = sct_data / "t2" / "warp_template2anat.nii.gz"
    small = sct_data / "template" / "template" / "PAM50_small_cord.nii.gz"
    for argv in (["apply", "-i", str(small), "-d", str(t2), "-w", str(warp), "-o", str(work / "a.nii.gz")],
                 ["apply", "-i", str(fmri), "-d", str(fmri), "-x", "linear", "-o", str(work / "f.nii.gz")],
                 ["concat", "-d", str(t2), "-w", str(warp), "-o", str(work / "c.nii.gz")]):
        with WriteFaults(tmp_path, fail_at=1):
            rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert snapshot(work) == {}, argv


def test_warp_template_every_write(capsys, tmp_path, sct_data):
    """warp-template (the template's objects onto t2 through SCT's warp, PAM50_small)."""
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "label"
    argv = ["warp-template", "-d", str(sct_data / "t2" / "t2.nii.gz"), "-w",
            str(sct_data / "t2" / "warp_template2anat.nii.gz"), "-t", "PAM50_small", "-o", str(dest)]
    assert _every_write_fails(capsys, tmp_path, argv, dest) >= 5


def test_moco_every_write(capsys, tmp_path, sct_data):
    """moco on the 7-volume DWI series: every output file in turn."""
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "moco"
    d = sct_data / "dmri"
    argv = ["moco", "-i", str(d / "dmri.nii.gz"), "--bvecs", str(d / "bvecs.txt"), "-g", "2", "-o", str(dest)]
    assert _every_write_fails(capsys, tmp_path, argv, dest) >= 4
