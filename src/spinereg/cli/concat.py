"""``spinereg concat``: compose warps/affines into one displacement field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.apply import WARP_HELP
from spinereg.cli.common import new_parser, print_warnings
from spinereg.errors import InputError

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
    from pathlib import Path

    from spinereg.io.image import check_writable, output_path, read_grid
    from spinereg.transforms.affine import AffineTransform
    from spinereg.transforms.base import Chain
    from spinereg.transforms.displacement import DisplacementField
    from spinereg.transforms.itk import (
        is_affine_file,
        load_transform,
        write_affine,
        write_displacement,
    )
    from spinereg.transforms.sanity import check_chain_domain, order_warning

    if not args.warp:
        raise InputError("no transform given", None, "pass at least one -w")
    ref = read_grid(args.dest, what="reference image")
    transforms = [load_transform(w) for w in args.warp]
    check_chain_domain(ref, transforms, args.warp, args.dest)
    if is_affine_file(args.output):  # -o w.txt wrote the field to w.txt.nii.gz, exit 0 (before session 38)
        fields = [w for w, t in zip(args.warp, transforms, strict=True) if not isinstance(t, AffineTransform)]
        if fields:
            name = Path(args.output)
            raise InputError(f"the composition holds a displacement field ({fields[0]}): it is a warp, "
                             f"not an affine ({name.suffix})", args.output,
                             f"name the output .nii.gz (e.g. {name.with_suffix('.nii.gz').name})")
        out = check_writable(args.output, args.overwrite)
        composed = transforms[0]
        for t in transforms[1:]:
            composed = composed @ t  # application order: pull map = first(second(...(x)))
        out = write_affine(composed, out, overwrite=args.overwrite)
        print(out)
        return 0
    chain = Chain(transforms)
    out = check_writable(output_path(args.output), args.overwrite)  # fail before the work
    field = DisplacementField.from_transform(chain, ref)
    out = write_displacement(field, out, overwrite=args.overwrite)
    if (warning := order_warning(ref, transforms, args.warp, "-d")) is not None:
        print_warnings("concat", [warning])
    print(out)
    return 0
