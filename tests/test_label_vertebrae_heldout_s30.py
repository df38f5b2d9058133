"""Vertebral labeling on the held-out independent phantoms of session 30: seeds 80-85 of the seven
variants of tests/test_label_vertebrae_heldout.py (42 subjects, true segmentations, the contrast
given as a user would), first run with the method as sessions 23-29 left it (357ce82) and
nothing changed after.

Identity right on 42 of 42 (the CSF relabelled axial_thick 81 and 84, both right; five labelings
flagged, all right). Disc MAE <= 2 mm on 41 of 42 (max 1.85, mean 0.735); sagittal_thick 83
places C2/C3-C4/C5 4.7-6.5 mm high (MAE 3.46), flagged (its C1/C2 from the CSF 1.48 times the
template's gap). Conus tip within 0.88 mm. Found on these seeds, not mended: on the T1-like
variants of seeds 80 and 82 five lower cervical dark discs lie +2.07..+3.31 mm from their truth
with confidence >= 0.5 (iso1mm_t1 80, 82; test_t1 80, 82), as does thoracolumbar 84's L1/L2 (+2.1).
Smoothing each tilt's dark response before taking the best tilt was tried on them (docs,
"Fresh held-out seeds", session 30) and not kept."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_label_vertebrae_heldout import (  # noqa: E402
    _run,
    assert_wrong_are,
    confident_but_off,
    relabelled_by_csf,
)

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SEEDS_SESSION30 = range(80, 86)


@pytest.fixture(scope="module")
def results() -> list[dict]:
    return _run(SEEDS_SESSION30)


def test_identity(results):
    assert_wrong_are(results, [])
    relabelled = relabelled_by_csf(results)
    # session 51 (the cord width pooled over thick slices, vertebrae.cordwidth): the chain names
    # axial_thick 81 and 84 right itself (the CSF relabelled both before), and 81, 84, 85 are no
    # longer flagged
    assert relabelled == [], relabelled
    flagged = sorted(r["case"] for r in results if r["ambiguous"])
    assert flagged == ["axial_thick/80", "sagittal_thick/83"], flagged


def test_positions(results):
    mae = {r["case"]: r["mae_mm"] for r in results if r["identity_ok"]}
    over = sorted(c for c, m in mae.items() if m > 2.0)
    assert over == ["sagittal_thick/83"] and mae["sagittal_thick/83"] <= 3.55, (over, mae.get("sagittal_thick/83"))
    s83 = next(r for r in results if r["case"] == "sagittal_thick/83")
    assert s83["ambiguous"] and s83["c1c2"]["ratio"] > 1.2, s83["c1c2"]  # measured 1.476
    rest = np.array([m for m in mae.values() if m <= 2.0])
    assert rest.max() <= 1.90 and rest.mean() <= 0.76, (rest.max(), rest.mean())  # measured 1.85, 0.735
    tl = [r for r in results if r["case"].startswith("thoracolumbar")]
    # conus tip: measured -0.55..+0.88 mm
    assert all(abs(r["errors"][60]) <= 0.95 for r in tl), [r["errors"].get(60) for r in tl]


def test_confidence_tracks_position_error(results):
    # every flagged labeling reports at most half the chain's confidence (confident_but_off checks);
    # six discs of unflagged labelings are off by > 2 mm at confidence >= 0.5: the dark discs of
    # the T1-like seeds 80 and 82 (+2.07..+3.31 mm) and thoracolumbar 84's L1/L2 (+2.10)
    # session 51 (the cord width pooled over thick slices): also axial_thick/82's C5/C6 (unflagged,
    # MAE 1.27 mm)
    assert confident_but_off(results) == ["axial_thick/82:6", "iso1mm_t1/80:6", "iso1mm_t1/80:7", "iso1mm_t1/82:8",
                                          "test_t1/80:5", "test_t1/82:6", "thoracolumbar/84:21"]
