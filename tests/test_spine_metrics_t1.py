"""Spine measures on the real sct_testing_data/t1 (the same subject as t2) through a registration
from its manual cord mask and its automatic discs, against ``spine_reference_t1`` (measured on
the image without registration, template or method code).

t1 shows C3, C4 and C5 whole: C5, which t2's field of view cuts, is measured here. On this image
the discs are brighter than the marrow (3.5 times), though ``--contrast t1`` assumes darker: before
the disc polarity was read off the image (``endplates.disc_polarity``) no body was measured.
Measured (session 13, the registration given the discs as the job gives them: at their measured
points, moved to PAM50_label_disc's convention): heights C3 -0.96 / -0.23 / +0.15, C4 -0.04 /
-0.05 / +0.39, C5 +0.39 / +0.00 / +0.05 mm (anterior / middle / posterior); tilts C3 superior
-3.9, C3 inferior +1.3, C4 superior -0.9, C4 inferior -1.3, C5 superior -1.7 deg (session 10, the
discs at the label file's voxels: C3 -1.02 / -0.17 / +0.14, C4 -0.05 / -0.09 / +0.48, C5 +0.32 /
-0.05 / +0.13 mm; tilts -3.7, +1.6, -0.9, -2.0, -1.2 deg). Since session 33 (the bodies placed with the
rotation found about the cord carried to them, register.slice_maps): heights within 0.03 mm of
those, tilts C3 superior -4.0, C3 inferior +1.1, C4 superior -0.9, C4 inferior -2.1, C5 superior
-0.7 deg. Since session 34 (each body's mid-sagittal centre placed in its own frame, tilts read in
the body's sagittal plane): heights C3 -0.80 / -0.19 / +0.14, C4 -0.07 / -0.07 / +0.33, C5 +0.41 /
-0.03 / +0.14 mm; tilts C3 superior -3.2, C3 inferior +2.0, C4 superior -0.7, C4 inferior -1.8, C5
superior -1.0 deg. C5's inferior endplate lies 1-3 mm above
the image's lower edge: its disc is out of view on the front plane columns, so the plane stood on
the flatter posterior part and its tilt was +9.8 deg off; since session 11 that tilt is not
reported (``endplates.MIN_CUT_END``), the row says why, and C5's heights stay.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_disc_polarity_follows_the_image():
    from spinereg.metrics.endplates import disc_polarity

    assert disc_polarity("t1", 3.5)[0] == 1 and "brighter" in disc_polarity("t1", 3.5)[1]
    assert disc_polarity("t1", 0.05) == (-1, "")  # the analytic phantom's T1: discs darker
    assert disc_polarity("t1", float("nan")) == (-1, "")
    assert disc_polarity("t2", 0.32) == (1, "")
    assert disc_polarity("ct", 3.0) == (-1, "")  # CT is never switched


@pytest.fixture(scope="module")
def t1_measured(sct_data, tmp_path_factory):
    from spinereg.cli.main import main
    from spinereg.io.image import load_image
    from spinereg.register.template import auto_labeling, register_to_template
    from spinereg.transforms.itk import write_displacement
    from spinereg.vertebrae.outputs import disc_landmarks

    d = sct_data / "t1"
    img, seg = load_image(d / "t1w.nii.gz"), load_image(d / "t1w_seg-manual.nii.gz")
    lab = auto_labeling(img, seg, "t1")
    reg = register_to_template(img, seg, ldisc=disc_landmarks(lab, img.grid, template="PAM50"), template="PAM50", contrast="t1")
    tmp = tmp_path_factory.mktemp("t1")
    warp = write_displacement(reg.warp_template2anat(), tmp / "warp_template2anat.nii.gz")
    out = tmp / "metrics"
    assert main(["spine-metrics", "--warp", str(warp), "--image", str(d / "t1w.nii.gz"), "--contrast", "t1",
                 "-o", str(out)]) == 0
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    prov = json.loads((out / "provenance.json").read_text())
    return {(r["measure"], r["name"]): r for r in rows}, prov, np.asarray(img.data, float)


def test_t1_heights_and_tilts_against_the_reference(t1_measured):
    import spine_reference_t1 as ref

    rows, prov, data = t1_measured
    truth = ref.reference(data)
    assert "brighter" in prov["parameters"]["disc_polarity"]
    err = {(v, k): rows[(f"image_height_{k}", f"C{v}")]["value"] - truth["heights"][v][k]
           for v in ref.LEVELS for k in ref.FRACTIONS}
    e = np.abs(list(err.values()))
    assert np.isfinite(e).all(), err
    # measured: C3 anterior -0.80, the other eight within 0.41 (C5 anterior)
    assert e.max() <= 0.85 and (e <= 0.5).sum() >= 8, err  # max 0.798 (session 41; <= 0.9 asserted before)
    claims = {(3, "anterior"): -0.80, (3, "middle"): -0.19, (3, "posterior"): 0.14, (4, "anterior"): -0.07,
              (4, "middle"): -0.07, (4, "posterior"): 0.33, (5, "anterior"): 0.41, (5, "middle"): -0.03,
              (5, "posterior"): 0.14}  # README (session 34), each asserted within 0.15 mm
    assert all(abs(err[k] - c) <= 0.15 for k, c in claims.items()), err
    tilt = {(v, s): rows[(f"image_endplate_{s}_tilt", f"C{v}")]["value"] - truth["tilts"][(v, s)]
            for v, s in ((3, "superior"), (3, "inferior"), (4, "superior"), (4, "inferior"), (5, "superior"))}
    assert max(abs(x) for x in tilt.values()) <= 3.4, tilt  # max 3.22 (session 41; <= 4.0 asserted before)
    tilt_claims = {(3, "superior"): -3.2, (3, "inferior"): 2.0, (4, "superior"): -0.7, (4, "inferior"): -1.8,
                   (5, "superior"): -1.0}  # README (session 34), each within 0.5 deg
    assert all(abs(tilt[k] - c) <= 0.5 for k, c in tilt_claims.items()), tilt
    c5i = rows[("image_endplate_inferior_tilt", "C5")]
    assert np.isnan(c5i["value"]) and "field of view cuts" in c5i["flag"], c5i
    # C2: its inferior endplate is an endplate, its superior end is the dens
    assert np.isnan(rows[("image_height_middle", "C2")]["value"])
    assert np.isnan(rows[("image_endplate_superior_tilt", "C2")]["value"])
