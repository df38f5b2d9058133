"""Benchmark ``spinereg label-vertebrae``: time and memory per image, and the accuracy tables.

Timing cases (whole command in a fresh interpreter, median of ``--repeats`` runs, the child's own
peak resident memory (VmHWM at exit); target <= 5 s on 2 cores):

* ``t2``: sct_testing_data/t2 (60 x 55 x 52, 1 mm) with its manual segmentation, ``-c t2``, with
  the C2/C3 disc pinned from t1's init file (``-initz 53,3``: t1 and t2 share world space) and
  without (C2/C3-C4/C5 found with the right levels, flagged ambiguous: identity margin 1.31 < 2);
* ``t1``: sct_testing_data/t1 (42 x 76 x 77, 1 mm), ``-c t1``, no init;
* ``full``: the independent phantom's ``full`` variant (0.8 mm, 64 x 320 x ~320, C1-T6, seed 0).

Accuracy: disc positions along the cord against the truth (t2: the labelled segmentation's level
boundaries, PAM50 numbering; t1: C2/C3 at slice 55; phantoms: their true disc points), level
identity, the 20-phantom table of tests/test_label_vertebrae_phantoms.py (``--phantoms``) and the
held-out phantoms of tests/test_label_vertebrae_heldout.py (``--heldout``: seeds 40-45, first run
in session 19 after the method was fixed, seen by session 20's change; seeds 50-55, first run in
session 20 after it; seeds 60-65, first run in session 23 after the CSF rule; seeds 80-85, first
run in session 30 with the method unchanged) and the fields of
view that start below C2 of tests/test_label_vertebrae_fov.py
(``--fov``: seeds 70-75, first run in session 21).

Bare image (``--bare``): the full phantom seeds 0-4 labelled from their automatic segmentation
(spinereg segment), as register-to-template from a bare image does; seed 3's first pass was one
level off (image-alone margin -3.10: the cues disagree) and its second pass, with the cord width
down-weighted, right and flagged, until session 20's half-width floor for bright discs made the
first pass right (docs/labeling_bare_image.md). With ``--register`` each is then
registered with its measured discs (what the bare job does) and scored against the phantom's
known mapping (cord error mean / p95 mm; which ends the S-I refinement held): the bare table of
docs/labeling_bare_image.md (seeds 0-9: ``--seeds 0-9``).

Usage: ``python bench/label_vertebrae.py [--repeats 3] [--phantoms] [--heldout] [--fov] [--bare [--register] [--seeds 0-4]]
[--out DIR]``.

Last run (2026-11-30, shared 2-core machine at load average 13): median t2 2.52 s, t2 -initz 2.62 s,
t1 2.56 s, full 3.70 s; peak 133 / 133 / 139 / 289 MB (docs/labeling_bare_image.md). After the
image-alone identity check (five more chain searches without the pair term; a second labeling only
where the cues disagree), 15:17 UTC at load 1.2-1.4: t2 1.10 s, t2 -initz 0.93 s, t1 1.31 s, full
2.11 s (1.79-2.49); peak 133 / 133 / 141 / 291 MB. Session 45 (2026-12-05, load 0.1, median of 3): t2 -initz
1.68 s, t2 1.46 s, t1 1.41 s, full 2.73 s; peak 168 / 165 / 166 / 236 MB. Same load, whole command, before (def9208's
parent) / after, median of 3, interleaved: t2 0.94 / 1.10 s, full phantom (seed 1) 1.51 / 1.82 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: runs the CLI and writes its own peak resident memory (VmHWM, kB) at exit: wait4's ru_maxrss
#: would include the memory this (big) parent had when it forked
_HWM_WRAPPER = (
    "import atexit, os, sys\n"
    "def _hwm():\n"
    "    with open('/proc/self/status') as f, open(os.environ['SPINEREG_HWM_FILE'], 'w') as out:\n"
    "        out.write(next(l for l in f if l.startswith('VmHWM')).split()[1])\n"
    "atexit.register(_hwm)\n"
    "sys.argv = ['spinereg'] + sys.argv[1:]\n"
    "from spinereg.cli.main import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def run_timed(args: list[str]) -> dict:
    """Run ``spinereg ARGS`` in a fresh interpreter: wall seconds (start-up included), its own
    peak memory (MB), exit code and output."""
    with tempfile.NamedTemporaryFile("r", suffix=".hwm") as hwm:
        env = {**os.environ, "SPINEREG_HWM_FILE": hwm.name}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _HWM_WRAPPER, *args], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        text = Path(hwm.name).read_text().strip()
    return {"wall_s": wall, "peak_mb": int(text) / 1024.0 if text else float("nan"), "rc": proc.returncode,
            "stdout": proc.stdout, "stderr": proc.stderr}


def timed_case(name: str, args: list[str], outdir: Path, repeats: int) -> dict:
    runs = []
    for i in range(repeats):
        dest = outdir / f"{name}_{i}"
        runs.append(run_timed(["label-vertebrae", *args, "-o", str(dest), "--overwrite"]))
    ok = [r for r in runs if r["rc"] == 0]
    row = {"case": name, "runs": len(runs), "failed": len(runs) - len(ok),
           "wall_median_s": statistics.median(r["wall_s"] for r in runs),
           "wall_all_s": [round(r["wall_s"], 2) for r in runs],
           "peak_mb": max(r["peak_mb"] for r in runs)}
    if not ok:
        row["error"] = runs[-1]["stderr"].strip()
    return row


def truth_t2(root: Path) -> dict[int, np.ndarray]:
    """World points of t2's discs from the labelled segmentation (boundary k|k+1 = disc k + 2)."""
    from spinereg.cord.centerline import Centerline
    from spinereg.io.image import load_image

    t2 = root / "sct_testing_data" / "t2"
    cl = Centerline.from_mask(load_image(t2 / "t2_seg-manual.nii.gz"))
    lab = load_image(t2 / "t2_seg-manual_labeled.nii.gz")
    data = np.rint(np.asarray(lab.data)).astype(int)
    idx = np.argwhere(data > 0)
    s, _ = cl.project(lab.grid.voxel_to_world(idx))
    vals = data[tuple(idx.T)]
    out = {}
    for k in np.unique(vals):
        if k + 1 in vals:
            out[int(k + 2)] = cl.points(0.5 * (np.percentile(s[vals == k], 2) + np.percentile(s[vals == k + 1], 98)))
    return out


