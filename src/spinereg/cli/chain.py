"""``spinereg chain``: register images through intermediate references to a template."""

from __future__ import annotations

import json
import time

from spinereg.cli.common import add_landmarks, add_template, new_parser
from spinereg.progress import progress_bar


def register(sub) -> None:
    p = new_parser(sub, "chain", "register a chain target -> intermediates -> anatomical -> template; "
                                 "write composed template warps for every image")
    p.add_argument("-i", "--images", nargs="+", required=True,
                   help="images from the target (e.g. EPI mean) to the anatomical image (last)")
    p.add_argument("--seg", nargs="+", required=True,
                   help="one cord segmentation per image, 'none' where there is none (the last is required)")
    add_landmarks(p, " of the anatomical image")
    add_template(p, "contrast of the anatomical image")
    p.add_argument("--link-warp", nargs=3, action="append", metavar=("K", "WARP_K2NEXT", "WARP_NEXT2K"), default=[],
                   help="use existing warps for link K (between image K and K+1), SCT naming")
    p.add_argument("--link-param", help="steps for the image-to-image links (default: by segmentations)")
    p.add_argument("--no-direct", action="store_true",
                   help="always compose through the chain, even for images with a segmentation")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from spinereg.errors import InputError
    from spinereg.register.chain import register_chain
    from spinereg.register.chain_outputs import write_chain_outputs

    if len(args.seg) != len(args.images):
        raise InputError(f"{len(args.images)} images but {len(args.seg)} segmentations", None,
                         "give one --seg per image, 'none' where there is none")
    segs = [None if s.lower() == "none" else s for s in args.seg]
    given = {}
    for k, w1, w2 in args.link_warp:
        given[int(k)] = (w1, w2)
    t0 = time.perf_counter()
    res = register_chain(args.images, segs, labels=args.labels, ldisc=args.ldisc, lrootlet=args.lrootlet,
                         template=args.template, contrast=args.contrast, given=given, link_param=args.link_param,
                         direct=not args.no_direct, progress=progress_bar("chain"))
    write_chain_outputs(res, args.outdir, overwrite=args.overwrite,
                        inputs={"images": args.images, "segs": args.seg, "labels": args.labels or args.ldisc
                                or args.lrootlet})
    print(json.dumps({"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2), **res.metrics},
                     indent=1))
    return 0
