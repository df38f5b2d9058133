"""Data registry: resolution order, download checks (archive hash, per-file manifest), CLI."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from spinereg.cli.main import main
from spinereg.errors import DataNotFoundError, InputError
from spinereg.io import registry
from spinereg.io.registry import (
    Dataset,
    DataVerificationError,
    Manifest,
    build_manifest,
    dataset_path,
    fetch,
    get_dataset,
    locate,
    verify,
)

NAMES = ("PAM50", "MNI-Poly-AMU", "sct_testing_data")


@pytest.fixture
def no_data(monkeypatch, tmp_path) -> Path:
    """No SPINEREG_DATA, and an empty cache of our own; returns the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.delenv("SPINEREG_DATA", raising=False)
    monkeypatch.setenv("SPINEREG_CACHE", str(cache))
    return cache


@pytest.fixture
def with_data(monkeypatch, tmp_path, data_root) -> Path:
    monkeypatch.setenv("SPINEREG_DATA", str(data_root))
    monkeypatch.setenv("SPINEREG_CACHE", str(tmp_path / "cache"))
    return data_root


# -- the registry table ------------------------------------------------------------------------
def test_registry_table():
    table = registry.datasets()
    assert tuple(table) == NAMES
    pam = table["PAM50"]
    assert pam.version == "r20250730"
    assert pam.url == ("https://github.com/spinalcordtoolbox/PAM50/releases/download/r20250730/"
                       "PAM50-r20250730.zip")
    assert pam.folder == "PAM50" and pam.sha256 is None
    assert table["MNI-Poly-AMU"].url.endswith("/r20170310/20170310_MNI-Poly-AMU.zip")
    assert table["sct_testing_data"].version == "r20250506"
    assert table["sct_testing_data"].licence == "MIT"
    assert get_dataset("pam50") is not None and get_dataset("pam50").name == "PAM50"
    with pytest.raises(InputError, match="unknown dataset 'nope'.*PAM50, MNI-Poly-AMU"):
        get_dataset("nope")


def test_manifests_ship_for_every_dataset():
    counts = {}
    for name in NAMES:
        man = get_dataset(name).manifest()
        counts[name] = len(man.files)
        assert all(len(sha) == 64 and size > 0 for sha, size in man.files.values())
    assert counts == {"PAM50": 56, "MNI-Poly-AMU": 57, "sct_testing_data": 132}
    pam = get_dataset("PAM50").manifest()
    assert pam.version == "r20250730"
    assert "template/PAM50_cord.nii.gz" in pam.files
    assert set(pam.unhashed) == {"template/PAM50_t1.nii.gz", "template/PAM50_t2.nii.gz",
                                 "template/PAM50_t2s.nii.gz"}
    assert get_dataset("MNI-Poly-AMU").manifest().unhashed == ("template/MNI-Poly-AMU_T2.nii.gz",)


# -- resolution --------------------------------------------------------------------------------
def test_resolution_through_spinereg_data(with_data):
    for name in NAMES:
        assert dataset_path(name) == with_data / name
        assert locate(name) == (with_data / name, "SPINEREG_DATA")
    assert dataset_path("mni-poly-amu") == with_data / "MNI-Poly-AMU"


def test_spinereg_data_may_list_several_folders(monkeypatch, tmp_path, data_root):
    monkeypatch.setenv("SPINEREG_DATA", os.pathsep.join([str(tmp_path / "absent"), str(data_root)]))
    monkeypatch.setenv("SPINEREG_CACHE", str(tmp_path / "cache"))
    assert dataset_path("PAM50") == data_root / "PAM50"


def _fake_cached(cache: Path, folder: str, version: str) -> Path:
    d = cache / folder
    d.mkdir(parents=True)
    (d / registry.STAMP).write_text(json.dumps({"name": folder, "version": version}))
    return d


def test_resolution_through_cache(no_data):
    # a folder without the stamp of a verified download does not count
    (no_data / "PAM50").mkdir(parents=True)
    assert locate("PAM50") is None
    (no_data / "PAM50").rmdir()
    d = _fake_cached(no_data, "PAM50", "r20250730")
    assert registry.cache_dir() == no_data
    assert dataset_path("PAM50") == d
    assert locate("PAM50") == (d, "cache")


def test_spinereg_data_wins_over_cache(monkeypatch, no_data, data_root):
    _fake_cached(no_data, "PAM50", "r20250730")
    monkeypatch.setenv("SPINEREG_DATA", str(data_root))
    assert dataset_path("PAM50") == data_root / "PAM50"


