"""Lesion metrics along the cord (SCT's ``sct_analyze_lesion``)."""

from spinereg.lesion.analyze import (
    CSV_COLUMNS,
    LesionReport,
    LesionRow,
    analyze_lesions,
    label_components,
)

__all__ = ["CSV_COLUMNS", "LesionReport", "LesionRow", "analyze_lesions", "label_components"]
