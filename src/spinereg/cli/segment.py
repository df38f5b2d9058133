"""``spinereg segment``: automatic spinal cord segmentation (SCT's ``<img>_seg.nii.gz``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser, print_warnings

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "segment", "segment the spinal cord automatically (model shipped in the package)",
                   "Writes <img>_seg.nii.gz (uint8, 1 = cord) on the input grid. 4D series are segmented "
                   "on their mean (with --bvals: the mean of the diffusion-weighted volumes). The "
                   "model is contrast-agnostic; -c is recorded. An image without a cord is an error "
                   "(exit 2), never an empty or noisy mask.")
    p.add_argument("-i", "--input", required=True, help="image (3D, or 4D fMRI/DWI series)")
    p.add_argument("-c", "--contrast", default="auto",
                   choices=["t1", "t2", "t2s", "mt", "dwi", "epi", "auto"], help="image contrast (recorded)")
    p.add_argument("-o", "--output", help="output mask (default: <img>_seg.nii.gz next to the input)")
    p.add_argument("--soft", action="store_true",
                   help="also write the cord probability (partial volume, 0-1) as <out>_soft.nii.gz")
    p.add_argument("--bvals", help="b-values of a 4D diffusion series (segment the DWI mean)")
    p.add_argument("--qc", metavar="QCROOT",
                   help="also add a segmentation page (axial mosaic with the outline) to the HTML QC report in QCROOT")
    p.set_defaults(func=run)


def _stem(name: str) -> str:
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def default_output(image: str | Path) -> Path:
    p = Path(image)
    return p.with_name(f"{_stem(p.name)}_seg.nii.gz")


def soft_output(seg_path: Path) -> Path:
    name = seg_path.name
    stem = name[:-7] if name.endswith(".nii.gz") else seg_path.stem
    return seg_path.with_name(f"{stem}_soft.nii.gz")


def run(args: argparse.Namespace) -> int:
    from spinereg.io.image import check_writable, output_path, save_image
    from spinereg.segment import segment

    out = output_path(args.output) if args.output else default_output(args.input)
    soft = soft_output(out) if args.soft else None
    for p in (out, soft):  # refuse before computing, write nothing on failure
        if p is not None:
            check_writable(p, args.overwrite)
    if args.qc:
        from spinereg.qc.report import check_qc_root

        check_qc_root(args.qc)
    res = segment(args.input, args.contrast, bvals=args.bvals)
    written = {"seg": str(save_image(res.seg, out, overwrite=args.overwrite, dtype="uint8"))}
    if soft is not None:
        try:
            written["soft"] = str(save_image(res.prob, soft, overwrite=args.overwrite, dtype="float32"))
        except BaseException:
            out.unlink(missing_ok=True)  # no partial outputs
            raise
    if args.qc:
        try:
            written["qc_report"] = str(_add_to_report(args, out, res.info))
        except BaseException:
            for f in (out, soft):  # no partial outputs
                if f is not None:
                    f.unlink(missing_ok=True)
            raise
    print_warnings("segment", res.info.get("warnings", []))
    summary = {k: v for k, v in res.info.items() if k != "models"}
    summary["models"] = {k: {"file": v["file"], "bytes": v["bytes"]} for k, v in res.info["models"].items()}
    print(json.dumps({"files": written, **summary}, indent=1))
    return 0


def _add_to_report(args: argparse.Namespace, seg_path: Path, info: dict) -> Path:
    """The run's entry in the HTML QC report (page: spinereg.qc.page_segment), made from a hidden
    provenance folder next to the output, removed afterwards (several images may be segmented
    into one folder). Not scored: no threshold has been calibrated for a segmentation verdict."""
    from spinereg.io.tempdirs import make_temp_dir, remove_temp_dir
    from spinereg.qc.report import add_to_report

    folder = seg_path.resolve().parent
    tmp = make_temp_dir(".segment-qc-", dir=folder)
    try:
        from spinereg.cli.common import qc_record

        prov = qc_record(args, "segment",
                         inputs={"image": str(Path(args.input).resolve()), "contrast": args.contrast, "bvals": args.bvals},
                         outputs={"seg": str(seg_path.resolve())},
                         segmentation={k: v for k, v in info.items() if k != "models"})
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=1))
        return add_to_report(tmp, Path(args.qc), kind="segment", record_run_dir=folder / _stem(seg_path.name))
    finally:
        remove_temp_dir(tmp)
