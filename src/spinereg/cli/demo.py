"""``spinereg demo``: the main job on the sample subject."""

from __future__ import annotations

import json
import time
from pathlib import Path

from spinereg.cli.common import new_parser
from spinereg.progress import progress_bar


def register(sub) -> None:
    p = new_parser(sub, "demo", "register the sample subject (sct_testing_data t2) to PAM50 with all outputs")
    p.add_argument("-o", "--outdir", default="spinereg_demo", help="output folder (default spinereg_demo)")
    p.add_argument("-t", "--template", default="PAM50", help="template (default PAM50)")
    p.add_argument("--qc", metavar="QCROOT", help="HTML QC report folder (default OUTDIR/qc)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spinereg.register.demo import run_demo
    t0 = time.perf_counter()
    reg = run_demo(args.outdir, args.template, overwrite=args.overwrite, progress=progress_bar("demo"))
    from spinereg.qc import add_to_report
    qc_index = add_to_report(args.outdir, args.qc or Path(args.outdir) / "qc", "register-to-template")
    print(json.dumps({"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2), **reg.metrics,
                      "qc_report": str(qc_index)}, indent=1))
    return 0
