"""The compiled ANTs library of antspyx, loaded without the antspyx Python package.

``import ants`` runs antspyx's ``__init__``, which imports its learning, plotting and statistics
modules (pandas, matplotlib, scikit-learn, statsmodels): about 2-3 s and 250 MB before the first
ANTs call. spinereg only needs ``antsRegistration`` and ITK images made from numpy arrays, both in
the compiled extension ``ants.lib``; this module loads that extension on its own (registered as
``ants.lib``, so a later ``import ants`` in the same process reuses it) and offers the few
helpers the ANTs steps need. When antspyx is already imported, its own ``ants.lib`` is used.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

_LIB: ModuleType | None = None


def _load_extension() -> ModuleType:
    spec = importlib.util.find_spec("ants")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("antspyx is not installed")
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("lib.*")):
            if path.suffix in (".so", ".pyd"):
                lib_spec = importlib.util.spec_from_file_location("ants.lib", path)
                if lib_spec is None or lib_spec.loader is None:
                    continue
                module = importlib.util.module_from_spec(lib_spec)
                sys.modules["ants.lib"] = module
                try:
                    lib_spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop("ants.lib", None)
                    raise
                return module
    raise ImportError("antspyx's compiled library (ants/lib.*.so) not found")


def lib() -> ModuleType:
    """The compiled ANTs extension (``ants.lib``), loaded once."""
    global _LIB
    if _LIB is None:
        if "ants.lib" in sys.modules:
            _LIB = sys.modules["ants.lib"]
        else:
            try:
                _LIB = _load_extension()
            except Exception:  # noqa: BLE001 - an unusual install: the full package still works
                import ants

                _LIB = ants.lib
    return _LIB


class LibImage:
    """An ITK float image owned by the ANTs library, made from a numpy array (voxel axes i, j, k
    as the array's axes), with its physical geometry (ITK/LPS origin, spacing, direction)."""

    def __init__(self, data: np.ndarray, origin: Any = None, spacing: Any = None,
                 direction: Any = None) -> None:
        arr = np.asarray(data, dtype=np.float32)
        ndim = arr.ndim
        self._array = np.array(arr.T.copy(order="C"))  # as antspyx.from_numpy; kept alive
        self.pointer = getattr(lib(), f"fromNumpyF{ndim}")(self._array, self._array.shape[::-1])
        origin = [0.0] * ndim if origin is None else [float(v) for v in origin]
        spacing = [1.0] * ndim if spacing is None else [float(v) for v in spacing]
        direction = np.eye(ndim) if direction is None else np.asarray(direction, dtype=float)
        lib().setOrigin(self.pointer, origin)
        lib().setSpacing(self.pointer, spacing)
        lib().setDirection(self.pointer, direction)

    @property
    def ptr(self) -> str:
        """The pointer string antsRegistration accepts in place of a file name."""
        return lib().ptrstr(self.pointer)


def ants_registration(args: list[str]) -> int:
    """Run ``antsRegistration`` in-process with these command-line arguments; its exit code."""
    return int(lib().antsRegistration([str(a) for a in args]))


def read_affine_2d(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, t, c)`` of a 2D ITK affine ``.mat`` written by antsRegistration: a point ``x`` maps
    to ``A (x - c) + t + c`` (ITK's MatrixOffsetTransformBase, physical coordinates)."""
    import scipy.io

    m = scipy.io.loadmat(str(path))
    key = next(k for k in m if not k.startswith("__") and k != "fixed")
    params = np.asarray(m[key], dtype=float).ravel()
    fixed = np.asarray(m.get("fixed", np.zeros(2)), dtype=float).ravel()[:2]
    if params.size == 6:
        a, t = params[:4].reshape(2, 2), params[4:6]
    elif params.size == 2:  # translation
        a, t = np.eye(2), params
    elif params.size == 3:  # Euler2D: angle, translation
        c, s = np.cos(params[0]), np.sin(params[0])
        a, t = np.array([[c, -s], [s, c]]), params[1:3]
    else:
        raise ValueError(f"unsupported 2D ITK transform with {params.size} parameters: {path}")
    return a, t, fixed
