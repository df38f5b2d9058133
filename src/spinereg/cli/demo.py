"""``spinereg demo``: the main job on the sample subject."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import (
    add_result_options,
    finish_run,
    new_parser,
    print_warnings,
    start_run,
)

if TYPE_CHECKING:  # pragma: no cover
    import argparse

DESCRIPTION = """\
The main job: register SCT's sample subject (sct_testing_data t2, T2w) to the template from the
bare image, as `spinereg register-to-template -i t2.nii.gz -c t2 -o OUTDIR`: the cord is segmented
(t2_seg.nii.gz), every disc labelled (t2_labels-disc.nii.gz, t2_discs.json) and the registration
uses them all; every output, the verdict and the HTML QC report (OUTDIR/qc/index.html) go into -o.
The subject's hand-placed C3/C5 body labels (labels.nii.gz) are held out: metrics.json's held_out
says where they land in the template, as placed and at their height on the centerline of the
manual segmentation (t2_seg-manual.nii.gz, also unused). Running it again replaces its own
previous output (a folder holding anything else needs --overwrite). Exit code 3 when the verdict
is fail."""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "demo", "register the sample subject (sct_testing_data t2) to PAM50 with all outputs",
                   DESCRIPTION)
    p.add_argument("-o", "--outdir", default="spinereg_demo", help="output folder (several files)")
    p.add_argument("-t", "--template", default="PAM50", help="template")
    p.add_argument("--qc", metavar="QCROOT", help="HTML QC report folder (default: OUTDIR/qc)")
    add_result_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.pipelines.registration import demo_job

    rec, display = start_run(args, "demo", stages=10)
    res = demo_job(args.outdir, args.template, qc_root=args.qc, overwrite=args.overwrite, run=rec,
                   progress=display.bar())
    print_warnings("demo", res.extra.get("warnings", []))  # e.g. an ambiguous level identity
    code = finish_run(args, "demo", res.metrics, res.outdir, res.files, res.qc_index, res.seconds)
    held = res.metrics.get("held_out") or {}
    if held.get("mean_mm") is not None and not getattr(args, "json", False):
        print(f"held out (labels.nii.gz, C3/C5 bodies by hand, not used): they land {held['mean_mm']:.2f} mm "
              f"mean / {held['max_mm']:.2f} mm max from the template's body labels")
        if held.get("on_cord_mean_mm") is not None:
            print(f"  at their height on the manual cord's centerline (t2_seg-manual.nii.gz, not used): "
                  f"{held['on_cord_mean_mm']:.2f} mm mean / {held['on_cord_max_mm']:.2f} mm max")
    return code
