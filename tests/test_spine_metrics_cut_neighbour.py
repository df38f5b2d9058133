"""A body cut by the field of view does not set its whole neighbour's frame (spine-metrics).

Each body's S-I axis is the spine's direction there, from its neighbours' centroids; a cut
body's centroid is where the field of view ends, not its centre. Before session 41 it still
set its neighbour's axis, so a whole body's template-shape heights and tilts depended on how
much of the cut neighbour was in view: on sct_testing_data t2 through its registration's warp
C3's posterior height was 8.90 mm, 9.20 mm on the same image zero-padded along S-I (one more
rim slice of the cut C2 placed), C3's superior tilt -28.3 deg against the reference's -8.7.

Truth:
- PAM50's own bodies (no registration): C3 measured with C2 whole; then C2 cut by the grid's
  edge (the grid cropped through it) at several fractions in view.
- t2: the same measure on t2 and on t2 zero-padded along S-I must agree; the template-shape tilts
  are compared with the independent manual-style reference of tests/spine_reference_t2.py (that
  test lives in tests/test_spine_metrics_warp_fov.py, beside the padded copy it shares).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.realdata


def _c3(lab: np.ndarray, affine: np.ndarray) -> np.ndarray:
    from spinereg.io.image import Image
    from spinereg.metrics.spine import endplate_angles, vertebral_heights

    img = Image(lab, affine)
    h = {r.level: r for r in vertebral_heights(img)}[3]
    e = {r.level: r for r in endplate_angles(img)}[3]
    return np.array([h.anterior_mm, h.middle_mm, h.posterior_mm, e.superior_deg, e.inferior_deg])


def test_template_c3_does_not_follow_how_much_of_c2_is_in_view(pam50_dir):
    """PAM50's C3 with C2 whole: 9.05 / 9.72 / 10.33 mm, tilts -12.04 / -19.01 deg. C2 cut by
    the grid's edge with 10 % to 60 % of it in view: C3 8.77 / 9.71 / 10.36 mm, -13.80 / -20.06
    deg whatever the fraction (its axis the end tangent from C3-C4-C5). Before session 41: C3's
    posterior height 8.29 mm (10 % of C2 in view) to 10.31 (60 %), its superior tilt -28.8 to
    -15.2 deg."""
    from spinereg.io.template import load_template
    from spinereg.metrics.spine_registration import template_bodies

    b = template_bodies(load_template("PAM50"))
    lab = np.asarray(b.data).astype(np.int16)
    lab = np.where(np.isin(lab, [2, 3, 4, 5, 6]), lab, 0).astype(np.int16)
    assert np.argmax(np.abs(b.affine[2, :3])) == 2 and b.affine[2, 2] > 0  # voxel axis 2 runs to S
    k2 = np.argwhere(lab == 2)[:, 2]
    k6 = np.argwhere(lab == 6)[:, 2]
    lo, hi = int(k6.min()) - 5, int(k2.max()) + 5
    whole = _c3(lab[:, :, lo:hi + 1], b.affine @ _shift(lo))
    np.testing.assert_allclose(whole, [9.046, 9.720, 10.332, -12.044, -19.011], atol=0.01)
    n2 = int(k2.max() - k2.min() + 1)
    got = []
    for frac in (0.1, 0.3, 0.6):  # 5 %: the grid's end cuts C3 as well
        top = int(k2.min()) + int(round(frac * n2))  # the grid ends inside C2
        got.append(_c3(lab[:, :, lo:top], b.affine @ _shift(lo)))
    for g in got:
        np.testing.assert_allclose(g, got[0], atol=1e-9)
    np.testing.assert_allclose(got[0], [8.768, 9.706, 10.359, -13.803, -20.063], atol=0.01)
    # against C3 with C2 whole: heights within 0.3 mm, tilts within 1.8 deg
    assert np.all(np.abs(got[0] - whole)[:3] < 0.3) and np.all(np.abs(got[0] - whole)[3:] < 1.8)


def _shift(k0: int) -> np.ndarray:
    t = np.eye(4)
    t[2, 3] = k0
    return t
