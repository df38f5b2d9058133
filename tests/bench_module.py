"""Load a script of bench/ as a module: tests that assert a bench's figures use its cases and its
scoring, not a copy of them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str) -> ModuleType:
    """``bench/<name>.py`` as the module ``spinereg_bench_<name>`` (registered in sys.modules, so
    its dataclasses and pickled functions resolve)."""
    spec = importlib.util.spec_from_file_location(f"spinereg_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
