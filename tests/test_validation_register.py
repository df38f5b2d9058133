"""register-to-template accuracy on the independent phantom (truth the solver does not share).

The subject (:func:`spinereg.phantom.independent.make_independent_subject`) is PAM50's anatomy
moved by a deformation family the solver does not model and seen through the real PAM50_small T2
average (the solver, without PAM50_t2, uses its own synthetic contrast). The method is given the
image, the true cord segmentation and two body labels (C3, C5); it is not given the deformation,
the contrast source, the bias field or any other label. Accuracy is the distance between the
estimated and true template points of the subject's cord voxels (mm), plus the S-I error of every
true disc label pushed into the template (a wrong level would be about 15-20 mm).

Measured with the default preset (S-I refinement on); see docs/validation.md:

* ``test`` variant (1 mm, C2-C5, 40 x 56 x ~70), seeds 0/1/2: mean 0.55/0.53/0.33 mm, p95
  0.78/1.58/0.69 mm, worst disc S-I 0.62/0.85/0.70 mm (session 32; earlier 0.50/0.62/0.32,
  0.72/1.64/0.69, seed 3: 0.54/1.69; seed 0's mean went 0.499 -> 0.550 with 5a50ae4, the steps
  made diffeomorphic, 1.5 h after this claim was set, and the 0.10 mm margin hid it until session
  32: git bisect); the two labels alone (the library's default, ``labeling=None``);
* ``full`` variant (0.8 mm, C1-T6, 64 x 320 x ~330) as ``register-to-template -l`` runs it (the
  image labelled automatically before the registration; its measured discs join the two labels
  when its levels agree with them: :mod:`spinereg.register.auto_landmarks`; since session 14 those
  discs are moved to PAM50_label_disc's convention as the bare job's are,
  :mod:`spinereg.vertebrae.convention`), seeds 0-3: mean 0.39/0.53/0.35/0.39 mm, p95
  0.93/1.12/0.89/1.21 mm, worst disc S-I 0.98/1.14/0.76/0.64 mm (0.40/0.56, 0.85/1.19 on seeds 0/1
  before the labeling levelled the slab's amplitude along the cord, later in session 14; at the measured points, session
  14 before the change: 0.42/0.60/0.48/0.51, 0.86/1.51/1.02/1.28, 0.99/1.53/1.09/1.00; the labeling
  agrees on every seed). Seeds 1 and 2 re-measured in session 36: 0.56 / 1.21 / 1.14 and 0.36 /
  0.90 / 0.92 mm (mean / p95 / worst disc): since 10dc18c (session 20, the bright-disc half-width
  floor, chosen on held-out subjects: cervical 44 5.93 -> 0.47 mm) seed 1 was 0.525 -> 0.560 mean,
  1.12 -> 1.21 p95 and seed 2's worst disc 0.76 -> 0.92 (C2/C3 0.45 -> 0.92), which the margins of
  then (0.03 / 0.10 / 0.3) let pass unnoticed: claims updated, margins 0.02 / 0.05 / 0.1. The two labels alone: mean 0.97/1.13/0.65/1.19 mm, p95
  2.94/3.46/2.55/3.48 mm (the old phantom, whose contrast was the solver's own, gave
  0.54-0.69 / 1.36-1.96 mm). The seeds asserted are the best (2) and the worst (1).
"""

from __future__ import annotations

import pytest

from spinereg.phantom.independent import make_independent_subject
from spinereg.register.template import register_to_template

#: seed -> (mean mm, p95 mm, worst disc S-I error mm) measured; asserted with MARGIN
CLAIMS_TEST = {0: (0.55, 0.78, 0.62), 1: (0.53, 1.58, 0.85), 2: (0.33, 0.69, 0.70)}  # session 32
#: with the automatic discs beside the two labels (best and worst of seeds 0-3)
CLAIMS_FULL = {1: (0.56, 1.21, 1.14), 2: (0.36, 0.90, 0.92)}  # session 36 (see the module doc)
MARGIN = (0.03, 0.06, 0.06)  # worst disc +0.2 before session 36; p95 / disc +0.10 / +0.1 before
# session 41, which re-measured 0.550/0.531/0.327, 0.784/1.584/0.691, 0.619/0.859/0.700 (seeds 0/1/2)
MARGIN_FULL = (0.02, 0.05, 0.1)  # (0.03, 0.10, 0.3) before session 36


def _run(variant: str, seed: int, labeling=None) -> tuple[dict, dict, object]:
    ph = make_independent_subject(variant, seed=seed)
    reg = register_to_template(ph.image, ph.seg, labels=ph.labels("body"), template="PAM50", contrast=ph.contrast,
                               labeling=labeling)
    est = reg.template2anat
    return ph.error(est), ph.level_errors(est), reg


def _check(err: dict, levels: dict, claim: tuple[float, float, float], margin=MARGIN) -> None:
    assert err["mean_mm"] <= claim[0] + margin[0], err["mean_mm"]
    assert err["p95_mm"] <= claim[1] + margin[1], err["p95_mm"]
    assert max(levels.values()) <= claim[2] + margin[2], levels


@pytest.mark.parametrize("seed", sorted(CLAIMS_TEST))
def test_small_subject_at_the_claim(data_root, seed):
    err, levels, _ = _run("test", seed)
    _check(err, levels, CLAIMS_TEST[seed])
    assert len(levels) >= 4  # every disc of C2-C5 in the field of view is scored


@pytest.mark.slow
@pytest.mark.parametrize("seed", sorted(CLAIMS_FULL))
def test_full_resolution_subject_at_the_claim(data_root, seed):
    """Issue 10 item 4: <= 0.8 mm mean and <= 2 mm p95 over the whole field of view, from two
    labels, the image and the whole segmentation (the image's own discs)."""
    err, levels, reg = _run("full", seed, labeling="auto")
    assert reg.landmark_report["automatic"]["used"], reg.landmark_report
    _check(err, levels, CLAIMS_FULL[seed], MARGIN_FULL)
    assert err["mean_mm"] <= 0.8 and err["p95_mm"] <= 2.0
