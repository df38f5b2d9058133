"""Vertebral labeling on the held-out independent phantoms of session 23: seeds 60-65 of the seven
variants of tests/test_label_vertebrae_heldout.py (42 subjects, true segmentations, the contrast
given as a user would), first run after the CSF rule (vertebrae.csf_identity, chosen on seeds
100-129 of axial_thick and 100-105 of the seven variants) was set; nothing was changed after.
Identity right on 40 of 42 (95.2 %; 39 of 42 with the method before it, in the same run). The CSF
relabelled the three axial_thick stacks the chain had named wrong (60: five levels higher, right;
63 and 64: two and three higher, the pinned disc within 2 mm of its truth, but the stacks' weak
bands put another disc 9-14 mm off: still wrong, flagged). Disc MAE <= 2 mm on 39 of the 40 right
ones (max 1.93, mean 0.76); sagittal_thick 65 2.48 mm, unflagged (the same before the rule).
Conus tip within 0.67 mm (the earlier sets: 0.6). Session 25's smoothed dark-disc response (chosen on
seeds 100-129): identity unchanged, disc MAE of the 39 max 1.93, mean 0.67."""

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

SEEDS_SESSION23 = range(60, 66)


@pytest.fixture(scope="module")
def results() -> list[dict]:
    return _run(SEEDS_SESSION23)


def test_identity(results):
    # session 51 (the cord width pooled over thick slices, vertebrae.cordwidth): 42 of 42, none
    # relabelled by the CSF (before: axial_thick 63, 64 wrong, flagged; 60, 63, 64 relabelled)
    assert_wrong_are(results, [])
    relabelled = relabelled_by_csf(results)
    assert relabelled == [], relabelled


def test_positions(results):
    mae = {r["case"]: r["mae_mm"] for r in results if r["identity_ok"]}
    over = sorted(c for c, m in mae.items() if m > 2.0)
    assert over == ["sagittal_thick/65"] and mae["sagittal_thick/65"] <= 2.6, (over, mae.get("sagittal_thick/65"))
    rest = np.array([m for m in mae.values() if m <= 2.0])
    assert rest.max() <= 1.95 and rest.mean() <= 0.70, (rest.max(), rest.mean())  # measured 1.93, 0.67
    tl = [r for r in results if r["case"].startswith("thoracolumbar")]
    # conus tip: measured -0.67..+0.25 mm (the 0.6 of the earlier sets not met on this one)
    assert all(abs(r["errors"][60]) <= 0.7 for r in tl), [r["errors"].get(60) for r in tl]


def test_confidence_tracks_position_error(results):
    # session 26 (flagged labelings' confidences halved): two unflagged discs (before, also axial_thick 60 (2), 63 (2), 64 (1), flagged: seven);
    # session 28: sagittal_thick/65 flagged (dark discs fit it better by 0.06 without -c t2's prior)
    assert confident_but_off(results) == ["thoracolumbar/60:19"]
