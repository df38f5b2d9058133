"""``spinereg invert``: invert a warp field (fixed point) or an affine (exact)."""

from __future__ import annotations

import json

from spinereg.cli.common import new_parser
from spinereg.io.image import check_writable, load_image
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.itk import load_transform, save_transform


def register(sub) -> None:
    p = new_parser(sub, "invert", "invert a warp field or an affine")
    p.add_argument("-w", "--warp", required=True, help="warp field (.nii.gz) or affine (.mat/.txt)")
    p.add_argument("-d", "--dest", help="image whose grid receives the inverse field "
                                        "(the source space of the warp); default: the warp's grid")
    p.add_argument("-o", "--output", required=True, help="output warp or affine")
    p.add_argument("--iterations", type=int, default=50, help="fixed-point iterations (default 50)")
    p.set_defaults(func=run)


def run(args) -> int:
    t = load_transform(args.warp)
    check_writable(args.output, args.overwrite)  # fail before the work
    if isinstance(t, AffineTransform):
        inv = t.inverse()
    else:
        grid = load_image(args.dest, ndim=(3, 4), check_finite=False, lazy=True).grid if args.dest else None
        inv = t.inverse(grid, iterations=args.iterations)
        print(json.dumps({"inverse_residual_mm": inv.report.as_dict()}))
    out = save_transform(inv, args.output, overwrite=args.overwrite)
    print(out)
    return 0
