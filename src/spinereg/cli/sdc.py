"""``spinereg sdc fieldmap|topup|anat``: susceptibility distortion correction of EPI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import add_common, print_warnings

if TYPE_CHECKING:  # pragma: no cover
    import argparse

_OUT_HELP = ("output folder (several files): <name>_sdc.nii.gz (corrected), <name>_fieldmap_hz.nii.gz, <name>_vsm.nii.gz, "
             "warp_<name>_sdc.nii.gz (pull on the EPI grid; first warp of the EPI -> template chain), "
             "<name>_sdc.json")


def _common(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--pe", choices=["i", "i-", "j", "j-"], help="phase-encode direction (default: sidecar)")
    p.add_argument("--readout-time", type=float, help="total readout time in s (default: sidecar)")
    p.add_argument("--json", help="EPI sidecar (default: the .json next to the EPI)")
    p.add_argument("--no-jacobian", action="store_true", help="do not modulate intensities")
    p.add_argument("--name", default="epi", help="output name prefix (default epi)")
    p.add_argument("-o", "--output", required=True, help=_OUT_HELP)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sdc", help="susceptibility distortion correction (field map, reverse PE, anatomy)",
                       description="Correct EPI distortion along the phase-encode axis: METHOD fieldmap (a "
                                   "field map in Hz or a phase difference), topup (a blip-up/down pair) or anat "
                                   "(registration to the anatomy along the phase-encode axis).")
    add_common(p)
    methods = p.add_subparsers(dest="method", metavar="METHOD")
    methods.required = True
    f = methods.add_parser("fieldmap", help="with a field map in Hz or a phase difference",
                           description="Correct an EPI with a field map in Hz or a phase difference. With "
                                       "--magnitude the correction's sign is checked: a field map of the wrong "
                                       "sign or the wrong phase-encode polarity (j vs j-) doubles the distortion "
                                       "instead of removing it, so when the EPI corrected with the opposite sign "
                                       "matches the magnitude (an undistorted gradient-echo image) better by more than "
                                       "0.03 local correlation, a warning says 'the field map's sign or "
                                       "the phase-encode polarity looks reversed' (the outputs are still "
                                       "written, exit 0); the figures are in <name>_sdc.json "
                                       "(polarity_check). Not judged when the correction moves the subject "
                                       "under 1.5 voxels.")
    f.add_argument("-i", "--input", required=True, help="EPI (3D or 4D)")
    src = f.add_mutually_exclusive_group(required=True)
    src.add_argument("--fieldmap", help="field map in Hz")
    src.add_argument("--phasediff", help="phase difference in radians")
    f.add_argument("--fieldmap-units", choices=["Hz", "rad/s", "T"],
                   help="units of --fieldmap (default: its sidecar's \"Units\", else Hz after a check of "
                        "its values: rad/s-sized maps and phase differences are refused)")
    f.add_argument("--echo-times", type=float, nargs=2, metavar=("TE1", "TE2"),
                   help="echo times of the phase difference (s; default: its sidecar)")
    f.add_argument("--magnitude", help="field-map magnitude: checks the correction's sign (field map / --pe "
                                       "polarity) and, for a field map of unstated units, that it is not in "
                                       "rad/s read as Hz; it is what --rigid aligns")
    f.add_argument("--rigid", action="store_true", help="rigidly align the magnitude to the EPI first")
    _common(f)
    t = methods.add_parser("topup", help="estimate the field from a blip-up/blip-down pair",
                           description="Estimate the field from a blip-up/blip-down pair and correct.")
    t.add_argument("-i", "--input", required=True, help="blip-up EPI (PE as --pe/sidecar)")
    t.add_argument("--reverse", required=True, help="blip-down EPI (opposite PE), same grid")
    t.add_argument("--apply-to", help="EPI series (blip-up PE) to correct with the estimated field")
    _common(t)
    a = methods.add_parser("anat", help="field-map-less: PE-only registration to an anatomical image",
                           description="Field-map-less correction: registration to an undistorted anatomical "
                                       "image along the phase-encode axis only. An estimate whose 99th percentile "
                                       "shift in the subject exceeds 5 voxels (real EPI distortion is a few voxels) "
                                       "is written with a warning: -d is probably not the same subject, position "
                                       "or coverage (<name>_sdc.json: plausibility_check).")
    a.add_argument("-i", "--input", required=True, help="EPI (3D or 4D; the mean is registered)")
    a.add_argument("-d", "--dest", required=True, help="undistorted anatomy (T2*w or T2w)")
    a.add_argument("-m", "--mask", help="cord mask in the anatomy's space (focus)")
    a.add_argument("-w", "--init-warp", nargs="+", default=[], help="pull transforms EPI -> anatomy")
    a.add_argument("--dilate", type=float, default=6.0, help="mask dilation (mm, default 6)")
    _common(a)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinereg.errors import InputError

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError("output is a file, not a folder", out, "give a folder name")
    # --name ../x wrote x_sdc.nii.gz ... beside the folder, past its check of existing outputs, exit 0
    if not args.name or "/" in args.name or "\\" in args.name or args.name in (".", ".."):
        raise InputError(f"--name {args.name!r} is not a file name prefix", None,
                         "give a name without a folder (e.g. --name epi); the folder goes in -o")
    jac = not args.no_jacobian
    if args.method == "fieldmap":
        from spinereg.epi.fieldmap import SDCResult, correct_fieldmap
    elif args.method == "topup":
        from spinereg.epi.fieldmap import SDCResult
        from spinereg.epi.topup import correct_reverse_pe
    else:
        from spinereg.epi.fieldmap import SDCResult
        from spinereg.epi.fieldmapless import correct_fieldmapless
    from spinereg.io.staging import OutputFolder

    # fail before the work when outputs exist (nothing is created until the end)
    probe = SDCResult.outputs(out, args.name)
    folder = OutputFolder(out, [p.name for p in probe.values()], overwrite=args.overwrite).check()
    if args.method == "fieldmap":
        res = correct_fieldmap(args.input, args.fieldmap, phasediff=args.phasediff,
                               echo_times=tuple(args.echo_times) if args.echo_times else None,
                               magnitude=args.magnitude, pe=args.pe, readout_s=args.readout_time,
                               sidecar=args.json, rigid=args.rigid, jacobian_mod=jac,
                               fieldmap_units=args.fieldmap_units)
    elif args.method == "topup":
        res = correct_reverse_pe(args.input, args.reverse, pe=args.pe, readout_s=args.readout_time,
                                 sidecar=args.json, apply_to=args.apply_to, jacobian_mod=jac)
    else:
        from spinereg.transforms.itk import load_transform

        init = [load_transform(w) for w in args.init_warp]
        res = correct_fieldmapless(args.input, args.dest, mask=args.mask, init=init or None,
                                   pe=args.pe, readout_s=args.readout_time, sidecar=args.json,
                                   dilate_mm=args.dilate, jacobian_mod=jac)
    with folder as tmp:
        res.save(tmp, args.name, overwrite=True)  # the folder appears only when complete
    paths = SDCResult.outputs(out, args.name)
    if res.info.get("warning"):
        print_warnings("sdc", [res.info["warning"]])
    inside = res.info.get("object_p99_shift_vox")
    print(f"max shift {res.info['max_abs_shift_vox']:.2f} voxels"
          + (f" (99th percentile in the subject {inside:.2f})" if inside is not None else "")
          + f", {res.info['seconds']:.2f} s")
    print(paths["corrected"])
    return 0
