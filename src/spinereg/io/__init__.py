"""Images on disk and in world space: loading with checks, atomic saving, orientation, resampling.

The names below are imported on first use (PEP 562), so that importing a light submodule
(``spinereg.io.registry``, ``spinereg.io.provenance``) does not load numpy, scipy and nibabel:
the command line starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.grid import Grid
    from spinereg.io.image import Image, load_image, save_image
    from spinereg.io.orientation import axcodes, reorient, sct_to_nibabel
    from spinereg.io.resample import place_labels, sample_world

_WHERE = {
    "Grid": "spinereg.io.grid",
    "Image": "spinereg.io.image",
    "load_image": "spinereg.io.image",
    "save_image": "spinereg.io.image",
    "axcodes": "spinereg.io.orientation",
    "reorient": "spinereg.io.orientation",
    "sct_to_nibabel": "spinereg.io.orientation",
    "place_labels": "spinereg.io.resample",
    "sample_world": "spinereg.io.resample",
}

__all__ = [
    "Grid",
    "Image",
    "axcodes",
    "load_image",
    "reorient",
    "place_labels",
    "sample_world",
    "save_image",
    "sct_to_nibabel",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'spinereg.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
