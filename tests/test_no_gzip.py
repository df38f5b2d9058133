"""``--no-gzip``: NIfTI outputs stored without compression inside a standard gzip container (the
``.nii.gz`` names stay; nibabel and the gzip module read the same data back)."""

from __future__ import annotations

import argparse
import gzip

import nibabel as nib
import numpy as np

from spinereg.cli.common import add_result_options, start_run
from spinereg.io import fastgz
from spinereg.io.image import Image, load_image, save_image


def _image(rng) -> Image:
    return Image(rng.normal(size=(40, 30, 20)).astype(np.float32), np.diag([0.5, 0.5, 1.0, 1.0]))


def test_level_zero_is_stored_and_readable(tmp_path, rng):
    img = _image(rng)
    try:
        a = save_image(img, tmp_path / "a.nii.gz")
        fastgz.set_output_level(0)
        b = save_image(img, tmp_path / "b.nii.gz")
    finally:
        fastgz.set_output_level(None)
    assert fastgz.output_level() == fastgz.LEVEL
    raw_a, raw_b = gzip.decompress(a.read_bytes()), gzip.decompress(b.read_bytes())
    assert raw_a == raw_b  # the same NIfTI bytes
    assert b.stat().st_size >= len(raw_b) > a.stat().st_size  # stored: no smaller than the data
    np.testing.assert_array_equal(np.asarray(nib.load(str(b)).dataobj), img.data)
    np.testing.assert_array_equal(load_image(b).data, img.data)


def test_cli_option_sets_the_level():
    p = argparse.ArgumentParser()
    add_result_options(p)
    try:
        start_run(p.parse_args(["--no-gzip"]), "test")
        assert fastgz.output_level() == 0
        start_run(p.parse_args([]), "test")  # each run starts from the default
        assert fastgz.output_level() == fastgz.LEVEL
    finally:
        fastgz.set_output_level(None)
