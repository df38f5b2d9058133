"""``spinereg spine-metrics``: VBQ, trabecular HU, vertebral heights, sagittal angles, cord curvature."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser, start_run

if TYPE_CHECKING:  # pragma: no cover
    import argparse

CSV_NAME = "spine_metrics.csv"
PLACED_NAME = "bodies_placed.nii.gz"


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "spine-metrics", "spine measures from labelled vertebral bodies, disc labels, a cord seg",
                   "Writes into the folder -o: spine_metrics.csv (long format: measure, level, name, value, "
                   "unit, flag), metrics.json and provenance.json. Vertebra values as SCT: C2 = 2, T1 = 8, "
                   "L1 = 20; disc labels: value of the vertebra below.")
    p.add_argument("-b", "--bodies", help="labelled vertebral body segmentation (value = vertebra)")
    p.add_argument("-w", "--warp", help="instead of --bodies: a registration's warp_template2anat; the "
                                        f"template's vertebral bodies placed by it (written as {PLACED_NAME}, "
                                        "on the grid of --t1/--ct, else the warp's): their positions are the "
                                        "subject's, their shapes the template's")
    p.add_argument("-t", "--template", default="PAM50", help="template of --warp (default PAM50)")
    p.add_argument("--t1", help="T1w image (VBQ; needs --csf and L1-L4 bodies)")
    p.add_argument("--csf", help="CSF mask (VBQ: CSF signal at L3)")
    p.add_argument("--ct", help="CT image in HU (trabecular HU per vertebra)")
    p.add_argument("--image", help="with --warp or --bodies: measure the subject's heights, endplate tilts and "
                                   "segmental angles in this image (image_* rows; the bodies only say which "
                                   "level is where)")
    p.add_argument("--contrast", default="t2", choices=("t2", "t2s", "t1", "ct"),
                   help="contrast of --image: which way the discs differ from the marrow (default t2); a t1 image whose discs are brighter than its marrow is measured as such, with a note")
    p.add_argument("--discs", help="disc labels (angles between disc-to-disc directions)")
    p.add_argument("--cord", help="cord segmentation (centerline curvature)")
    p.add_argument("--levels", help="level range for the Cobb angle and curvature, e.g. C2:C7 or 2:7 "
                                    "(default: all levels present)")
    p.add_argument("--erode", type=float, default=3.0, help="mm removed from each body to exclude the cortex")
    p.add_argument("-o", "--outdir", required=True,
                   help=f"output folder (several files: {CSV_NAME}, metrics.json, provenance.json)")
    p.add_argument("--qc", metavar="QCROOT", help="also add the measures to the HTML QC report in folder QCROOT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinereg.errors import InputError
    from spinereg.io.provenance import write_json
    from spinereg.io.staging import OutputFolder
    from spinereg.metrics.spine import spine_metrics_rows, write_spine_csv

    if args.image and not (args.bodies or args.warp):
        raise InputError("--image needs vertebral bodies", args.image, "give --warp or --bodies with --image")
    if not any([args.bodies, args.warp, args.discs, args.cord]):
        raise InputError("nothing to measure", None, "give --bodies (or --warp), --discs and/or --cord")
    if args.bodies and args.warp:
        raise InputError("both --bodies and --warp given", None, "give one source of vertebral bodies")
    out = Path(args.outdir)
    names = (CSV_NAME, "metrics.json", "provenance.json") + ((PLACED_NAME,) if args.warp else ())
    folder = OutputFolder(out, names, overwrite=args.overwrite).check()
    if args.qc:
        from spinereg.qc.report import check_qc_root

        check_qc_root(args.qc)
    rec, _ = start_run(args, "spine-metrics")
    bodies, cut = args.bodies, set()
    if args.warp:
        with rec.stage("place bodies"):
            bodies, cut = _placed_bodies(args)
    with rec.stage("measures"):
        rows = spine_metrics_rows(bodies=bodies, t1=args.t1, csf=args.csf, ct=args.ct, discs=args.discs,
                                  cord=args.cord, levels=args.levels, erode_mm=args.erode, cut_levels=cut)
        if args.warp:
            rows = _marked_as_template_shape(rows)
        disc_note = ""
        if args.image:
            from spinereg.metrics.endplates import DISC_POLARITY, endplate_rows, measure_endplates

            found = measure_endplates(args.image, bodies, args.contrast, cut_levels=cut)
            rows += endplate_rows(found)
            if {r.disc_polarity for r in found} - {0, DISC_POLARITY[args.contrast]}:
                disc_note = (f"--contrast {args.contrast} assumes discs darker than the marrow; {args.image} shows "
                             "them brighter: measured as bright")
                print(f"note: {disc_note}", file=sys.stderr)
    inputs = {k: getattr(args, k) for k in ("bodies", "warp", "image", "t1", "csf", "ct", "discs", "cord")
              if getattr(args, k)}
    qc_index = None
    with folder as tmp:
        write_spine_csv(rows, tmp / CSV_NAME)
        if args.warp:
            from spinereg.io.image import save_image

            save_image(bodies, tmp / PLACED_NAME)
        write_json(tmp / "metrics.json", {"rows": rows})
        write_json(tmp / "provenance.json", {**rec.as_dict(inputs), "inputs": inputs,
                                             "parameters": {"levels": args.levels, "erode_mm": args.erode,
                                                            **({"disc_polarity": disc_note} if disc_note else {})}})
        if args.qc:
            from spinereg.qc import add_to_report

            qc_index = add_to_report(tmp, Path(args.qc), kind="spine-metrics", record_run_dir=out.resolve())
    print(f"{len(rows)} measures -> {out / CSV_NAME}")
    if qc_index:
        print(f"QC report: {qc_index}")
    if rows and not any(_measured(r.get("value")) for r in rows):
        print(f"spine-metrics: every measure is NaN (see the flag column of {out / CSV_NAME})", file=sys.stderr)
        return 3  # outputs written, nothing measured: not a success
    return 0


def _measured(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


#: rows measured on the body labels themselves: with --warp, the template's bodies as placed
SHAPE_MEASURES = ("height_anterior", "height_middle", "height_posterior", "wedge_ratio", "biconcave_ratio",
                  "endplate_superior_tilt", "endplate_inferior_tilt", "segmental_angle", "cobb_angle")
TEMPLATE_SHAPE_NOTE = "template's body as placed by --warp (its shape, not the subject's: see the image_* rows)"


def _marked_as_template_shape(rows: list[dict]) -> list[dict]:
    """With ``--warp`` the body rows measure PAM50's bodies deformed by the registration (which
    fits the cord, not the bone): their flag says so, so that a template body's rounded anterior
    corner (wedge ratio 0.79 on t2's C4) is not read as the subject's wedge deformity."""
    return [{**r, "flag": TEMPLATE_SHAPE_NOTE + (f"; {r['flag']}" if r["flag"] else "")}
            if r["measure"] in SHAPE_MEASURES else r for r in rows]


def _placed_bodies(args: argparse.Namespace):
    """The template's bodies placed by ``--warp`` on the grid of the measured image, and the levels
    the warp's own field of view cuts there."""
    from spinereg.errors import InputError
    from spinereg.io.image import load_image
    from spinereg.metrics.spine_registration import on_template_lattice, placed_bodies
    from spinereg.transforms.itk import read_displacement

    warp = read_displacement(args.warp)
    if on_template_lattice(warp.grid, args.template):
        raise InputError(f"the warp lives on {args.template}'s grid: it maps template space to the subject "
                         "(warp_anat2template), not the subject's grid to the template", args.warp,
                         "give the registration's warp_template2anat (template -> subject), not warp_anat2template")
    ref = args.image or args.t1 or args.ct
    grid = load_image(ref, ndim=3).grid if ref else warp.grid
    bodies, cut = placed_bodies(warp, grid, template=args.template, supersample=2 if args.image else 1)
    if not bodies.data.any():
        raise InputError(f"no vertebral body of {args.template} lands in the {'image' if ref else 'warp'}'s field of "
                         "view when placed by --warp", args.warp,
                         "give the registration's warp_template2anat (template -> subject), not warp_anat2template, "
                         "and an image of the same subject")
    return bodies, cut
