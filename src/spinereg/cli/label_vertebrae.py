"""``spinereg label-vertebrae``: find every intervertebral disc along the cord (SCT's
sct_label_vertebrae)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser, print_warnings

if TYPE_CHECKING:  # pragma: no cover
    import argparse
    from pathlib import Path

    from spinereg.vertebrae.result import VertebralLabeling


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "label-vertebrae", "label every intervertebral disc and vertebral level along the cord")
    p.add_argument("-i", "--input", required=True, help="image (T1w, T2w or T2*w; sagittal, axial or 3D)")
    p.add_argument("-s", "--seg", required=True, help="cord segmentation of the image (same grid, or the same voxels in another axis order)")
    p.add_argument("-c", "--contrast", default="auto", choices=["t1", "t2", "t2s", "auto"],
                   help="image contrast (t2/t2s: bright discs; t1/auto: bright or dark)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-initz", "--initz", metavar="Z,DISC",
                   help="pin one disc: slice Z (S-I voxel index counted from the inferior end, as SCT's "
                        "RPI slice number) holds disc DISC (PAM50_label_disc value, 3 = C2/C3)")
    g.add_argument("-initfile", "--initfile", metavar="FILE",
                   help="pin one disc with SCT's init text file (one line: -initz Z,DISC)")
    g.add_argument("-initlabel", "--initlabel", metavar="FILE",
                   help="pin one disc with a label file: one voxel valued by its disc (3 = C2/C3)")
    p.add_argument("-o", "--outdir", default=".", help="output folder (default: the current folder)")
    p.add_argument("--qc", metavar="QCROOT", help="also write the labeling QC page into folder QCROOT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.io.image import load_image, on_grid_of
    from spinereg.vertebrae.init import read_initfile, resolve_init
    from spinereg.vertebrae.label import MAX_SI_SPACING_MM, label_vertebrae
    from spinereg.vertebrae.outputs import write_labeling

    t0 = time.perf_counter()
    image = load_image(args.input, ndim=3)
    # a segmentation holding the image's voxels in another axis order: exactly on the image's grid
    seg = on_grid_of(load_image(args.seg, ndim=3, what="segmentation"), image)
    initz = read_initfile(args.initfile) if args.initfile else args.initz
    init = resolve_init(initz, args.initlabel, seg, args.initfile)
    if args.qc:
        from spinereg.qc.report import check_qc_root

        check_qc_root(args.qc)
    from spinereg.io.staging import OutputFolder

    OutputFolder(args.outdir, overwrite=True).check()  # a folder we may write (named files: checked when written)
    labeling = label_vertebrae(image, seg, contrast=args.contrast, init=init)
    inputs = {"image": str(args.input), "seg": str(args.seg), "contrast": args.contrast,
              "initz": initz, "initlabel": args.initlabel, "initfile": args.initfile}
    files = write_labeling(image, seg, labeling, args.outdir, overwrite=args.overwrite, inputs=inputs)
    out = {"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2),
           "files": {k: str(v) for k, v in files.items()},
           "discs": [f"{d.name} {d.confidence:.2f}" for d in labeling.discs],
           "ambiguous": labeling.ambiguous, "gaps": labeling.gaps}
    if labeling.report.get("warning"):
        out["warning"] = labeling.report["warning"]
    from spinereg.qc.labeling import warnings_of

    print_warnings("label-vertebrae", warnings_of(labeling))  # ambiguous levels, upside down, gaps: on stderr too
    if args.qc:
        out["qc_report"] = str(_add_to_report(args, files, inputs, labeling))
    print(json.dumps(out, indent=1))
    if not labeling.discs:  # no pin (a pin that leaves no disc is refused by label_vertebrae): every output
        # all zero, 'warning: no disc found', exit 0, before session 37
        print(f"spinereg label-vertebrae: FAIL: no disc labelled: {files['seg_labeled']} and {files['disc_labels']} are "
              "empty -- fix: check that the segmentation covers the spine, or pin one disc with -initz Z,DISC "
              "(slices counted from the inferior end, 3 = C2/C3)", file=sys.stderr)
        return 3
    if labeling.report.get("si_spacing_mm", 0.0) > MAX_SI_SPACING_MM:  # mt1 (17 mm slices): "T1/T2 to
        # T3/T4" of a cervical image, a warning and exit 0, before session 37 (register-to-template refuses)
        print(f"spinereg label-vertebrae: FAIL: {labeling.report['warning']} -- fix: label a sagittal image of "
              "the same session and bring its levels over with the registration, or pin the levels yourself",
              file=sys.stderr)
        return 3
    return 0


def _add_to_report(args: argparse.Namespace, files: dict, inputs: dict,
                   labeling: VertebralLabeling) -> Path:
    """The run's entry in the HTML QC report (page: spinereg.qc.page_label_vertebrae), made from
    a hidden provenance folder so that several images can be labelled into one output folder.
    Verdict: warn with the reasons when the labeling has warnings (ambiguous identity, gaps,
    coarse sampling), else not scored (no threshold has been calibrated for a pass)."""
    from pathlib import Path

    from spinereg.io.tempdirs import make_temp_dir, remove_temp_dir
    from spinereg.qc.report import add_to_report
    from spinereg.vertebrae.outputs import image_stem

    outdir = Path(args.outdir).resolve()
    tmp = make_temp_dir(".label-vertebrae-qc-", dir=outdir)
    try:
        from spinereg.cli.common import qc_record

        prov = qc_record(args, "label-vertebrae",
                         inputs={**inputs, "image": str(Path(args.input).resolve()), "seg": str(Path(args.seg).resolve())},
                         labeling_json=str(Path(files["json"]).resolve()))
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=1))
        from spinereg.qc.labeling import warnings_of

        reasons = warnings_of(labeling)
        if reasons:
            (tmp / "metrics.json").write_text(json.dumps({"qc": {"verdict": "warn", "reasons": reasons}}))
        return add_to_report(tmp, Path(args.qc), kind="label-vertebrae",
                             record_run_dir=outdir / image_stem(args.input))
    finally:
        remove_temp_dir(tmp)
