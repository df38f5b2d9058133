"""The command line is consistent: every subcommand described, every option's default shown,
-o a folder for commands writing several files and a file for those writing one (said in
--help), ``spinereg --version`` with the git commit, progress on a terminal only, a short human
summary (full JSON with --json), files readable as the umask allows."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess

import pytest

from spinereg.cli.main import build_parser, main

#: commands whose -o is a folder (several files) / a file (one file)
FOLDER_OUT = {"register-to-template", "register", "chain", "warp-template", "moco", "phantom", "demo",
              "spine-metrics", "sdc fieldmap", "sdc topup", "sdc anat", "straighten", "analyze-lesion"}
FILE_OUT = {"apply", "concat", "invert", "extract-metric", "qc-scores", "metrics dice", "metrics hausdorff",
            "metrics centerline", "metrics labels", "metrics jacobian", "metrics inverse-consistency"}


def _parsers():
    """(name, parser) of every (sub)command, recursively."""
    out = []

    def walk(name: str, p: argparse.ArgumentParser) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append((name, p))
            return
        if name:
            out.append((name, p))
        for a in subs:
            helps = {c.dest: c.help for c in a._choices_actions}
            for child, cp in a.choices.items():
                assert helps.get(child), f"{name} {child}: no help line in the command list"
                walk(f"{name} {child}".strip(), cp)

    walk("", build_parser())
    return out


def test_every_subcommand_is_described():
    names = [n for n, _ in _parsers()]
    assert {"apply", "register-to-template", "demo", "data fetch", "sdc anat", "metrics dice"} <= set(names)
    for name, p in _parsers():
        assert p.description and len(p.description) > 20, f"{name}: no description"


def test_every_option_shows_its_default():
    for name, p in _parsers():
        text = p.format_help()
        for a in p._actions:
            if not a.option_strings or a.required or a.nargs == 0 or isinstance(a.const, bool):
                continue
            if a.dest in ("help", "version"):
                continue
            shown = p._get_formatter()._get_help_string(a) if hasattr(p._get_formatter(), "_get_help_string") else a.help
            assert "default" in (shown or "").lower(), f"{name} {a.option_strings}: default not shown"
        assert "%(default)" not in text


def test_output_option_says_folder_or_file():
    seen = set()
    for name, p in _parsers():
        outs = [a for a in p._actions if "-o" in a.option_strings]
        if not outs:
            continue
        seen.add(name)
        text = (outs[0].help or "").lower()
        if name in FOLDER_OUT:
            assert "folder" in text and "several files" in text, f"{name}: -o help: {text}"
        elif name in FILE_OUT:
            assert "file" in text and "folder" not in text, f"{name}: -o help: {text}"
    assert FOLDER_OUT | FILE_OUT <= seen


def test_version_names_the_commit(capsys):
    from spinereg.io.provenance import code_version

    code_version.cache_clear()  # read HEAD now
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("spinereg 0.")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # running from a checkout (as CI does)
        assert f"git {head.stdout.strip()[:10]}" in out


def test_apply_warp_option_needs_a_warp(capsys, tmp_path):
    assert main(["apply", "-i", "a.nii.gz", "-d", "b.nii.gz", "-w", "-o", str(tmp_path / "x.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-w" in err[0] and "expected at least one argument" in err[0]


def test_help_lists_exit_codes(capsys):
    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes" in out and "3 outputs written but the result failed" in " ".join(out.split())


# -- progress and summary --------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stage_progress_on_a_terminal_only(monkeypatch):
    from spinereg.io.provenance import RunRecord
    from spinereg.progress import StageProgress

    monkeypatch.delenv("CI", raising=False)
    tty = _Tty()
    shown = StageProgress(total=2, stream=tty)
    run = RunRecord("demo", ["demo"], on_stage=shown.on_stage)
    with run.stage("registration"):
        bar = shown.bar()
        for k in range(1, 4):
            bar(k, 3)
    with run.stage("write outputs"):
        pass
    text = tty.getvalue()
    assert "[1/2] registration" in text and "3/3" in text and "[2/2] write outputs" in text and "done" in text
    assert text.count("\n") == 2  # one line per stage
    quiet = io.StringIO()  # not a terminal (a log file, CI)
    s2 = StageProgress(total=1, stream=quiet)
    s2.on_stage("x", "start")
    assert s2.bar() is None
    s2.on_stage("x", "end", 1.0)
    assert quiet.getvalue() == ""
    monkeypatch.setenv("CI", "1")
    assert StageProgress(stream=_Tty()).enabled is False


def test_summary_and_json(capsys, sct_data, tmp_path):
    argv = ["register", "-i", str(sct_data / "t2/t2.nii.gz"), "--iseg", str(sct_data / "t2/t2_seg-manual.nii.gz"),
            "-d", str(sct_data / "t2s/t2s.nii.gz"), "--dseg", str(sct_data / "t2s/t2s_seg.nii.gz"), "--identity",
            "--allow-fail"]
    assert main([*argv, "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert out.split(":")[0] == "register" and "outputs:" in out and len(out.splitlines()) <= 8
    with pytest.raises(ValueError):
        json.loads(out)
    assert main([*argv, "-o", str(tmp_path / "b"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["qc"]["verdict"] in ("pass", "warn", "fail") and data["outdir"] == str(tmp_path / "b")


def test_files_follow_the_umask(tmp_path):
    from helpers import synth_image
    from spinereg.io.image import save_image
    from spinereg.io.provenance import write_json
    from spinereg.io.staging import OutputFolder

    old = os.umask(0o027)
    try:
        with OutputFolder(tmp_path / "run") as tmp:
            save_image(synth_image(), tmp / "a.nii.gz")
            write_json(tmp / "b.json", {"x": 1})
        assert (tmp_path / "run").stat().st_mode & 0o777 == 0o750
        for name in ("a.nii.gz", "b.json"):
            assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o640, name
    finally:
        os.umask(old)
    with OutputFolder(tmp_path / "run2") as tmp:
        write_json(tmp / "b.json", {"x": 1})
    assert (tmp_path / "run2" / "b.json").stat().st_mode & 0o777 == 0o666 & ~old
