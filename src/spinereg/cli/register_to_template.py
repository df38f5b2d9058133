"""``spinereg register-to-template``: normalise an anatomical image to PAM50 / MNI-Poly-AMU."""

from __future__ import annotations

import json
import time

from spinereg.cli.common import add_landmarks, add_template, new_parser
from spinereg.progress import progress_bar


def register(sub) -> None:
    p = new_parser(sub, "register-to-template", "register an anatomical image to a template (SCT outputs)")
    p.add_argument("-i", "--image", required=True, help="anatomical image (T2w, T1w, T2*w)")
    p.add_argument("-s", "--seg", required=True, help="cord segmentation of the image")
    add_landmarks(p)
    add_template(p)
    p.add_argument("--param", help="steps (SCT syntax 'step=1,type=seg,algo=...:step=2,...') or a preset name")
    p.add_argument("--ref", default="template", choices=["template", "subject"],
                   help="space where the steps run (subject: thick-slice axial data)")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    p.add_argument("--straight", action="store_true",
                   help="also write SCT's straightening outputs (warp_curve2straight, warp_straight2curve, "
                        "straight_ref)")
    p.add_argument("--qc", metavar="QCROOT", help="also add the run to the HTML QC report in QCROOT")
    p.set_defaults(func=run)


def run(args) -> int:
    from spinereg.register.outputs import write_outputs
    from spinereg.register.template import register_to_template

    t0 = time.perf_counter()
    reg = register_to_template(args.image, args.seg, labels=args.labels, ldisc=args.ldisc,
                               lrootlet=args.lrootlet, template=args.template, contrast=args.contrast,
                               param=args.param, ref=args.ref, progress=progress_bar("steps"))
    inputs = {"image": args.image, "seg": args.seg, "labels": args.labels, "ldisc": args.ldisc,
              "lrootlet": args.lrootlet, "param": args.param}
    write_outputs(reg, args.outdir, overwrite=args.overwrite, inputs=inputs, straight=args.straight)
    if args.qc:
        from spinereg.qc import add_to_report
        add_to_report(args.outdir, args.qc, "register-to-template")
    summary = {"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2), **reg.metrics}
    print(json.dumps(summary, indent=1))
    return 0
