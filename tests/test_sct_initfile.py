"""SCT's ``-initfile`` text (``-initz 55,3``: sct_testing_data's ``t1/init_label_vertebrae.txt``)
given as ``-initlabel`` (session 49, vertebrae.init.sct_init_file). Before, register-to-template
stopped with "not a readable NIfTI label file" (exit 2); now it pins the disc as ``-initz 55,3``
(t1 with its manual segmentation: the same warp_template2anat, max difference 0.0 mm)."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.errors import InputError
from spinereg.io.image import load_image
from spinereg.vertebrae.init import resolve_init, sct_init_file

pytestmark = pytest.mark.realdata


def test_sct_init_text_file_is_initz(sct_data):
    t1 = sct_data / "t1"
    seg = load_image(t1 / "t1w_seg-manual.nii.gz")
    txt = t1 / "init_label_vertebrae.txt"
    assert sct_init_file(str(txt)) == "55,3"
    p, v = resolve_init(None, txt, seg)
    q, w = resolve_init("55,3", None, seg)
    assert v == w == 3 and np.allclose(p, q)
    # t2's file (-initz 34,3) too
    p2, v2 = resolve_init(None, sct_data / "t2" / "init_label_vertebrae.txt", load_image(sct_data / "t2" /
                                                                                         "t2_seg-manual.nii.gz"))
    assert v2 == 3 and np.isfinite(p2).all()


def test_other_text_refused_naming_initz(tmp_path, sct_data):
    bad = tmp_path / "init.txt"
    bad.write_text("-initcenter 3\n")
    with pytest.raises(InputError, match="initz"):
        resolve_init(None, bad, load_image(sct_data / "t1" / "t1w_seg-manual.nii.gz"))
    assert sct_init_file(str(sct_data / "t2" / "labels.nii.gz")) is None  # label images as before


def test_label_vertebrae_cli_accepts_it(sct_data, tmp_path):
    from spinereg.cli.main import main

    t1 = sct_data / "t1"
    rc = main(["label-vertebrae", "-i", str(t1 / "t1w.nii.gz"), "-s", str(t1 / "t1w_seg-manual.nii.gz"), "-c", "t1",
               "-initlabel", str(t1 / "init_label_vertebrae.txt"), "-o", str(tmp_path / "lv")])
    assert rc == 0
