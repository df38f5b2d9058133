"""Vertebral level names as PAM50 numbers them (C1 = 1 ... C7 = 7, T1 = 8 ... T12 = 19, L1 = 20
... L5 = 24, S1 = 25)."""

from __future__ import annotations

import numpy as np

_REGIONS = (("C", 1, 7), ("T", 8, 19), ("L", 20, 24), ("S", 25, 29))

#: the highest vertebral level number (S5); a levels file holding larger values is not one
MAX_LEVEL = _REGIONS[-1][2]


def level_name(level: int) -> str:
    """``3`` -> ``"C3"``, ``8`` -> ``"T1"``, ``20`` -> ``"L1"``."""
    for prefix, lo, hi in _REGIONS:
        if lo <= level <= hi:
            return f"{prefix}{level - lo + 1}"
    return str(level)


def level_number(name: str | int) -> int:
    """``"C3"`` -> ``3``, ``"T1"`` -> ``8``; integers pass through."""
    if isinstance(name, int):
        return name
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    for prefix, lo, hi in _REGIONS:
        if text.startswith(prefix) and text[1:].isdigit():
            n = lo + int(text[1:]) - 1
            if lo <= n <= hi:
                return n
    raise ValueError(f"unknown vertebral level {name!r} (use e.g. C3, T6 or 3)")


def margin_text(margin: float) -> str:
    """An identity margin as every message writes it: two decimals, rounded down, so that a
    margin under a threshold never reads as the threshold (``1.996`` -> ``"1.99"``, not ``"2.00"``);
    ``"unbounded"`` when no other reading was possible (a pin, or the CSF's relabelling, held the
    levels)."""
    if not np.isfinite(float(margin)):
        return "unbounded (no other reading possible under the pin)"
    return f"{np.floor(float(margin) * 100) / 100:.2f}"


def margin_value(margin: float) -> float | None:
    """An identity margin as JSON holds it: two decimals, or None when unbounded (see
    :func:`margin_text`). Before session 50 the hard limits' -1e9 score leaked through as a margin
    of 999999994.44 on pinned runs."""
    return round(float(margin), 2) if np.isfinite(float(margin)) else None


def margin_from_value(value: object) -> float:
    """The inverse of :func:`margin_value`: a JSON identity margin back to a float (None: unbounded)."""
    return float("inf") if value is None else float(value)
