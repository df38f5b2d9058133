"""Acquisition metadata of ``spinereg moco``: which slices share one motion estimate (multiband
factor or BIDS ``SliceTiming``), and the series' sidecar and FSL ``bvals``/``bvecs`` files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spinereg.errors import InputError
from spinereg.io.sanity import require_bvalues


def slice_groups_from_multiband(n_slices: int, multiband: int = 1) -> np.ndarray:
    """Group index of each slice for multiband factor ``multiband``: slice ``k`` is excited with
    ``k + n_slices / multiband``, so its group is ``k % (n_slices / multiband)``."""
    mb = int(multiband)
    if mb < 1:
        raise InputError(f"multiband factor must be >= 1 (got {multiband})", None, "give --multiband 1 or more")
    if n_slices % mb:
        raise InputError(f"{n_slices} slices are not divisible by the multiband factor {mb}", None,
                         "check --multiband (or give SliceTiming in the JSON sidecar)")
    return np.arange(n_slices) % (n_slices // mb)


def slice_groups_from_timing(slice_timing: Sequence[float], n_slices: int, tol_s: float = 1e-4) -> np.ndarray:
    """Group index of each slice from a BIDS ``SliceTiming`` list: slices with the same time
    (within ``tol_s``) were excited together. Groups are numbered by their lowest slice."""
    st = np.asarray(slice_timing, float).ravel()
    if st.size != n_slices:
        raise InputError(f"SliceTiming has {st.size} entries for {n_slices} slices", None,
                         "fix the JSON sidecar or give --multiband instead")
    order = np.argsort(st, kind="stable")
    label = np.empty(n_slices, int)
    g = -1
    last = None
    for k in order:
        if last is None or st[k] - last > tol_s:
            g += 1
            last = st[k]
        label[k] = g
    return _renumber(label)


def _renumber(groups: np.ndarray) -> np.ndarray:
    """Renumber groups by their lowest slice (group index = position along z)."""
    groups = np.asarray(groups, int)
    first = {}
    for k, g in enumerate(groups):
        first.setdefault(int(g), k)
    order = sorted(first, key=first.get)
    remap = {g: n for n, g in enumerate(order)}
    return np.array([remap[int(g)] for g in groups], int)


def read_sidecar(path: str | Path) -> dict:
    """A BIDS JSON sidecar as a dict (InputError if unreadable)."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the JSON sidecar ({type(exc).__name__})", p,
                         "give a valid BIDS .json sidecar") from exc


def _numbers(path: str | Path, what: str) -> np.ndarray:
    p = Path(path)
    try:
        text = p.read_text().replace(",", " ")
        rows = [[float(v) for v in line.split()] for line in text.splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the {what} ({type(exc).__name__})", p,
                         f"give a text file of numbers (FSL {what} format)") from exc
    if not rows or len({len(r) for r in rows}) != 1:
        raise InputError(f"{what} file is empty or ragged", p, f"give an FSL-style {what} file")
    return np.array(rows, float)


def read_bvals(path: str | Path, n_volumes: int) -> np.ndarray:
    """b-values (one per volume) from an FSL ``bvals`` file (one row or one column)."""
    b = _numbers(path, "bvals").ravel()
    if b.size != n_volumes:
        raise InputError(f"{b.size} b-values for {n_volumes} volumes", path,
                         "give the bvals file that belongs to this series")
    require_bvalues(b, path)
    return b


def read_bvecs(path: str | Path, n_volumes: int) -> np.ndarray:
    """b-vectors ``(n_volumes, 3)`` from an FSL ``bvecs`` file (3 rows or 3 columns)."""
    v = _numbers(path, "bvecs")
    if v.shape == (3, n_volumes) and n_volumes != 3:
        v = v.T
    if v.shape != (n_volumes, 3):
        raise InputError(f"bvecs has shape {v.shape}, expected ({n_volumes}, 3) or (3, {n_volumes})", path,
                         "give the bvecs file that belongs to this series")
    return v
