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
