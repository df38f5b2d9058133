"""spinereg.robust: the shared robust SD (MAD x 1.4826)."""

from __future__ import annotations

import numpy as np

from spinereg.robust import MAD_TO_SD, robust_sd


def test_robust_sd_of_a_normal_sample_and_its_outliers():
    x = np.random.default_rng(0).normal(3.0, 2.0, 20000)
    assert abs(robust_sd(x) - 2.0) < 0.015  # measured 2.0092
    y = x.copy()
    y[:2000] = 1e6  # 10 % outliers (at 1e6) move it by 15 %, not by orders of magnitude
    assert abs(robust_sd(y) - 2.293) < 0.02  # measured 2.2934


def test_axis_and_centre():
    a = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    assert np.allclose(robust_sd(a, axis=0), MAD_TO_SD * np.array([1.0, 10.0]))
    assert robust_sd([1.0, -2.0, 3.0], centre=0.0) == MAD_TO_SD * 2.0
    assert isinstance(robust_sd([1.0, 2.0]), float)
