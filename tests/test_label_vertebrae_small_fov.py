"""The independent phantom's small C2-C5 fields of view (`test`: the T2 average, `test_t1`: the
T1-like tissue mixture; 40 x 56 mm in-plane, 1 mm, true segmentations), seeds 100-129: the
development set of session 24's disc-step check (``vertebrae.consistency.STEP_RANGE``, derived
from the issue's 0.85-1.15 lengths and the chain's SPACING_SD, not fitted to these cases).

Measured (session 24, with the check): 53 of 60 named right; the 7 wrong `test` 101, 102, 108,
123, 124, 128 and `test_t1` 102; **unflagged wrong 1** (`test_t1` 102; 5 before the check:
`test` 101, 108, 123, 128 are flagged by it, their C3/C4-C4/C5 step 1.35-1.43 times the
template's). No right labeling is newly flagged: the check's reason is also on `test` 109 (right,
flagged already). The positions of this variant are
weak even where the names are right (the T2 average's upper cervical discs show little band):
MAE over 2 mm on 5 of the 53 (`test` 109 3.94, 112 7.25 flagged; 116 4.18, 126 3.89, `test_t1`
115 2.51 unflagged), mean 1.11 mm. Session 25 reads dark discs on their band response smoothed
along the cord (``vertebrae.evidence.smoothed``, chosen on these test_t1 seeds and iso1mm_t1's):
test_t1 102 right (the one unflagged wrong before), 54 of 60 right, no unflagged wrong; mean MAE
of the right 0.935 mm (`test_t1` 0.64, `test` 1.30 unchanged).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.phantom.independent import make_independent_subject
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.evaluate import compare_to_truth

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SEEDS = range(100, 130)
STEP_SAYS = "times the template's (outside"


@pytest.fixture(scope="module")
def results() -> list[dict]:
    rows = []
    for variant, contrast in (("test", "t2"), ("test_t1", "t1")):
        for seed in SEEDS:
            ph = make_independent_subject(variant, seed=seed)
            lab = label_vertebrae(ph.image, ph.seg, contrast=contrast)
            r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
            r.update(case=f"{variant}/{seed}", step=any(STEP_SAYS in x for x in lab.report["ambiguous_reasons"]))
            rows.append(r)
    return rows


def test_identity_and_flags(results):
    assert len(results) == 60
    wrong = sorted(r["case"] for r in results if not r["identity_ok"])
    assert wrong == ["test/101", "test/102", "test/108", "test/123", "test/124", "test/128"], wrong
    # test_t1/102 was wrong and unflagged until session 25's smoothed dark-disc response
    assert [r["case"] for r in results if not r["identity_ok"] and not r["ambiguous"]] == []
    # test/109: right, flagged before the check (renamed from the CSF, two discs), its steps 1.35 / 1.30
    assert sorted(r["case"] for r in results if r["step"]) == ["test/101", "test/108", "test/109", "test/123", "test/128"]


def test_positions_where_named_right(results):
    right = [r for r in results if r["identity_ok"]]
    mae = np.array([r["mae_mm"] for r in right])
    assert mae.mean() <= 0.802 + 0.03, mae.mean()  # 0.935 before session 26 (dark discs tried on t2)
    far = sorted(r["case"] for r in right if r["mae_mm"] > 2.0)
    # session 26: T2 images try dark discs too (vertebrae.label.CONTRAST_POLARITY): test/109 read
    # dark, 3.94 -> 1.62 mm; test/112 dark, 7.25 -> 2.42; test/126 stays bright (3.89) and is
    # flagged now (bright and dark discs fit alike)
    assert far == ["test/112", "test/116", "test/126"], far
    # session 28: test/116 (bright discs kept by -c t2's prior, dark ones score higher without it by
    # 0.42) is flagged by vertebrae.label.IMAGE_POLARITY_MARGIN; it was the one unflagged before
    assert [r["case"] for r in right if r["mae_mm"] > 2.0 and not r["ambiguous"]] == []
