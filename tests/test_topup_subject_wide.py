"""``sdc topup`` (reverse PE) over the whole subject, not only the cord.

Before session 42 the solver's fine levels ran away where the subject ends along PE: the field
climbed at slopes over 1 into the background (blip-down's Jacobian ``1 - s'`` through zero) and
dragged 1-2 % of the subject with it, 2-10 voxels deep. EPI phantom seeds 0-4, shift error against
the analytic ``vsm_true`` in the subject (the undistorted EPI above 20 % of its 99th percentile),
99th percentile: 1.37/4.87/0.44/4.56/3.45 voxels (max 17-25; the estimated field's 99th percentile
6.2 on seed 1 against a true 1.8) while the in-cord RMS met its claim. The model's Jacobians now
take slopes up to ``topup.MAX_SHIFT_SLOPE`` (0.7): 0.32/0.40/0.36/0.32/0.83 (max 0.65-2.1), in-cord
RMS equal or lower; held out (seeds 5-9, run once): 1.67/0.32/7.77/5.45/0.79 -> 0.41/0.30/0.54/0.38/
0.33. Asserted on seeds 1 and 3, two that failed, at the figure plus about 7 %."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.epi.topup import correct_reverse_pe
from spinereg.phantom.epi import make_epi_phantom

#: seed: (99th percentile, median of the subject-wide shift error, voxels; true 99th percentile of |shift|)
MEASURED = {1: (0.403, 0.059, 1.83), 3: (0.322, 0.043, 1.80)}


@pytest.mark.parametrize("seed", sorted(MEASURED))
def test_field_is_right_over_the_whole_subject(seed):
    p99_claim, median_claim, true_p99 = MEASURED[seed]
    ph = make_epi_phantom(n_volumes=2, seed=seed)
    res = correct_reverse_pe(ph.blip_up, ph.blip_down, pe="j", readout_s=0.03)
    u = ph.epi_undistorted.data
    subject = u > 0.2 * np.percentile(u, 99)
    err = np.abs(res.vsm.data - ph.vsm_true)[subject]
    assert np.percentile(err, 99) <= p99_claim * 1.07, np.percentile(err, 99)  # was 4.87 (seed 1), 4.56 (seed 3)
    assert np.median(err) <= median_claim * 1.1, np.median(err)
    # the field's own spread in the subject is the truth's (was 6.2 / 6.0 voxels against 1.8)
    assert np.percentile(np.abs(res.vsm.data[subject]), 99) == pytest.approx(true_p99, abs=0.15)
    assert np.percentile(np.abs(ph.vsm_true[subject]), 99) == pytest.approx(true_p99, abs=0.01)