def accuracy_real(root: Path) -> list[dict]:
    from spinereg.io.image import load_image
    from spinereg.vertebrae import label_vertebrae
    from spinereg.vertebrae.evaluate import compare_to_truth
    from spinereg.vertebrae.init import init_from_slice

    d = root / "sct_testing_data"
    t1, t1s = load_image(d / "t1" / "t1w.nii.gz"), load_image(d / "t1" / "t1w_seg-manual.nii.gz")
    c2c3 = init_from_slice((d / "t1" / "init_label_vertebrae.txt").read_text().split()[1], t1s)[0]
    t2, t2s = load_image(d / "t2" / "t2.nii.gz"), load_image(d / "t2" / "t2_seg-manual.nii.gz")
    tr2 = truth_t2(root)
    rows = []
    for name, img, seg, c, init, truth in [
        ("t2 (C2/C3 pinned from t1's init)", t2, t2s, "t2", (c2c3, 3), tr2),
        ("t2 (no init)", t2, t2s, "t2", None, tr2),
        ("t1 (no init; truth C2/C3 = slice 55, C3/C4, C4/C5 from t2)", t1, t1s, "t1", None, {3: c2c3, **{k: v for k, v in tr2.items() if k in (4, 5)}}),
    ]:
        lab = label_vertebrae(img, seg, contrast=c, init=init)
        r = compare_to_truth(lab, truth)
        rows.append({"case": name, "found": [x.name for x in lab.discs], **r,
                     "identity_margin": round(lab.identity_margin, 2),
                     "image_margin": (lab.report.get("image_identity") or {}).get("margin")})
    return rows


