"""``spinereg register``: register one image onto another (SCT's sct_register_multimodal)."""

from __future__ import annotations

import json
import time

from spinereg.cli.common import new_parser
from spinereg.progress import progress_bar


def register(sub) -> None:
    p = new_parser(sub, "register", "register a source image onto a destination image (any contrasts)")
    p.add_argument("-i", "--input", required=True, help="source image (moved)")
    p.add_argument("-d", "--dest", required=True, help="destination image (fixed)")
    p.add_argument("--iseg", help="cord segmentation of the source")
    p.add_argument("--dseg", help="cord segmentation of the destination")
    p.add_argument("-m", "--mask", help="mask on the destination (binary or soft) restricting the image metric")
    p.add_argument("--init-warp", help="initial transform source -> destination (warp or affine)")
    p.add_argument("--init-warp-inv", help="its inverse (computed when absent)")
    p.add_argument("--param", help="steps ('step=1,type=seg,algo=centermass:step=2,...') or a preset name")
    p.add_argument("--identity", action="store_true", help="no estimation: resample through the headers only")
    p.add_argument("-x", "--interp", default="spline", choices=["nn", "linear", "spline"],
                   help="interpolation of the output images (default spline)")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from spinereg.register.multimodal import register_multimodal
    from spinereg.register.multimodal_outputs import write_multimodal_outputs

    t0 = time.perf_counter()
    reg = register_multimodal(args.input, args.dest, iseg=args.iseg, dseg=args.dseg, mask=args.mask,
                              init_warp=args.init_warp, init_warp_inv=args.init_warp_inv, param=args.param,
                              identity=args.identity, progress=progress_bar("steps"))
    inputs = {k: getattr(args, k) for k in ("input", "dest", "iseg", "dseg", "mask", "init_warp", "init_warp_inv",
                                             "param")}
    files = write_multimodal_outputs(reg, args.outdir, overwrite=args.overwrite, inputs=inputs, interp=args.interp)
    print(json.dumps({"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2),
                      "files": {k: str(v) for k, v in files.items()}, **reg.metrics}, indent=1))
    return 0
