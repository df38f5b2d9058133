"""``spinereg csa``: cord cross-sectional area per slice and per level (sct_process_segmentation)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "csa", "cord cross-sectional area per slice, perpendicular to the cord, and per level",
                   "CSA per slice along the S-I voxel axis, corrected for the cord's inclination with "
                   "its centerline (as sct_process_segmentation), aggregated per vertebral level when "
                   "a levels image is given. CSV rows: 'slice', 'level', and one summary row. "
                   "Shape columns (as sct_process_segmentation), in the plane perpendicular to the cord: "
                   "diameter_AP_mm, diameter_RL_mm (of the ellipse with the section's second moments; "
                   "AP = anterior projected onto the plane), compression_ratio (AP/RL), eccentricity "
                   "(0 = circle), orientation_deg (major axis from RL, 0-90; at 45 or more the major "
                   "diameter is reported as AP, as SCT), solidity (area / convex hull area of the 0.5 "
                   "outline); level and summary rows give their mean and *_std columns the SD. "
                   "A slice whose mask holds two or more separate pieces (8-connected) is flagged: "
                   "n_pieces, outside_largest_share (share of its area outside the largest piece); its "
                   "shape is the largest piece's, its CSA counts every piece, and it is left out of the "
                   "level and summary means (n_split_slices counts those left out) unless --include-split. "
                   "With --pmj (SCT's -pmj), dist_pmj_mm: each slice's distance below the pontomedullary "
                   "junction along the centerline (extended straight from its top end to the PMJ's "
                   "projection); with --pmj-distance D the summary row, scoped 'pmj D+-E/2', averages the "
                   "slices within D +- E/2 mm (--pmj-extent E, default 20).")
    p.add_argument("-s", "--seg", required=True, help="cord segmentation (binary or soft)")
    p.add_argument("--levels", help="vertebral levels image (cord voxels valued by level; any grid)")
    p.add_argument("--vert", help="levels averaged in the summary row, e.g. 2:5 (needs --levels)")
    p.add_argument("--no-angle-correction", action="store_true", help="area in the slice plane (no correction)")
    p.add_argument("--include-split", action="store_true",
                   help="average slices whose mask holds several pieces into the level and summary means too "
                        "(e.g. a cord cut in two by a syrinx: their CSA sums the pieces)")
    p.add_argument("--pmj", help="PMJ label (label-vertebrae's <img>_pmj.nii.gz, or one labelled voxel; any grid): "
                                 "adds each slice's distance below it along the centerline (dist_pmj_mm)")
    p.add_argument("--pmj-distance", type=float, metavar="MM",
                   help="summary over the slices this far below the PMJ along the cord, e.g. 64 (needs --pmj; "
                        "not with --vert)")
    p.add_argument("--pmj-extent", type=float, default=20.0, metavar="MM",
                   help="length of that window along the cord (default 20: D-10 to D+10 mm)")
    p.add_argument("-o", "--output", required=True, help="output CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.errors import InputError
    from spinereg.io.image import check_writable, load_image
    from spinereg.metrics.morphometry import (
        cross_sectional_area,
        parse_levels,
        require_levels_present,
        write_csa_csv,
    )
    from spinereg.metrics.pmj_distance import pmj_window

    check_writable(args.output, args.overwrite)
    vert = parse_levels(args.vert)
    if vert is not None and not args.levels:
        raise InputError("--vert needs --levels", None, "give the levels image with --levels")
    if args.pmj_distance is not None and not args.pmj:
        raise InputError("--pmj-distance needs --pmj", None, "give the PMJ label with --pmj")
    if args.pmj_distance is not None and vert is not None:  # one summary row: one scope
        raise InputError("--pmj-distance and --vert each choose the summary's slices: give one", None,
                         "use --pmj-distance for PMJ-based CSA, or --vert for a vertebral-level summary "
                         "(the per-level rows are written with --levels either way)")
    if args.pmj_distance is not None:
        pmj_window(args.pmj_distance, args.pmj_extent)
    seg = load_image(args.seg, ndim=3, what="segmentation")
    levels = load_image(args.levels, ndim=3, what="levels image") if args.levels else None
    pmj = load_image(args.pmj, ndim=3, what="PMJ label") if args.pmj else None
    res = cross_sectional_area(seg, levels, angle_correction=not args.no_angle_correction,
                               include_split=args.include_split, pmj=pmj, pmj_distance=args.pmj_distance,
                               pmj_extent=args.pmj_extent)
    require_levels_present(res, vert, args.levels)
    path = write_csa_csv(res, args.output, vert=vert, overwrite=args.overwrite)
    m, sd, n = res.mean_over(vert)
    shape, _ = res.shape_over(vert)
    pmj_info = None
    if res.pmj is not None:
        dd = [s.dist_pmj_mm for s in res.slices]
        pmj_info = {"point_mm": [round(v, 3) for v in res.pmj.point_mm],
                    "off_centerline_mm": round(res.pmj.off_line_mm, 3),
                    "above_centerline_top_mm": round(res.pmj.gap_mm, 3),
                    "slices_dist_mm": [round(min(dd), 3), round(max(dd), 3)],
                    "window_mm": None if res.pmj_window is None else
                    [res.pmj_window[0] - res.pmj_window[1] / 2, res.pmj_window[0] + res.pmj_window[1] / 2],
                    "window_slices": [s.slice for s in res.slices if res.in_scope(s, None)]
                    if res.pmj_window is not None else None}
    print(json.dumps({"csv": str(path), "scope": res.scope_label(vert), "slices": len(res.slices), "csa_mean_mm2": round(m, 3) if n else None,
                      "csa_std_mm2": round(sd, 3) if n else None, "n_slices": n,
                      "shape": {k: _rounded(v) for k, v in shape.items()} if n else None,
                      "n_split_slices": len(res.split_slices()), "split_slices": res.split_slices(),
                      "split_in_summary": len(res.split_slices(vert)),
                      "split_averaged": res.include_split,
                      "levels": {lv.level: _rounded(lv.csa_mean_mm2, 3) for lv in res.levels},
                      "pmj": pmj_info}, indent=1))
    return 0


def _rounded(v: float, nd: int = 4) -> float | None:
    """JSON has no NaN: a figure that cannot be measured (or a level all of whose slices were left
    out) is null."""
    return None if v != v else round(float(v), nd)
