"""``spinereg apply``: apply warps/affines to an image with one interpolation."""

from __future__ import annotations

from spinereg.cli.common import new_parser
from spinereg.io.image import check_writable, load_image, output_path
from spinereg.progress import progress_bar
from spinereg.transforms.apply import apply_transforms_file
from spinereg.transforms.itk import load_transform

WARP_HELP = ("warps/affines in application order (A->B first, then B->C); prefix 'inv:' or "
             "write ANTs-style '[file,1]' to use an inverse")


def register(sub) -> None:
    p = new_parser(sub, "apply", "apply transforms to an image (3D or 4D, streamed)")
    p.add_argument("-i", "--input", required=True, help="image to move")
    p.add_argument("-d", "--dest", required=True, help="reference image (output grid)")
    p.add_argument("-w", "--warp", nargs="*", default=[], help=WARP_HELP)
    p.add_argument("-o", "--output", required=True, help="output image")
    p.add_argument("-x", "--interp", default="spline", choices=["nn", "linear", "spline", "label"],
                   help="interpolation (default spline, as SCT)")
    p.set_defaults(func=run)


def run(args) -> int:
    ref = load_image(args.dest, ndim=(3, 4), check_finite=False, lazy=True, what="reference image")
    transforms = [load_transform(w) for w in args.warp]
    out = check_writable(output_path(args.output), args.overwrite)  # fail before the work
    apply_transforms_file(args.input, ref.grid, transforms, out, interp=args.interp,
                          overwrite=args.overwrite, progress=progress_bar("apply"))
    print(out)
    return 0
