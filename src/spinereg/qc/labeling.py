"""QC page of a vertebral labeling: the cord-frame sagittal view with every disc and level name,
the confidence per disc, and a warning for any gap or ambiguity.

``write_labeling_page(image, labeling, qc_root)`` writes ``QCROOT/labeling/<image>/index.html``
with an inline PNG (opens from file://, no network). The view is the image resampled in the
cord's frame (rows: arc length along the cord, superior up; columns: depth, anterior right), so
the same picture serves sagittal, axial and 3D acquisitions.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.errors import OutputError
from spinereg.io.image import Image, atomic_write, check_writable
from spinereg.vertebrae.names import margin_text
from spinereg.vertebrae.orientation import UPSIDE_DOWN

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.vertebrae.result import Disc, VertebralLabeling


def check_qc_root(qc_root: str | Path) -> Path:
    """Refuse a QC root that is a file, before any work is done."""
    p = Path(qc_root)
    if p.exists() and not p.is_dir():
        raise OutputError("QC root is a file, not a folder", p, "give a folder for --qc")
    return p


#: the figure's tag of a disc placed without a band, by its source
_SOURCE_TAG = {"estimated": "estimated", "csf": "from CSF"}


def source_tag(source: str) -> str:
    """How the figure and the QC page name a disc placed without a band, by its source."""
    return _SOURCE_TAG.get(source, source)


def labeling_figure(image: Image, labeling: VertebralLabeling, width_in: float = 5.0) -> bytes:
    """PNG bytes: the cord-frame sagittal view with disc lines, names and confidences."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from spinereg.vertebrae.straight import straighten_slab

    b = np.arange(-30.0, 45.0, 0.5)
    sub = straighten_slab(image, labeling.centerline, b, ds=0.5, margin_mm=15.0)
    vals = sub.values
    fin = np.isfinite(vals)
    lo, hi = (np.percentile(vals[fin], [1, 99.5]) if fin.any() else (0.0, 1.0))
    height = width_in * (sub.s[-1] - sub.s[0]) / (b[-1] - b[0]) if len(sub.s) else width_in
    fig, ax = plt.subplots(figsize=(width_in, max(3.0, min(height, 14.0))))
    ax.imshow(np.where(fin, vals, np.nan), cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect="equal",
              extent=[b[0], b[-1], sub.s[0], sub.s[-1]] if len(sub.s) else None)
    for d in labeling.discs:
        colour = "lime" if d.confidence >= 0.5 else ("orange" if d.confidence >= 0.2 else "red")
        # a disc placed without a band on the image (the chain's estimate, C1/C2 from the CSF): dashed
        band = getattr(d, "source", "band") == "band"
        ax.axhline(d.s, color=colour, lw=1.0, alpha=0.8, ls="-" if band else "--")
        ax.plot([0.0], [d.s], "o" if band else "s", color=colour, ms=4, mfc=colour if band else "none")
        tag = "" if band else f", {source_tag(d.source)}"
        ax.text(b[-1] - 1, d.s + 0.5, f"{d.name} ({d.confidence:.2f}{tag})", color=colour, fontsize=7, ha="right",
                va="bottom")
    if labeling.pmj is not None and len(sub.s) and sub.s[0] <= labeling.pmj["s"] <= sub.s[-1]:  # the PMJ, when in view
        ax.axhline(labeling.pmj["s"], color="cyan", lw=1.0, alpha=0.8, ls=":")
        ax.text(b[-1] - 1, labeling.pmj["s"] + 0.5, "PMJ", color="cyan", fontsize=7, ha="right", va="bottom")
    # level names mid-way between discs
    ss = sorted([d.s for d in labeling.discs])
    for s0, s1 in zip(ss[:-1], ss[1:], strict=True):
        mid = 0.5 * (s0 + s1)
        ax.text(b[0] + 1, mid, _level_label(labeling, mid), color="yellow", fontsize=8, va="center")
    ax.set_xlabel("depth (mm, anterior right)")
    ax.set_ylabel("arc length along the cord (mm, superior up)")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _level_label(labeling: VertebralLabeling, s: float) -> str:
    from spinereg.vertebrae.names import level_name

    return level_name(int(labeling.level_at(np.array([s]))[0]))


