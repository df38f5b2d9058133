"""Scoring a labeling against known disc positions (phantoms, manual labels).

Errors are measured along the cord: each true disc point is projected onto the labeling's
centerline and compared with the found disc of the same value. Identity is right when every found
disc that lies within ``match_mm`` of a true disc carries that disc's value and no true disc in
view is matched by a disc of another value.
"""

from __future__ import annotations

import numpy as np

from spinereg.vertebrae.result import VertebralLabeling


def compare_to_truth(labeling: VertebralLabeling, truth: dict[int, np.ndarray], match_mm: float = 8.0,
                     edge_mm: float = 5.0) -> dict:
    """``truth``: {disc value: world point}. Returns errors (mm, signed, found minus true) per
    value, their mean absolute and max, ``identity_ok``, the true discs more than ``edge_mm``
    inside the segmented cord that were not found (``missing``), and ``ambiguous``."""
    cl = labeling.centerline
    vals = sorted(int(v) for v in truth if int(v) not in (1, 2))
    if not vals:
        return {"errors": {}, "mae_mm": float("nan"), "max_mm": float("nan"), "identity_ok": True,
                "missing": [], "ambiguous": labeling.ambiguous}
    s_true, _ = cl.project(np.array([truth[v] for v in vals], float))
    s_true = dict(zip(vals, s_true.tolist(), strict=True))
    found = {d.value: d for d in labeling.discs}
    errors = {v: float(found[v].s - s_true[v]) for v in vals if v in found}
    identity_ok = True
    for d in labeling.discs:
        near = [v for v in vals if abs(s_true[v] - d.s) <= match_mm]
        if near and d.value not in near:
            identity_ok = False
        if d.value in s_true and abs(s_true[d.value] - d.s) > match_mm:
            identity_ok = False
    inner = [v for v in vals if v != 60 and edge_mm <= s_true[v] <= cl.length - edge_mm]
    missing = [v for v in inner if v not in found]
    err = np.abs([e for v, e in errors.items() if v != 60])
    return {"errors": {k: round(v, 2) for k, v in errors.items()},
            "mae_mm": float(err.mean()) if err.size else float("nan"),
            "max_mm": float(err.max()) if err.size else float("nan"),
            "identity_ok": bool(identity_ok and not missing), "missing": missing,
            "ambiguous": bool(labeling.ambiguous)}
