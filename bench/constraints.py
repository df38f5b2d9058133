"""Anatomical constraints (issue 15): the tables behind the figures of README "Anatomical
constraints".

1. ``phantom``: the articulated-spine phantom (PAM50 vertebrae moved rigidly one by one, 2-6 deg
   flexion/extension and lateral bending and 1-3 mm translation per segment; MR-like and CT-like;
   :mod:`spinereg.phantom.articulated`). Unconstrained = one deformable step (``--deform``,
   default ANTs SyN ``iter=10,smooth=1`` in 3D); constrained = ``algo=polyrigid`` then the same
   step with ``rigidity=1``. Errors against the exact truth: mean and p95 in the exactly rigid
   bone of the requested levels, mean in the cord; rigidity = mean |J^T J - I|_F in that bone;
   wall time of the steps, both pipelines timed in this process one after the other.
2. ``tps``: approximating vs interpolating thin-plate splines on 52 PAM50 vertebra landmarks
   moved by a smooth spine deformation and perturbed by anisotropic noise (SD 0.3, 0.3, S-I);
   mean error at 520 held-out points inside the vertebrae, 10 seeds.
3. ``real``: sct_testing_data/t2 registered to PAM50 (default preset); bodies placed by the
   warp; S-I offset of each placed body centre from its body label along the cord.
4. ``endplates``: the subject's heights and endplate tilts measured through the registration
   (:func:`spinereg.metrics.spine_registration.subject_endplates`) on t2 with the default and
   the template_spine presets, against the reference of ``tests/spine_reference_t2.py``
   (manual-style morphometry on the mid-sagittal slab, no registration); then on articulated
   phantoms (seeds x MR/CT, bodies placed exactly and misplaced by 2 mm S-I, 1 mm A-P and a 10 %
   scale) against the body label's extent along the measured lines; endplate tilts on the
   phantoms against the template's endplate turned by each vertebra's known rotation; the
   reference's own tilts with its walls read 0.5 voxel off.

5. ``speed``: ``spinereg register-to-template`` on t2 with the default and the template_spine
   presets, whole commands timed from outside the process, alternating, ``--repeats`` each.

Usage: ``python bench/constraints.py [--part phantom|tps|real|endplates|speed|all] [--levels 3:5] [--margin 12]
[--seeds 0,1,2] [--contrasts mr,ct] [--deform STEP]`` (the defaults are the tests' phantom). Needs SPINEREG_DATA. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def phantom_table(levels: tuple[int, int], seeds: list[int], contrasts: list[str], deform: str,
                  margin_mm: float) -> None:
    from spinereg.phantom.articulated import make_articulated_phantom
    from spinereg.register.engine import run_steps
    from spinereg.register.rigidity import rigidity_map
    from spinereg.register.steps import parse_param
    from spinereg.transforms.base import Chain
    from spinereg.transforms.displacement import DisplacementField

    pipes = {"unconstrained": f"step=1,{deform}",
             "constrained": f"step=1,type=im,algo=polyrigid:step=2,{deform},rigidity=1"}
    print(f"phantom C{levels[0]}-C{levels[1]} (margin {margin_mm:g} mm), deformable step: {deform}")
    print(f"{'case':10} {'pipeline':14} {'time s':>7} {'bone mm':>8} {'bone p95':>9} {'cord mm':>8} "
          f"{'|JtJ-I|':>8} {'time x':>7}")
    rows = []
    for contrast in contrasts:
        for seed in seeds:
            ph = make_articulated_phantom(levels, seed=seed, contrast=contrast, margin_mm=margin_mm)
            lab = np.asarray(ph.vertebrae.data)
            bone = np.isin(lab, list(range(levels[0], levels[1] + 1))) & (np.asarray(ph.rigid.data) > 0)
            cord = np.asarray(ph.cord.data) > 0
            truth = ph.truth_anat2template.data
            base = None
            for name, param in pipes.items():
                t0 = time.perf_counter()
                res = run_steps(parse_param(param), ph.grid, {"im": np.asarray(ph.template.data, np.float32),
                                                              "vertebrae": lab}, {"im": ph.subject}, [])
                wall = time.perf_counter() - t0
                est = DisplacementField.from_transform(Chain(res.transforms), ph.grid)
                eb = np.linalg.norm(est.data[bone] - truth[bone], axis=1)
                ec = np.linalg.norm(est.data[cord] - truth[cord], axis=1)
                rig = float(np.nanmean(rigidity_map(est)[bone]))
                base = wall if base is None else base
                rows.append((contrast, seed, name, wall, eb.mean(), rig, ec.mean()))
                print(f"{contrast} s{seed:<6} {name:14} {wall:7.1f} {eb.mean():8.3f} {np.percentile(eb, 95):9.3f} "
                      f"{ec.mean():8.3f} {rig:8.4f} {wall / base:7.2f}", flush=True)
    for name in pipes:
        sel = [r for r in rows if r[2] == name]
        print(f"{'all':10} {name:14} bone {np.mean([r[4] for r in sel]):.3f} mm "
              f"(range {min(r[4] for r in sel):.3f}-{max(r[4] for r in sel):.3f}), "
              f"rigidity {np.mean([r[5] for r in sel]):.4f}, cord {np.mean([r[6] for r in sel]):.3f} mm")


def tps_table() -> None:
    from scipy.spatial.transform import Rotation

    from spinereg.cord.vertebra_masks import template_vertebrae
    from spinereg.io.template import load_template
    from spinereg.register.tps import fit_tps

    vert = template_vertebrae(load_template("PAM50"))
    lab = np.asarray(vert.data)
    rng0 = np.random.default_rng(0)
    pts, held = [], []
    for v in range(1, 14):
        x = vert.grid.voxel_to_world(np.argwhere(lab == v))
        pts += [x.mean(0), x[np.argmin(x[:, 0])], x[np.argmax(x[:, 0])], x[np.argmin(x[:, 1])]]
        held.append(x[rng0.choice(len(x), 40, replace=False)])
    p, h = np.array(pts), np.concatenate(held)
    c = p.mean(0)
    print("TPS: 52 landmarks, 520 held-out points, 10 deformations (seeds 0-9)")
    print(f"{'noise SD mm':14} {'interp mm':>10} {'approx mm':>10} {'reduction':>10} {'per-seed range':>18}")
    for sd in (np.array([0.3, 0.3, 1.5]), np.array([0.3, 0.3, 2.5])):
        cov = np.broadcast_to(np.diag(sd**2), (len(p), 3, 3))
        ei, ea = [], []
        for seed in range(10):
            rng = np.random.default_rng(seed)
            lin = Rotation.from_rotvec(np.radians(rng.uniform(-5, 5, 3))).as_matrix() @ np.diag(
                1 + rng.uniform(-0.05, 0.05, 3))
            t = rng.uniform(-5, 5, 3)
            amp, wl, ph = rng.uniform(2, 5, 3), rng.uniform(200, 500, 3), rng.uniform(0, 2 * np.pi, 3)

            def deform(x, lin=lin, t=t, amp=amp, wl=wl, ph=ph):
                return (x - c) @ lin.T + c + t + amp * np.sin(2 * np.pi * (x[:, 2:3] - c[2]) / wl + ph)

            noisy = deform(p) + rng.standard_normal(p.shape) * sd
            ei.append(np.linalg.norm(fit_tps(p, noisy).map(h) - deform(h), axis=1).mean())
            ea.append(np.linalg.norm(fit_tps(p, noisy, cov).map(h) - deform(h), axis=1).mean())
        red = 1 - np.array(ea) / np.array(ei)
        print(f"{'x'.join(f'{s:g}' for s in sd):14} {np.mean(ei):10.3f} {np.mean(ea):10.3f} {red.mean():10.1%} "
              f"{red.min():8.1%} - {red.max():6.1%}")


def real_table() -> None:
    from spinereg.cord.centerline import centerline_from_seg
    from spinereg.cord.landmarks import read_point_labels
    from spinereg.io.image import load_image
    from spinereg.io.registry import dataset_path
    from spinereg.metrics.spine_registration import bodies_from_warp
    from spinereg.register.template import register_to_template

    d = dataset_path("sct_testing_data") / "t2"
    t0 = time.perf_counter()
    reg = register_to_template(d / "t2.nii.gz", d / "t2_seg-manual.nii.gz", labels=d / "labels.nii.gz",
                               template="PAM50")
    t1 = time.perf_counter()
    bodies = bodies_from_warp(reg.warp_template2anat(), reg.image.grid)
    t2 = time.perf_counter()
    lab = np.asarray(bodies.data)
    seg = load_image(d / "t2_seg-manual.nii.gz")
    cl = centerline_from_seg(seg)
    lm = read_point_labels(load_image(d / "labels.nii.gz"), "body")
    s_lab, _ = cl.project(lm.points)
    print(f"real t2: registration {t1 - t0:.1f} s, body placement {t2 - t1:.1f} s; "
          f"levels placed: {sorted(int(v) for v in np.unique(lab[lab > 0]))}")
    for v, s_v in zip(lm.values, s_lab, strict=True):
        c = bodies.grid.voxel_to_world(np.argwhere(lab == v)).mean(0)
        s_c, dist = cl.project(c[None])
        print(f"  C{v}: body centre {s_c[0] - s_v:+.2f} mm from its label along the cord, {dist[0]:.1f} mm in front")


def endplates_table(seeds: list[int], contrasts: list[str]) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import spine_reference_t2 as ref
    from spinereg.io.image import load_image
    from spinereg.io.registry import dataset_path
    from spinereg.metrics.spine_registration import subject_endplates
    from spinereg.register.template import register_to_template
    from test_spine_metrics_endplates import phantom_height_errors, phantom_tilt_errors

    d = dataset_path("sct_testing_data") / "t2"
    img = load_image(d / "t2.nii.gz")
    truth = ref.reference(np.asarray(img.data, float))
    alt = ref.reference(np.asarray(img.data, float), slab=(23, 28))
    cols = tuple(ref.FRACTIONS)
    print("t2 reference (3 mm slab; 5 mm slab in brackets): heights A/M/P mm, tilts deg")
    for v in (3, 4):
        print(f"  C{v}: " + " / ".join(f"{truth['heights'][v][k]:.2f} ({alt['heights'][v][k]:.2f})" for k in cols))
    print("  tilts: " + ", ".join(f"C{v}{s[0]} {a:+.1f} ({alt['tilts'][(v, s)]:+.1f})" for (v, s), a in truth["tilts"].items())
          + "; segmental " + ", ".join(f"{k} {a:+.1f}" for k, a in truth["segmental"].items()))
    # the reference's own sensitivity: its walls were read to +-0.5 voxel (module doc, step 2)
    import itertools

    walls0, spread = dict(ref.WALLS), {}
    try:
        for da, dp in itertools.product((-0.5, 0.0, 0.5), repeat=2):
            ref.WALLS = {v: (a + da, p + dp) for v, (a, p) in walls0.items()}
            r = ref.reference(np.asarray(img.data, float))
            for k, a in {**r["tilts"], **r["segmental"]}.items():
                spread.setdefault(k, []).append(a - {**truth["tilts"], **truth["segmental"]}[k])
    finally:
        ref.WALLS = walls0
    print("  reference tilts with its walls read +-0.5 voxel off: "
          + ", ".join(f"{f'C{k[0]}{k[1][0]}' if isinstance(k, tuple) else k} {min(v):+.1f}..{max(v):+.1f}"
                      for k, v in spread.items()))
    # the same subject's t1 (same world, both images axis-aligned with the same i -> P, j -> S frame),
    # read by t2's procedure (tests/spine_reference_t1.py): how far two readings of one endplate
    # differ, i.e. what a tilt target of a few degrees can be checked against
    import spine_reference_t1 as ref1

    t1ref = ref1.reference(np.asarray(load_image(dataset_path("sct_testing_data") / "t1" / "t1w.nii.gz").data, float))
    print("  t1's reference tilts (same procedure, same subject): "
          + ", ".join(f"C{v}{s[0]} {a:+.1f} (t2 {truth['tilts'][(v, s)]:+.1f})" for (v, s), a in t1ref["tilts"].items()
                      if (v, s) in truth["tilts"])
          + "; segmental " + ", ".join(f"{k} {a:+.1f} (t2 {truth['segmental'][k]:+.1f})"
                                       for k, a in t1ref["segmental"].items()))
    for preset in ("default", "template_spine"):
        kw = {} if preset == "default" else {"param": preset}
        t0 = time.perf_counter()
        reg = register_to_template(d / "t2.nii.gz", d / "t2_seg-manual.nii.gz", labels=d / "labels.nii.gz",
                                   template="PAM50", **kw)
        t1 = time.perf_counter()
        rows = {r.level: r for r in subject_endplates(img, reg.warp_template2anat())}
        print(f"{preset}: registration {t1 - t0:.1f} s, endplates {time.perf_counter() - t1:.1f} s")
        for v, r in sorted(rows.items()):
            hs = " / ".join(f"{r.heights[k]:.2f}" for k in cols)
            err = (" err " + " / ".join(f"{r.heights[k] - truth['heights'][v][k]:+.2f}" for k in cols)
                   if v in truth["heights"] else "")
            print(f"  {r.name}: heights {hs}{err}; tilts sup {r.superior_deg:+.1f} inf {r.inferior_deg:+.1f}"
                  + ("" if r.status == "measured" else f"  [{r.status[:90]}]"))
        dt = {(v, s): getattr(rows[v], f"{s}_deg") - a for (v, s), a in truth["tilts"].items()}
        print("  tilt error: " + ", ".join(f"C{v}{s[0]} {e:+.1f}" for (v, s), e in dt.items()))
        seg = {"C3-C4": dt[(3, "inferior")] - dt[(4, "superior")], "C4-C5": dt[(4, "inferior")] - dt[(5, "superior")]}
        print("  segmental angle error: " + ", ".join(f"{k} {e:+.1f}" for k, e in seg.items()))
        d1 = {k: getattr(rows[k[0]], f"{k[1]}_deg") - a for k, a in t1ref["tilts"].items() if k in truth["tilts"]}
        print("  tilt minus t1's reference (a second reading, not asserted): "
              + ", ".join(f"C{v}{s[0]} {e:+.1f}" for (v, s), e in d1.items()))
    print("phantoms C2-C6 (C3-C5 measured), height error mm (measured - label extent), columns A/M/P")
    for contrast in contrasts:
        for seed in seeds:
            for name, kw in (("exact", {}), ("misplaced", {"shift": (0.0, 1.0, 2.0), "scale": 0.9})):
                e = phantom_height_errors(seed, contrast, **kw)
                per = "  ".join(f"C{v} " + "/".join(f"{e[(v, k)]:+.2f}" for k in cols) for v in (3, 4, 5))
                f = np.array([x for x in e.values() if np.isfinite(x)])
                print(f"  {contrast} s{seed} {name:9} {per}   mean {f.mean():+.2f} max|e| {np.abs(f).max():.2f} "
                      f"({len(f)}/9 measured)", flush=True)
    print("phantoms C2-C6 (bodies placed exactly), endplate tilt error deg: measured minus the endplate measured "
          "on the template image turned by the vertebra's known rotation; C3-C5 superior/inferior")
    allt = []
    for contrast in contrasts:
        for seed in seeds:
            e = phantom_tilt_errors(seed, contrast)
            allt += list(e.values())
            print(f"  {contrast} s{seed} " + "  ".join(f"C{v}{s[0]} {x:+.1f}" for (v, s), x in e.items()), flush=True)
    t = np.array(allt)
    print(f"  all: mean {np.nanmean(t):+.2f}, RMS {np.sqrt(np.nanmean(t**2)):.2f}, max |e| {np.nanmax(np.abs(t)):.1f} deg "
          f"({np.isfinite(t).sum()}/{t.size} measured)")


def speed_table(repeats: int) -> None:
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from spinereg.io.registry import dataset_path

    d = dataset_path("sct_testing_data") / "t2"
    base = [sys.executable, "-m", "spinereg.cli.main", "register-to-template", "-i", str(d / "t2.nii.gz"),
            "-s", str(d / "t2_seg-manual.nii.gz"), "-l", str(d / "labels.nii.gz"), "--allow-fail"]
    times: dict[str, list[float]] = {"default": [], "template_spine": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for preset in times:
                cmd = base + ["-o", str(Path(tmp) / f"{preset}{i}")] + ([] if preset == "default" else
                                                                       ["--param", preset])
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times[preset].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"register-to-template t2 ({repeats} runs each, whole command): "
          + ", ".join(f"{k} {med[k]:.1f} s ({min(v):.1f}-{max(v):.1f})" for k, v in times.items())
          + f"; template_spine / default {med['template_spine'] / med['default']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", choices=("phantom", "tps", "real", "endplates", "speed", "all"))
    ap.add_argument("--repeats", type=int, default=3, help="runs per preset of --part speed")
    ap.add_argument("--levels", default="3:5")
    ap.add_argument("--margin", type=float, default=12.0, help="mm of phantom above and below the levels")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--contrasts", default="mr,ct")
    ap.add_argument("--deform", default="type=im,algo=syn,deformation=1x1x1,iter=10,smooth=1")
    a = ap.parse_args()
    if a.part in ("tps", "all"):
        tps_table()
    if a.part in ("real", "all"):
        real_table()
    if a.part in ("speed", "all"):
        speed_table(a.repeats)
    if a.part in ("endplates", "all"):
        endplates_table([int(s) for s in a.seeds.split(",")], a.contrasts.split(","))
    if a.part in ("phantom", "all"):
        lo, hi = (int(x) for x in a.levels.split(":"))
        phantom_table((lo, hi), [int(s) for s in a.seeds.split(",")], a.contrasts.split(","), a.deform, a.margin)


if __name__ == "__main__":
    main()