def accuracy_phantoms(held_out: range | None = None) -> list[dict]:
    """The 20-phantom table (seeds 0-2), or with ``held_out`` (a range of seeds) the seven
    variants of tests/test_label_vertebrae_heldout.py for those seeds."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_label_vertebrae_phantoms import CASES, _run

    if held_out:
        from test_label_vertebrae_heldout import VARIANTS

        CASES = [(v, s) for s in held_out for v in VARIANTS]  # noqa: N806 - the same name as the tests'
    rows = []
    for v, s in CASES:
        t0 = time.perf_counter()
        r = _run(v, s)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(r)
        print(f"  {r['case']:<20} identity {'ok ' if r['identity_ok'] else 'BAD'} ambiguous {r['ambiguous']!s:<5} "
              f"MAE {r['mae_mm']:.2f} max {r['max_mm']:.2f} conus {r['errors'].get(60)}", flush=True)
    return rows


def accuracy_bare(seeds=range(5), register: bool = False) -> list[dict]:
    """The full independent phantom (0.8 mm, C1-T6) labelled from its automatic segmentation, as
    ``register-to-template`` from a bare image does (register.template.auto_labeling): identity,
    flag and reasons, identity margin, the image-alone margin (vertebrae.label._image_identity)."""
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import auto_labeling
    from spinereg.segment import segment
    from spinereg.vertebrae.evaluate import compare_to_truth

    rows = []
    for seed in seeds:
        ph = make_independent_subject("full", seed=seed)
        seg = segment(ph.image, ph.contrast).seg
        lab = auto_labeling(ph.image, seg, ph.contrast)
        r = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})
        rows.append({"case": f"full/{seed} automatic seg", **r, "identity_margin": round(lab.identity_margin, 2),
                     "image_margin": (lab.report.get("image_identity") or {}).get("margin"),
                     "reasons": lab.report.get("ambiguous_reasons"), "first_pass": lab.report.get("first_pass")})
        x = rows[-1]
        print(f"  {x['case']:<24} identity {'ok   ' if x['identity_ok'] else 'WRONG'} ambiguous {x['ambiguous']!s:<5} "
              f"margin {x['identity_margin']:5.2f} image margin {x['image_margin']} MAE {x['mae_mm']:.2f}"
              + (f" (first pass: {x['first_pass']['discs'][0]}-{x['first_pass']['discs'][-1]}, image margin "
                 f"{x['first_pass']['image_identity']['margin']})" if x["first_pass"] else ""), flush=True)
        if register:
            from spinereg.register.template import register_to_template
            from spinereg.vertebrae.outputs import disc_landmarks

            reg = register_to_template(ph.image, seg, ldisc=disc_landmarks(lab, ph.image.grid, template="PAM50"), template="PAM50",
                                       contrast=ph.contrast)
            err = ph.error(reg.template2anat)
            x.update(cord_mean_mm=err["mean_mm"], cord_p95_mm=err["p95_mm"],
                     si_held_beyond_mm=reg.si_report.get("held_beyond_mm"), si_passes=reg.si_report.get("passes"))
            print(f"    registered with its discs: cord error {err['mean_mm']:.2f} / {err['p95_mm']:.2f} mm mean / p95; "
                  f"S-I refinement passes {x['si_passes']}, held beyond {x['si_held_beyond_mm']}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--phantoms", action="store_true", help="also the 20-phantom accuracy table (minutes)")
    ap.add_argument("--heldout", action="store_true", help="also the 168 held-out phantoms, seeds 40-45, 50-55, 60-65 "
                    "and 80-85 (minutes)")
    ap.add_argument("--fov", action="store_true", help="also the 42 fields of view that start below C2, seeds 70-75 "
                    "(minutes)")
    ap.add_argument("--bare", action="store_true", help="also the full phantom seeds 0-4 labelled from their automatic "
                    "segmentation (minutes)")
    ap.add_argument("--register", action="store_true", help="with --bare: register each with its measured discs "
                    "and print the cord error against the phantom's known mapping")
    ap.add_argument("--seeds", default="0-4", help="with --bare: seed range, e.g. 0-9 (default 0-4)")
    ap.add_argument("--brainstem", action="store_true", help="also PAM50_small_t2 (pons to T12) and 24 moved copies "
                    "cut 95 mm below its PMJ (seeds 0-23): PMJ and levels from the automatic segmentation (minutes)")
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    a = ap.parse_args()
    env = os.environ.get("SPINEREG_DATA", "")
    root = next((Path(p) for p in env.split(os.pathsep) if p and (Path(p) / "sct_testing_data").is_dir()), None)
    if root is None:
        print("set SPINEREG_DATA to the folder holding sct_testing_data/ and PAM50/", file=sys.stderr)
        return 2
    work = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench_label_"))
    d = root / "sct_testing_data"
    from spinereg.phantom.independent import make_independent_subject

    full = make_independent_subject("full", seed=0)
    files = full.save(work / "full_phantom")
    print(f"full phantom: {full.grid!r}", flush=True)
    cases = [
        ("t2 -initz 53,3", ["-i", str(d / "t2" / "t2.nii.gz"), "-s", str(d / "t2" / "t2_seg-manual.nii.gz"),
                            "-c", "t2", "-initz", "53,3"]),
        ("t2 (no init)", ["-i", str(d / "t2" / "t2.nii.gz"), "-s", str(d / "t2" / "t2_seg-manual.nii.gz"), "-c", "t2"]),
        ("t1", ["-i", str(d / "t1" / "t1w.nii.gz"), "-s", str(d / "t1" / "t1w_seg-manual.nii.gz"), "-c", "t1"]),
        ("full 0.8 mm 64x320x320", ["-i", str(files[full.contrast]), "-s", str(files["seg"]), "-c", "t2"]),
    ]
    print(f"{'case':<26} {'median s':>9} {'runs (s)':<24} {'peak MB':>8}  target <= 5 s")
    for name, args in cases:
        r = timed_case("".join(c if c.isalnum() else "_" for c in name), args, work, a.repeats)
        print(f"{name:<26} {r['wall_median_s']:9.2f} {str(r['wall_all_s']):<24} {r['peak_mb']:8.0f}"
              + ("" if not r["failed"] else f"  FAILED {r['failed']}: {r.get('error', '')}"), flush=True)
    print("\naccuracy, real data (errors along the cord, mm):")
    for r in accuracy_real(root):
        print(f"  {r['case']}: found {r['found']}; errors {r['errors']}; MAE {r['mae_mm']:.2f} max {r['max_mm']:.2f}; "
              f"identity {'ok' if r['identity_ok'] else 'WRONG'} (ambiguous {r['ambiguous']}, margin {r['identity_margin']}, "
              f"image margin {r['image_margin']})")
    from spinereg.vertebrae import label_vertebrae
    from spinereg.vertebrae.evaluate import compare_to_truth

    lab = label_vertebrae(full.image, full.seg, contrast="t2")
    r = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in full.disc_points.items()})
    print(f"  full phantom seed 0: {len(lab.discs)} discs, MAE {r['mae_mm']:.2f} max {r['max_mm']:.2f}, identity "
          f"{'ok' if r['identity_ok'] else 'WRONG'}, missing {r['missing']}")
    if a.bare:
        print("\naccuracy, full phantom from the bare image (automatic segmentation):")
        lo, _, hi = a.seeds.partition("-")
        accuracy_bare(range(int(lo), int(hi or lo) + 1), register=a.register)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_label_vertebrae_heldout import SEEDS, SEEDS_SESSION20
    from test_label_vertebrae_heldout_s23 import SEEDS_SESSION23
    from test_label_vertebrae_heldout_s30 import SEEDS_SESSION30

    for flag, held, title in ((a.phantoms, None, "20 independent phantoms, seeds 0-2 (tests/test_label_vertebrae_phantoms.py)"),
                              (a.heldout, SEEDS, "42 held-out phantoms, seeds 40-45 (session 19's; seen by session 20's "
                               "change)"),
                              (a.heldout, SEEDS_SESSION20, "42 held-out phantoms, seeds 50-55 (session 20's; seen by "
                               "session 23's change)"),
                              (a.heldout, SEEDS_SESSION23, "42 held-out phantoms, seeds 60-65 (session 23's)"),
                              (a.heldout, SEEDS_SESSION30, "42 held-out phantoms, seeds 80-85 (session 30's)")):
        if not flag:
            continue
        print(f"\naccuracy, {title}:")
        rows = accuracy_phantoms(held)
        right = [x for x in rows if x["identity_ok"]]
        maes = [x["mae_mm"] for x in right]
        print(f"  identity right {len(right)}/{len(rows)}; wrong and not flagged: "
              f"{sum(1 for x in rows if not x['identity_ok'] and not x['ambiguous'])}; "
              f"MAE mean {np.mean(maes):.2f} (range {min(maes):.2f}-{max(maes):.2f}), <= 2 mm on "
              f"{sum(m <= 2.0 for m in maes)}/{len(maes)}, over 2 mm and not flagged: "
              f"{sum(1 for x in right if x['mae_mm'] > 2.0 and not x['ambiguous'])}; "
              f"max error {max(x['max_mm'] for x in right):.2f} mm")
        (work / (f"heldout_{held.start}.json" if held else "phantoms.json")).write_text(json.dumps(rows, indent=1, default=float))
    if a.fov:
        from test_label_vertebrae_fov import SEEDS as FOV_SEEDS
        from test_label_vertebrae_fov import SEEDS_B as FOV_SEEDS_B
        from test_label_vertebrae_fov import run_fovs

        print("\naccuracy, 42 fields of view that start below C2, seeds 70-75 (tests/test_label_vertebrae_fov.py):")
        rows = run_fovs(FOV_SEEDS) + run_fovs(FOV_SEEDS_B)
        right = [x for x in rows if x["identity_ok"]]
        maes = [x["mae_mm"] for x in right]
        print(f"  identity right {len(right)}/{len(rows)}; wrong and not flagged: "
              f"{sum(1 for x in rows if not x['identity_ok'] and not x['ambiguous'])}; "
              f"MAE mean {np.mean(maes):.2f} (max {max(maes):.2f}), <= 2 mm on {sum(m <= 2.0 for m in maes)}/{len(maes)}")
        (work / "fov.json").write_text(json.dumps(rows, indent=1, default=float))
    if a.brainstem:
        print("\nfields that show the brainstem (PAM50_small_t2 and its moved copies; spinereg.phantom.moved_copies):")
        accuracy_brainstem(range(24))
    if not a.out:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def accuracy_brainstem(seeds: range) -> None:
    """The PMJ's error along the cord's axis (found minus SCT's manual label, moved with the
    image) and the labeling against PAM50_small_label_disc, from the automatic segmentation."""
    from spinereg.io.image import Image
    from spinereg.phantom.moved_copies import moved_copy, source
    from spinereg.segment import segment
    from spinereg.vertebrae import label_vertebrae
    from spinereg.vertebrae.evaluate import compare_to_truth
    from spinereg.vertebrae.pmj import front_profile

    data, affine, pmj, discs = source()
    rows = [("original", Image(data.astype(np.float32), affine), pmj, discs)]
    for seed in seeds:
        c = moved_copy(seed)
        rows.append((f"copy {seed} {c.grid}", c.image, c.pmj, c.discs))
    errs, right = [], 0
    for name, image, truth, tdiscs in rows:
        seg = segment(image, "t2").seg
        lab = label_vertebrae(image, seg, "t2")
        r = compare_to_truth(lab, tdiscs)
        right += bool(r["identity_ok"])
        if lab.pmj is None:
            e = float("nan")
        else:
            e = float((np.asarray(lab.pmj["point_mm"]) - truth) @ front_profile(image, seg, lab.centerline, 1)["up"])
            errs.append(e)
        print(f"  {name:<18} PMJ {e:+6.2f} mm  levels {'right' if r['identity_ok'] else 'WRONG'}"
              f"{' (flagged)' if lab.ambiguous else ''}  disc MAE {r['mae_mm']:.2f} mm  {[d.name for d in lab.measured]}",
              flush=True)
    print(f"  PMJ found on {len(errs)}/{len(rows)}: error along the axis mean {np.mean(errs):+.2f} mm, range "
          f"{min(errs):+.2f}..{max(errs):+.2f}; levels right on {right}/{len(rows)}")


if __name__ == "__main__":
    raise SystemExit(main())
