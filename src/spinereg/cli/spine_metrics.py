"""``spinereg spine-metrics``: VBQ, trabecular HU, vertebral heights, sagittal angles, cord curvature."""

from __future__ import annotations

from spinereg.cli.common import new_parser, start_run

CSV_NAME = "spine_metrics.csv"


def register(sub) -> None:
    p = new_parser(sub, "spine-metrics", "spine measures from labelled vertebral bodies, disc labels, a cord seg",
                   "Writes into the folder -o: spine_metrics.csv (long format: measure, level, name, value, "
                   "unit, flag), metrics.json and provenance.json. Vertebra values as SCT: C2 = 2, T1 = 8, "
                   "L1 = 20; disc labels: value of the vertebra below.")
    p.add_argument("-b", "--bodies", help="labelled vertebral body segmentation (value = vertebra)")
    p.add_argument("--t1", help="T1w image (VBQ; needs --csf and L1-L4 bodies)")
    p.add_argument("--csf", help="CSF mask (VBQ: CSF signal at L3)")
    p.add_argument("--ct", help="CT image in HU (trabecular HU per vertebra)")
    p.add_argument("--discs", help="disc labels (angles between disc-to-disc directions)")
    p.add_argument("--cord", help="cord segmentation (centerline curvature)")
    p.add_argument("--levels", help="level range for the Cobb angle and curvature, e.g. C2:C7 or 2:7 "
                                    "(default: all levels present)")
    p.add_argument("--erode", type=float, default=3.0, help="mm removed from each body to exclude the cortex")
    p.add_argument("-o", "--outdir", required=True,
                   help=f"output folder (several files: {CSV_NAME}, metrics.json, provenance.json)")
    p.add_argument("--qc", metavar="QCROOT", help="also add the measures to the HTML QC report in folder QCROOT")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from spinereg.errors import InputError
    from spinereg.io.provenance import write_json
    from spinereg.io.staging import OutputFolder
    from spinereg.metrics.spine import spine_metrics_rows, write_spine_csv

    if not any([args.bodies, args.discs, args.cord]):
        raise InputError("nothing to measure", None, "give --bodies, --discs and/or --cord")
    out = Path(args.outdir)
    names = (CSV_NAME, "metrics.json", "provenance.json")
    folder = OutputFolder(out, names, overwrite=args.overwrite).check()
    if args.qc:
        from spinereg.qc.report import check_qc_root

        check_qc_root(args.qc)
    rec, _ = start_run(args, "spine-metrics")
    with rec.stage("measures"):
        rows = spine_metrics_rows(bodies=args.bodies, t1=args.t1, csf=args.csf, ct=args.ct, discs=args.discs,
                                  cord=args.cord, levels=args.levels, erode_mm=args.erode)
    inputs = {k: getattr(args, k) for k in ("bodies", "t1", "csf", "ct", "discs", "cord") if getattr(args, k)}
    qc_index = None
    with folder as tmp:
        write_spine_csv(rows, tmp / CSV_NAME)
        write_json(tmp / "metrics.json", {"rows": rows})
        write_json(tmp / "provenance.json", {**rec.as_dict(inputs), "inputs": inputs,
                                             "parameters": {"levels": args.levels, "erode_mm": args.erode}})
        if args.qc:
            from spinereg.qc import add_to_report

            qc_index = add_to_report(tmp, Path(args.qc), kind="spine-metrics", record_run_dir=out.resolve())
    print(f"{len(rows)} measures -> {out / CSV_NAME}")
    if qc_index:
        print(f"QC report: {qc_index}")
    return 0
