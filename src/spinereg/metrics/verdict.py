"""Pass/warn/fail verdicts of a registration from its scores and documented thresholds.

:func:`judge` turns a ``metrics.json`` dict into a :class:`Verdict`: each score of the command
kind (``register-to-template``, ``register``, ``moco``) is read from the dict through the paths
listed in ``spinereg/data/qc_thresholds.json`` and compared with its bounds there (calibrated on
known-truth runs: docs/qc_calibration.md). The verdict is the worst of the scores, and each score
out of bounds gives one reason naming it, its value and the bound.

:func:`folder_scores` (:mod:`spinereg.metrics.run_scores`) adds the scores that need images, from
an output folder: distances over the slices both images cover in voxels of the coarsest axis,
image similarity before/after and image structure (noise, empty images), the automatic level
check and the S-I scale the labels impose (:mod:`spinereg.metrics.level_check`), identity
results; :func:`~spinereg.metrics.run_scores.derived_scores` combines them with the command's
own metrics.

:func:`score_output_folder` does both and writes the ``qc`` block
``{"verdict", "reasons", "scores", "thresholds_version", "notes"}`` into the folder's
metrics.json (atomically).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from spinereg.errors import InputError, SpineregError
from spinereg.metrics.run_scores import (
    _read_json,
    chain_metric_scores,
    derived_scores,
    folder_scores,
)

__all__ = ["Verdict", "command_kind", "extract_scores", "folder_scores", "judge", "load_thresholds",
           "moco_verdict", "score_output_folder"]

KINDS = ("register-to-template", "register", "moco", "chain")
VERDICTS = ("pass", "warn", "fail")


@dataclass
class Verdict:
    """``verdict`` is pass/warn/fail; ``reasons`` one line per score out of bounds; ``scores`` all
    scores measured (name -> value)."""

    verdict: str
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    thresholds_version: str = ""
    notes: list[str] = field(default_factory=list)

    def as_block(self) -> dict[str, Any]:
        """The ``qc`` block written into metrics.json."""
        out: dict[str, Any] = {"verdict": self.verdict, "reasons": list(self.reasons),
                               "scores": dict(self.scores), "thresholds_version": self.thresholds_version}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@cache
def _default_thresholds() -> str:
    return resources.files("spinereg").joinpath("data/qc_thresholds.json").read_text()


def load_thresholds(path: str | Path | None = None) -> dict:
    """The thresholds table (package default, or a JSON file of the same layout)."""
    if path is None:
        return json.loads(_default_thresholds())
    p = Path(path)
    try:
        table = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read thresholds ({exc})", p,
                         "give a JSON file laid out as spinereg/data/qc_thresholds.json") from exc
    if "kinds" not in table:
        raise InputError("thresholds file has no 'kinds'", p,
                         "give a JSON file laid out as spinereg/data/qc_thresholds.json")
    return table


def _lookup(d: dict, path: str) -> Any:
    cur: Any = d
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def finite_number(v: Any) -> float | None:
    """``v`` as a finite float, or None (None, booleans, text, NaN and infinities)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def extract_scores(metrics: dict, kind: str, thresholds: dict | None = None) -> dict[str, float]:
    """The scores of ``kind`` found in ``metrics`` (name -> value), per the thresholds' paths."""
    table = thresholds or load_thresholds()
    specs = _kind_specs(table, kind)
    scores: dict[str, float] = {}
    for name, spec in specs.items():
        vals = [x for x in (finite_number(_lookup(metrics, p)) for p in spec.get("from", [name])) if x is not None]
        if not vals:
            continue
        combine = spec.get("combine")
        scores[name] = min(vals) if combine == "min" else max(vals) if combine == "max" else vals[0]
    return scores


