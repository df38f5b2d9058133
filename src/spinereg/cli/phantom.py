"""``spinereg phantom``: a synthetic cord EPI subject with ground truth (distortion, motion)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "phantom", "write a synthetic EPI subject with ground truth",
                   "T2w, T2*w, 4D GE-EPI, blip-up/down pair, field map (Hz, phase difference, "
                   "magnitude) with BIDS sidecars; truth/ holds the field, voxel shift map, warps, "
                   "motion table (volume,slice,group,tx_mm,ty_mm) and parameters.")
    p.add_argument("-o", "--output", required=True, help="output folder (several files)")
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 20], metavar=("NX", "NY", "NZ"))
    p.add_argument("--voxel", type=float, nargs=3, default=[1.0, 1.0, 5.0], metavar=("DX", "DY", "DZ"),
                   help="EPI voxel size in mm")
    p.add_argument("--readout-time", type=float, default=0.030, help="total readout time (s)")
    p.add_argument("--pe", default="j", choices=["i", "i-", "j", "j-"], help="phase-encode direction")
    p.add_argument("--field-max", type=float, default=70.0, help="max |B0 field| in the body (Hz)")
    p.add_argument("--volumes", type=int, default=10, help="volumes of the 4D series")
    p.add_argument("--motion", type=float, default=1.0, help="motion amplitude (mm, 0 = none)")
    p.add_argument("--multiband", type=int, default=1, help="multiband factor (divides NZ)")
    p.add_argument("--noise", type=float, default=0.01, help="Rician noise sigma (CSF = 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinereg.errors import InputError
    from spinereg.phantom.epi import make_epi_phantom

    if args.volumes < 1 or args.noise < 0 or args.motion < 0 or min(args.voxel) <= 0 or min(args.shape) < 1:
        raise InputError("--volumes, --shape and --voxel must be positive; --noise and --motion >= 0",
                         None, "e.g. --shape 64 64 20 --voxel 1 1 5 --volumes 10")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError("output is a file, not a folder", out, "give a folder name")
    from spinereg.io.staging import OutputFolder

    folder = OutputFolder(out, overwrite=args.overwrite).check()  # before the phantom is made
    ph = make_epi_phantom(shape=args.shape, voxel_mm=args.voxel, readout_s=args.readout_time,
                          pe=args.pe, field_max_hz=args.field_max, n_volumes=args.volumes,
                          motion=args.motion, multiband=args.multiband, noise=args.noise, seed=args.seed)
    with folder as tmp:  # appears only when complete
        ph.save(tmp, overwrite=True)
    print(out)
    return 0
