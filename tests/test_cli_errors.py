"""Bad input through the command line: one line naming the file and the fix, exit code 2.

Every case checks: exit code 2; stderr is a single line holding the offending file's name and
the word "fix"; no "Traceback"; nothing written to the output folder (no output, no ``*.part``
temporary file). With ``-v`` the traceback is shown.

Choice of "4D where 3D is needed": ``apply`` and ``concat``/``invert -d`` legitimately accept 4D
(a 4D input is streamed; a 4D reference only lends its grid), so the wrong case used here is a 4D
series given as a warp (``-w``), plus ``load_image(..., ndim=3)`` for segmentations/masks.
"""

from __future__ import annotations

import errno
import gzip
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import spinereg.io.image as image_mod
import spinereg.io.stream as stream_mod
from helpers import folder_listing, save, synth_grid, synth_image
from spinereg.cli.main import main
from spinereg.errors import InputError, OutputError
from spinereg.io.image import (
    Image,
    load_image,
    require_labels,
    require_nonempty,
    require_same_grid,
    save_image,
)
from spinereg.io.stream import StreamingNiftiWriter
from spinereg.transforms import AffineTransform, apply_transforms_file, write_affine


@pytest.fixture
def ws(tmp_path, sct_data):
    """A workspace: inputs in ``in/``, an empty ``out/`` folder, the real t2 and fmri."""
    inp = tmp_path / "in"
    out = tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    t2 = sct_data / "t2" / "t2.nii.gz"
    affine = write_affine(AffineTransform.from_params(rotation_deg=(0, 0, 3)), inp / "rot.txt")
    return {"in": inp, "out": out, "t2": t2, "fmri": sct_data / "fmri" / "fmri.nii.gz",
            "affine": affine}


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_one_line_error(rc: int, err: str, name: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    line = lines[0]
    assert name in line, f"{name!r} not named in: {line}"
    assert "fix" in line, line
    return line


def _apply_error(capsys, ws, argv_in: list, name: str, out_name: str = "moved.nii.gz") -> str:
    before = folder_listing(ws["out"])
    rc, _, err = _run(capsys, ["apply", *argv_in, "-o", ws["out"] / out_name])
    line = _assert_one_line_error(rc, err, name)
    assert folder_listing(ws["out"]) == before, "output or temporary file left behind"
    return line


# -- bad inputs -----------------------------------------------------------------------------------------
def test_missing_file(capsys, ws):
    line = _apply_error(capsys, ws, ["-i", ws["in"] / "nope.nii.gz", "-d", ws["t2"]], "nope.nii.gz")
    assert "not found" in line
    _apply_error(capsys, ws, ["-i", ws["t2"], "-d", ws["in"] / "noref.nii"], "noref.nii")
    _apply_error(capsys, ws, ["-i", ws["t2"], "-d", ws["t2"], "-w", ws["in"] / "nowarp.nii.gz"],
                 "nowarp.nii.gz")


def test_not_a_nifti(capsys, ws):
    fake = ws["in"] / "notes.nii.gz"
    fake.write_text("this is a text file, not an image\n")
    line = _apply_error(capsys, ws, ["-i", fake, "-d", ws["t2"]], "notes.nii.gz")
    assert "NIfTI" in line
    # also as reference and as warp
    _apply_error(capsys, ws, ["-i", ws["t2"], "-d", fake], "notes.nii.gz")
    _apply_error(capsys, ws, ["-i", ws["t2"], "-d", ws["t2"], "-w", fake], "notes.nii.gz")
    # uncompressed garbage with a .nii name
    raw = ws["in"] / "raw.nii"
    raw.write_bytes(b"\x00" * 100)
    _apply_error(capsys, ws, ["-i", raw, "-d", ws["t2"]], "raw.nii")


def test_truncated_gzip(capsys, ws):
    blob = ws["t2"].read_bytes()
    cut = ws["in"] / "t2_cut.nii.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises((EOFError, OSError, gzip.BadGzipFile)):
        with gzip.open(cut) as fh:
            fh.read()
    line = _apply_error(capsys, ws, ["-i", cut, "-d", ws["t2"]], "t2_cut.nii.gz")
    assert "truncated" in line
    # cut inside the header (gzip and plain): named truncated, not 'convert DICOM with dcm2niix'
    # (before session 39)
    head = ws["in"] / "t2_head.nii.gz"
    head.write_bytes(blob[:200])
    line = _apply_error(capsys, ws, ["-i", head, "-d", ws["t2"]], "t2_head.nii.gz")
    assert "truncated" in line and "dcm2niix" not in line
    plain = ws["in"] / "t2_head.nii"
    with gzip.open(ws["t2"]) as fh:
        plain.write_bytes(fh.read(100))
    line = _apply_error(capsys, ws, ["-i", plain, "-d", ws["t2"]], "t2_head.nii")
    assert "truncated" in line and "100 of 348" in line
    # an empty file is named empty (it was 'not a readable NIfTI ... convert DICOM' before session 49)
    empty = ws["in"] / "t2_empty.nii.gz"
    empty.write_bytes(b"")
    line = _apply_error(capsys, ws, ["-i", empty, "-d", ws["t2"]], "t2_empty.nii.gz")
    assert "empty file (0 bytes)" in line and "dcm2niix" not in line
    # a truncated 4D series fails while streaming: still nothing left behind
    blob4 = ws["fmri"].read_bytes()
    cut4 = ws["in"] / "fmri_cut.nii.gz"
    cut4.write_bytes(blob4[: int(len(blob4) * 0.6)])
    _apply_error(capsys, ws, ["-i", cut4, "-d", ws["fmri"], "-x", "linear"], "fmri_cut.nii.gz")


def test_4d_given_as_warp(capsys, ws):
    line = _apply_error(capsys, ws, ["-i", ws["t2"], "-d", ws["t2"], "-w", ws["fmri"]], "fmri.nii.gz")
    assert "displacement field" in line
    # concat / invert get the same message
    rc, _, err = _run(capsys, ["concat", "-d", ws["t2"], "-w", ws["fmri"], "-o", ws["out"] / "w.nii.gz"])
    _assert_one_line_error(rc, err, "fmri.nii.gz")
    rc, _, err = _run(capsys, ["invert", "-w", ws["fmri"], "-o", ws["out"] / "w.nii.gz"])
    _assert_one_line_error(rc, err, "fmri.nii.gz")
    assert folder_listing(ws["out"]) == set()


def test_4d_where_3d_needed_library(ws):
    with pytest.raises(InputError, match=r"fmri.nii.gz: segmentation is 4D .*3D needed -- fix"):
        load_image(ws["fmri"], ndim=3, what="segmentation")
    with pytest.raises(InputError, match=r"t2.nii.gz: image is 3D .*4D needed -- fix"):
        load_image(ws["t2"], ndim=4)
    # a 4D file of one volume is said to be one (moco said 'series is 3D (68, 68, 6, 1)' before session 39)
    one = ws["in"] / "one_volume.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 1), np.float32), np.eye(4)), str(one))
    with pytest.raises(InputError, match=r"is 3D \(4, 4, 3, 1\) \(a 4D file of one volume\), 4D needed -- fix: give "
                                         r"the whole series"):
        load_image(one, ndim=4, what="series")


def test_nan_inf_voxels(capsys, ws):
    img = synth_image()
    for bad in (np.nan, np.inf, -np.inf):
        data = img.data.copy()
        data[3, 4, 5] = bad
        p = save(img.with_data(data), ws["in"] / "bad_values.nii.gz")
        line = _apply_error(capsys, ws, ["-i", p, "-d", ws["t2"]], "bad_values.nii.gz")
        assert "NaN/Inf" in line
    # in one volume of a 4D series (found while streaming)
    series = np.stack([img.data] * 3, axis=-1)
    series[1, 1, 1, 2] = np.nan
    p4 = save(img.with_data(series), ws["in"] / "series.nii.gz")
    _apply_error(capsys, ws, ["-i", p4, "-d", p4, "-x", "linear"], "series.nii.gz")


# -- outputs ---------------------------------------------------------------------------------------------
def test_unwritable_output_folder(capsys, ws, tmp_path):
    # running as root, chmod does not stop writes: use a regular file where a folder should be
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    rc, _, err = _run(capsys, ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o", blocker / "out.nii.gz"])
    _assert_one_line_error(rc, err, "file.txt")
    assert blocker.read_text() == "a file, not a folder"
    rc, _, err = _run(capsys, ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o",
                               blocker / "deeper" / "out.nii.gz"])
    _assert_one_line_error(rc, err, "file.txt")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_in_proc(capsys, ws):
    """/proc passes the access() check but refuses new files: still one line, exit 2."""
    rc, _, err = _run(capsys, ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o", "/proc/out.nii.gz"])
    _assert_one_line_error(rc, err, "/proc")


def test_output_is_a_folder(capsys, ws):
    (ws["out"] / "dir.nii.gz").mkdir()
    rc, _, err = _run(capsys, ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o", ws["out"] / "dir.nii.gz"])
    _assert_one_line_error(rc, err, "dir.nii.gz")


def test_existing_output_needs_overwrite(capsys, ws):
    target = ws["out"] / "moved.nii.gz"
    target.write_bytes(b"precious")
    for argv in (
        ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o", target],
        ["concat", "-d", ws["t2"], "-w", ws["affine"], "-o", target],
        ["invert", "-w", ws["affine"], "-o", target],
    ):
        rc, _, err = _run(capsys, argv)
        line = _assert_one_line_error(rc, err, "moved.nii.gz")
        assert "--overwrite" in line
        assert target.read_bytes() == b"precious"
        assert folder_listing(ws["out"]) == {"moved.nii.gz"}
    # with --overwrite it is replaced
    rc, out, err = _run(capsys, ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o", target, "--overwrite"])
    assert rc == 0, err
    assert nib.load(str(target)).shape == (60, 55, 52)
    assert folder_listing(ws["out"]) == {"moved.nii.gz"}


def test_output_name_without_suffix_checked_too(capsys, ws):
    """``-o moved`` means ``moved.nii.gz``: an existing ``moved.nii.gz`` is protected."""
    (ws["out"] / "moved.nii.gz").write_bytes(b"precious")
    rc, _, err = _run(capsys, ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o", ws["out"] / "moved"])
    _assert_one_line_error(rc, err, "moved.nii.gz")
    assert (ws["out"] / "moved.nii.gz").read_bytes() == b"precious"


# -- failures while writing -----------------------------------------------------------------------------
def test_failure_mid_write_leaves_nothing(capsys, ws, monkeypatch):
    def disk_full(img, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_mod, "write_nifti", disk_full)
    line = _apply_error(capsys, ws, ["-i", ws["t2"], "-d", ws["t2"]], "moved.nii.gz")
    assert "No space left" in line

    def crash(img, filename):
        Path(filename).write_bytes(b"partial")
        raise RuntimeError("writer bug")

    monkeypatch.setattr(image_mod, "write_nifti", crash)
    with pytest.raises(RuntimeError, match="writer bug"):  # not a user error: a real traceback
        save_image(synth_image(), ws["out"] / "lib.nii.gz")
    assert folder_listing(ws["out"]) == set()


def test_failure_mid_stream_leaves_nothing(capsys, ws, monkeypatch):
    real = StreamingNiftiWriter.write_volume
    calls = []

    def fail_third(self, vol):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, vol)

    monkeypatch.setattr(StreamingNiftiWriter, "write_volume", fail_third)
    with pytest.raises(OSError):  # library: the error propagates, the temporary file is gone
        apply_transforms_file(ws["fmri"], load_image(ws["fmri"], lazy=True).grid, None,
                              ws["out"] / "lib.nii.gz", interp="linear")
    assert len(calls) == 3 and folder_listing(ws["out"]) == set()
    monkeypatch.undo()

    # the disk fills up under the gzip stream: one line, exit 2, nothing left
    class FullDisk:
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, b):
            self.n += 1
            if self.n > 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(b)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    real_gz = stream_mod.ParallelGzipWriter
    monkeypatch.setattr(stream_mod, "ParallelGzipWriter", lambda *a, **k: FullDisk(real_gz(*a, **k)))
    line = _apply_error(capsys, ws, ["-i", ws["fmri"], "-d", ws["fmri"], "-x", "linear"], "moved.nii.gz")
    assert "No space left" in line


# -- verbose and the console script --------------------------------------------------------------------
def test_verbose_shows_traceback(capsys, ws):
    rc, _, err = _run(capsys, ["apply", "-v", "-i", ws["in"] / "nope.nii.gz", "-d", ws["t2"],
                               "-o", ws["out"] / "x.nii.gz"])
    assert rc == 2
    assert "Traceback" in err and "InputError" in err
    assert err.strip().splitlines()[-1].startswith("spinereg apply: error:")
    assert "nope.nii.gz" in err.strip().splitlines()[-1]


def test_console_script_no_traceback(ws):
    exe = shutil.which("spinereg")
    cmd = [exe] if exe else [sys.executable, "-m", "spinereg.cli.main"]
    missing = ws["in"] / "missing.nii.gz"
    res = subprocess.run([*cmd, "apply", "-i", str(missing), "-d", str(ws["t2"]),
                          "-o", str(ws["out"] / "x.nii.gz")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.nii.gz" in lines[0] and "fix" in lines[0], res.stderr
    assert folder_listing(ws["out"]) == set()


def test_qform_sform_warning_is_one_line(capsys, ws):
    img = synth_image().to_nifti()
    q = img.affine.copy()
    s = q.copy()
    s[:3, 3] += 3.0
    img.set_sform(s, code=1)
    img.set_qform(q, code=1)
    p = ws["in"] / "disagree.nii.gz"
    nib.save(img, str(p))
    rc, out, err = _run(capsys, ["apply", "-i", p, "-d", p, "-x", "linear", "-o", ws["out"] / "a.nii.gz"])
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # input and reference are the same file: said once
    assert lines[0].startswith("spinereg: warning:") and "disagree.nii.gz" in lines[0]


# -- library checks used by commands that need them -------------------------------------------------
def test_require_same_grid(tmp_path):
    a = synth_image()
    a.path = tmp_path / "seg.nii.gz"
    b = a.with_data(a.data)
    b.path = tmp_path / "gt.nii.gz"
    require_same_grid(a, b)  # same grid: fine
    moved = a.affine.copy()
    moved[:3, 3] += 0.5
    shifted = Image(a.data, moved, a.header, tmp_path / "gt.nii.gz")
    for other in (shifted, Image(a.data[:-1], a.affine, a.header, tmp_path / "gt.nii.gz")):
        with pytest.raises(InputError) as ei:
            require_same_grid(a, other)
        line = str(ei.value)
        assert "seg.nii.gz" in line and "gt.nii.gz" in line
        assert "-- fix:" in line and "spinereg apply" in line and "\n" not in line


def test_require_nonempty(tmp_path):
    grid = synth_grid()
    empty = Image(np.zeros(grid.shape, np.uint8), grid.affine, path=tmp_path / "mask.nii.gz")
    with pytest.raises(InputError, match=r"mask.nii.gz: mask is empty.* -- fix:"):
        require_nonempty(empty)
    empty.data[1, 2, 3] = 1
    require_nonempty(empty)


def test_require_labels(tmp_path):
    grid = synth_grid()
    lab = Image(np.zeros(grid.shape, np.int16), grid.affine, path=tmp_path / "labels.nii.gz")
    with pytest.raises(InputError, match=r"labels.nii.gz: label file has no labels.* -- fix:"):
        require_labels(lab)
    lab.data[1, 2, 3] = 5
    lab.data[4, 2, 3] = 3
    assert require_labels(lab).tolist() == [3, 5]


def test_output_error_for_existing_file_library(tmp_path):
    p = save_image(synth_image(), tmp_path / "a.nii.gz")
    with pytest.raises(OutputError, match=r"a.nii.gz: output exists -- fix: pass --overwrite"):
        save_image(synth_image(), p)


# -- commands that need one grid, a non-empty mask, labels (``spinereg metrics``) -------------------
@pytest.fixture
def seg_cases(ws, sct_data):
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    moved = seg.affine.copy()
    moved[:3, 3] += 0.5
    return {
        "seg": sct_data / "t2" / "t2_seg-manual.nii.gz",
        "labels": sct_data / "t2" / "labels.nii.gz",
        "cropped": save_image(seg.with_data(seg.data[:-2]), ws["in"] / "seg_cropped.nii.gz"),
        "shifted": save_image(seg.with_data(seg.data, moved), ws["in"] / "seg_shifted.nii.gz"),
        "empty": save_image(seg.with_data(np.zeros_like(seg.data)), ws["in"] / "empty_mask.nii.gz"),
    }


@pytest.mark.parametrize("case", ["cropped", "shifted"])
def test_mismatched_grids_cli(capsys, ws, seg_cases, case):
    rc, _, err = _run(capsys, ["metrics", "dice", "-i", seg_cases[case], "-r", seg_cases["seg"]])
    line = _assert_one_line_error(rc, err, seg_cases[case].name)
    assert "t2_seg-manual.nii.gz" in line and "spinereg apply" in line


def test_empty_mask_cli(capsys, ws, seg_cases):
    rc, _, err = _run(capsys, ["metrics", "dice", "-i", seg_cases["empty"], "-r", seg_cases["seg"]])
    assert "empty" in _assert_one_line_error(rc, err, "empty_mask.nii.gz")


def test_label_file_without_labels_cli(capsys, ws, seg_cases):
    rc, _, err = _run(capsys, ["metrics", "labels", "-i", seg_cases["empty"], "-r", seg_cases["labels"]])
    assert "label" in _assert_one_line_error(rc, err, "empty_mask.nii.gz")


def test_broken_subcommand_does_not_break_others(capsys, ws, monkeypatch):
    """A subcommand module that fails to import (e.g. a missing optional dependency) is reported
    when used; every other command keeps working."""
    import spinereg.cli.main as main_mod

    real = main_mod.importlib.import_module

    def flaky(name, *args):
        if name == "spinereg.cli.concat":
            raise ImportError("No module named 'fancy_dependency'")
        return real(name, *args)

    monkeypatch.setattr(main_mod.importlib, "import_module", flaky)
    rc, out, err = _run(capsys, ["apply", "-i", ws["t2"], "-d", ws["t2"], "-o", ws["out"] / "ok.nii.gz"])
    assert rc == 0, err
    rc, _, err = _run(capsys, ["concat", "-d", ws["t2"], "-w", ws["affine"], "-o", ws["out"] / "w.nii.gz"])
    assert rc == 2 and "fancy_dependency" in err and "fix" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _run(capsys, ["concat", "-v"])
    assert rc == 2 and "Traceback" in err


def test_read_only_output_folder_is_refused_before_the_work(capsys, ws, monkeypatch):
    """An existing output folder that may not be written (``mkdir d && chmod 555 d``) was found
    only when the outputs were moved in, after the whole run (register-to-template, register,
    label-vertebrae, warp-template: OutputFolder.check tested the folder's parent only; phantom
    checked after making the phantom). As root chmod does not
    stop writes, so the folder is made read-only for ``os.access``, which the checks use."""
    import os

    ro = ws["out"] / "ro"
    ro.mkdir()
    real_access = os.access

    def access(path, mode, *a, **k):
        if Path(path).resolve() == ro.resolve() and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)
    sct = ws["t2"].parent
    t2, seg, labels = ws["t2"], sct / "t2_seg-manual.nii.gz", sct / "labels.nii.gz"
    commands = {
        "register-to-template": ["-i", t2, "-s", seg, "-l", labels, "-t", "PAM50_small", "-o", ro],
        "register": ["-i", t2, "-d", t2, "--identity", "-o", ro],
        "label-vertebrae": ["-i", t2, "-s", seg, "-c", "t2", "-o", ro],
        "warp-template": ["-d", t2, "-w", sct / "warp_template2anat.nii.gz", "-t", "PAM50_small", "-o", ro],
        "apply": ["-i", t2, "-d", t2, "-o", ro / "x.nii.gz"],
        "csa": ["-s", seg, "-o", ro / "csa.csv"],
        "phantom": ["-o", ro, "--shape", "33", "31", "6", "--volumes", "2"],
    }
    for cmd, args in commands.items():
        t0 = time.perf_counter()
        rc, _, err = _run(capsys, [cmd, *args])
        line = _assert_one_line_error(rc, err, str(ro))
        assert "not writable" in line, (cmd, line)
        assert time.perf_counter() - t0 < 5.0, (cmd, "the check came after the work")
        assert not any(ro.iterdir()), cmd