def _kind_specs(table: dict, kind: str) -> dict:
    kinds = table.get("kinds", {})
    if kind not in kinds:
        raise InputError(f"unknown QC kind {kind!r}", None, f"use one of {', '.join(sorted(kinds))}")
    return kinds[kind]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def judge(metrics: dict, kind: str = "register-to-template", thresholds: dict | None = None,
          extra_scores: dict[str, float] | None = None) -> Verdict:
    """Verdict of one run from its metrics dict (and ``extra_scores`` measured elsewhere).

    A score below ``fail_below`` / above ``fail_above`` fails, below ``warn_below`` / above
    ``warn_above`` warns; the verdict is the worst. A run with none of the kind's scores warns
    ("no scores").
    """
    table = thresholds or load_thresholds()
    specs = _kind_specs(table, kind)
    merged = dict(metrics)
    if extra_scores:
        qc = dict(merged.get("qc") or {})
        qc["scores"] = {**(qc.get("scores") or {}), **extra_scores}
        merged["qc"] = qc
    scores = extract_scores(merged, kind, table)
    level = 0
    reasons: list[str] = []
    for name, value in scores.items():
        spec = specs[name]
        for sev, tag in ((2, "fail"), (1, "warn")):
            lo, hi = spec.get(f"{tag}_below"), spec.get(f"{tag}_above")
            msg = None
            if lo is not None and value < lo:
                msg = f"{tag}: {name} {_fmt(value)} < {_fmt(lo)}"
            elif hi is not None and value > hi:
                msg = f"{tag}: {name} {_fmt(value)} > {_fmt(hi)}"
            if msg:
                reasons.append(msg)
                level = max(level, sev)
                break
    if not scores:
        reasons.append("warn: no scores to judge")
        level = max(level, 1)
    reasons.sort(key=lambda r: not r.startswith("fail"))
    return Verdict(VERDICTS[level], reasons, {k: round(v, 4) for k, v in scores.items()},
                   str(table.get("version", "")))


def moco_verdict(metrics: dict) -> Verdict:
    """Pass/warn/fail of a motion correction from its ``metrics.json`` dict (thresholds of kind
    ``moco``); the block's scores also carry tSNR and the largest framewise displacement, not judged."""
    verdict = judge({k: v for k, v in metrics.items() if k != "qc"}, "moco")
    summary = metrics.get("summary") or {}
    order = ("tsnr_before", "tsnr_after", "image_structure", "pct_outlier_volumes", "fd_mm_max")
    scores = {**{k: summary[k] for k in ("tsnr_before", "tsnr_after", "fd_mm_max") if summary.get(k) is not None},
              **verdict.scores}
    verdict.scores = {k: scores[k] for k in sorted(scores, key=lambda k: order.index(k) if k in order else len(order))}
    return verdict


def command_kind(prov: dict) -> str:
    """QC kind of a provenance record (its ``command``)."""
    cmd = str(prov.get("command", ""))
    if cmd in KINDS:
        return cmd
    if "moco" in cmd:
        return "moco"
    raise InputError(f"no QC thresholds for command {cmd!r}", None, f"QC covers {', '.join(KINDS)}")


def score_output_folder(folder: str | Path, thresholds: dict | None = None, metrics: dict | None = None,
                        write: bool = True, loaded: dict | None = None) -> Verdict:
    """Judge an output folder and (``write``) store the ``qc`` block in its metrics.json.

    ``metrics``: the metrics dict (default: read metrics.json); it gets the ``qc`` block in place.
    Scores that need images (:func:`folder_scores`) are skipped with a note when the inputs named
    in provenance.json are unavailable. ``loaded``: input images already in memory (see
    :func:`spinereg.metrics.run_scores.register_run_scores`).
    """
    from spinereg.io.provenance import write_json

    out = Path(folder)
    if not out.is_dir():
        raise InputError("not a folder", out, "give a spinereg output folder")
    prov = _read_json(out / "provenance.json", "provenance.json")
    mets = metrics if metrics is not None else _read_json(out / "metrics.json", "metrics.json")
    kind = command_kind(prov)
    notes: list[str] = []
    try:
        extra = folder_scores(out, prov, loaded)
    except (SpineregError, ValueError, OSError) as err:  # the verdict never blocks writing the outputs
        extra = {}
        text = err.one_line() if isinstance(err, SpineregError) else f"{type(err).__name__}: {err}"
        notes.append(f"image scores not computed: {text}")
    base = {k: v for k, v in mets.items() if k != "qc"}
    if kind == "chain":
        extra.update(chain_metric_scores(base))
    notes.extend(extra.pop("_notes", []))
    extra.update(derived_scores(extra, base))
    verdict = judge(base, kind, thresholds, extra_scores=extra)
    verdict.scores = {**{k: v for k, v in extra.items() if k not in verdict.scores}, **verdict.scores}
    verdict.notes = notes
    mets["qc"] = verdict.as_block()
    if write:
        write_json(out / "metrics.json", mets, overwrite=True)
    return verdict
