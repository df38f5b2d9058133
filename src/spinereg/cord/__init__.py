"""Spinal cord geometry: centerline fitting and straightening (curved <-> straight space)."""

from spinereg.cord.centerline import (
    Centerline,
    CenterlineFit,
    centerline_from_seg,
    slice_centres_of_mass,
)
from spinereg.cord.straighten import (
    StraighteningResult,
    ZMap,
    straight_grid_for,
    straighten,
    straightening_error,
    straightening_fields,
)

__all__ = [
    "Centerline",
    "CenterlineFit",
    "StraighteningResult",
    "ZMap",
    "centerline_from_seg",
    "slice_centres_of_mass",
    "straight_grid_for",
    "straighten",
    "straightening_error",
    "straightening_fields",
]
