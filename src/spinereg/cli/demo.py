"""``spinereg demo``: the main job on the sample subject."""

from __future__ import annotations

from spinereg.cli.common import add_result_options, finish_run, new_parser, start_run

DESCRIPTION = """\
The main job: register SCT's sample subject (sct_testing_data t2: T2w, manual cord segmentation,
C3/C5 body labels) to the template and write every output, the verdict and the HTML QC report
(OUTDIR/qc/index.html) into -o. Running it again replaces its own previous output (a folder
holding anything else needs --overwrite). Exit code 3 when the verdict is fail."""


def register(sub) -> None:
    p = new_parser(sub, "demo", "register the sample subject (sct_testing_data t2) to PAM50 with all outputs",
                   DESCRIPTION)
    p.add_argument("-o", "--outdir", default="spinereg_demo", help="output folder (several files)")
    p.add_argument("-t", "--template", default="PAM50", help="template")
    p.add_argument("--qc", metavar="QCROOT", help="HTML QC report folder (default: OUTDIR/qc)")
    add_result_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from spinereg.pipelines.registration import demo_job

    rec, display = start_run(args, "demo", stages=8)
    res = demo_job(args.outdir, args.template, qc_root=args.qc, overwrite=args.overwrite, run=rec,
                   progress=display.bar())
    return finish_run(args, "demo", res.metrics, res.outdir, res.files, res.qc_index, res.seconds)
