"""Metric results as JSON and CSV, written atomically.

Every metric returns a dataclass deriving from :class:`MetricResult`: ``as_dict()`` gives plain
JSON-ready values (NaN becomes ``null``) with the metric's name under ``"metric"``, and ``rows()``
gives one row per metric value for CSV.

CSV columns (stable, in this order): ``metric`` (``dice``, ``hausdorff``, ``centerline``,
``labels``, ``jacobian``, ``inverse_consistency``), ``quantity`` (the value's name; its suffix
gives the unit, e.g. ``rms_mm``), ``label`` (label value for per-label rows, else empty),
``z_mm`` (world S-I position for per-slice rows, else empty), ``value`` (the number; empty when
undefined) and ``unit`` (``mm``, ``mm3``, ``%`` or empty for ratios and counts).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spinereg.errors import InputError
from spinereg.io.image import atomic_write

CSV_COLUMNS = ("metric", "quantity", "label", "z_mm", "value", "unit")
OUTPUT_SUFFIXES = (".json", ".csv")


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python (numpy scalars/arrays, tuples, dataclasses; NaN -> None)."""
    if isinstance(value, MetricResult):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.metadata.get("export", True)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    return value


def unit_of(quantity: str) -> str:
    if quantity.endswith("_mm3"):
        return "mm3"
    if quantity.endswith("_mm"):
        return "mm"
    if quantity.startswith("pct_"):
        return "%"
    return ""


class MetricResult:
    """Base of the metric result dataclasses: JSON (``as_dict``) and CSV (``rows``) views."""

    metric: ClassVar[str] = "metric"

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"metric": self.metric}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("export", True):
                out[f.name] = plain(getattr(self, f.name))
        return out

    def rows(self) -> list[dict]:
        """One row per scalar value (nested results flattened as ``outer_inner``)."""
        rows: list[dict] = []

        def walk(d: dict, prefix: str) -> None:
            for key, v in d.items():
                if key == "metric":
                    continue
                name = f"{prefix}{key}"
                if isinstance(v, dict):
                    walk(v, f"{name}_")
                elif isinstance(v, bool):
                    continue
                elif v is None or isinstance(v, int | float):
                    rows.append(self._row(name, v))

        walk(self.as_dict(), "")
        rows.extend(self.item_rows())
        return rows

    def item_rows(self) -> list[dict]:
        """Per-slice or per-label rows (subclasses)."""
        return []

    def _row(self, quantity: str, value: Any, label: Any = "", z_mm: Any = "") -> dict:
        return {"metric": self.metric, "quantity": quantity, "label": label,
                "z_mm": "" if z_mm == "" or z_mm is None else _fmt(z_mm),
                "value": "" if value is None else _fmt(value), "unit": unit_of(quantity)}


def _fmt(v: Any) -> str:
    if isinstance(v, int | np.integer) and not isinstance(v, bool):
        return str(int(v))
    f = float(v)
    return repr(f) if math.isfinite(f) else ""


def to_json(result: MetricResult) -> str:
    """JSON text of a result (strict JSON: undefined values are ``null``)."""
    return json.dumps(result.as_dict(), indent=2, allow_nan=False)


def to_csv(result: MetricResult) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows())
    return buf.getvalue()


def write_json(result: MetricResult, path: str | Path, overwrite: bool = False) -> Path:
    text = to_json(result) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite)


def write_csv(result: MetricResult, path: str | Path, overwrite: bool = False) -> Path:
    text = to_csv(result)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite)


def check_output_suffix(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"unknown output format {p.suffix or '(no suffix)'!r}", p,
                         "name the output .json or .csv")
    return p


def write_result(result: MetricResult, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``result`` as JSON or CSV according to the suffix of ``path``."""
    p = check_output_suffix(path)
    if p.suffix.lower() == ".csv":
        return write_csv(result, p, overwrite)
    return write_json(result, p, overwrite)
