"""``spinereg apply``: apply warps/affines to an image with one interpolation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser, print_warnings
from spinereg.errors import EXIT_OK, EXIT_RESULT_FAILED

if TYPE_CHECKING:  # pragma: no cover
    import argparse

WARP_HELP = ("warps/affines in application order (A->B first, then B->C); prefix 'inv:' or "
             "write ANTs-style '[file,1]' to use an inverse")

DESCRIPTION = """\
Resample -i onto the grid of -d through the transforms -w (one interpolation; 4D series are
streamed volume by volume). Before any work the transforms are checked against the images: a
warp made for another space, -i/-d swapped, or no common extent is refused (exit 2). An all-zero
result is written but reported (exit 3; --allow-fail: 0)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "apply", "apply transforms to an image (3D or 4D, streamed)", DESCRIPTION)
    p.add_argument("-i", "--input", required=True, help="image to move")
    p.add_argument("-d", "--dest", required=True, help="reference image (its grid is the output grid)")
    p.add_argument("-w", "--warp", nargs="+", default=[], metavar="W",
                   help=WARP_HELP + " (default: none, i.e. resample through the headers only)")
    p.add_argument("-o", "--output", required=True, help="output image file (.nii.gz added without a suffix)")
    p.add_argument("-x", "--interp", default="spline", choices=["nn", "linear", "spline", "label"],
                   help="interpolation (spline as SCT)")
    p.add_argument("--allow-fail", action="store_true", help="exit 0 even when the result is all zero")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.progress import progress_bar
    from spinereg.transforms.apply_checks import apply_checked

    res = apply_checked(args.input, args.dest, args.warp, args.output, interp=args.interp,
                        overwrite=args.overwrite, progress=progress_bar("apply"))
    if res.warnings:  # said once the result exists (an error stays the one line)
        print_warnings("apply", res.warnings)
    print(res.path)
    if res.all_zero:
        print(f"spinereg apply: result: {res.path} is all zero (the transforms bring nothing of {args.input} onto "
              f"{args.dest}) -- exit code {0 if args.allow_fail else 3}", file=sys.stderr)
        return EXIT_OK if args.allow_fail else EXIT_RESULT_FAILED
    return EXIT_OK
