"""``spinereg demo``: the main job on the sample subject."""

from __future__ import annotations

import json
import time

from spinereg.cli.common import new_parser
from spinereg.progress import progress_bar


def register(sub) -> None:
    p = new_parser(sub, "demo", "register the sample subject (sct_testing_data t2) to PAM50 with all outputs")
    p.add_argument("-o", "--outdir", default="spinereg_demo", help="output folder (default spinereg_demo)")
    p.add_argument("-t", "--template", default="PAM50", help="template (default PAM50)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spinereg.register.demo import run_demo
    t0 = time.perf_counter()
    reg = run_demo(args.outdir, args.template, overwrite=args.overwrite, progress=progress_bar("demo"))
    print(json.dumps({"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2), **reg.metrics},
                     indent=1))
    return 0
