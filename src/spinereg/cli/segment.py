"""``spinereg segment``: automatic spinal cord segmentation (SCT's ``<img>_seg.nii.gz``)."""

from __future__ import annotations

import json
from pathlib import Path

from spinereg.cli.common import new_parser


def register(sub) -> None:
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
    p.set_defaults(func=run)


def default_output(image: str | Path) -> Path:
    p = Path(image)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return p.with_name(f"{name}_seg.nii.gz")


def soft_output(seg_path: Path) -> Path:
    name = seg_path.name
    stem = name[:-7] if name.endswith(".nii.gz") else seg_path.stem
    return seg_path.with_name(f"{stem}_soft.nii.gz")


def run(args) -> int:
    from spinereg.io.image import check_writable, output_path, save_image
    from spinereg.segment import segment

    out = output_path(args.output) if args.output else default_output(args.input)
    soft = soft_output(out) if args.soft else None
    for p in (out, soft):  # refuse before computing, write nothing on failure
        if p is not None:
            check_writable(p, args.overwrite)
    res = segment(args.input, args.contrast, bvals=args.bvals)
    written = {"seg": str(save_image(res.seg, out, overwrite=args.overwrite, dtype="uint8"))}
    if soft is not None:
        try:
            written["soft"] = str(save_image(res.prob, soft, overwrite=args.overwrite, dtype="float32"))
        except BaseException:
            out.unlink(missing_ok=True)  # no partial outputs
            raise
    summary = {k: v for k, v in res.info.items() if k != "models"}
    summary["models"] = {k: {"file": v["file"], "bytes": v["bytes"]} for k, v in res.info["models"].items()}
    print(json.dumps({"files": written, **summary}, indent=1))
    return 0
