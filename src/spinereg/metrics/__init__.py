"""Registration quality metrics in world space (mm): overlap, surface and centerline distances,
paired label distances, Jacobian determinants and inverse consistency; JSON/CSV reports."""

from spinereg.metrics.centerline import (
    CenterlineResult,
    SliceDistance,
    centerline_distance,
    slice_centers,
)
from spinereg.metrics.consistency import (
    ConsistencyResult,
    Residual,
    inverse_consistency,
    round_trip_residual,
)
from spinereg.metrics.distance import HausdorffResult, hausdorff, surface_points
from spinereg.metrics.jacobian import JacobianResult, determinant_map, jacobian
from spinereg.metrics.labels import LabelDistanceResult, LabelPair, label_centers, label_distances
from spinereg.metrics.overlap import DiceResult, dice
from spinereg.metrics.report import (
    CSV_COLUMNS,
    MetricResult,
    to_csv,
    to_json,
    write_csv,
    write_json,
    write_result,
)

__all__ = [
    "CSV_COLUMNS",
    "CenterlineResult",
    "ConsistencyResult",
    "DiceResult",
    "HausdorffResult",
    "JacobianResult",
    "LabelDistanceResult",
    "LabelPair",
    "MetricResult",
    "Residual",
    "SliceDistance",
    "centerline_distance",
    "determinant_map",
    "dice",
    "hausdorff",
    "inverse_consistency",
    "jacobian",
    "label_centers",
    "label_distances",
    "round_trip_residual",
    "slice_centers",
    "surface_points",
    "to_csv",
    "to_json",
    "write_csv",
    "write_json",
    "write_result",
]