def test_default_cache_is_the_user_cache(monkeypatch):
    import pooch

    monkeypatch.delenv("SPINEREG_CACHE", raising=False)
    assert registry.cache_dir() == Path(pooch.os_cache("spinereg"))


def test_missing_data_error(no_data):
    with pytest.raises(DataNotFoundError) as info:
        dataset_path("MNI-Poly-AMU")
    text = str(info.value)
    assert "dataset MNI-Poly-AMU not found" in text
    assert str(no_data / "MNI-Poly-AMU") in text
    assert "`spinereg data fetch MNI-Poly-AMU`" in text and "SPINEREG_DATA" in text
    assert "\n" not in text


def test_cli_path_missing_exits_2(no_data, capsys):
    assert main(["data", "path", "PAM50"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("spinereg data: error: dataset PAM50 not found")
    assert "spinereg data fetch PAM50" in lines[0]
    assert main(["data", "path", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_cli_path_and_list(with_data, capsys):
    assert main(["data", "path", "sct_testing_data"]) == 0
    assert capsys.readouterr().out.strip() == str(with_data / "sct_testing_data")
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "VERSION", "LOCATION"]
    assert out[1].split() == ["PAM50", "r20250730", str(with_data / "PAM50"), "(SPINEREG_DATA)"]
    assert out[2].split()[:2] == ["MNI-Poly-AMU", "r20170310"]
    assert out[3].split()[:2] == ["sct_testing_data", "r20250506"]


def test_cli_list_not_downloaded(no_data, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(None, 2)[2] for line in out[1:4]] == ["not downloaded"] * 3
    assert out[4] == f"cache: {no_data}"


# -- verification on the real data -----------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_verify_real_data(with_data, name):
    report = verify(name)
    assert report.ok, report.summary()
    assert report.root == with_data / name
    assert report.checked == len(get_dataset(name).manifest().files)
    assert report.mismatched == [] and report.missing == [] and report.extra == []


def test_cli_verify_real_data(with_data, capsys):
    assert main(["data", "verify", "MNI-Poly-AMU"]) == 0
    # the mirror here lacks the unhashed T2 template: said, not an error (a user was told the
    # template was complete without it before session 48)
    assert capsys.readouterr().out.strip().splitlines() == [
        "not in this copy (optional, unhashed): template/MNI-Poly-AMU_T2.nii.gz",
        "MNI-Poly-AMU: 57 files checked, 0 differ, 0 missing, 0 not in the manifest; "
        "not in this copy (unhashed, optional): MNI-Poly-AMU_T2.nii.gz"]


def test_verify_reports_differences(tmp_path):
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.txt").write_text("beta")
    (root / "c.txt").write_text("gamma")
    man = Manifest.load(_write_manifest(tmp_path / "m.json", root))
    assert verify(_tiny_dataset("file:///x.zip", None, tmp_path / "m.json"), root, man).ok
    (root / "a.txt").write_text("alphA")  # same size, other content
    (root / "sub" / "b.txt").unlink()
    (root / "new.txt").write_text("extra")
    report = verify(_tiny_dataset("file:///x.zip", None, tmp_path / "m.json"), root, man)
    assert not report.ok
    assert report.mismatched == ["a.txt"]
    assert report.missing == ["sub/b.txt"]
    assert report.extra == ["new.txt"]
    assert report.checked == 2
    assert "1 differ, 1 missing" in report.summary() and "differs: a.txt" in report.summary()


# -- fetch ---------------------------------------------------------------------------------
TINY = {"README.md": b"tiny dataset\n", "template/info_label.txt": b"0, cord, tiny_cord.nii.gz\n",
        "template/tiny_cord.nii.gz": bytes(range(256)) * 40}


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


def _write_manifest(path: Path, root: Path) -> Path:
    path.write_text(json.dumps(build_manifest(root, "tiny", "r1")))
    return path


def _zip(path: Path, files: dict[str, bytes], top: str | None = "tiny-r1") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for rel, content in files.items():
            zf.writestr(f"{top}/{rel}" if top else rel, content)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_dataset(url: str, sha: str | None, manifest: Path) -> Dataset:
    return Dataset(name="tiny", version="r1", url=url, sha256=sha, folder="tiny",
                   manifest_file=manifest)


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    """(zip with a top-level folder, manifest of its files)."""
    src = _write_tree(tmp_path / "src", TINY)
    return _zip(tmp_path / "tiny-r1.zip", TINY), _write_manifest(tmp_path / "tiny.json", src)


def test_fetch_installs_verified_download(tmp_path, no_data, tiny):
    archive, manifest = tiny
    ds = _tiny_dataset(archive.as_uri(), _sha(archive), manifest)
    out = fetch(ds)
    assert out == no_data / "tiny"
    assert (out / "template" / "tiny_cord.nii.gz").read_bytes() == TINY["template/tiny_cord.nii.gz"]
    stamp = registry.read_stamp(out)
    assert stamp["version"] == "r1" and stamp["files_verified"] == 3
    assert stamp["archive_sha256"] == _sha(archive)
    assert dataset_path(ds) == out and locate(ds) == (out, "cache")
    assert verify(ds).ok
    # nothing left behind but the dataset (archive and unpack folder removed)
    assert sorted(p.name for p in no_data.iterdir()) == ["downloads", "tiny"]
    assert list((no_data / "downloads").iterdir()) == []
    # a second fetch uses the cache, without downloading
    archive.unlink()
    assert fetch(ds) == out


def test_fetch_unknown_archive_hash_relies_on_manifest(tmp_path, no_data, tiny):
    archive, manifest = tiny
    flat = _zip(tmp_path / "flat.zip", TINY, top=None)  # no top-level folder
    out = fetch(_tiny_dataset(flat.as_uri(), None, manifest))
    assert (out / "README.md").read_bytes() == TINY["README.md"]
    assert registry.read_stamp(out)["archive_sha256_known"] is None


def test_fetch_rejects_bad_archive_hash(no_data, tiny):
    archive, manifest = tiny
    ds = _tiny_dataset(archive.as_uri(), "0" * 64, manifest)
    with pytest.raises(DataVerificationError, match="does not match its archive sha256"):
        fetch(ds)
    assert not (no_data / "tiny").exists()
    assert locate(ds) is None


def test_fetch_rejects_corrupted_file(tmp_path, no_data, tiny):
    _, manifest = tiny
    bad = dict(TINY, **{"template/tiny_cord.nii.gz": bytes(range(256)) * 39 + bytes(256)})
    archive = _zip(tmp_path / "bad.zip", bad)
    ds = _tiny_dataset(archive.as_uri(), None, manifest)  # archive hash unknown: manifest decides
    with pytest.raises(DataVerificationError) as info:
        fetch(ds)
    assert "failed verification" in str(info.value)
    assert "1 differ" in str(info.value) and "differs: template/tiny_cord.nii.gz" in str(info.value)
    assert not (no_data / "tiny").exists()
    assert [p.name for p in no_data.iterdir() if p.name.startswith(".tmp")] == []
    assert list((no_data / "downloads").iterdir()) == []


def test_fetch_rejects_missing_file(tmp_path, no_data, tiny):
    _, manifest = tiny
    archive = _zip(tmp_path / "short.zip", {k: v for k, v in TINY.items() if k != "README.md"})
    with pytest.raises(DataVerificationError, match="1 missing.*missing: README.md"):
        fetch(_tiny_dataset(archive.as_uri(), None, manifest))


def test_fetch_rejects_non_zip(tmp_path, no_data, tiny):
    _, manifest = tiny
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataVerificationError, match="not a readable zip"):
        fetch(_tiny_dataset(junk.as_uri(), None, manifest))


def test_cli_fetch_of_a_non_zip_names_it(monkeypatch, tmp_path, no_data, tiny, capsys):
    """``data fetch --url file://X.tar.gz`` (or a page, or text): one line naming X itself and
    what it is, and the release zip expected. Before session 38 it named the cache's copy of it
    (deleted by then) and advised '--force', which fails the same way."""
    import tarfile

    archive, manifest = tiny
    ds = _tiny_dataset(archive.as_uri(), None, manifest)
    monkeypatch.setattr(registry, "datasets", lambda: {"tiny": ds})
    tgz = tmp_path / "tiny-r1.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(tmp_path / "src", arcname="tiny-r1")
    page = tmp_path / "page.zip"
    page.write_bytes(b"<!DOCTYPE html><html><body>Not Found</body></html>")
    for src, kind in ((tgz, "a gzip file"), (page, "an HTML page")):
        rc = main(["data", "fetch", "tiny", "--url", src.as_uri()])
        err = capsys.readouterr().err
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        line = lines[0]
        assert line.startswith(f"spinereg data: error: {src}: not a readable zip"), line
        assert kind in line and "release .zip" in line, line
        assert f"fix: give --url the release zip {archive.name}" in line, line
        assert "downloads" not in line, line  # not the cache's (deleted) copy
        assert not (no_data / "tiny").exists()
        assert list((no_data / "downloads").iterdir()) == []


def test_fetch_missing_source_is_data_not_found(tmp_path, no_data, tiny):
    _, manifest = tiny
    with pytest.raises(DataNotFoundError, match="download of tiny failed"):
        fetch(_tiny_dataset((tmp_path / "absent.zip").as_uri(), None, manifest))


def test_fetch_force_replaces_cached_copy(tmp_path, no_data, tiny):
    archive, manifest = tiny
    ds = _tiny_dataset(archive.as_uri(), None, manifest)
    out = fetch(ds)
    (out / "README.md").write_text("edited")
    assert not verify(ds).ok
    assert fetch(ds, force=True) == out
    assert (out / "README.md").read_bytes() == TINY["README.md"]
    assert verify(ds).ok


def test_cli_fetch_and_verify(monkeypatch, no_data, tiny, capsys):
    archive, manifest = tiny
    ds = _tiny_dataset(archive.as_uri(), _sha(archive), manifest)
    monkeypatch.setattr(registry, "datasets", lambda: {"tiny": ds})
    assert main(["data", "fetch", "tiny"]) == 0
    assert capsys.readouterr().out.strip() == str(no_data / "tiny")
    assert main(["data", "list"]) == 0
    assert f"tiny  r1       {no_data / 'tiny'} (cache)" in capsys.readouterr().out
    assert main(["data", "verify", "tiny"]) == 0
    capsys.readouterr()
    (no_data / "tiny" / "template" / "tiny_cord.nii.gz").write_bytes(b"corrupt")
    assert main(["data", "verify", "tiny"]) == 2
    out, err = capsys.readouterr()
    assert out.strip() == "differs: template/tiny_cord.nii.gz"
    assert err.startswith("spinereg data: error: ") and "1 differ" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_fetch_real_name_checks_manifest(no_data, tiny, capsys):
    """A zip that is not the PAM50 release is refused: the PAM50 manifest's files are missing."""
    archive, _ = tiny
    assert main(["data", "fetch", "PAM50", "--url", archive.as_uri()]) == 2
    err = capsys.readouterr().err
    # its README.md and template/info_label.txt are files of the manifest too, with other content
    assert "failed verification" in err and "2 differ, 54 missing" in err
    assert len(err.strip().splitlines()) == 1
    assert not (no_data / "PAM50").exists()


def test_ensure_dataset_downloads_when_absent(monkeypatch, tmp_path):
    """Named templates and the demo find data through SPINEREG_DATA, then the cache, then a
    checked download (here intercepted); SPINEREG_OFFLINE=1 turns the download into the error."""
    from spinereg.errors import DataNotFoundError
    from spinereg.io import registry

    monkeypatch.setenv("SPINEREG_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("SPINEREG_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_fetch(ds, progress=False):
        calls.append(ds.name)
        return tmp_path / "cache" / ds.folder

    monkeypatch.setattr(registry, "fetch", fake_fetch)
    assert registry.ensure_dataset("PAM50") == tmp_path / "cache" / "PAM50"
    assert calls == ["PAM50"]
    monkeypatch.setenv("SPINEREG_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="spinereg data fetch PAM50"):
        registry.ensure_dataset("PAM50")


def test_mistyped_spinereg_data_is_named(monkeypatch, tmp_path, data_root):
    """A SPINEREG_DATA that does not provide the dataset says why (missing folder, the dataset folder
    itself instead of its parent, a folder holding other things) in the error and the warning."""
    from spinereg.errors import DataNotFoundError
    from spinereg.io import registry

    monkeypatch.setenv("SPINEREG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPINEREG_OFFLINE", "1")
    cases = {str(tmp_path / "dat"): "does not exist",
             str(data_root / "PAM50"): f"names the dataset folder {data_root / 'PAM50'} itself",
             str(data_root / "sct_testing_data"): "itself"}
    (tmp_path / "other" / "x").mkdir(parents=True)
    cases[str(tmp_path / "other")] = "holds no PAM50/ (it holds: x)"
    for env, said in cases.items():
        monkeypatch.setenv("SPINEREG_DATA", env)
        with pytest.raises(DataNotFoundError) as err:
            registry.ensure_dataset("PAM50")
        assert said in str(err.value), str(err.value)
        assert "\n" not in str(err.value)
    monkeypatch.setenv("SPINEREG_DATA", str(data_root))
    assert registry.data_env_hint("PAM50") == ""
