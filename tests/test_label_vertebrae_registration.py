"""What every disc buys the template registration: the independent full-resolution phantom
(0.8 mm, 64 x 320 x ~320, C1-T6; spinereg.phantom.independent 'full') registered to PAM50 with
the discs that label-vertebrae finds (--ldisc) instead of two body labels.

Measured with the phantom's true cord segmentation (the segmentation model of issue 9 is not in
the package yet, so this is not yet "from the bare image"), cord mapping error mean / p95 and cord
Dice, seeds 0, 1, 2:

* automatic discs (11 bands, C2/C3-T5/T6, identity right, MAE 0.43/0.59/0.42 mm, and C1/C2 from
  the CSF profile above C2/C3, spinereg.vertebrae.c1c2: -0.34 / +0.69 / +0.69 mm), moved to
  PAM50_label_disc's convention as the job passes them (spinereg.vertebrae.convention, session 13):
  0.377 / 0.914, 0.570 / 1.206, 0.344 / 0.887 mm since session 20 lowered the bright-disc band's
  half-width floor (vertebrae.label.HALF_WIDTH_MIN_MM; 0.377 / 0.914, 0.535 / 1.121, 0.339 / 0.804
  since session 14 levelled the slab's amplitude along the cord for the template match;
  0.404 / 0.859, 0.569 / 1.192, 0.339 / 0.804 before);
  Dice 0.984 / 0.986 / 0.987 (at their measured
  points: 0.448 / 0.995, 0.618 / 1.507, 0.529 / 1.101; at the label file's voxels, as ``--ldisc FILE`` gives them:
  0.514 / 1.095, 0.543 / 1.324, 0.548 / 0.915 mm; with C1/C2 estimated
  from the chain's spacing and left out, before session 10: 0.589 / 1.329, 0.539 / 1.325,
  0.602 / 1.134; Dice 0.982 / 0.983 / 0.985)
* two body labels (3, 5): 0.97 / 2.94, 1.13 / 3.47, 0.65 / 2.55 mm; Dice 0.981 / 0.983 / 0.985
* both, as ``register-to-template -l`` now runs (the automatic discs join the two labels when its
  levels agree, moved to PAM50_label_disc's convention since session 14;
  tests/test_validation_register.py asserts it): 0.39 / 0.93, 0.53 / 1.12, 0.35 / 0.89 mm (seed 3:
  0.39 / 1.21); Dice 0.984 / 0.986 / 0.987 when first measured

sct_testing_data/t2 with its manual segmentation and the discs found with C2/C3 pinned from t1's
init file: Dice 0.977 against the manual segmentation (0.976 with labels.nii.gz); labels.nii.gz's
bodies pushed into PAM50 land 1.5 / 1.3 mm from PAM50's body labels (0.8 / 1.1 when they are the
landmarks). All three seeds are asserted below.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import load_image
from spinereg.io.template import load_template
from spinereg.metrics import dice
from spinereg.phantom.independent import make_independent_subject
from spinereg.register.template import register_to_template
from spinereg.transforms import apply_transforms
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.evaluate import compare_to_truth
from spinereg.vertebrae.outputs import disc_landmarks

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

#: measured; seed 1 0.54 / 1.12 and seed 2 0.34 / 0.80 before session 20 lowered the bright-disc
#: band's half-width floor (vertebrae.label.HALF_WIDTH_MIN_MM; seed 0 unchanged)
CLAIMS = {0: (0.38, 0.91), 1: (0.57, 1.21), 2: (0.34, 0.89)}


@pytest.mark.parametrize("seed", sorted(CLAIMS))
def test_full_phantom_with_automatic_discs(seed):
    ph = make_independent_subject("full", seed=seed)
    lab = label_vertebrae(ph.image, ph.seg, contrast="t2")
    r = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})
    assert r["identity_ok"] and not r["ambiguous"] and len(lab.measured) == 12  # 11 bands + C1/C2 from the CSF
    assert [d.value for d in lab.measured if d.from_csf] == [2]
    reg = register_to_template(ph.image, ph.seg, ldisc=disc_landmarks(lab, ph.image.grid, template="PAM50"), template="PAM50",
                               contrast="t2")
    err = ph.error(reg.template2anat)
    mean, p95 = CLAIMS[seed]
    assert err["mean_mm"] <= mean + 0.03 and err["p95_mm"] <= p95 + 0.1, (err["mean_mm"], err["p95_mm"])
    tcord = load_image(load_template("PAM50").path("cord"), ndim=3, check_finite=False)
    assert dice(apply_transforms(tcord, ph.seg.grid, [reg.template2anat], "linear"), ph.seg).dice >= 0.98  # measured 0.984-0.987
