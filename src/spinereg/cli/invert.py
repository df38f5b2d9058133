"""``spinereg invert``: invert a warp field (fixed point) or an affine (exact)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "invert", "invert a warp field or an affine",
                   "Invert an affine exactly, or a displacement field by fixed-point iteration (its "
                   "residual is printed as JSON). A singular affine is refused (exit 2).")
    p.add_argument("-w", "--warp", required=True, help="warp field (.nii.gz) or affine (.mat/.txt)")
    p.add_argument("-d", "--dest", help="image whose grid receives the inverse field "
                                        "(the source space of the warp; default: the warp's grid)")
    p.add_argument("-o", "--output", required=True, help="output file: a warp (.nii.gz) or an affine (.mat/.txt)")
    p.add_argument("--iterations", type=int, default=50, help="fixed-point iterations")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.io.image import check_writable, read_grid
    from spinereg.transforms.affine import AffineTransform
    from spinereg.transforms.itk import load_transform, save_transform
    from spinereg.transforms.sanity import require_invertible

    t = load_transform(args.warp)
    require_invertible(t, args.warp)
    grid = read_grid(args.dest, what="reference image") if args.dest and not isinstance(t, AffineTransform) else None
    check_writable(args.output, args.overwrite)  # fail before the work
    if isinstance(t, AffineTransform):
        inv = t.inverse()
    else:
        inv = t.inverse(grid, iterations=args.iterations)
        if getattr(inv, "report", None) is not None:  # none for 'inv:' of a field: the field itself
            print(json.dumps({"inverse_residual_mm": inv.report.as_dict()}))
    out = save_transform(inv, args.output, overwrite=args.overwrite)
    print(out)
    return 0
