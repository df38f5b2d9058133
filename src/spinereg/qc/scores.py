"""Scores of a run as the QC report shows them: the headline values, the verdict, and each score
beside its pass/warn/fail bounds (``spinereg/data/qc_thresholds.json``) with a one-line meaning."""

from __future__ import annotations


# -- scores ---------------------------------------------------------------------------------------
def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif _num(v) is not None:
            out[key] = _num(v)
    return out


def scores_from_metrics(kind: str, metrics: dict) -> dict[str, float]:
    """The headline scores of a run from metrics.json, named as the verdict's ``qc.scores`` (whose
    values, and extra scores, win where the block is present)."""
    s: dict[str, float | None] = {}
    if kind == "register-to-template":
        s["cord_dice"] = _num(metrics.get("cord_dice_subject_space_zb"))
        s["landmark_max_residual_mm"] = _num((metrics.get("landmarks") or {}).get("max_residual_mm"))
        jacs = [metrics.get(k) or {} for k in ("jacobian_template2anat_in_cord", "jacobian_anat2template_in_cord")]
        mins = [_num(j.get("min")) for j in jacs if _num(j.get("min")) is not None]
        fold = [_num(j.get("pct_folding")) for j in jacs if _num(j.get("pct_folding")) is not None]
        s["jacobian_min"] = min(mins) if mins else None
        s["pct_folding"] = max(fold) if fold else None
        s["inverse_consistency_p95_mm"] = _num((metrics.get("inverse_consistency_mm") or {}).get("p95"))
    elif kind == "register":
        s["cord_dice"] = _num(metrics.get("cord_dice_dest_zb"))
        j = metrics.get("jacobian_src2dest") or {}
        s["jacobian_min"] = _num(j.get("min"))
        s["pct_folding"] = _num(j.get("pct_folding"))
        s["inverse_consistency_p95_mm"] = _num((metrics.get("inverse_consistency_mm") or {}).get("p95"))
    elif kind == "chain":
        dices = [_num(m.get("cord_dice_zb")) for m in metrics.values() if isinstance(m, dict)]
        dices = [d for d in dices if d is not None]
        s["cord_dice"] = min(dices) if dices else None
    elif kind == "moco":
        summary = metrics.get("summary") or {}
        for k in ("max_abs_shift_mm", "tsnr_before", "tsnr_after"):
            s[k] = _num(summary.get(k))
    else:
        s.update(_flatten({k: v for k, v in metrics.items() if k not in ("qc", "versions")}))
    qc = metrics.get("qc")
    if isinstance(qc, dict) and isinstance(qc.get("scores"), dict):
        s.update(_flatten(qc["scores"]))
    return {k: round(v, 4) for k, v in s.items() if v is not None}


def verdict_of(metrics: dict) -> dict:
    """``{"verdict": "pass|warn|fail", "reasons": [...]}`` from metrics' ``qc`` block, else not scored."""
    qc = metrics.get("qc")
    if isinstance(qc, dict) and qc.get("verdict") in ("pass", "warn", "fail"):
        reasons = qc.get("reasons") or []
        return {"verdict": qc["verdict"], "reasons": [str(r) for r in reasons]}
    return {"verdict": "not scored", "reasons": []}


#: one-line meanings shown beside scores the thresholds table does not document
MEANINGS = {
    "cord_dice": "overlap of the registered cord with the reference cord (1 = perfect)",
    "jacobian_min": "smallest local volume change of the warp (<= 0 means folding)",
    "pct_folding": "percent of voxels where the warp folds onto itself",
    "inverse_consistency_p95_mm": "how far a point lands from itself after the warp and its inverse (mm)",
    "landmark_max_residual_mm": "largest distance between a subject landmark and its template landmark (mm)",
    "hausdorff95_mm": "95th percentile distance between the two cord surfaces (mm)",
    "centerline_rms_mm": "RMS distance between the two cord centerlines (mm)",
    "centerline_max_mm": "largest distance between the two cord centerlines (mm)",
    "label_si_scale": "superior-inferior stretch the landmarks impose on the subject (1 = none)",
    "cord_dice_template_space": "overlap of the subject cord warped to the template with the template cord",
    "cord_dice_src": "overlap of the destination cord warped to the source with the source cord",
    "max_abs_shift_mm": "largest motion estimated for a volume (mm)",
    "tsnr_before": "temporal SNR of the input series",
    "tsnr_after": "temporal SNR after motion correction",
}


def _one_line(text: str, limit: int = 150) -> str:
    """The first clause of a documentation string, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    for sep in ("; ", ". "):
        if sep in text:
            text = text.split(sep)[0]
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _bounds(spec: dict) -> str:
    parts = []
    for tag in ("fail", "warn"):
        for side, op in (("below", "<"), ("above", ">")):
            v = spec.get(f"{tag}_{side}")
            if v is not None:
                parts.append(f"{tag} {op} {v:g}")
    return ", ".join(parts)


def _state(value: float, spec: dict) -> str:
    for tag in ("fail", "warn"):
        lo, hi = spec.get(f"{tag}_below"), spec.get(f"{tag}_above")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return tag
    return "pass" if spec else ""


def score_table(kind: str, scores: dict[str, float]) -> list[dict]:
    """``[{"name", "value", "state", "bounds", "meaning"}]``: every score of a run beside its
    documented bounds (``state`` pass/warn/fail, "" when the score has no bounds)."""
    from spinereg.metrics.verdict import load_thresholds

    try:
        specs = load_thresholds().get("kinds", {}).get(kind, {})
    except Exception:  # noqa: BLE001 - the table must not lose the report
        specs = {}
    rows = []
    for name, value in scores.items():
        spec = specs.get(name) or {}
        meaning = _one_line(spec["doc"]) if spec.get("doc") else MEANINGS.get(name, "")
        rows.append({"name": name, "value": value, "state": _state(value, spec) if spec else "",
                     "bounds": _bounds(spec), "meaning": meaning})
    return rows
