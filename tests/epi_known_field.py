"""Known-field EPI distortions for tests (numpy / scipy only, no spinereg code): truth from outside
the method for ``sdc`` and ``topup`` tests."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline


def bump_field(shape: tuple[int, ...], seed: int, peak: float, centre: tuple[float, float]) -> np.ndarray:
    """A smooth B0 field (Hz): three Gaussian bumps near ``centre`` (the main one ``peak``, the
    others up to 0.6 of it either sign, sigma 4-8 voxels), a 30 % gradient along the third axis and
    a linear gradient of up to 10 Hz across the second."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    bumps = [(peak if k == 0 else peak * rng.uniform(-0.6, 0.6), centre[0] + rng.uniform(-5, 5),
              centre[1] + rng.uniform(-5, 5), rng.uniform(4, 8)) for k in range(3)]
    f = np.zeros(shape)
    for z in range(shape[2]):
        zf = 1 + 0.3 * (z - (shape[2] - 1) / 2) / ((shape[2] - 1) / 2)
        for a, bx, by, sg in bumps:
            f[:, :, z] += zf * a * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sg ** 2))
    return f + (rng.uniform(-10, 10) * (y - shape[1] / 2) / shape[1])[:, :, None]


def distort(u: np.ndarray, v: np.ndarray, axis: int, oversample: int = 10) -> np.ndarray:
    """``u`` distorted along ``axis`` by the voxel shift ``v``: tissue at r appears at r + v(r),
    ``D(y) = U(r(y)) / (1 + v'(r(y)))`` per line (the inverse map by ``np.interp`` on a grid
    ``oversample`` times finer, cubic splines of image and shift, Jacobian modulation)."""
    u, v = np.moveaxis(u, axis, -1), np.moveaxis(v, axis, -1)
    n = u.shape[-1]
    r = np.arange(n, dtype=float)
    rf = np.linspace(-0.5, n - 0.5, oversample * n + 1)
    out = np.zeros_like(u)
    for idx in np.ndindex(u.shape[:-1]):
        sv = CubicSpline(r, v[idx])
        yf, jf = rf + sv(rf), 1 + sv(rf, 1)
        assert np.all(np.diff(yf) > 0)
        rr = np.interp(r, yf, rf, left=np.nan, right=np.nan)
        ok = np.isfinite(rr)
        out[idx][ok] = CubicSpline(r, u[idx])(np.clip(rr[ok], 0, n - 1)) / np.interp(rr[ok], rf, jf)
    return np.moveaxis(out, -1, axis)
