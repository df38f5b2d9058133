"""QC page of ``spine-metrics``: charts per vertebra (heights, ratios, HU, angles) from metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from spinereg.metrics.verdict import finite_number as _num
from spinereg.qc.figures import save_png
from spinereg.qc.pages import Panel, page

GROUPS = {
    "Vertebral heights (mm)": ("height_anterior", "height_middle", "height_posterior"),
    "Height ratios": ("wedge_ratio", "biconcave_ratio"),
    "Trabecular HU": ("hu_mean",),
    "Angles (deg)": ("segmental_angle", "disc_label_angle", "cobb_angle"),
}


@page("spine-metrics")
def render_spine_metrics(run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    rows = json.loads((run_dir / "metrics.json").read_text()).get("rows", [])
    panels: list[Panel] = []
    for n, (title, measures) in enumerate(GROUPS.items()):
        sel = [r for r in rows if r.get("measure") in measures and _num(r.get("value")) is not None]
        if not sel:
            continue
        names = list(dict.fromkeys(str(r["name"]) for r in sel))
        fig = MplFigure(figsize=(9.6, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(111)
        width = 0.8 / len(measures)
        for j, m in enumerate(measures):
            vals = {str(r["name"]): float(r["value"]) for r in sel if r["measure"] == m}
            xs = [i + j * width for i, nm in enumerate(names) if nm in vals]
            ax.bar(xs, [vals[nm] for nm in names if nm in vals], width, label=m)
        flagged = [f"{r['name']} ({r['flag']})" for r in sel if "likely" in str(r.get("flag", ""))]
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=45, fontsize=9)
        ax.set_title(title + (f" -- flagged: {', '.join(flagged)}" if flagged else ""), fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fname = f"spine_{n}.png"
        save_png(fig, outdir / fname)
        panels.append(Panel("measures", title, "single", {"image": fname}, "per vertebra, from metrics.json"))
    return panels
