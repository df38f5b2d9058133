"""``spinereg qc-scores``: pass/warn/fail verdicts of output folders, one cohort CSV."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "qc-scores", "QC verdicts of registration output folders, aggregated into one CSV",
                   "Scan output folders (each with metrics.json + provenance.json), judge each run against "
                   "spinereg/data/qc_thresholds.json and write one row per run.")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output folders, or folders containing them")
    p.add_argument("-o", "--output", required=True, help="output file: the cohort CSV")
    p.add_argument("--rescore", action="store_true",
                   help="recompute every verdict (image scores included) and update each metrics.json")
    p.add_argument("--thresholds", help="thresholds JSON (default: the package's qc_thresholds.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from spinereg.io.image import check_writable
    from spinereg.metrics.cohort import aggregate, unjudged_folders, write_cohort_csv
    from spinereg.metrics.verdict import load_thresholds

    check_writable(args.output, args.overwrite)
    table = load_thresholds(args.thresholds) if args.thresholds else None
    rows = aggregate(args.dirs, rescore=args.rescore, thresholds=table)
    write_cohort_csv(rows, args.output, overwrite=args.overwrite)
    counts = Counter(r["verdict"] for r in rows)
    print(f"{len(rows)} runs: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("pass", "warn", "fail"))
          + f" -> {args.output}")
    left = unjudged_folders(args.dirs, {Path(r["folder"]) for r in rows})
    if left:
        what = ", ".join(f"{len(v)} {k}" for k, v in left.items())
        print(f"not listed: {sum(map(len, left.values()))} output folders without a QC verdict ({what}); "
              "qc-scores judges register, register-to-template, chain and moco folders that hold metrics.json")
    return 0
