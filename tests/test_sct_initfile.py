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


def test_initfile_flag_as_sct(sct_data, tmp_path, capsys):
    """``-initfile`` (SCT's flag for that text file): the same labeling as ``-initz 55,3``; a file of
    another form refused before any work (exit 2, nothing written)."""
    import json

    from spinereg.cli.main import main

    t1 = sct_data / "t1"
    base = ["label-vertebrae", "-i", str(t1 / "t1w.nii.gz"), "-s", str(t1 / "t1w_seg-manual.nii.gz"), "-c", "t1"]
    assert main([*base, "-initfile", str(t1 / "init_label_vertebrae.txt"), "-o", str(tmp_path / "f")]) == 0
    assert main([*base, "-initz", "55,3", "-o", str(tmp_path / "z")]) == 0
    discs = [json.loads((tmp_path / d / "t1w_discs.json").read_text())["discs"] for d in ("f", "z")]
    assert [(x["value"], x["s_mm"]) for x in discs[0]] == [(x["value"], x["s_mm"]) for x in discs[1]]
    bad = tmp_path / "init"
    bad.write_text("-initcenter 3\n")
    capsys.readouterr()
    assert main([*base, "-initfile", str(bad), "-o", str(tmp_path / "b")]) == 2
    assert "init file" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(["register-to-template", "-i", str(t1 / "t1w.nii.gz"), "-c", "t1", "-initfile", str(bad),
                 "-o", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()
