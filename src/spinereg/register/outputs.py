"""Write a template registration with SCT's file names, plus metrics.json and provenance.json."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from spinereg.errors import OutputError
from spinereg.io.image import Image, atomic_write, save_image
from spinereg.metrics import dice, inverse_consistency, jacobian
from spinereg.metrics.verdict import score_output_folder
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.displacement import DisplacementField
from spinereg.transforms.itk import write_displacement

OUTPUT_NAMES = ("warp_anat2template.nii.gz", "warp_template2anat.nii.gz", "anat2template.nii.gz",
                "template2anat.nii.gz", "metrics.json", "provenance.json")


def _mask_from(img: Image, thr: float = 0.5) -> Image:
    return img.with_data((np.asarray(img.data) > thr).astype(np.uint8))


def registration_metrics(reg, fwd, inv) -> dict:
    """Cord Dice in both spaces, landmark residuals, Jacobians and inverse consistency."""
    from spinereg.io.image import load_image

    tcord = load_image(reg.template.path("cord"), ndim=3, check_finite=False)
    # template-space measures on the template region the subject covers (same voxels as fwd)
    crop = reg.template_crop
    fwd = DisplacementField.from_transform(fwd, crop)
    tcord_on_out = apply_transforms(tcord, crop, [], "nn")
    cord_in_subj = apply_transforms(tcord, reg.image.grid, [inv], "linear")
    seg_in_tpl = apply_transforms(reg.seg, crop, [fwd], "linear")
    d_subj = dice(_mask_from(cord_in_subj), _mask_from(reg.seg))
    d_subj_zb = dice(_mask_from(cord_in_subj), _mask_from(reg.seg), zb=True)
    d_tpl = dice(_mask_from(seg_in_tpl), _mask_from(tcord_on_out), zb=True)
    # landmarks: subject points pushed into the template vs the template's own
    lm, tlm = reg.landmarks, reg.template_landmarks
    common = np.intersect1d(lm.values, tlm.values)
    pushed = inv.map(lm.subset(common).points)
    err = np.linalg.norm(pushed - tlm.subset(common).points, axis=1)
    tvox = float(tcord.grid.zooms.max())
    seg_mask = _mask_from(reg.seg)
    jac_inv = jacobian(*_in_mask_box(inv, seg_mask), warp_name="warp_template2anat")
    jac_fwd = jacobian(*_in_mask_box(fwd, _mask_from(seg_in_tpl)), warp_name="warp_anat2template")
    stride = max(1, int(np.ceil((inv.grid.size / 1_000_000) ** (1 / 3))))
    cons = inverse_consistency(inv, fwd, both=False, stride=stride,
                               names=("warp_template2anat", "warp_anat2template"))
    return {
        "cord_dice_subject_space": round(d_subj.dice, 4),
        "cord_dice_subject_space_zb": round(d_subj_zb.dice, 4),
        "cord_dice_template_space_zb": round(d_tpl.dice, 4),
        "landmarks": {
            "kind": lm.kind,
            "residual_mm": {int(v): round(float(e), 3) for v, e in zip(common, err, strict=True)},
            "max_residual_mm": round(float(err.max()), 3) if err.size else None,
            "max_residual_template_voxels": round(float(err.max() / tvox), 3) if err.size else None,
        },
        "jacobian_template2anat_in_cord": {"min": round(jac_inv.min, 4), "max": round(jac_inv.max, 4),
                                           "pct_folding": round(jac_inv.pct_nonpositive, 4)},
        "jacobian_anat2template_in_cord": {"min": round(jac_fwd.min, 4), "max": round(jac_fwd.max, 4),
                                           "pct_folding": round(jac_fwd.pct_nonpositive, 4)},
        "inverse_consistency_mm": {"mean": round(cons.forward.mean_mm, 4), "p95": round(cons.forward.p95_mm, 4),
                                   "max": round(cons.forward.max_mm, 4)},
    }


def _in_mask_box(field: DisplacementField, mask: Image, margin: int = 2) -> tuple[DisplacementField, Image]:
    """The field and mask restricted to the mask's bounding box (Jacobians of large warps)."""
    nz = np.argwhere(np.asarray(mask.data) > 0)
    if nz.size == 0:
        return field, mask
    lo = np.maximum(nz.min(0) - margin, 0)
    hi = np.minimum(nz.max(0) + margin + 1, np.array(field.grid.shape))
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    aff = field.grid.affine.copy()
    aff[:3, 3] = field.grid.voxel_to_world(lo[None].astype(float))[0]
    from spinereg.io.grid import Grid

    sub = Grid(tuple(hi - lo), aff)
    return DisplacementField(sub, field.data[sl]), Image(np.asarray(mask.data)[sl], aff)


