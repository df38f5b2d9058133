"""Shared fixtures. Real-data tests never skip: without the data they fail saying how to get it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def _data_root() -> Path | None:
    env = os.environ.get("SPINEREG_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    return here if here.is_dir() else None


_ROOT = _data_root()
if _ROOT is not None:
    # library lookups (templates by name, the data registry) see the same data as the fixtures
    os.environ.setdefault("SPINEREG_DATA", str(_ROOT))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.fail(
            "reference data not found: set SPINEREG_DATA to a folder holding PAM50/, MNI-Poly-AMU/ "
            "and sct_testing_data/ (or run `spinereg data fetch sct_testing_data`)"
        )
    return root


@pytest.fixture(scope="session")
def sct_data(data_root: Path) -> Path:
    p = data_root / "sct_testing_data"
    assert p.is_dir(), f"{p} missing"
    return p


@pytest.fixture(scope="session")
def pam50_dir(data_root: Path) -> Path:
    p = data_root / "PAM50"
    assert p.is_dir(), f"{p} missing"
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


# -- the two PAM50 layouts (tests/layouts.py): built whatever the reference copy holds -------------
@pytest.fixture(scope="session")
def pam50_mirror(pam50_dir: Path, tmp_path_factory) -> Path:
    """PAM50 without PAM50_t1/t2/t2s (the mirror's layout), as symbolic links."""
    from layouts import build_layout

    return build_layout(pam50_dir, tmp_path_factory.mktemp("layout") / "PAM50", "mirror")


@pytest.fixture(scope="session")
def pam50_full(pam50_dir: Path, sct_data: Path, tmp_path_factory) -> Path:
    """PAM50 as the full release (t1/t2/t2s present: stand-ins from PAM50_small_t2)."""
    from layouts import build_layout

    return build_layout(pam50_dir, tmp_path_factory.mktemp("layout") / "PAM50", "full")


# -- file order for ``pytest -n 2 --dist loadfile --no-loadscope-reorder`` (scripts/test.sh) -------
# xdist hands out whole files in collection order; by default it reorders them by their number of
# tests, which sent a 4-test file of 8 minutes (test_batch_run) after 36 one-second tests and left
# a 2-minute file (test_register_robustness) for the end of stage 1 while the other worker idled.
# Longest first instead (seconds per file and stage: setup + call + teardown from --durations=0 of
# a clean-clone run, session 6, 2 cores shared with other jobs of the session: relative figures;
# files not named here are short and keep their collection order after these).
LONGEST_FIRST = {
    "slow": {"test_batch_run.py": 226, "test_label_vertebrae_fov.py": 130, "test_label_vertebrae_fov_b.py": 130,
             "test_label_vertebrae_heldout.py": 120, "test_label_vertebrae_heldout_s20.py": 120,
             "test_label_vertebrae_heldout_s23.py": 120, "test_label_vertebrae_heldout_s30.py": 120,
             "test_label_vertebrae_small_fov.py": 90,
             "test_register_cord_box.py": 81, "test_label_vertebrae_phantoms.py": 78,
             "test_articulated_registration.py": 130, "test_label_vertebrae_bare.py": 57,
             "test_geometry_robustness.py": 44, "test_diffeomorphic.py": 30, "test_epi_chain.py": 30,
             "test_spine_metrics_endplates.py": 28, "test_label_vertebrae_registration.py": 27, "test_demo.py": 24,
             "test_validation_register.py": 19, "test_moco.py": 18, "test_validation_qc.py": 18,
             "test_outputs_atomic.py": 18, "test_auto_discs_job.py": 18, "test_sdc.py": 18,
             "test_segment_geometry.py": 16, "test_label_vertebrae_moved.py": 15, "test_segment_phantoms.py": 13},
    "not slow": {"test_register_robustness.py": 102, "test_chain.py": 81, "test_spine_metrics.py": 46,
                 "test_register_to_template.py": 41, "test_warp_template.py": 36, "test_register_cord_box.py": 33,
                 "test_sdc.py": 31, "test_validation_layouts.py": 30, "test_outputs_atomic.py": 29,
                 "test_register_multimodal.py": 29, "test_phantom_independent.py": 29, "test_diffeomorphic.py": 28,
                 "test_epi_chain.py": 28, "test_qc_browser.py": 22, "test_moco.py": 22, "test_label_vertebrae.py": 20,
                 "test_segment_geometry.py": 19, "test_outputs_atomic_more.py": 18, "test_qc_report.py": 18,
                 "test_validation_register.py": 17, "test_straighten.py": 16, "test_apply_4d_memory.py": 14,
                 "test_articulated_phantom.py": 13, "test_phantom_template_subject.py": 13,
                 "test_pmj.py": 55, "test_label_vertebrae_brainstem.py": 45, "test_cord_end.py": 25},
}


def pytest_collection_modifyitems(session, config, items):
    """Files ordered longest first for the CI stage selected by ``-m`` (a stable sort: the tests of
    a file keep their order; every worker computes the same order)."""
    weights = LONGEST_FIRST.get((config.option.markexpr or "").strip())
    if weights is None:
        return
    items.sort(key=lambda item: -weights.get(item.path.name, 0))
