"""``spinereg concat``: compose warps/affines into one displacement field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.apply import WARP_HELP
from spinereg.cli.common import new_parser, print_warnings

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "concat", "compose transforms (application order) into one warp field",
                   "Compose warps/affines (A->B first, then B->C) into one ITK/ANTs displacement field on "
                   "the grid of -d. A warp whose grid the reference's points never reach is refused (exit 2).")
    p.add_argument("-d", "--dest", required=True, help="reference image: grid of the output field")
    p.add_argument("-w", "--warp", nargs="+", required=True, help=WARP_HELP)
    p.add_argument("-o", "--output", required=True, help="output warp file (5D NIfTI, ITK/ANTs; .nii.gz added "
                                                          "without a suffix); .txt/.mat/.tfm: an affine, when "
                                                          "every transform is one (else refused, exit 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.transforms.apply_checks import concat_checked

    res = concat_checked(args.dest, args.warp, args.output, overwrite=args.overwrite)
    if res.warnings:
        print_warnings("concat", res.warnings)
    print(res.path)
    return 0
