"""Write a subject-to-subject registration with SCT's names (``<src>_reg``, ``warp_<src>2<dest>``...)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from spinereg.errors import OutputError
from spinereg.io.image import Image, save_image
from spinereg.metrics import dice, inverse_consistency, jacobian
from spinereg.metrics.verdict import score_output_folder
from spinereg.register.outputs import versions, write_json
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.itk import write_displacement


def stem(img: Image, default: str) -> str:
    """File name without ``.nii``/``.nii.gz`` (SCT's naming of outputs)."""
    if img.path is None:
        return default
    name = img.path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_names(reg) -> dict[str, str]:
    s, d = stem(reg.src, "src"), stem(reg.dest, "dest")
    return {"src_reg": f"{s}_reg.nii.gz", "dest_reg": f"{d}_reg.nii.gz", "warp_src2dest": f"warp_{s}2{d}.nii.gz",
            "warp_dest2src": f"warp_{d}2{s}.nii.gz", "metrics": "metrics.json", "provenance": "provenance.json"}


def _bin(img: Image) -> Image:
    return img.with_data((np.asarray(img.data) > 0.5).astype(np.uint8))


def multimodal_metrics(reg, fwd, inv) -> dict:
    """Cord Dice (zb and whole, both directions) when segmentations exist; Jacobian; consistency."""
    out: dict = {}
    if reg.iseg is not None and reg.dseg is not None:
        seg_on_dest = _bin(apply_transforms(reg.iseg, reg.dest.grid, [fwd], "linear"))
        seg_on_src = _bin(apply_transforms(reg.dseg, reg.src.grid, [inv], "linear"))
        out["cord_dice_dest_zb"] = round(dice(seg_on_dest, _bin(reg.dseg), zb=True).dice, 4)
        out["cord_dice_dest_whole"] = round(dice(seg_on_dest, _bin(reg.dseg)).dice, 4)
        out["cord_dice_src_zb"] = round(dice(seg_on_src, _bin(reg.iseg), zb=True).dice, 4)
        jac = jacobian(fwd, _bin(reg.dseg), warp_name="warp_src2dest")
    else:
        jac = jacobian(fwd, warp_name="warp_src2dest")
    out["jacobian_src2dest"] = {"min": round(jac.min, 4), "max": round(jac.max, 4),
                                "pct_folding": round(jac.pct_nonpositive, 4)}
    cons = inverse_consistency(fwd, inv, both=False, names=("warp_src2dest", "warp_dest2src"))
    out["inverse_consistency_mm"] = {"mean": round(cons.forward.mean_mm, 4), "p95": round(cons.forward.p95_mm, 4)}
    return out


def write_multimodal_outputs(reg, outdir: str | Path, overwrite: bool = False, inputs: dict | None = None,
                             interp: str = "spline") -> dict[str, Path]:
    """Write warps both ways, both images resampled once, metrics.json and provenance.json."""
    out = Path(outdir)
    names = output_names(reg)
    if out.exists() and not out.is_dir():
        raise OutputError("output folder is a file", out, "choose a folder name")
    if not overwrite:
        existing = [n for n in names.values() if (out / n).exists()]
        if existing:
            raise OutputError(f"outputs exist ({', '.join(existing)})", out, "pass --overwrite or choose another folder")
    t0 = time.perf_counter()
    fwd, inv = reg.warp_src2dest(), reg.warp_dest2src()
    files = {
        "warp_src2dest": write_displacement(fwd, out / names["warp_src2dest"], overwrite),
        "warp_dest2src": write_displacement(inv, out / names["warp_dest2src"], overwrite),
        "src_reg": save_image(apply_transforms(reg.src, reg.dest.grid, [fwd], interp), out / names["src_reg"],
                              overwrite=overwrite),
        "dest_reg": save_image(apply_transforms(reg.dest, reg.src.grid, [inv], interp), out / names["dest_reg"],
                               overwrite=overwrite),
    }
    reg.metrics = multimodal_metrics(reg, fwd, inv)
    timings = {**reg.timings, "outputs": time.perf_counter() - t0}
    files["metrics"] = write_json(out / names["metrics"], reg.metrics, overwrite)
    prov = {
        "command": "register",
        "inputs": {k: str(v) for k, v in (inputs or {}).items() if v is not None},
        "steps": [str(s) for s in reg.steps],
        "initial_transforms": [repr(t) for t in reg.initial],
        "step_records": reg.records,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "seed": 1,
        "versions": versions(),
    }
    files["provenance"] = write_json(out / names["provenance"], prov, overwrite)
    score_output_folder(out, metrics=reg.metrics)  # qc verdict into reg.metrics, metrics.json rewritten atomically
    return files
