"""``spinereg extract-metric``: a metric within atlas tracts / template labels (sct_extract_metric).

Methods, CSV columns and level handling: see :mod:`spinereg.metrics.extract`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse

METHOD_CHOICES = ("wa", "bin", "ml", "map", "median", "max")


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub, "extract-metric", "aggregate a metric within atlas tracts or template labels",
        description="Aggregate a 3D metric (e.g. MTR, FA) within the labels of a warped template "
                    "folder (sct_warp_template's label/atlas or label/template), per label, "
                    "per slice or per vertebral level; CSV output with SCT's columns.")
    p.add_argument("-i", "--input", required=True, help="metric image (3D)")
    p.add_argument("-f", "--folder", required=True,
                   help="label folder with info_label.txt (e.g. label/atlas), on the metric's grid")
    p.add_argument("-l", "--labels", default=None,
                   help="label ids: 2, 0,1,2, 0:29, or combined ids such as 51 (white matter); "
                        "one result per id (default: every label)")
    p.add_argument("-m", "--method", default="wa", choices=METHOD_CHOICES,
                   help="wa: weighted average (default); bin: average where weight >= 0.5; "
                        "median/max over weight >= 0.5; ml: maximum likelihood; map: maximum a "
                        "posteriori (partial volume between tracts, as SCT)")
    p.add_argument("--combine", action="store_true", help="merge all -l ids into one label")
    p.add_argument("--vert", help="vertebral levels to keep, e.g. 2:5 (needs a levels file)")
    p.add_argument("--vertfile",
                   help="vertebral levels image (default FOLDER/../template/PAM50_levels.nii.gz)")
    p.add_argument("--perlevel", action="store_true", help="one row per vertebral level")
    p.add_argument("--perslice", action="store_true", help="one row per slice")
    p.add_argument("-z", "--slices", help="slice range, inclusive, numbered I->S (e.g. 2:12)")
    p.add_argument("--discard-neg-val", action="store_true",
                   help="ignore voxels with a negative metric value")
    p.add_argument("-o", "--output", default="extract_metric.csv", help="output file (CSV)")
    p.add_argument("--append", action="store_true",
                   help="append rows to an existing CSV (header written once)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinereg.errors import InputError
    from spinereg.io.image import check_writable
    from spinereg.metrics.extract import extract_metric, write_metric_csv

    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise InputError(f"output must be a .csv file (got {out.suffix or 'no suffix'!r})", out,
                         "name the output e.g. extract_metric.csv")
    if not (args.append and out.is_file()):
        check_writable(out, args.overwrite)  # fail before the work
    import math

    from spinereg.io.image import load_image
    from spinereg.io.sanity import constant_value

    metric = load_image(args.input, ndim=3, check_finite=False, what="metric image")
    value = constant_value(metric.data)
    if value is not None:
        # a failed map (an MTR of two identical volumes, an empty file) would report one value in every tract
        said = "no finite value" if math.isnan(value) else f"every voxel = {value:g}"
        raise InputError(f"metric image is constant ({said}): nothing to extract", args.input,
                         "give the computed metric map (check the step that made it)")
    rows = extract_metric(metric, args.folder, args.labels, method=args.method,
                          vert=args.vert, vertfile=args.vertfile, perlevel=args.perlevel,
                          perslice=args.perslice, slices=args.slices,
                          discard_neg=args.discard_neg_val, combine=args.combine)
    write_metric_csv(rows, out, append=args.append, overwrite=args.overwrite)
    for r in rows:
        val = "n/a" if r.value is None else f"{r.value:.4g}"
        std = "" if r.std is None else f" +- {r.std:.3g}"
        lev = "" if r.levels is None else f", levels {','.join(map(str, r.levels))}"
        zs = f"{r.slices[0]}-{r.slices[-1]}" if len(r.slices) > 1 else ",".join(map(str, r.slices))
        nan = f" (NaN on {100 * r.nan_share:.0f} % of its weight, ignored)" if r.nan_share >= 0.005 else ""
        print(f"{r.label} ({r.label_id}), slices {zs}{lev}: {r.method.upper()} = {val}{std}{nan}")
    print(out)
    return 0
