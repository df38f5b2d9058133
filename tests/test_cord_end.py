"""A segmentation that stops short of the cord's end is not the conus (spinereg.vertebrae.cord_end).

Before session 22 every lower end of a segmentation inside the field was reported as the conus:
SCT's PAM50_small_t2 given PAM50_small_cord (which stops about 40 mm above the cord's end in that
image) got a conus of confidence 0.98 at the mask's end and its last discs pulled 9-14 mm down,
unflagged. Measured run of cord below the mask's end: true and automatic masks of the
thoracolumbar phantoms (seeds 0-2) 0-2.5 mm; those true masks cut 25 / 40 mm above the tip
12.5-14 / 20.5-27.5 mm; PAM50_small_cord 23 mm (threshold SHORT_MM = 8)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io.image import load_image
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.cord_end import SHORT_MM
from spinereg.vertebrae.model import CONUS

pytestmark = pytest.mark.realdata


def test_a_mask_short_of_the_cords_end_through_the_command(sct_data, tmp_path):
    folder = sct_data / "template" / "template"
    out = tmp_path / "lab"
    assert main(["label-vertebrae", "-i", str(folder / "PAM50_small_t2.nii.gz"), "-s",
                 str(folder / "PAM50_small_cord.nii.gz"), "-c", "t2", "-o", str(out)]) == 0
    doc = json.loads((out / "PAM50_small_t2_discs.json").read_text())
    assert abs(doc["cord_below_end"]["cord_below_end_mm"] - 23.0) <= 1.0, doc["cord_below_end"]
    assert doc["ambiguous"] and any("stops short of the cord's end" in r for r in doc["ambiguous_reasons"])
    assert CONUS not in [d["value"] for d in doc["discs"]]
    discs = np.asarray(load_image(out / "PAM50_small_t2_labels-disc.nii.gz").data)
    assert CONUS not in np.unique(discs)


@pytest.mark.parametrize("cut_mm,short", [(0, False), (40, True)])
def test_thoracolumbar_phantom_true_and_cut_masks(cut_mm, short, tmp_path):
    from spinereg.phantom.independent import make_independent_subject

    ph = make_independent_subject("thoracolumbar", seed=0)
    d = np.asarray(ph.seg.data).copy()
    if cut_mm:
        idx = np.argwhere(d > 0)
        z = ph.grid.voxel_to_world(idx.astype(float))[:, 2]
        d[tuple(idx[z < z.min() + cut_mm].T)] = 0
    lab = label_vertebrae(ph.image, ph.seg.with_data(d), ph.contrast)
    run = lab.report["cord_below_end"]["cord_below_end_mm"]
    assert (run >= SHORT_MM) == short, run
    assert (CONUS in [x.value for x in lab.discs]) != short
    assert any("stops short" in r for r in lab.report["ambiguous_reasons"]) == short
    if not short:
        assert run == 0.0


def test_a_cord_through_the_lower_edge_is_not_judged(sct_data):
    lab = label_vertebrae(load_image(sct_data / "t2" / "t2.nii.gz"), load_image(sct_data / "t2" / "t2_seg-manual.nii.gz"),
                          "t2")
    assert lab.report["cord_below_end"] is None

