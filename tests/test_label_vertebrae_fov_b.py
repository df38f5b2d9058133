"""Fields of view that start below C2, seeds 73-75 (21 subjects): the second half of
tests/test_label_vertebrae_fov.py (its docstring says what and how), a module of its own so the two
halves run on two workers. First run in session 21 with the method as it stood; nothing changed
after: identity right on 21 of 21, disc MAE max 0.92 mm, mean 0.66; one disc over 2.5 mm (T6-L1 74,
T4/T5 2.64 mm, unflagged); conus within 0.29 mm. Since the phantom paints the conus's last 20 mm
(spinereg.phantom.tissue_contrast.ATLAS_MIN_SHARE, same session; before, its image showed CSF
there), T6-L1 73's MAE is 0.99 mm (0.92 before), the rest unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_label_vertebrae_fov as fov  # noqa: E402

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
results = pytest.fixture(scope="module", name="results")(lambda: fov.run_fovs(fov.SEEDS_B))


def test_identity(results):
    assert len(results) == 21 and all(r["identity_ok"] for r in results), [r["case"] for r in results if not r["identity_ok"]]


def test_positions(results):
    mae = np.array([r["mae_mm"] for r in results])
    # measured 1.06, 0.661 (0.99, 0.666 before session 43's vote-free positions)
    assert mae.max() <= 1.1 and mae.mean() <= 0.68, (mae.max(), mae.mean())
    far = sorted(r["case"] for r in results if r["max_mm"] > 2.5)
    assert far == [], far  # T6-L1/74's T4/T5 was 2.64 mm before session 43's vote-free positions (max now 2.14)
    tl = [r for r in results if r["case"].startswith("T6-L1")]
    assert all(abs(r["errors"][60]) <= 0.3 for r in tl), [r["errors"].get(60) for r in tl]  # measured <= 0.29
