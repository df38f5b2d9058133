"""``spinereg chain``: register images through intermediate references to a template."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import (
    add_landmarks,
    add_result_options,
    add_template,
    finish_run,
    new_parser,
    print_warnings,
    start_run,
)

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "chain", "register a chain target -> intermediates -> anatomical -> template; "
                                 "write composed template warps for every image")
    p.add_argument("-i", "--images", nargs="+", required=True,
                   help="images from the target (e.g. EPI mean) to the anatomical image (last)")
    p.add_argument("--seg", nargs="+", required=True,
                   help="one cord segmentation per image, 'none' where there is none, 'auto' to segment the image "
                        "automatically (written into -o); the last is required (a file or 'auto')")
    add_landmarks(p, " of the anatomical image")
    add_template(p, "contrast of the anatomical image")
    p.add_argument("--link-warp", nargs=3, action="append", metavar=("K", "WARP_K2NEXT", "WARP_NEXT2K"), default=[],
                   help="use existing warps for link K (between image K and K+1), SCT naming")
    p.add_argument("--link-param", help="steps for the image-to-image links (default: chosen by the "
                                        "segmentations given)")
    p.add_argument("--no-direct", action="store_true",
                   help="always compose through the chain, even for images with a segmentation")
    p.add_argument("--no-auto-discs", action="store_true",
                   help="register the anatomical image with the given labels only (default: its automatic discs "
                        "join them when their levels agree, as in register-to-template)")
    p.add_argument("-o", "--outdir", required=True, help="output folder (several files)")
    p.add_argument("--qc", metavar="QCROOT", help="also add the run to the HTML QC report in folder QCROOT")
    add_result_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.errors import InputError
    from spinereg.pipelines.registration import chain_job

    if len(args.seg) != len(args.images):
        raise InputError(f"{len(args.images)} images but {len(args.seg)} segmentations", None,
                         "give one --seg per image, 'none' where there is none")
    segs = [None if s.lower() == "none" else s for s in args.seg]
    given = {int(k): (w1, w2) for k, w1, w2 in args.link_warp}
    rec, display = start_run(args, "chain", stages=3 + bool(args.qc))
    res = chain_job(args.images, segs, args.outdir, labels=args.labels, ldisc=args.ldisc, lrootlet=args.lrootlet,
                    template=args.template, contrast=args.contrast, given=given, link_param=args.link_param,
                    direct=not args.no_direct, overwrite=args.overwrite, auto_discs=not args.no_auto_discs,
                    qc_root=args.qc, run=rec, progress=display.bar())
    print_warnings("chain", res.extra.get("warnings", []))
    # the verdict's notes say what to do (e.g. a target reaching beyond the anatomical image)
    print_warnings("chain", [n for n in (res.metrics.get("qc") or {}).get("notes", [])
                             if "outside the field of view of the images its" in n])
    return finish_run(args, "chain", res.metrics, res.outdir, res.files, res.qc_index, res.seconds)
