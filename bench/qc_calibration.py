"""Calibrate the QC verdict of register-to-template on known-truth cases (independent phantoms).

Phase 1 (``--register``, slow, cached under ``--out``): for each variant and seed, an independent
phantom (:func:`spinereg.phantom.independent.make_independent_subject`, length 0.85-1.15x the
template's) is registered with ``spinereg register-to-template`` four ways: correct body labels
(C3, C5); the same points labelled one level too low (4, 6) and too high (2, 4); and a noise image
(Rician noise of the image's level) in place of the image with the correct labels. Registrations
run through the library into minimal output folders (see :func:`register`).

Phase 2 (always): every run is scored (:func:`spinereg.metrics.verdict.score_output_folder`),
plus damaged copies of each correct run (its ``warp_template2anat`` displaced by 1, 2, 3 or 5 mm
in a random direction, and a random smooth field of 2 and 4 mm RMS), and set against the truth:
mean cord mapping error (mm) and the worst disc-label S-I error (a wrong level is 15-25 mm).
Writes ``calibration.csv``, ``docs/qc_calibration.png`` (each score against the true error) and
prints the table used by ``docs/qc_calibration.md``.

Usage: ``python bench/qc_calibration.py [--register] [--out DIR] [--seeds 0,1,2]
[--variants test,test_t1,...]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from spinereg.metrics.verdict import finite_number as _num

VARIANTS = ("test", "test_t1", "axial_thick", "sagittal_thick")
CASES = {"correct": (3, 5), "level_low": (4, 6), "level_high": (2, 4), "noise": (3, 5)}
SCORES = ("cord_dice", "hausdorff95_vox", "centerline_rms_mm", "landmark_max_residual_mm",
          "label_si_scale_deviation", "level_offset_vertebrae", "similarity_after", "similarity_shift_gain",
          "image_structure", "inverse_consistency_vox", "jacobian_min", "pct_folding", "cord_dice_template_space",
          "label_si_uncertainty_mm", "level_offset_median", "unverified_si_scale_deviation", "level_offset_unverified")


def make_inputs(variant: str, seed: int, root: Path) -> Path:
    from spinereg.io.image import Image, save_image
    from spinereg.phantom.independent import make_independent_subject

    folder = root / f"{variant}_s{seed}"
    if (folder / "phantom" / "phantom.json").is_file():
        return folder
    ph = make_independent_subject(variant, seed=seed)
    files = ph.save(folder / "phantom")
    pts = ph.body_points
    for case, vals in CASES.items():
        lab = ph.labels("body", (3, 5)).data.copy()
        for old, new in zip((3, 5), vals, strict=True):
            lab[ph.labels("body", (3, 5)).data == old] = new
        save_image(Image(lab, ph.grid.affine), folder / f"labels_{case}.nii.gz", overwrite=True)
    rng = np.random.default_rng(1000 + seed)
    level = float(np.percentile(ph.image.data, 99))
    noise = np.sqrt(rng.normal(0, 0.3 * level, ph.grid.shape) ** 2 + rng.normal(0, 0.3 * level, ph.grid.shape) ** 2)
    save_image(Image(noise.astype(np.float32), ph.grid.affine), folder / "noise.nii.gz", overwrite=True)
    (folder / "inputs.json").write_text(json.dumps({"image": files[ph.contrast].name, "contrast": ph.contrast,
                                                    "body_points": sorted(pts)}))
    return folder


def register(folder: Path) -> None:
    """Run every case through the library (register_to_template, the registration metrics of
    ``pipelines.template_outputs``) into a minimal output folder: ``warp_template2anat``, metrics.json and
    the provenance fields the verdict reads. (The command writes template-space outputs on the
    whole PAM50 grid too, which only costs time here.)"""
    from spinereg.io.image import load_image
    from spinereg.pipelines.template_outputs import registration_metrics, write_json
    from spinereg.register.template import register_to_template
    from spinereg.transforms.itk import write_displacement

    meta = json.loads((folder / "inputs.json").read_text())
    for case in CASES:
        out = folder / f"run_{case}"
        if (out / "metrics.json").is_file():
            continue
        image = folder / ("noise.nii.gz" if case == "noise" else f"phantom/{meta['image']}")
        seg = folder / "phantom/seg.nii.gz"
        labels = folder / f"labels_{case}.nii.gz"
        reg = register_to_template(load_image(image), load_image(seg), labels=load_image(labels), template="PAM50",
                                   contrast=meta["contrast"])
        out.mkdir(parents=True, exist_ok=True)
        inv = reg.warp_template2anat()
        write_displacement(inv, out / "warp_template2anat.nii.gz", overwrite=True)
        metrics = registration_metrics(reg, reg.anat2template, inv)
        write_json(out / "metrics.json", metrics, overwrite=True)
        tpl = reg.template
        prov = {"command": "register-to-template",
                "inputs": {"image": str(image.resolve()), "seg": str(seg.resolve()), "labels": str(labels.resolve()),
                           "template": "PAM50", "contrast": meta["contrast"]},
                "template": {"name": tpl.name, "root": str(tpl.root)},
                "landmarks": {"kind": reg.landmarks.kind, "subject_mm": reg.landmarks.as_dict()}}
        write_json(out / "provenance.json", prov, overwrite=True)
        print(f"{folder.name} {case}: done", flush=True)


def _truth(folder: Path):
    from spinereg.transforms.itk import read_displacement

    return read_displacement(folder / "phantom" / "true_warp_template2anat.nii.gz")


def true_errors(folder: Path, warp) -> dict[str, float]:
    """Mean cord error (mm) and the worst disc S-I error against the truth (template mm)."""
    from spinereg.io.image import load_image
    from spinereg.io.template import load_template
    from spinereg.phantom.template_subject import mapping_error

    seg = load_image(folder / "phantom" / "seg.nii.gz")
    err = mapping_error(warp, _truth(folder), seg, fov_stride=8)
    meta = json.loads((folder / "phantom" / "phantom.json").read_text())
    tpl = load_template("PAM50")
    disc = load_image(tpl.path("disc"), ndim=3, check_finite=False)
    idx = np.argwhere(disc.data > 0)
    ref = {int(disc.data[tuple(i)]): disc.grid.voxel_to_world(i[None].astype(float))[0] for i in idx}
    pts = {int(k): np.array(v) for k, v in meta["disc_points_mm"].items() if int(k) in ref}
    moved = warp.map(np.array(list(pts.values())))
    lvl = max(abs(m[2] - ref[k][2]) for k, m in zip(pts, moved, strict=True))
    return {"true_mean_mm": round(err["mean_mm"], 3), "true_p95_mm": round(err["p95_mm"], 3),
            "true_level_mm": round(float(lvl), 2)}


def damaged(folder: Path, out: Path, rng: np.random.Generator) -> list[tuple[str, Path]]:
    """Copies of the correct run with a displaced warp_template2anat (metrics recomputed)."""
    from spinereg.transforms.displacement import DisplacementField
    from spinereg.transforms.itk import read_displacement, write_displacement

    src = folder / "run_correct"
    inv = read_displacement(src / "warp_template2anat.nii.gz")
    made = []
    for kind, size in (("shift", 1.0), ("shift", 2.0), ("shift", 3.0), ("shift", 5.0), ("smooth", 2.0),
                       ("smooth", 4.0)):
        name = f"damaged_{kind}{size:g}"
        dest = out / folder.name / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
        if kind == "shift":
            d = rng.normal(size=3)
            u = inv.data + (size * d / np.linalg.norm(d)).astype(np.float32)
        else:
            from scipy import ndimage

            noise = rng.normal(size=inv.data.shape).astype(np.float32)
            sig = [20.0 / z for z in inv.grid.zooms] + [0]
            f = ndimage.gaussian_filter(noise, sig)
            f *= size / np.sqrt((f**2).sum(-1).mean())
            u = inv.data + f
        write_displacement(DisplacementField(inv.grid, u), dest / "warp_template2anat.nii.gz", overwrite=True)
        made.append((name, dest))
    return made


def refresh_dice(run: Path) -> None:
    """Recompute the subject-space cord Dice of a (damaged) run into its metrics.json."""
    from spinereg.io.image import load_image
    from spinereg.io.template import load_template
    from spinereg.metrics import dice
    from spinereg.transforms.apply import apply_transforms
    from spinereg.transforms.itk import read_displacement

    prov = json.loads((run / "provenance.json").read_text())
    seg = load_image(prov["inputs"]["seg"])
    tcord = load_image(load_template("PAM50").path("cord"), ndim=3, check_finite=False)
    w = apply_transforms(tcord, seg.grid, [read_displacement(run / "warp_template2anat.nii.gz")], "linear")
    m = json.loads((run / "metrics.json").read_text())
    m["cord_dice_subject_space_zb"] = round(dice(w, seg, zb=True).dice, 4)
    m.pop("cord_dice_template_space_zb", None)
    (run / "metrics.json").write_text(json.dumps(m))


def score_all(root: Path, folders: list[Path]) -> list[dict]:
    from spinereg.metrics.verdict import score_output_folder
    from spinereg.transforms.itk import read_displacement

    rows = []
    rng = np.random.default_rng(7)
    for folder in folders:
        runs: list[tuple[str, Path]] = [(c, folder / f"run_{c}") for c in CASES if (folder / f"run_{c}" / "metrics.json").is_file()]
        if (folder / "run_correct" / "metrics.json").is_file():
            runs += damaged(folder, root / "damaged", rng)
        meta = json.loads((folder / "phantom" / "phantom.json").read_text())
        for case, run in runs:
            if case.startswith("damaged"):
                refresh_dice(run)
            v = score_output_folder(run)
            row = {"subject": folder.name, "case": case, "length_scale": round(meta["length_scale"], 3),
                   "verdict": v.verdict, "reasons": "; ".join(v.reasons), "notes": "; ".join(v.notes)}
            row.update({k: v.scores.get(k) for k in SCORES})
            row.update(true_errors(folder, read_displacement(run / "warp_template2anat.nii.gz")))
            rows.append(row)
            print(row["subject"], case, row["verdict"], row["true_mean_mm"], row["true_level_mm"], row["reasons"],
                  flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"pass": "tab:green", "warn": "tab:orange", "fail": "tab:red"}
    marks = {"correct": "o", "level_low": "v", "level_high": "^", "noise": "x"}
    fig, axes = plt.subplots(5, 4, figsize=(16, 17))
    for ax, score in zip(axes.ravel(), SCORES, strict=False):
        for r in rows:
            if _num(r.get(score)) is None:
                continue
            wrong = float(r["true_level_mm"]) > 8
            x = r["true_mean_mm"]
            ax.scatter(float(x), _num(r[score]), c=colors[r["verdict"]], marker=marks.get(r["case"], "s"),
                       edgecolors="k" if wrong else "face", s=30, alpha=0.8)
        ax.set_xscale("log")
        ax.set_title(score, fontsize=10)
        ax.set_xlabel("true mean cord error (mm)")
        ax.axvline(2.0, color="grey", lw=0.5, ls="--")
    for ax in axes.ravel()[len(SCORES):]:
        ax.axis("off")
    axes.ravel()[-1].text(0.0, 0.5, "colour: verdict (green pass, orange warn, red fail)\n"
                          "o correct, v/^ labels one level low/high, x noise image,\n"
                          "s damaged warp; black edge: true level error > 8 mm\n"
                          "dashed: 2 mm mean error", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def group(r: dict) -> str:
    """The true state of a run (what the verdict should say)."""
    if float(r["true_level_mm"]) > 8:
        return "wrong level (one vertebra)"
    if r["case"] == "noise":
        return "noise image (mapping itself right)"
    if float(r["true_mean_mm"]) > 2:
        return "cord error > 2 mm"
    if r["case"].startswith("damaged"):
        return "damaged, cord error <= 2 mm"
    return "correct registration"


GROUPS = ("correct registration", "damaged, cord error <= 2 mm", "cord error > 2 mm", "wrong level (one vertebra)",
          "noise image (mapping itself right)")


def table(rows: list[dict]) -> str:
    lines = ["| true state | runs | true mean error (mm) | pass | warn | fail |", "|---|---|---|---|---|---|"]
    for key in GROUPS:
        g = [r for r in rows if group(r) == key]
        if not g:
            continue
        err = [float(r["true_mean_mm"]) for r in g]
        lines.append(f"| {key} | {len(g)} | {min(err):.2f}-{max(err):.2f} | "
                     + " | ".join(str(sum(r["verdict"] == v for r in g)) for v in ("pass", "warn", "fail")) + " |")
    return "\n".join(lines)


def rejudge(rows: list[dict]) -> list[dict]:
    """Verdicts of the scored rows under the current thresholds (no image work): the command's own
    metrics are rebuilt from the row, every other score goes in as a QC score."""
    from spinereg.metrics.run_scores import derived_scores
    from spinereg.metrics.verdict import judge

    own = {"cord_dice", "cord_dice_template_space", "landmark_max_residual_mm", "jacobian_min", "pct_folding"}
    for r in rows:
        metrics = {"cord_dice_subject_space_zb": _num(r.get("cord_dice")),
                   "cord_dice_template_space_zb": _num(r.get("cord_dice_template_space")),
                   "landmarks": {"max_residual_mm": _num(r.get("landmark_max_residual_mm"))},
                   "jacobian_template2anat_in_cord": {"min": _num(r.get("jacobian_min")),
                                                      "pct_folding": _num(r.get("pct_folding"))}}
        extra = {k: _num(v) for k, v in r.items() if k in SCORES and k not in own and _num(v) is not None}
        extra = {k: v for k, v in extra.items() if k != "unverified_si_scale_deviation"}
        extra.update({k: v for k, v in derived_scores(extra, metrics).items() if k == "unverified_si_scale_deviation"})
        v = judge(metrics, "register-to-template", extra_scores=extra)
        r["verdict"], r["reasons"] = v.verdict, "; ".join(v.reasons)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/qc_calibration")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--register", action="store_true", help="run the registrations (cached)")
    ap.add_argument("--png", default="docs/qc_calibration.png")
    ap.add_argument("--rejudge", action="store_true", help="re-judge the scored runs of calibration.csv only")
    args = ap.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for variant in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = make_inputs(variant, seed, root)
            if args.register:
                register(folder)
            folders.append(folder)
    if args.rejudge:
        with open(root / "calibration.csv", newline="") as fh:
            rows = rejudge(list(csv.DictReader(fh)))
    else:
        rows = score_all(root, folders)
    with open(root / "calibration.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, Path(args.png))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
