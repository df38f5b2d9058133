"""``spinereg invert``: invert a warp field (fixed point) or an affine (exact)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse


#: below this fraction of the inverse's points sent onto the warp's grid the inverse failed
MIN_DEFINED = 0.25


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
    from spinereg.errors import InputError
    from spinereg.io.image import check_writable, read_grid
    from spinereg.transforms.affine import AffineTransform
    from spinereg.transforms.itk import load_transform, save_transform, transform_output_path
    from spinereg.transforms.sanity import (
        check_inverse_grid,
        inverse_defined_fraction,
        require_invertible,
    )

    if args.iterations < 1:  # -5 ran as 0 iterations (the first guess written), before session 37
        raise InputError(f"--iterations {args.iterations}: at least 1 is needed", None, "give --iterations 1 or more")
    t = load_transform(args.warp)
    require_invertible(t, args.warp)
    grid = read_grid(args.dest, what="reference image") if args.dest and not isinstance(t, AffineTransform) else None
    if not isinstance(t, AffineTransform):  # the inverse of warp_template2anat on t2's grid (default)
        # had a residual of 150 mm and on PAM50's grid was the identity with "residual 0", exit 0
        check_inverse_grid(t, grid or t.grid, args.warp, args.dest)
    # an affine's inverse is an affine (.txt/.mat), a field's a NIfTI warp: checked before the work
    check_writable(args.output, args.overwrite)
    output = check_writable(transform_output_path(isinstance(t, AffineTransform), args.output), args.overwrite)
    if isinstance(t, AffineTransform):
        inv = t.inverse()
    else:
        inv = t.inverse(grid, iterations=args.iterations)
        if getattr(inv, "report", None) is not None:  # none for 'inv:' of a field: the field itself
            print(json.dumps({"inverse_residual_mm": inv.report.as_dict()}))
    out = save_transform(inv, output, overwrite=args.overwrite)
    print(out)
    if not isinstance(t, AffineTransform):
        # the fixed point can stop at the identity where the warp's image lies off its own grid
        # (warp_anat2template -d t2, warp_template2anat -d PAM50: all-zero fields with "residual
        # 0", exit 0, before session 37); its residual there says nothing
        frac = inverse_defined_fraction(t, inv, inv.grid)
        if frac < MIN_DEFINED:
            print(f"spinereg invert: FAIL: {out}: the inverse leaves {100 * (1 - frac):.0f}% of the points where "
                  "it is defined unmoved or off their pre-image (no pre-image found; its residual there is "
                  "meaningless) -- fix: " + ("" if args.dest else "give -d the image in the space the warp "
                  "maps to (warp_A2B: -d A), or ") + "apply the inverse where it is needed instead, "
                  "'inv:WARP' in spinereg apply / concat (solved at the points it is applied to)", file=sys.stderr)
            return 3
    return 0
