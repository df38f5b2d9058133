"""Disc positions placed without the global match's vote where 8 or more discs show bands
(spinereg.vertebrae.label.VOTE_FREE_MIN_BANDS; docs/labeling_bare_image.md, "Disc positions
without the global match's vote").

The vote (the whole-field template match: one scale and shift for the whole spine) helped name
the levels and stayed in the chain that places the discs. On the independent full 0.8 mm C1-T6
phantom, whose spine is stretched unevenly, it pulled the chain towards a uniform stretch: the
`tissue` source's worst seeds had the whole chain compressed by 1.2-1.7 % (found / true span
C2/C3-T6/T7 0.983 on seed 44, 0.990 on seed 9). Measured, bare job (automatic segmentation,
automatic discs, registration with them; scored against the phantom's known mapping, which the
job is not given), before -> after, cord error mean / p95 mm:

- `tissue` 44: 1.033 / 2.008 -> 0.563 / 1.024; `tissue` 9: 0.873 / 1.588 -> 0.465 / 0.888;
- on the 25 seeds the rule was chosen on (0-9, 40-54): `tissue` mean <= 0.6 on 12 -> 23, p95 <= 1.5
  on 16 -> 22; `average` 22 -> 22 and 25 -> 25 (mean of means 0.478 -> 0.475);
- fresh seeds 55-64, run once after the rule was fixed: `tissue` 4 -> 8 and 8 -> 10, `average`
  8 -> 8 and 9 -> 10.

Short fields (t2's 55 mm shows 3 bands) keep the vote: their figures are unchanged
(tests/test_label_vertebrae.py asserts t1's C2/C3 within 0.02 mm of its claim).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

#: seed -> (cord error mean, p95) measured with the rule (mm); before it: 44 1.033 / 2.008, 9 0.873 / 1.588
CLAIMS = {44: (0.563, 1.024), 9: (0.465, 0.888)}


@pytest.mark.parametrize("seed", sorted(CLAIMS))
def test_tissue_full_phantom_bare_job(data_root, seed):
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import auto_labeling, register_to_template
    from spinereg.segment import segment
    from spinereg.vertebrae.evaluate import compare_to_truth
    from spinereg.vertebrae.outputs import disc_landmarks

    ph = make_independent_subject("full", seed=seed, source="tissue")
    seg = segment(ph.image, ph.contrast).seg
    lab = auto_labeling(ph.image, seg, ph.contrast)
    assert lab.report["positions_without_vote"] is True
    r = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})
    assert r["identity_ok"] and not lab.ambiguous, r
    reg = register_to_template(ph.image, seg, ldisc=disc_landmarks(lab, ph.image.grid, template="PAM50"),
                               template="PAM50", contrast=ph.contrast)
    err = ph.error(reg.template2anat)
    mean, p95 = CLAIMS[seed]
    assert err["mean_mm"] <= mean + 0.03 and err["p95_mm"] <= p95 + 0.10, (err["mean_mm"], err["p95_mm"])


def test_short_field_keeps_the_vote(sct_data):
    """t2 (55 mm, 3 bands): the positions' chain keeps the vote."""
    from spinereg.io.image import load_image
    from spinereg.vertebrae import label_vertebrae

    lab = label_vertebrae(load_image(sct_data / "t2" / "t2.nii.gz"), load_image(sct_data / "t2" / "t2_seg-manual.nii.gz"),
                          contrast="t2")
    assert lab.report["positions_without_vote"] is False
