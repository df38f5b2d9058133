"""``spinereg moco``: slice-wise motion correction of fMRI/DWI series, artifact scores."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.cli.common import add_result_options, finish_run, new_parser
from spinereg.errors import InputError
from spinereg.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    import argparse

PARAM_HELP = ("comma-separated key=value: reg=spline|poly:N|none (along z), iter=N (reference passes, "
              "default 2), ref=mean|median, nref=N (first N volumes for the first reference), smooth=S "
              "(in-plane sigma, voxels), align=0|1 (DWI: register the b>0 mean onto the b=0 mean), exclude=0|1 (flagged volumes/slices out of the reference and "
              "the z fit), dropout=F, ghost=F, fd=MM, z=Z (flag thresholds)")


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "moco", "slice-wise motion correction of an fMRI or DWI series (multiband-aware)",
                   "Slice-wise motion correction of an fMRI or DWI series (multiband-aware): corrected series, "
                   "mean, tSNR before/after, motion table, metrics.json with a pass/warn/fail verdict (flagged "
                   "volumes, image structure of the series' mean: a noise or empty series fails), "
                   "provenance.json. Exit code 3 when the verdict is fail (--allow-fail: 0).")
    p.add_argument("-i", "--input", required=True, help="4D series (slices along the 3rd voxel axis)")
    p.add_argument("-g", "--group", type=int, default=1, help="DWI: consecutive b>0 volumes averaged per estimate")
    p.add_argument("--bvals", help="FSL bvals (DWI)")
    p.add_argument("--bvecs", help="FSL bvecs (DWI; b=0 volumes are those with a zero vector when no bvals)")
    p.add_argument("-m", "--mask", help="binary or soft mask (weights) on the series grid, e.g. around the cord")
    p.add_argument("--multiband", type=int, help="multiband factor (default: from the BIDS sidecar, else 1)")
    p.add_argument("--sidecar", help="BIDS JSON sidecar (default: the .json next to the series)")
    p.add_argument("--param", default="", help=PARAM_HELP + " (default: none, i.e. the values above)")
    p.add_argument("-x", "--interp", default="spline", choices=["nn", "linear", "spline"],
                   help="interpolation of the corrected series (default spline)")
    p.add_argument("-o", "--outdir", required=True, help="output folder (several files)")
    add_result_options(p)
    p.set_defaults(func=run)


_KEYS = {"reg": str, "iter": int, "ref": str, "nref": int, "smooth": float, "exclude": int, "align": int,
         "dropout": float, "ghost": float, "fd": float, "z": float}


def parse_moco_param(text: str) -> dict:
    """``reg=spline,iter=2`` -> dict of typed values (InputError naming the bad key)."""
    out: dict = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        key, sep, val = item.partition("=")
        if not sep or key not in _KEYS:
            raise InputError(f"bad --param entry {item!r}", None, "use " + ", ".join(f"{k}=..." for k in _KEYS))
        try:
            out[key] = _KEYS[key](val)
        except ValueError:
            raise InputError(f"bad value in --param {item!r}", None, f"{key} takes a {_KEYS[key].__name__}") from None
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from spinereg.cli.common import print_warnings, start_run
    from spinereg.epi.artifacts import Thresholds
    from spinereg.epi.moco import (
        cord_region,
        motion_correct,
        output_names,
        read_bvals,
        read_bvecs,
        series_stem,
        write_moco_outputs,
    )
    from spinereg.epi.moco_masks import require_weights
    from spinereg.epi.sidecar import read_sidecar
    from spinereg.io.image import load_image
    from spinereg.io.provenance import RunRecord, write_json
    from spinereg.metrics.verdict import moco_verdict

    t0 = time.perf_counter()
    rec: RunRecord = start_run(args, "moco")[0]
    prm = parse_moco_param(args.param)
    img = load_image(args.input, ndim=4, lazy=True, what="series")
    out = Path(args.outdir)
    if out.exists() and not out.is_dir():
        raise InputError("output folder is a file", out, "give a folder name")
    meta = read_sidecar(args.sidecar, args.input)
    bvals = None
    if args.bvals:
        bvals = read_bvals(args.bvals, img.nvols)
    elif args.bvecs:
        bvals = np.where(np.linalg.norm(read_bvecs(args.bvecs, img.nvols), axis=1) > 1e-3, 1000.0, 0.0)
    if args.bvals and args.bvecs:
        read_bvecs(args.bvecs, img.nvols)  # checked for consistency with the series
    timing = meta.get("SliceTiming")
    multiband = args.multiband if args.multiband is not None else int(meta.get("MultibandAccelerationFactor") or 1)
    if args.multiband is not None and timing is not None:
        timing = None  # an explicit factor wins over the sidecar
    pe = str(meta.get("PhaseEncodingDirection", "j"))
    th = Thresholds(**{k2: prm[k1] for k1, k2 in (("dropout", "dropout"), ("ghost", "ghosting"), ("fd", "fd_mm"),
                                                   ("z", "residual_z")) if k1 in prm})
    mask = load_image(args.mask, ndim=3, what="mask") if args.mask else None
    if mask is not None:
        require_weights(mask, "-m")  # an anatomical image there was a weight map of its intensities
    from spinereg.io.staging import OutputFolder

    outdir = out
    folder = OutputFolder(out, [*output_names(series_stem(img)).values(), "provenance.json"],
                          overwrite=args.overwrite).check()
    with rec.stage("motion correction"):
        res = motion_correct(img, mask, multiband=multiband, group=args.group, bvals=bvals, slice_timing=timing,
                             reference=prm.get("ref", "mean"), n_ref=prm.get("nref"), iterations=prm.get("iter", 2),
                             regularise=prm.get("reg", "spline"), smooth=prm.get("smooth", 0.0),
                             pe_axis=0 if pe.startswith("i") else 1, thresholds=th,
                             exclude_flagged=bool(prm.get("exclude", 1)),
                             align_classes=bool(prm.get("align", 0)), progress=progress_bar("moco"))
    inputs = {"input": args.input, "mask": args.mask, "bvals": args.bvals, "bvecs": args.bvecs,
              "sidecar": meta.get("_path"), "param": args.param, "multiband": multiband, "group": args.group}
    cord = None if mask is None else cord_region(mask, res.grid)
    with folder as tmp, rec.stage("write outputs"):  # the folder appears only when complete
        staged = write_moco_outputs(res, img, tmp, overwrite=True, interp=args.interp, inputs=inputs,
                                    cord_mask=cord, progress=progress_bar("write"),
                                    judge=lambda doc: moco_verdict(doc).as_block())
        write_json(tmp / "provenance.json", {**rec.as_dict(inputs), "inputs": {k: v for k, v in inputs.items()
                                                                                if v is not None}})
    print_warnings("moco", res.warnings)
    files = {k: outdir / Path(v).name for k, v in staged.items()}
    files["provenance"] = outdir / "provenance.json"
    metrics = json.loads(files["metrics"].read_text())
    summ = metrics["summary"]
    extra = {k: summ[k] for k in ("tsnr_before", "tsnr_after", "fd_mm_mean", "fd_mm_max", "n_flagged_volumes",
                                  "n_slice_groups") if k in summ}
    return finish_run(args, "moco", metrics, outdir, files, seconds=round(time.perf_counter() - t0, 2), extra=extra)

