"""``spinereg register-to-template``: normalise an anatomical image to PAM50 / MNI-Poly-AMU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import (
    add_result_options,
    add_template,
    finish_run,
    new_parser,
    print_warnings,
    start_run,
)

if TYPE_CHECKING:  # pragma: no cover
    import argparse

DESCRIPTION = """\
Register an anatomical image (with its cord segmentation and landmarks) to a template and write
SCT's outputs into the folder -o: warp_anat2template, warp_template2anat, anat2template,
template2anat (template-space files on the template's own grid unless --crop), metrics.json with a
pass/warn/fail verdict, provenance.json. Without -s the cord is segmented (spinereg segment);
without -l/--ldisc/--lrootlet every disc is labelled (spinereg label-vertebrae, written as
<image>_labels-disc.nii.gz and <image>_discs.json, warnings on stderr when the levels are
ambiguous) and the registration uses them all (--ldisc); given labels always win. With -l or
--ldisc the image is labelled too, and the discs it measures join the given labels when its levels
agree with them (--no-auto-discs: the given labels only).
The folder appears only when everything was written.
Exit code 3 when the verdict is fail (--allow-fail: 0)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "register-to-template", "register an anatomical image to a template (SCT outputs)",
                   DESCRIPTION)
    p.add_argument("-i", "--image", required=True, help="anatomical image (T2w, T1w, T2*w)")
    p.add_argument("-s", "--seg", help="cord segmentation of the image (binary or soft mask); absent or 'auto': "
                                       "segmented automatically (spinereg segment), written as <image>_seg.nii.gz "
                                       "into -o and recorded in provenance.json")
    g = p.add_mutually_exclusive_group()  # none given: the discs are labelled automatically
    g.add_argument("-l", "--labels", help="vertebral body labels (values as PAM50_label_body, C3 = 3)")
    g.add_argument("--ldisc", help="disc labels (values as PAM50_label_disc, C2/C3 = 3)")
    g.add_argument("--lrootlet", help="rootlet segmentation (values = spinal levels)")
    add_template(p)
    h = p.add_mutually_exclusive_group()  # the automatic labeling of a run given no landmarks
    h.add_argument("-initz", "--initz", metavar="Z,DISC",
                   help="without landmarks: pin one disc of the automatic labeling, as label-vertebrae's -initz "
                        "(slice Z counted from the inferior end holds disc DISC, 3 = C2/C3)")
    h.add_argument("-initfile", "--initfile", metavar="FILE",
                   help="pin one disc with SCT's init text file (one line: -initz Z,DISC)")
    h.add_argument("-initlabel", "--initlabel", metavar="FILE",
                   help="without landmarks: pin one disc with a label file (one voxel valued by its disc)")
    p.add_argument("--param", help="steps (SCT syntax 'step=1,type=seg,algo=...:step=2,...') or a preset name "
                                   "(default: template_spinereg)")
    p.add_argument("--no-auto-discs", action="store_true",
                   help="with -l/--ldisc: register with the given labels only (default: the discs that the "
                        "automatic labeling measures join them when its levels agree with the given labels)")
    p.add_argument("--ref", default="template", choices=["template", "subject"],
                   help="space where the steps run (subject: thick-slice axial data)")
    p.add_argument("-o", "--outdir", required=True, help="output folder (several files)")
    p.add_argument("--crop", action="store_true",
                   help="template-space outputs on the small template region the subject covers instead of "
                        "the template's own grid")
    p.add_argument("--straight", action="store_true",
                   help="also write SCT's straightening outputs (warp_curve2straight, warp_straight2curve, "
                        "straight_ref)")
    p.add_argument("--qc", metavar="QCROOT", help="also add the run to the HTML QC report in folder QCROOT")
    add_result_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.pipelines.registration import template_job
    from spinereg.vertebrae.init import read_initfile

    initz = read_initfile(args.initfile) if args.initfile else args.initz  # before the run starts
    rec, display = start_run(args, "register-to-template", stages=6 + bool(args.qc) + bool(args.straight))
    res = template_job(args.image, args.seg, args.outdir, labels=args.labels, ldisc=args.ldisc,
                       lrootlet=args.lrootlet, template=args.template, contrast=args.contrast, param=args.param,
                       ref=args.ref, straight=args.straight, crop=args.crop, qc_root=args.qc,
                       overwrite=args.overwrite, run=rec, progress=display.bar(),
                       auto_discs=not args.no_auto_discs, initz=initz, initlabel=args.initlabel)
    print_warnings("register-to-template", res.extra.get("warnings", []))
    return finish_run(args, "register-to-template", res.metrics, res.outdir, res.files, res.qc_index, res.seconds)
