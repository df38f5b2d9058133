"""A labeling whose disc polarity rests on the contrast's prior alone is flagged
(``vertebrae.label.IMAGE_POLARITY_MARGIN``, session 28).

``-c t2`` reads bright discs first and ``-c t1`` dark ones, with a prior of ``PRIOR_BONUS`` (2.0)
chain-score units (session 26). Where the image alone fits the other polarity better, the prior
kept the reading and nothing said so: `test` 116 (development seeds; names right, C2/C3 6.2 mm
high and C4/C5 5.9 mm low) and, held out, `test` 55 (every disc 8-9 mm high, named one level
wrong) and `sagittal_thick` 65 (C3/C4 +4.6 mm) were unflagged, confidences 0.5-0.8. The
threshold is the prior itself (not fitted). Measured on the independent phantoms (true
segmentations, the contrast given as a user would: t1 for the T1-like variants, t2 otherwise):

| set | labelings | unflagged with a wrong name or MAE > 2 mm, before -> after | right ones newly flagged |
|---|---|---|---|
| development, seeds 100-129, seven variants | 210 | 1 -> 0 (`test` 116) | 2 of 196 (`test` 103, 129) |
| held out, seeds 40-45, 50-55, 60-65, same variants | 126 | 2 -> 0 (`test` 55, `sagittal_thick` 65) | 1 of 117 (`test` 63) |

The held-out cases were known before this change (session 26 listed them), so they do not test
the rule blind; its threshold was not chosen on them. `sagittal_thick` 65 lies close to it (the
image prefers dark discs by 0.06). Labelings are flagged, not changed: with a lower prior the
right held-out `sagittal_thick` 43 turns dark and wrong (session 26).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.phantom.independent import make_independent_subject
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.evaluate import compare_to_truth
from spinereg.vertebrae.label import (
    IMAGE_POLARITY_MARGIN,
    POLARITY_MARGIN,
    PRIOR_ALONE,
    PRIOR_BONUS,
)

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SAYS = f"{PRIOR_ALONE} (chain score"
#: (variant, seed): (named right, MAE > 2 mm, image-alone polarity margin as measured)
#: 103 and 63 are right and flagged by the rule (its cost); 117 and sagittal_thick 64 right, not flagged
CASES = {("test", 116): (True, True, -0.42), ("test", 55): (False, True, -0.76),
         ("sagittal_thick", 65): (True, True, -0.06), ("test", 103): (True, False, -0.49),
         ("test", 63): (True, False, -0.39), ("test", 117): (True, False, 1.89),
         ("sagittal_thick", 64): (True, False, 5.15)}


@pytest.fixture(scope="module")
def results() -> dict:
    out = {}
    for (variant, seed) in CASES:
        ph = make_independent_subject(variant, seed=seed)
        lab = label_vertebrae(ph.image, ph.seg, contrast="t2")
        r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
        out[(variant, seed)] = (lab, r)
    return out


def test_prior_alone_is_flagged(results):
    assert IMAGE_POLARITY_MARGIN == 0.0 and PRIOR_BONUS["t2"] == 2.0 and POLARITY_MARGIN == 1.0
    for key, (right, far, image_margin) in CASES.items():
        lab, r = results[key]
        rep = lab.report
        assert bool(r["identity_ok"]) == right and (r["mae_mm"] > 2.0) == far, (key, r["identity_ok"], r["mae_mm"])
        says = [x for x in rep["ambiguous_reasons"] if SAYS in x]
        img = rep["polarity_margin_image"]
        if image_margin is not None and image_margin < 0:
            # bright discs kept only by the prior: flagged with the reason, the margins consistent
            assert says and lab.ambiguous, (key, rep["ambiguous_reasons"])
            assert img == pytest.approx(image_margin, abs=0.02), (key, img)
            assert rep["polarity_margin"] == pytest.approx(img + PRIOR_BONUS["t2"], abs=0.011), key
            assert "-c auto" in says[0] and lab.polarity == 1
            assert max(d.confidence for d in lab.discs) <= 0.5, key  # a flagged labeling's discs
        else:
            assert not says and not lab.ambiguous, (key, rep["ambiguous_reasons"])
            assert img == pytest.approx(image_margin, abs=0.02), (key, img)