def _image_interp(grid) -> str:
    """Cubic B-spline as SCT, linear on very large grids (output images only; warps are exact)."""
    return "spline" if grid.size <= 4_000_000 else "linear"


def write_outputs(reg, outdir: str | Path, overwrite: bool = False, inputs: dict | None = None,
                  metrics: bool = True, straight: bool = False) -> dict[str, Path]:
    """Write warps, warped images, metrics.json and provenance.json into ``outdir``.

    ``straight``: also SCT's straightening outputs (``warp_curve2straight``,
    ``warp_straight2curve``, ``straight_ref``) built from the subject's centerline."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise OutputError("output folder is a file", out, "choose a folder name")
    if not overwrite:
        existing = [n for n in OUTPUT_NAMES if (out / n).exists()]
        if existing:
            raise OutputError(f"outputs exist ({', '.join(existing)})", out, "pass --overwrite or choose another folder")
    t0 = time.perf_counter()
    fwd = reg.warp_anat2template()
    inv = reg.warp_template2anat()
    t_fields = time.perf_counter() - t0
    files: dict[str, Path] = {}
    files["warp_anat2template"] = write_displacement(fwd, out / "warp_anat2template.nii.gz", overwrite)
    files["warp_template2anat"] = write_displacement(inv, out / "warp_template2anat.nii.gz", overwrite)
    files["anat2template"] = save_image(apply_transforms(reg.image, fwd.grid, [fwd], _image_interp(fwd.grid)),
                                        out / "anat2template.nii.gz", overwrite=overwrite)
    tim = _template_image(reg, inv)
    files["template2anat"] = save_image(apply_transforms(tim, reg.image.grid, [inv], _image_interp(reg.image.grid)),
                                        out / "template2anat.nii.gz", overwrite=overwrite)
    if straight:
        from spinereg.cord.straighten import straighten

        res = straighten(reg.seg, centerline=reg.mapping.src, qc=False)
        files.update(res.save(out, overwrite=overwrite))
    mets = {}
    if metrics:
        t1 = time.perf_counter()
        mets = registration_metrics(reg, fwd, inv)
        mets["metrics_seconds"] = round(time.perf_counter() - t1, 3)
    files["metrics"] = _write_json(out / "metrics.json", mets, overwrite)
    timings = dict(reg.timings)
    timings["fields"] = t_fields
    prov = provenance(reg, inputs or {}, timings)
    files["provenance"] = _write_json(out / "provenance.json", prov, overwrite)
    if metrics:  # pass/warn/fail verdict: the qc block is added to mets and metrics.json rewritten atomically
        score_output_folder(out, metrics=mets)
    reg.metrics = mets
    return files


def _template_image(reg, inv) -> Image:
    """The template's intensity image (real or synthesised) on the part the subject maps into."""
    from spinereg.io.image import load_image
    from spinereg.register.template import _template_intensity, covered_region

    tcord = load_image(reg.template.path("cord"), ndim=3, check_finite=False)
    region = covered_region(tcord.grid, inv, reg.image.grid)
    return _template_intensity(reg.template, "t2", tcord, region) or tcord


def _write_json(path: Path, obj: dict, overwrite: bool) -> Path:
    text = json.dumps(obj, indent=2, default=_plain)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"), overwrite)


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def versions() -> dict[str, str]:
    """Versions of spinereg and the libraries that shape its numbers (for provenance)."""
    from importlib.metadata import PackageNotFoundError, version

    import nibabel
    import scipy

    import spinereg

    try:
        ants_version = version("antspyx")
    except PackageNotFoundError:  # pragma: no cover
        ants_version = "absent"
    return {"spinereg": spinereg.__version__, "python": sys.version.split()[0], "numpy": np.__version__,
            "scipy": scipy.__version__, "nibabel": nibabel.__version__, "antspyx": ants_version,
            "platform": platform.platform()}


def write_json(path: str | Path, obj: dict, overwrite: bool = False) -> Path:
    """Write ``obj`` as indented JSON, atomically (numpy values converted)."""
    return _write_json(Path(path), obj, overwrite)


def provenance(reg, inputs: dict, timings: dict) -> dict:
    return {
        "command": "register-to-template",
        "inputs": {k: str(v) for k, v in inputs.items() if v is not None},
        "template": {"name": reg.template.name, "root": str(reg.template.root)},
        "ref": reg.ref,
        "steps": [str(s) for s in reg.steps],
        "step_records": reg.records,
        "landmarks": {"kind": reg.landmarks.kind, "subject_mm": reg.landmarks.as_dict(),
                      "arc_correspondence": reg.mapping.arc.as_dict()},
        "si_refinement": reg.si_report,
        "grids": {"work": repr(reg.work_grid), "template_output": repr(reg.template_grid)},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "seed": 1,
        "versions": versions(),
    }
