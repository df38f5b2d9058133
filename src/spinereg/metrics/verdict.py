"""Pass/warn/fail verdicts of a registration from its scores and documented thresholds.

:func:`judge` turns a ``metrics.json`` dict into a :class:`Verdict`: each score of the command
kind (``register-to-template``, ``register``, ``moco``) is read from the dict through the paths
listed in ``spinereg/data/qc_thresholds.json`` and compared with its bounds there (fail: cord Dice
< 0.85, any folding, landmark residual > 2 mm, inverse consistency p95 > 1 mm...; warn: Dice <
0.92, residual > 1 mm, Jacobian min < 0.2...). The verdict is the worst of the scores, and each
score out of bounds gives one reason naming it, its value and the bound.

:func:`folder_scores` adds the scores that need images, from an output folder: Hausdorff 95 and
centerline error of the template cord warped to the subject against the subject's segmentation,
and the S-I scaling that the landmarks impose (``label_si_scale``): the subject's arc length
between its first and last landmarks over the template's between the same levels. Labels shifted
by one vertebra pair each subject vertebra with the template's neighbour, which leaves Dice and
landmark residuals perfect (the registration does what the labels say) but changes this scale.

:func:`score_output_folder` does both and writes the ``qc`` block
``{"verdict", "reasons", "scores", "thresholds_version"}`` into the folder's metrics.json
(atomically).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from spinereg.errors import InputError, SpineregError

KINDS = ("register-to-template", "register", "moco")
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


def _number(v: Any) -> float | None:
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
        vals = [x for x in (_number(_lookup(metrics, p)) for p in spec.get("from", [name])) if x is not None]
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


# -- scores from an output folder ----------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"{what} not found", path, "give a spinereg output folder (with metrics.json and "
                         "provenance.json)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON ({exc})", path, "rerun the command with --overwrite") from exc


def _bin(img, thr: float = 0.5):
    return img.with_data((np.asarray(img.data) > thr).astype(np.uint8))


def _surface_scores(moved, target) -> dict[str, float]:
    from spinereg.metrics.centerline import centerline_distance
    from spinereg.metrics.distance import hausdorff

    hd = hausdorff(_bin(moved), _bin(target))
    cl = centerline_distance(_bin(moved), _bin(target))
    return {"hausdorff95_mm": round(hd.hausdorff95_mm, 4), "centerline_rms_mm": round(cl.rms_mm, 4),
            "centerline_max_mm": round(cl.max_mm, 4)}


def label_si_scale(prov: dict, seg) -> dict[str, float]:
    """S-I scale the landmarks impose: subject arc length / template arc length between landmarks.

    Subject landmarks (provenance ``landmarks.subject_mm``) are projected on the centerline of
    ``seg``, the template's on its cord centerline. Returns ``label_si_scale`` (first to last
    landmark), ``label_si_scale_deviation`` = max |ln s| over that span and every segment between
    consecutive landmarks; empty with fewer than two common landmarks.
    """
    from spinereg.cord.centerline import centerline_from_seg
    from spinereg.io.image import load_image
    from spinereg.io.template import load_template
    from spinereg.register.template import template_centerline, template_landmarks

    lm = prov.get("landmarks") or {}
    subj = {int(k): v for k, v in (lm.get("subject_mm") or {}).items()}
    kind = lm.get("kind")
    if len(subj) < 2 or kind is None:
        return {}
    tpl = load_template(prov["template"]["name"])
    tlm = template_landmarks(tpl, kind)
    common = sorted(set(subj) & {int(v) for v in tlm.values})
    if len(common) < 2:
        return {}
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    s_subj, _ = centerline_from_seg(seg).project(np.array([subj[v] for v in common], float))
    s_tpl, _ = template_centerline(tcord).project(tlm.subset(common).points[np.argsort(tlm.subset(common).values)])
    d_subj, d_tpl = np.diff(s_subj), np.diff(s_tpl)
    ok = np.abs(d_tpl) > 1e-6
    if not ok.any():
        return {}
    seg_scales = d_subj[ok] / d_tpl[ok]
    total = float((s_subj[-1] - s_subj[0]) / (s_tpl[-1] - s_tpl[0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.abs(np.log(np.append(seg_scales, total)))
    dev = float(np.nanmax(np.where(np.isfinite(logs), logs, np.inf)))
    return {"label_si_scale": round(total, 4), "label_si_scale_deviation": round(dev, 4)}


def folder_scores(folder: str | Path, prov: dict | None = None) -> dict[str, float]:
    """Scores needing images, computed from an output folder's warps and the inputs it names.

    ``register-to-template``: Hausdorff 95 and centerline RMS/max (mm) of the template cord warped
    to the subject (``warp_template2anat``) vs the subject segmentation, and the landmarks' S-I
    scale. ``register`` (both segmentations given): the same for the warped source segmentation
    vs the destination's.
    """
    from spinereg.io.image import load_image
    from spinereg.transforms.apply import apply_transforms
    from spinereg.transforms.itk import read_displacement

    out = Path(folder)
    prov = prov if prov is not None else _read_json(out / "provenance.json", "provenance.json")
    command = prov.get("command")
    inputs = prov.get("inputs") or {}
    scores: dict[str, float] = {}
    if command == "register-to-template":
        from spinereg.io.template import load_template

        seg = load_image(_input_path(inputs, "seg", out), ndim=3, what="segmentation")
        tpl = load_template(prov["template"]["name"])
        tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
        inv = read_displacement(_existing(out / "warp_template2anat.nii.gz"))
        moved = apply_transforms(tcord, seg.grid, [inv], "linear")
        scores.update(_surface_scores(moved, seg))
        scores.update(label_si_scale(prov, seg))
    elif command == "register":
        if inputs.get("iseg") and inputs.get("dseg"):
            from spinereg.register.multimodal_outputs import stem

            src = load_image(_input_path(inputs, "input", out), ndim=3, what="source image")
            dest = load_image(_input_path(inputs, "dest", out), ndim=3, what="destination image")
            iseg = load_image(_input_path(inputs, "iseg", out), ndim=3, what="source segmentation")
            dseg = load_image(_input_path(inputs, "dseg", out), ndim=3, what="destination segmentation")
            fwd = read_displacement(_existing(out / f"warp_{stem(src, 'src')}2{stem(dest, 'dest')}.nii.gz"))
            moved = apply_transforms(iseg, dseg.grid, [fwd], "linear")
            scores.update(_surface_scores(moved, dseg))
    return scores


def _existing(p: Path) -> Path:
    if not p.is_file():
        raise InputError("output file missing", p, "rerun the command with --overwrite")
    return p


def _input_path(inputs: dict, key: str, folder: Path) -> Path:
    if not inputs.get(key):
        raise InputError(f"provenance.json names no {key!r} input", folder / "provenance.json",
                         "rerun the command that wrote this folder")
    p = Path(inputs[key])
    if not p.is_absolute() and not p.exists():
        p = folder / p
    if not p.is_file():
        raise InputError(f"the {key} input named in provenance.json is gone", p,
                         "restore it, or rerun the registration")
    return p


def command_kind(prov: dict) -> str:
    """QC kind of a provenance record (its ``command``)."""
    cmd = str(prov.get("command", ""))
    if cmd in KINDS:
        return cmd
    if "moco" in cmd:
        return "moco"
    raise InputError(f"no QC thresholds for command {cmd!r}", None, f"QC covers {', '.join(KINDS)}")


def score_output_folder(folder: str | Path, thresholds: dict | None = None, metrics: dict | None = None,
                        write: bool = True) -> Verdict:
    """Judge an output folder and (``write``) store the ``qc`` block in its metrics.json.

    ``metrics``: the metrics dict (default: read metrics.json); it gets the ``qc`` block in place.
    Scores that need images (:func:`folder_scores`) are skipped with a note when the inputs named
    in provenance.json are unavailable.
    """
    from spinereg.register.outputs import write_json

    out = Path(folder)
    if not out.is_dir():
        raise InputError("not a folder", out, "give a spinereg output folder")
    prov = _read_json(out / "provenance.json", "provenance.json")
    mets = metrics if metrics is not None else _read_json(out / "metrics.json", "metrics.json")
    kind = command_kind(prov)
    notes: list[str] = []
    try:
        extra = folder_scores(out, prov)
    except (SpineregError, ValueError, OSError) as err:  # the verdict never blocks writing the outputs
        extra = {}
        text = err.one_line() if isinstance(err, SpineregError) else f"{type(err).__name__}: {err}"
        notes.append(f"image scores not computed: {text}")
    base = {k: v for k, v in mets.items() if k != "qc"}
    verdict = judge(base, kind, thresholds, extra_scores=extra)
    verdict.scores = {**{k: v for k, v in extra.items() if k not in verdict.scores}, **verdict.scores}
    verdict.notes = notes
    mets["qc"] = verdict.as_block()
    if write:
        write_json(out / "metrics.json", mets, overwrite=True)
    return verdict
