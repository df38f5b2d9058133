"""A step between neighbouring discs unlike a spine's flags the labeling (session 24).

Found on a development set (the independent phantom's `test` and `test_t1` variants, C2-C5 on a
40 x 56 mm field of view at 1 mm, seeds 100-129, true segmentations): 7 of 60 wrong, 5 of them
unflagged. Four of those (`test` 101, 108, 123, 128: the T2 average's C2/C3 shows no band, the
chain leaves it out and puts C3/C4 8 mm high) had a step between C3/C4 and C4/C5 of 1.35-1.43
times the template's. ``consistency.STEP_RANGE`` is not fitted to them: the longest subject the labeling
is built for (1.15 times the template) with one vertebra a SPACING_SD taller, 1.3225; the low end
0.85 / 1.15. On 408 right labelings with two or more band discs (development seeds, held-out
40-45 / 50-55 / 60-65, fields of view 70-75, full C1-T6 0-9, true segmentations) the steps reached
0.78-1.297 but on `test` 109 (1.35, flagged already), so none was newly flagged; on the 60
development subjects 5 -> 1 wrong and unflagged (`test_t1` 102, steps 0.94-1.03). sct_testing_data's t2, t1, t2s_uncropped, t2_fake_lesion: 0.85-1.08.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.consistency import STEP_RANGE, disc_steps, step_reason
from spinereg.vertebrae.label import PRIOR_ALONE
from spinereg.vertebrae.model import spine_model
from spinereg.vertebrae.result import Disc

pytestmark = [pytest.mark.realdata]


def _disc(value: int, s: float, source: str = "band") -> Disc:
    return Disc(value, s, np.zeros(3), 0.9, 2.0, 0.0, source=source)


def test_steps_against_the_template(data_root):
    model = spine_model("PAM50")
    ts = dict(zip(model.disc_values.tolist(), model.disc_s.tolist(), strict=True))
    assert STEP_RANGE == pytest.approx((0.85 / 1.15, 1.15 * 1.15))
    # C2/C3 .. C5/C6 at the template's spacing times 1.1, C1/C2 from the CSF and the conus left out
    discs = [_disc(2, ts[2], "csf")] + [_disc(v, 1.1 * ts[v]) for v in (3, 4, 5, 6)] + [_disc(60, -300.0)]
    steps = disc_steps(discs, model)
    assert [(st["from"], st["to"]) for st in steps] == [("C2/C3", "C3/C4"), ("C3/C4", "C4/C5"), ("C4/C5", "C5/C6")]
    assert all(st["ratio"] == pytest.approx(1.1, abs=1e-3) for st in steps)
    assert step_reason(steps) is None
    # a disc left out: the step spans two template intervals and is scored against both
    assert disc_steps([_disc(3, ts[3]), _disc(5, ts[5])], model)[0]["ratio"] == pytest.approx(1.0)
    long = [_disc(3, ts[3]), _disc(4, ts[4]), _disc(5, ts[4] - 1.4 * (ts[4] - ts[5]))]
    why = step_reason(disc_steps(long, model))
    assert why is not None and why.startswith("C3/C4 and C4/C5") and "1.40 times" in why
    short = [_disc(3, ts[3]), _disc(4, ts[3] - 0.7 * (ts[3] - ts[4]))]
    assert "0.70" in step_reason(disc_steps(short, model))


@pytest.mark.slow
def test_test_variant_stretched_steps_are_flagged(data_root):
    """The four development subjects above flagged with the step's reason (wrong, as before);
    `test` 116 (right, its longest step 1.297: the closest a right labeling came) not flagged by the
    step (flagged since session 28 for another reason: its bright discs rest on -c t2's prior)."""
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.vertebrae.evaluate import compare_to_truth

    want = {101: 1.43, 108: 1.41, 123: 1.35, 128: 1.35, 116: None}
    for seed, ratio in want.items():
        ph = make_independent_subject("test", seed=seed)
        lab = label_vertebrae(ph.image, ph.seg, contrast="t2")
        r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
        steps = lab.report["disc_steps"]
        top = max(st["ratio"] for st in steps)
        if ratio is None:
            assert r["identity_ok"] and top == pytest.approx(1.297, abs=0.01), (seed, steps)
            reasons = lab.report["ambiguous_reasons"]
            assert not any("times the template's" in x for x in reasons), reasons
            assert lab.ambiguous and any(PRIOR_ALONE in x for x in reasons), reasons
            continue
        assert not r["identity_ok"] and lab.ambiguous, seed
        assert top == pytest.approx(ratio, abs=0.01), (seed, steps)
        assert any("times the template's (outside 0.74-1.32" in x for x in lab.report["ambiguous_reasons"]), seed
