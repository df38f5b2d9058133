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
# Longest first instead (seconds per stage, measured with --durations on 2 shared cores at load 8-13:
# relative figures; files not named here are short and keep their collection order after these).
LONGEST_FIRST = {
    "slow": {"test_batch_run.py": 1206, "test_articulated_registration.py": 409,
             "test_label_vertebrae_phantoms.py": 369, "test_spine_metrics_endplates.py": 247, "test_epi_chain.py": 197,
             "test_diffeomorphic.py": 153, "test_auto_discs_job.py": 140, "test_demo.py": 139,
             "test_validation_qc.py": 111, "test_label_vertebrae_registration.py": 93, "test_sdc.py": 72,
             "test_geometry_robustness.py": 71, "test_validation_register.py": 70, "test_moco.py": 66,
             "test_polyrigid.py": 51, "test_segment_pipelines.py": 46, "test_segment_phantoms.py": 46,
             "test_label_vertebrae_bare.py": 46, "test_segment_geometry.py": 42, "test_phantom_independent.py": 41},
    "not slow": {"test_register_to_template.py": 153, "test_register_robustness.py": 141, "test_chain.py": 93,
                 "test_sdc.py": 64, "test_spine_metrics.py": 60, "test_warp_template.py": 59,
                 "test_segment_geometry.py": 57, "test_phantom_independent.py": 57, "test_moco.py": 56,
                 "test_validation_layouts.py": 54, "test_qc_browser.py": 48, "test_label_vertebrae.py": 46,
                 "test_epi_chain.py": 46, "test_outputs_atomic.py": 45, "test_outputs_atomic_more.py": 36,
                 "test_qc_report.py": 33, "test_articulated_phantom.py": 31, "test_validation_register.py": 31,
                 "test_straighten.py": 27, "test_geometry_robustness.py": 24, "test_apply_4d_memory.py": 23,
                 "test_phantom_template_subject.py": 22, "test_segment.py": 20, "test_ants_steps.py": 19},
}


def pytest_collection_modifyitems(session, config, items):
    """Files ordered longest first for the CI stage selected by ``-m`` (a stable sort: the tests of
    a file keep their order; every worker computes the same order)."""
    weights = LONGEST_FIRST.get((config.option.markexpr or "").strip())
    if weights is None:
        return
    items.sort(key=lambda item: -weights.get(item.path.name, 0))
