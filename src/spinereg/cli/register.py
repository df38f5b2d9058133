"""``spinereg register``: register one image onto another (SCT's sct_register_multimodal)."""

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
Register a source image onto a destination image (any contrasts) and write SCT's outputs into the
folder -o: <src>_reg, <dest>_reg, warp_<src>2<dest>, warp_<dest>2<src>, metrics.json with a
pass/warn/fail verdict, provenance.json. The folder appears only when everything was written.
Default steps: multimodal_spinereg_imseg with both segmentations, multimodal_epi with only --iseg
(multimodal_dwi, by mutual information, when -d's file name holds dwi or dmri),
multimodal_spinereg_im otherwise. Exit code 3 when the verdict is fail (--allow-fail: 0)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "register", "register a source image onto a destination image (any contrasts)",
                   DESCRIPTION)
    p.add_argument("-i", "--input", required=True, help="source image (moved)")
    p.add_argument("-d", "--dest", required=True, help="destination image (fixed)")
    p.add_argument("--iseg", help="cord segmentation of the source ('auto': segmented automatically, written into -o)")
    p.add_argument("--dseg", help="cord segmentation of the destination ('auto': segmented automatically)")
    p.add_argument("-m", "--mask", help="mask on the destination (binary or soft) restricting the image metric")
    p.add_argument("--init-warp", help="initial transform source -> destination (warp or affine)")
    p.add_argument("--init-warp-inv", help="its inverse (default: computed)")
    p.add_argument("--param", help="steps ('step=1,type=seg,algo=centermass:step=2,...') or a preset name "
                                   "(default: by the segmentations given, see above)")
    p.add_argument("--identity", action="store_true", help="no estimation: resample through the headers only")
    p.add_argument("-x", "--interp", default="spline", choices=["nn", "linear", "spline"],
                   help="interpolation of the output images")
    p.add_argument("-o", "--outdir", required=True, help="output folder (several files)")
    p.add_argument("--qc", metavar="QCROOT", help="also add the run to the HTML QC report in folder QCROOT")
    add_result_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.pipelines.registration import multimodal_job

    rec, display = start_run(args, "register", stages=7 if args.qc else 6)
    res = multimodal_job(args.input, args.dest, args.outdir, iseg=args.iseg, dseg=args.dseg, mask=args.mask,
                         init_warp=args.init_warp, init_warp_inv=args.init_warp_inv, param=args.param,
                         identity=args.identity, interp=args.interp, qc_root=args.qc, overwrite=args.overwrite,
                         run=rec, progress=display.bar())
    print_warnings("register", res.extra.get("warnings", []))
    return finish_run(args, "register", res.metrics, res.outdir, res.files, res.qc_index, res.seconds)
