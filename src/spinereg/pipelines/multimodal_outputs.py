"""Write a subject-to-subject registration with SCT's names (``<src>_reg``, ``warp_<src>2<dest>``...).

All files are written into a temporary folder renamed into place at the end (see
:mod:`spinereg.io.staging`): a failure at any point leaves the destination as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.io.fastgz import BackgroundWrites
from spinereg.io.image import Image, pair_stems, save_image
from spinereg.io.image import file_stem as stem
from spinereg.io.provenance import RunRecord, write_json
from spinereg.io.staging import OutputFolder
from spinereg.metrics import dice, inverse_consistency, jacobian
from spinereg.metrics.verdict import score_output_folder
from spinereg.pipelines.template_outputs import finish_outputs
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.itk import write_displacement

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.grid import Grid
    from spinereg.register.multimodal import MultimodalRegistration
    from spinereg.transforms.base import Transform
    from spinereg.transforms.displacement import DisplacementField


def output_names(reg: MultimodalRegistration) -> dict[str, str]:
    s, d = pair_stems(stem(reg.src, "src"), stem(reg.dest, "dest"))
    return {"src_reg": f"{s}_reg.nii.gz", "dest_reg": f"{d}_reg.nii.gz", "warp_src2dest": f"warp_{s}2{d}.nii.gz",
            "warp_dest2src": f"warp_{d}2{s}.nii.gz", "metrics": "metrics.json", "provenance": "provenance.json"}


def _bin(img: Image) -> Image:
    return img.with_data((np.asarray(img.data) > 0.5).astype(np.uint8))


def multimodal_metrics(reg: MultimodalRegistration, fwd: DisplacementField,
                       inv: DisplacementField) -> dict:
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


def _resample_and_save(img: Image, grid: Grid, transform: Transform, interp: str,
                       path: Path) -> None:
    save_image(apply_transforms(img, grid, [transform], interp), path)


def write_multimodal_outputs(reg: MultimodalRegistration, outdir: str | Path,
                             overwrite: bool = False, inputs: dict | None = None,
                             interp: str = "spline", *, run: RunRecord | None = None,
                             before_commit: Callable[[Path], None] | None = None,
                             loaded: dict[str, Image] | None = None) -> dict[str, Path]:
    """Write warps both ways, both images resampled once, metrics.json (with the verdict) and
    provenance.json; ``before_commit(tmp)`` runs on the temporary folder before it is renamed
    (e.g. the QC report; see :func:`spinereg.pipelines.template_outputs.write_outputs`). Returns the final
    paths. ``loaded``: the input images as read from the files ``inputs`` names, by its keys (the
    verdict uses them instead of reading the files again)."""
    run = run or RunRecord("register")
    names = output_names(reg)
    inputs = dict(inputs or {})
    folder = OutputFolder(outdir, names.values(), overwrite=overwrite).check()
    with folder as tmp, BackgroundWrites() as bg:  # files are written beside the next computations
        with run.stage("fields"):
            fwd, inv = reg.warp_src2dest(), reg.warp_dest2src()
        with run.stage("write outputs"):
            warps = [bg.submit(write_displacement, fwd, tmp / names["warp_src2dest"]),
                     bg.submit(write_displacement, inv, tmp / names["warp_dest2src"])]
            # each image resampled in the writing thread too: both overlap the metrics and the
            # verdict below (which reads the warps, not these images)
            bg.submit(_resample_and_save, reg.src, reg.dest.grid, fwd, interp, tmp / names["src_reg"])
            bg.submit(_resample_and_save, reg.dest, reg.src.grid, inv, interp, tmp / names["dest_reg"])
        with run.stage("metrics"):
            reg.metrics = multimodal_metrics(reg, fwd, inv)
        with run.stage("write outputs: waiting for the warps"):
            for fut in warps:  # both warps on disk before the verdict reads them
                fut.result()
        write_json(tmp / names["metrics"], reg.metrics)

        def prov() -> dict:
            rec = run.as_dict(inputs)
            return {
                "command": "register",
                **{k: v for k, v in rec.items() if k != "command"},
                "inputs": {k: str(v) for k, v in inputs.items() if v is not None},
                "steps": [str(s) for s in reg.steps],
                "initial_transforms": [repr(t) for t in reg.initial],
                "step_records": _step_records(reg),
                "registration_timings_s": {k: round(v, 3) for k, v in reg.timings.items()},
                "seed": 1,
            }

        write_json(tmp / names["provenance"], prov())
        with run.stage("verdict"):  # qc verdict into reg.metrics, metrics.json rewritten atomically
            score_output_folder(tmp, metrics=reg.metrics, loaded=loaded)
        with run.stage("write outputs: waiting for the background writes"):
            bg.wait()  # every file on disk before the QC report and the commit
        finish_outputs(tmp, before_commit, lambda: write_json(tmp / names["provenance"], prov(), overwrite=True))
    out = Path(outdir)
    return {k: out / v for k, v in names.items()}


def _step_records(reg: MultimodalRegistration) -> list[dict]:
    """One record per step (a step the engine did not record says so)."""
    by_step = {r.get("step"): r for r in reg.records}
    return [dict(by_step.get(str(st)) or {"step": str(st), "seconds": 0.0, "transform": None, "what": "not run"})
            for st in reg.steps]
