"""``spinereg spine-metrics``: VBQ, trabecular HU, vertebral heights, sagittal angles, cord curvature."""

from __future__ import annotations

from spinereg.cli.common import new_parser


def register(sub) -> None:
    p = new_parser(sub, "spine-metrics", "spine measures from labelled vertebral bodies, disc labels, a cord seg",
                   "Long-format CSV (measure, level, name, value, unit, flag). Vertebra values as SCT: "
                   "C2 = 2, T1 = 8, L1 = 20; disc labels: value of the vertebra below.")
    p.add_argument("-b", "--bodies", help="labelled vertebral body segmentation (value = vertebra)")
    p.add_argument("--t1", help="T1w image (VBQ; needs --csf and L1-L4 bodies)")
    p.add_argument("--csf", help="CSF mask (VBQ: CSF signal at L3)")
    p.add_argument("--ct", help="CT image in HU (trabecular HU per vertebra)")
    p.add_argument("--discs", help="disc labels (angles between disc-to-disc directions)")
    p.add_argument("--cord", help="cord segmentation (centerline curvature)")
    p.add_argument("--levels", help="level range for the Cobb angle and curvature, e.g. C2:C7 or 2:7")
    p.add_argument("--erode", type=float, default=3.0, help="mm removed from each body to exclude the cortex")
    p.add_argument("-o", "--output", required=True, help="CSV file (its folder also gets metrics.json and "
                                                          "provenance.json)")
    p.add_argument("--qc", metavar="QCROOT", help="also add the measures to the HTML QC report in QCROOT")
    p.set_defaults(func=run)


def run(args) -> int:
    from spinereg.errors import InputError
    from spinereg.io.image import check_writable
    from spinereg.metrics.spine import spine_metrics_rows, write_spine_csv

    if not any([args.bodies, args.discs, args.cord]):
        raise InputError("nothing to measure", None, "give --bodies, --discs and/or --cord")
    check_writable(args.output, args.overwrite)
    rows = spine_metrics_rows(bodies=args.bodies, t1=args.t1, csf=args.csf, ct=args.ct, discs=args.discs,
                              cord=args.cord, levels=args.levels, erode_mm=args.erode)
    write_spine_csv(rows, args.output, overwrite=args.overwrite)
    write_spine_provenance(args, rows)
    print(f"{len(rows)} measures -> {args.output}")
    if args.qc:
        from pathlib import Path

        from spinereg.qc import add_to_report

        print(add_to_report(Path(args.output).resolve().parent, Path(args.qc), kind="spine-metrics"))
    return 0


def write_spine_provenance(args, rows: list[dict]) -> None:
    from pathlib import Path

    from spinereg.register.outputs import versions, write_json

    folder = Path(args.output).resolve().parent
    inputs = {k: getattr(args, k) for k in ("bodies", "t1", "csf", "ct", "discs", "cord") if getattr(args, k)}
    write_json(folder / "metrics.json", {"rows": rows}, overwrite=True)
    write_json(folder / "provenance.json", {"command": "spine-metrics", "inputs": inputs,
                                            "parameters": {"levels": args.levels, "erode_mm": args.erode},
                                            "versions": versions()}, overwrite=True)
