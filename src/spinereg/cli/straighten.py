"""``spinereg straighten``: straighten an image along its cord (SCT's ``sct_straighten_spinalcord``)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser, print_warnings

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "straighten", "straighten an image along its spinal cord (warps both ways)",
                   "Writes into -o: <img>_straight.nii.gz, warp_curve2straight.nii.gz, "
                   "warp_straight2curve.nii.gz (ITK/ANTs fields, as SCT names them), straight_ref.nii.gz "
                   "and straightening.json (SCT's straightening figures on the segmentation, the round "
                   "trip of the two fields, provenance). All files appear together or none.")
    p.add_argument("-i", "--input", required=True, help="image to straighten (3D, or a 4D series)")
    p.add_argument("-s", "--seg", required=True, help="cord segmentation of the image (binary or soft; any grid "
                                                     "in the same world space)")
    p.add_argument("-o", "--outdir", default=".", help="output folder: several files (default: the current folder)")
    p.add_argument("-x", "--interp", default="spline", choices=["nn", "linear", "spline", "label"],
                   help="interpolation of the image (default: spline, as SCT)")
    p.add_argument("--xy-size", type=float, metavar="MM",
                   help="width of the straight image across R-L and A-P, mm (SCT's -xy_size; default: what "
                        "covers the image around the cord, at most 80 mm)")
    p.add_argument("--voxel-size", type=float, metavar="MM",
                   help="isotropic voxel size of the straight image, mm (default: the image's in-plane "
                        "resolution and S-I spacing)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.pipelines.straighten import straighten_image

    t0 = time.perf_counter()
    inputs = {"image": str(args.input), "seg": str(args.seg)}
    out = straighten_image(args.input, args.seg, args.outdir, interp=args.interp, xy_size_mm=args.xy_size,
                           voxel_size=args.voxel_size, overwrite=args.overwrite, inputs=inputs)
    print_warnings("straighten", out.warnings)
    keys = ("mse_vox2", "max_dist_vox", "sct_rms_mm", "roundtrip_max_mm", "length_mm", "sct_criteria_met")
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.metrics.items() if k in keys}
    print(json.dumps({"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2),
                      "files": {k: str(v) for k, v in out.files.items()}, **summary}, indent=1))
    return 0
