"""``spinereg data fetch --force`` over a cached copy: the cached copy is moved aside and the new
download renamed in. When the second rename failed and so did the move back, the folder holding
the cached copy (the fetch's work folder) was removed with it: an offline user lost the data set,
with a bare OSError. Now the cached copy is kept and the one-line error names it and the ``mv``
that restores it; a failed install whose copy went back says the previous copy is still in
place. No network: the download is monkeypatched."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from spinereg.cli.main import main
from spinereg.io import registry, tempdirs

REAL_RENAME = os.rename
FILES = {"README.md": b"tiny dataset\n", "template/tiny_cord.nii.gz": bytes(range(256)) * 40}


@pytest.fixture
def cached(monkeypatch, tmp_path) -> tuple[registry.Dataset, Path]:
    """A tiny data set, its download patched to copy a local zip, a verified copy in the cache
    whose README says 'previous copy'."""
    src = tmp_path / "src"
    for rel, content in FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(content)
    manifest = tmp_path / "tiny.json"
    manifest.write_text(json.dumps(registry.build_manifest(src, "tiny", "r1")))
    archive = tmp_path / "tiny-r1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel, content in FILES.items():
            zf.writestr(f"tiny-r1/{rel}", content)

    def download(ds, url, dest, progress):
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(archive, dest / archive.name))

    ds = registry.Dataset(name="tiny", version="r1", url="https://example.invalid/tiny-r1.zip", sha256=None,
                          folder="tiny", manifest_file=manifest)
    cache = tmp_path / "cache"
    monkeypatch.delenv("SPINEREG_DATA", raising=False)
    monkeypatch.setenv("SPINEREG_CACHE", str(cache))
    monkeypatch.setattr(registry, "_download", download)
    monkeypatch.setattr(registry, "datasets", lambda: {"tiny": ds})
    final = registry.fetch(ds)
    (final / "README.md").write_text("previous copy")
    return ds, final


def _failing_renames(monkeypatch, failing: set[int]) -> list:
    """os.rename (Path.rename's) failing at the calls numbered in ``failing`` (from 1)."""
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) in failing:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    return calls


def test_failed_install_keeps_the_previous_copy_in_place(cached, monkeypatch, capsys):
    ds, final = cached
    calls = _failing_renames(monkeypatch, {2})  # cached copy aside; the new one cannot go in
    assert main(["data", "fetch", "tiny", "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(calls) == 3 and len(err) == 1
    assert str(final) in err[0] and "previous copy" in err[0] and "-- fix:" in err[0]
    monkeypatch.setattr(os, "rename", REAL_RENAME)
    assert (final / "README.md").read_text() == "previous copy" and registry.read_stamp(final)
    assert sorted(p.name for p in final.parent.iterdir()) == ["downloads", "tiny"]


def test_a_previous_copy_that_cannot_be_put_back_is_kept_and_named(cached, monkeypatch, capsys):
    ds, final = cached
    calls = _failing_renames(monkeypatch, {2, 3})  # and the move back fails too
    assert main(["data", "fetch", "tiny", "--force"]) == 2
    monkeypatch.setattr(os, "rename", REAL_RENAME)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(calls) == 3 and len(err) == 1
    tempdirs.remove_leftovers()  # the command's way out
    kept = [p / "old" for p in final.parent.iterdir() if p.name.startswith(".tmp-tiny-")]
    assert len(kept) == 1 and (kept[0] / "README.md").read_text() == "previous copy"
    assert f"mv {kept[0]} {final}" in err[0]
    assert not (kept[0].parent / "unzipped").exists()  # the download's copy is not kept
    os.rename(kept[0], final)  # the fix the error gives: the data set is back
    assert registry.locate(ds) == (final, "cache")