def warnings_of(labeling: VertebralLabeling) -> list[str]:
    """What the QC must say about a labeling: coarse sampling, ambiguous identity, a pinned disc the
    image reads as another level, gaps."""
    warnings = [labeling.report["warning"]] if labeling.report.get("warning") else []
    reasons = labeling.report.get("ambiguous_reasons", [])
    # an image that looks upside down needs its header fixed, not a pinned disc
    warnings += [r for r in reasons if r.startswith(UPSIDE_DOWN)]
    if labeling.report.get("init_check", {}).get("warning"):  # a pinned disc the image reads otherwise
        warnings.append(labeling.report["init_check"]["warning"])
    if labeling.ambiguous:
        why = "; ".join(r for r in reasons if "S-I sampling" not in r and not r.startswith(UPSIDE_DOWN))
        warnings.append(f"level identity is ambiguous ({why or f'margin {margin_text(labeling.identity_margin)}'}): "
                        "check the names, or pin one disc with -initz / -initlabel"
                        + (" (the disc confidences are halved for it)" if labeling.report.get("confidence_scaled_by_flag") else ""))
    if labeling.gaps:
        warnings.append("weak or missing disc band (gap in the sequence) at: " + ", ".join(labeling.gaps))
    if not labeling.discs:
        warnings.append("no disc found in the field of view")
    return warnings


#: the evidence column of a disc placed without a band, by its source
_NO_BAND = {"estimated": "estimated (no band)", "csf": "CSF profile (no band)"}


def _evidence(d: Disc) -> str:
    return _NO_BAND.get(d.source) or (f"{d.evidence:.1f}" if np.isfinite(d.evidence) else "-")


def labeling_html(image: Image, labeling: VertebralLabeling, png: bytes) -> str:
    warnings = warnings_of(labeling)
    rows = "".join(f"<tr><td>{html.escape(d.name)}</td><td>{d.value}</td><td>{d.s:.1f}</td>"
                   f"<td>{d.confidence:.2f}</td><td>{_evidence(d)}</td></tr>"
                   for d in labeling.discs)
    if labeling.pmj is not None:
        rows = (f"<tr><td>PMJ</td><td>{labeling.pmj['value']}</td><td>{labeling.pmj['s']:.1f}</td><td>-</td>"
                f"<td>pons {labeling.pmj['pons_step_mm']:.0f} mm ahead</td></tr>") + rows
    warn = "".join(f'<p class="warn">&#9888; {html.escape(w)}</p>' for w in warnings) or "<p>no warning</p>"
    img64 = base64.b64encode(png).decode("ascii")
    title = html.escape(str(image.path.name if image.path else "image"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>labeling: {title}</title>
<style>body{{font-family:sans-serif;margin:1em}} .warn{{color:#b00;font-weight:bold}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px}}</style></head>
<body><h1>Vertebral labeling: {title}</h1>{warn}
<table><tr><th>disc</th><th>value</th><th>arc length (mm)</th><th>confidence</th><th>band evidence</th></tr>{rows}</table>
<p>identity: {html.escape(labeling.identity_source)}, margin {margin_text(labeling.identity_margin)}; scale to template
{labeling.scale:.3f}</p><img alt="cord-frame sagittal view with discs" src="data:image/png;base64,{img64}">
</body></html>"""


def write_labeling_page(image: Image, labeling: VertebralLabeling, qc_root: str | Path,
                        overwrite: bool = True) -> Path:
    """Write ``QCROOT/labeling/<image>/index.html``; returns its path."""
    from spinereg.vertebrae.outputs import image_stem

    root = check_qc_root(qc_root)
    page = root / "labeling" / image_stem(image.path) / "index.html"
    check_writable(page, overwrite=True)
    text = labeling_html(image, labeling, labeling_figure(image, labeling))
    return atomic_write(page, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)
