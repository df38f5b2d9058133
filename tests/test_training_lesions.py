"""training/segment/paint_lesions.py: lesions stay inside the cord, move its signal toward the
CSF's, and leave the target alone (the painter of the session-16 fine-tune, not shipped)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "segment" / "paint_lesions.py"


def _painter():
    spec = importlib.util.spec_from_file_location("paint_lesions", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _slice(cord_level: float, csf_level: float, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    ii, jj = np.mgrid[0:n, 0:n]
    r = np.hypot(ii - 40, jj - 40)
    cord = np.clip(12.5 - r, 0, 1).astype(np.float32)  # 12 mm wide at 0.5 mm pixels
    canal = np.clip(20.5 - r, 0, 1)
    img = 0.2 + (canal - cord) * (csf_level - 0.2) + cord * (cord_level - 0.2)
    return img.astype(np.float32), cord


def test_a_lesion_lies_in_the_cord_between_cord_and_csf():
    pl = _painter()
    for cord_level, csf_level in ((0.35, 0.95), (0.7, 0.15)):  # T2-like, T1-like
        img, cord = _slice(cord_level, csf_level)
        painted = 0
        for seed in range(20):
            out, cover = pl.paint(np.random.default_rng(seed), img, cord)
            d = out - img
            assert np.all(np.abs(d[cord == 0]) < 1e-6)  # nothing outside the cord
            assert cover <= pl.MAX_COVER + 1e-6
            if cover > 0:
                painted += 1
                toward = np.sign(csf_level - cord_level)
                assert (d * toward).max() > 0.18 * abs(csf_level - cord_level)  # measured min 0.195x
                assert (d * toward).min() > -0.05  # never away from the CSF's level
        assert painted >= 19  # measured 20 of 20


def test_no_lesion_without_cord_or_contrast():
    pl = _painter()
    img, cord = _slice(0.5, 0.52)  # cord and CSF alike: a lesion would be invisible
    out, cover = pl.paint(np.random.default_rng(0), img, cord)
    assert cover == 0 and np.array_equal(out, img)
    out, cover = pl.paint(np.random.default_rng(0), img, np.zeros_like(cord))
    assert cover == 0 and np.array_equal(out, img)
