"""``spinereg concat``: compose warps/affines into one displacement field."""

from __future__ import annotations

from spinereg.cli.apply import WARP_HELP
from spinereg.cli.common import new_parser
from spinereg.errors import InputError
from spinereg.io.image import check_writable, load_image, output_path
from spinereg.transforms.base import Chain
from spinereg.transforms.displacement import DisplacementField
from spinereg.transforms.itk import load_transform, write_displacement


def register(sub) -> None:
    p = new_parser(sub, "concat", "compose transforms (application order) into one warp field")
    p.add_argument("-d", "--dest", required=True, help="reference image: grid of the output field")
    p.add_argument("-w", "--warp", nargs="+", required=True, help=WARP_HELP)
    p.add_argument("-o", "--output", required=True, help="output warp (5D NIfTI, ITK/ANTs)")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.warp:
        raise InputError("no transform given", None, "pass at least one -w")
    ref = load_image(args.dest, ndim=(3, 4), check_finite=False, lazy=True, what="reference image")
    chain = Chain([load_transform(w) for w in args.warp])
    out = check_writable(output_path(args.output), args.overwrite)  # fail before the work
    field = DisplacementField.from_transform(chain, ref.grid)
    out = write_displacement(field, out, overwrite=args.overwrite)
    print(out)
    return 0
