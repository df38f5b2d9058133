"""Parallel deflate of NIfTI outputs (spinereg.io.fastgz): one standard gzip stream whose bytes
are exactly nibabel's, readable by nibabel, Python's gzip, ``gzip -t`` and ITK (ANTs)."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from spinereg.io.fastgz import ParallelGzipWriter, write_nifti
from spinereg.io.image import save_image


def _field(shape=(40, 36, 90)) -> nib.Nifti1Image:
    x, y, z = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    data = np.stack([np.sin(x + z), np.cos(y * z), 0.1 * x], -1)[:, :, :, None, :].astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([-0.5, 0.5, 0.5, 1.0]))
    img.header.set_intent("vector", (), name="")
    return img


@pytest.mark.parametrize("block", [1 << 16, 1 << 30])  # many blocks in parallel / one block
def test_same_bytes_as_nibabel(tmp_path, block, monkeypatch):
    monkeypatch.setattr("spinereg.io.fastgz.BLOCK", block)
    img = _field()
    nib.save(img, str(tmp_path / "ref.nii.gz"))
    with ParallelGzipWriter(tmp_path / "new.nii.gz", block=block) as fh:
        img.to_file_map(img.make_file_map({"image": fh}))
    assert gzip.open(tmp_path / "new.nii.gz").read() == gzip.open(tmp_path / "ref.nii.gz").read()
    if shutil.which("gzip"):
        assert subprocess.run(["gzip", "-t", str(tmp_path / "new.nii.gz")]).returncode == 0
    back = nib.load(str(tmp_path / "new.nii.gz"))
    assert np.array_equal(np.asanyarray(back.dataobj), img.get_fdata(dtype=np.float32))


def test_itk_reads_it(tmp_path, monkeypatch):
    """ITK (through antspyx) reads a many-block file as nibabel does."""
    ants = pytest.importorskip("ants")
    monkeypatch.setattr("spinereg.io.fastgz.BLOCK", 1 << 16)
    img = _field()
    write_nifti(img, tmp_path / "w.nii.gz")
    got = ants.image_read(str(tmp_path / "w.nii.gz")).numpy()
    assert np.array_equal(got, np.asanyarray(img.dataobj)[:, :, :, 0, :])


def test_dtypes_and_plain_nii(tmp_path):
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.int16, np.float32, np.float64):
        a = (rng.normal(size=(17, 19, 23)) * 20).astype(dtype)
        img = nib.Nifti1Image(a, np.eye(4))
        for name in ("a.nii.gz", "a.nii"):
            nib.save(img, str(tmp_path / f"ref_{name}"))
            save_image(img, tmp_path / name, overwrite=True)
            raw = (gzip.open if name.endswith(".gz") else open)(tmp_path / name, "rb").read()
            ref = (gzip.open if name.endswith(".gz") else open)(tmp_path / f"ref_{name}", "rb").read()
            assert raw == ref, (dtype, name)


def test_failure_leaves_no_partial_stream(tmp_path):
    img = _field((8, 8, 8))
    with pytest.raises(RuntimeError):
        with ParallelGzipWriter(tmp_path / "x.nii.gz") as fh:
            img.to_file_map(img.make_file_map({"image": fh}))
            raise RuntimeError("stop")
    with pytest.raises((EOFError, OSError)):
        gzip.open(tmp_path / "x.nii.gz").read()


def test_deflate_library_per_level(tmp_path):
    """Levels 1-3 go through ISA-L (a dependency: several times faster than zlib, the same
    format); level 0 (--no-gzip: stored blocks) and levels above 3 through zlib. Both streams
    read back to the same bytes."""
    import zlib

    from isal import isal_zlib

    from spinereg.io import fastgz

    assert fastgz.deflate_library(1) is isal_zlib and fastgz.deflate_library(3) is isal_zlib
    assert fastgz.deflate_library(0) is zlib and fastgz.deflate_library(6) is zlib
    data = np.arange(300_000, dtype=np.float32).tobytes()
    for level in (0, 1, 6):
        with ParallelGzipWriter(tmp_path / f"l{level}.gz", level=level, block=1 << 18) as fh:
            fh.write(data)
        assert gzip.decompress((tmp_path / f"l{level}.gz").read_bytes()) == data
    assert (tmp_path / "l1.gz").stat().st_size < 0.8 * (tmp_path / "l0.gz").stat().st_size
