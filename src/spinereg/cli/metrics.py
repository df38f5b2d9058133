"""``spinereg metrics``: registration quality metrics, printed as JSON, optionally saved.

Each subcommand prints its result as JSON on stdout; ``-o out.json`` or ``-o out.csv`` also
writes it (CSV columns: metric, quantity, label, z_mm, value, unit; see
:mod:`spinereg.metrics.report`).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.metrics.report import MetricResult

# the library is imported inside each command (the parser is built without numpy/scipy/nibabel)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "metrics", help="registration quality metrics (Dice, distances, Jacobian, inverse consistency)",
        description="Registration quality metrics in world space (mm). Each prints JSON; "
                    "-o FILE.json or FILE.csv also saves it.")
    msub = p.add_subparsers(dest="metric", metavar="METRIC")
    msub.required = True

    d = _sub(msub, "dice", "Dice overlap of two masks on the same grid")
    _pair(d, "mask")
    d.add_argument("--zb", action="store_true",
                   help="count only slices (along S-I) where both masks exist, as SCT's tests")
    d.set_defaults(func=_run_dice)

    h = _sub(msub, "hausdorff", "Hausdorff (max, 95th percentile) and mean surface distance (mm)")
    _pair(h, "mask")
    h.set_defaults(func=_run_hausdorff)

    c = _sub(msub, "centerline", "per-slice in-plane distance between two centerlines (mm)")
    _pair(c, "segmentation or centerline mask")
    c.set_defaults(func=_run_centerline)

    lab = _sub(msub, "labels", "distances between labels of equal value (mm)")
    lab.add_argument("-i", "--input", required=True, help="label file A")
    lab.add_argument("-r", "--ref", required=True, help="label file B")
    lab.set_defaults(func=_run_labels)

    j = _sub(msub, "jacobian", "Jacobian determinant of a warp (min, max, %% folded voxels)")
    j.add_argument("-w", "--warp", required=True, help="displacement field (ITK/ANTs/SCT warp)")
    j.add_argument("-m", "--mask", help="restrict the statistics to this mask (on the warp's grid)")
    j.add_argument("--thr", type=float, default=0.5, help="mask threshold")
    j.add_argument("--out-map", help="also save the determinant map to this file (NIfTI, NaN where undefined)")
    j.set_defaults(func=_run_jacobian)

    ic = _sub(msub, "inverse-consistency", "round-trip residual of a forward/inverse warp pair (mm)")
    ic.add_argument("-w", "--warp", required=True, help="forward warp (or affine with -r)")
    ic.add_argument("-winv", "--warp-inverse", required=True, help="its inverse")
    ic.add_argument("-r", "--ref", help="image whose grid to evaluate on (default: the warp's)")
    ic.add_argument("--stride", type=int, default=1, help="use every N-th voxel")
    ic.add_argument("--one-way", action="store_true", help="forward direction only")
    ic.set_defaults(func=_run_consistency)


def _sub(msub: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    p = new_parser(msub, name, help_)
    p.add_argument("-o", "--output", help="also write the result to one file, FILE.json or FILE.csv")
    return p


def _pair(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-i", "--input", required=True, help=f"{what} A (e.g. warped)")
    p.add_argument("-r", "--ref", required=True, help=f"{what} B (e.g. ground truth)")
    p.add_argument("--thr", type=float, default=0.5, help="threshold: voxels > thr")


def _check_output(args: argparse.Namespace) -> None:
    from spinereg.io.image import check_writable
    from spinereg.metrics.report import check_output_suffix

    if args.output:
        check_writable(check_output_suffix(args.output), args.overwrite)


def _emit(args: argparse.Namespace, result: MetricResult) -> int:
    from spinereg.metrics.report import to_json, write_result

    sys.stdout.write(to_json(result) + "\n")
    if args.output:
        write_result(result, args.output, overwrite=args.overwrite)
    return 0


def _load_pair(args: argparse.Namespace, what: str):
    from spinereg.io.image import load_image

    return load_image(args.input, ndim=3, what=what), load_image(args.ref, ndim=3, what=what)


def _run_dice(args: argparse.Namespace) -> int:
    from spinereg.metrics.overlap import dice

    _check_output(args)
    a, b = _load_masks(args)  # an intensity image gave a Dice (0.049) before session 36
    return _emit(args, dice(a, b, threshold=args.thr, zb=args.zb))


def _load_masks(args: argparse.Namespace):
    from spinereg.io.sanity import require_mask

    a, b = _load_pair(args, "mask")
    # an intensity image or a point-label file thresholded at --thr is a "mask" too: t2.nii.gz
    # gave a Hausdorff distance of 36 mm and a centerline RMS of 1.5 mm (labels.nii.gz: 1.05 mm
    # over its 2 points) against t2's cord before session 37
    require_mask(a, "mask", "-i")
    require_mask(b, "mask", "-r")
    return a, b


def _run_hausdorff(args: argparse.Namespace) -> int:
    from spinereg.metrics.distance import hausdorff

    _check_output(args)
    a, b = _load_masks(args)
    return _emit(args, hausdorff(a, b, threshold=args.thr))


def _run_centerline(args: argparse.Namespace) -> int:
    from spinereg.metrics.centerline import centerline_distance

    _check_output(args)
    a, b = _load_masks(args)
    return _emit(args, centerline_distance(a, b, threshold=args.thr))


def _run_labels(args: argparse.Namespace) -> int:
    from spinereg.metrics.labels import label_distances

    _check_output(args)
    a, b = _load_pair(args, "label file")
    return _emit(args, label_distances(a, b))


def _run_jacobian(args: argparse.Namespace) -> int:
    from spinereg.io.image import check_writable, load_image, output_path, save_image
    from spinereg.io.sanity import require_mask
    from spinereg.metrics.jacobian import jacobian
    from spinereg.transforms.itk import read_displacement

    _check_output(args)
    out_map = None
    if args.out_map:
        out_map = check_writable(output_path(args.out_map), args.overwrite)
    warp = read_displacement(args.warp)
    mask = load_image(args.mask, ndim=3, what="mask") if args.mask else None
    if mask is not None:  # t2.nii.gz as -m: every voxel > 0.5 counted, "masked": true
        require_mask(mask, "mask", "-m")
    result = jacobian(warp, mask, threshold=args.thr, warp_name=args.warp)
    if out_map is not None:
        save_image(result.det_image(), out_map, overwrite=args.overwrite)
    return _emit(args, result)


def _run_consistency(args: argparse.Namespace) -> int:
    from spinereg.io.image import load_image
    from spinereg.metrics.consistency import inverse_consistency
    from spinereg.transforms.itk import load_transform

    _check_output(args)
    fwd = load_transform(args.warp)
    inv = load_transform(args.warp_inverse)
    grid = load_image(args.ref, ndim=(3, 4), lazy=True, check_finite=False).grid if args.ref else None
    result = inverse_consistency(fwd, inv, grid=grid, both=not args.one_way, stride=args.stride,
                                 names=(args.warp, args.warp_inverse))
    return _emit(args, result)
