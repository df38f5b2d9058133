"""What the disc label file holds and what the JSON says it holds come from one rule
(:func:`spinereg.vertebrae.outputs.written_discs`), and an ``-initfile`` error names the init file.

Truth: ``t1``'s ``init_label_vertebrae.txt`` (slice 55 = C2/C3, z = 33.7 mm), which this subject's
``t2/labels.nii.gz`` confirms (t1 and t2 share one world space): the discs C2/C3..C5/C6 are read
at z = 33.4, 15.0, -2.0, -16.4 mm and C1/C2 (no band) is placed by the chain's spacing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.outputs import disc_label_image, labeling_document, written_discs
from spinereg.vertebrae.result import Disc

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def t1(sct_data):
    image = load_image(sct_data / "t1" / "t1w.nii.gz")
    seg = load_image(sct_data / "t1" / "t1w_seg-manual.nii.gz")
    return image, label_vertebrae(image, seg, contrast="t1")


def _file_values(image, lab) -> list[int]:
    vol = np.asarray(disc_label_image(image, lab).data)
    assert all((vol == v).sum() == 1 for v in np.unique(vol) if v)
    return sorted(int(v) for v in np.unique(vol) if v)


def test_label_file_and_json_share_one_rule_on_t1(t1):
    image, lab = t1
    doc = labeling_document(lab, image.grid)
    assert [d.value for d in lab.discs] == [2, 3, 4, 5, 6] and lab.discs[0].estimated
    # z of the C2/C3 disc against the init file's slice 55 (33.68 mm): 33.44 measured
    assert abs(lab.discs[1].point[2] - 33.44) <= 0.3
    written = [d.value for d in written_discs(lab, image.grid)]
    assert written == [3, 4, 5, 6]
    assert [x["value"] for x in doc["discs"] if x["in_label_file"]] == written == _file_values(image, lab)


def test_two_discs_on_one_voxel_json_names_the_one_kept(t1):
    """A conus tip 0.4 mm below the last disc (PAM50's lies 0.5 mm from its L1/L2 disc) lands on
    that disc's voxel; the voxel keeps the later value. Before session 50 the JSON said both
    discs were in the label file (in_label_file true for C5/C6 and the conus) while the file held
    only 60."""
    image, lab = t1
    last = lab.discs[-1]
    conus = Disc(60, last.s - 0.4, np.asarray(last.point) + [0.0, 0.0, -0.4], 0.5, 1.0, 0.0)
    lab2 = dataclasses.replace(lab, discs=[*lab.discs, conus])
    doc = labeling_document(lab2, image.grid)
    claimed = [x["value"] for x in doc["discs"] if x["in_label_file"]]
    assert _file_values(image, lab2) == [3, 4, 5, 60]
    assert claimed == [3, 4, 5, 60]
    assert [d.value for d in written_discs(lab2, image.grid)] == [3, 4, 5, 60]


def test_initfile_slice_past_the_image_names_the_init_file(sct_data, tmp_path):
    init = tmp_path / "init_label_vertebrae.txt"
    init.write_text("-initz 999,3\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spinereg.cli.main", "label-vertebrae", "-i", str(sct_data / "t2" / "t2.nii.gz"),
           "-s", str(sct_data / "t2" / "t2_seg-manual.nii.gz"), "-initfile", str(init), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(init) in lines[0] and "t2_seg-manual" not in lines[0]
    assert "outside the image (0..54 along S-I)" in lines[0] and "fix:" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_initfile_bad_text_names_the_init_file(sct_data, tmp_path):
    init = tmp_path / "init.txt"
    init.write_text("-initz 34\n")
    cmd = [sys.executable, "-m", "spinereg.cli.main", "label-vertebrae", "-i", str(sct_data / "t2" / "t2.nii.gz"),
           "-s", str(sct_data / "t2" / "t2_seg-manual.nii.gz"), "-initfile", str(init), "-o", str(tmp_path / "o")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and str(init) in r.stderr and "Traceback" not in r.stderr
    assert json.dumps(r.stdout) == '""'
