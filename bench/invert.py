"""Benchmark ``spinereg invert`` of a template registration's warps: whole command, old src beside new.

Cases (the warps of ``register-to-template`` on sct_testing_data t2):

* ``template2anat -d PAM50``: ``invert -w warp_template2anat.nii.gz -d PAM50_cord.nii.gz``, the
  inverse of a field on t2's small grid (60 x 55 x 52) onto PAM50's 141 x 141 x 991 grid, most of
  which the field maps nothing to;
* ``anat2template -d t2``: ``invert -w warp_anat2template.nii.gz -d t2.nii.gz``.

Each command runs as a child process (wall time; peak RSS of the child from ``wait4``), with
``PYTHONPATH`` at the baseline's ``src`` (``git archive REV src``) or at this tree's ``src``. The
outputs are compared voxel by voxel: the set of finite voxels, the set of voxels the inverse sends
onto the warp's grid (where it found a pre-image), the set left at the identity, and the distance
(mm) between the two fields where the baseline's is finite (p99, max).

Usage: ``python bench/invert.py [--warps DIR] [--baseline REV] [--repeat N] [--out DIR]``.
``--warps``: a register-to-template output folder (default: run it into ``--out``). ``--baseline``:
default, the parent of the last commit that changed ``transforms/displacement.py``.
Run with ``SPINEREG_DATA`` set. Not part of the test suite (``tests/test_invert_speed.py``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUN = "import sys; from spinereg.cli.main import console_main; sys.argv[0] = 'spinereg'; sys.exit(console_main())"


def data_dir() -> Path:
    d = os.environ.get("SPINEREG_DATA")
    if not d:
        sys.exit("set SPINEREG_DATA (the folder holding sct_testing_data and PAM50)")
    return Path(d)


def run_cli(args: list[str], src: Path, log: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit status of ``spinereg ARGS`` run from ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src), OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", RUN, *args], env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024.0, proc.returncode


def compare(ref_path: Path, new_path: Path, warp_path: Path, src: Path) -> dict:
    sys.path.insert(0, str(src))
    from spinereg.transforms.itk import load_transform
    from spinereg.transforms.sanity import inside

    ref, new, warp = (load_transform(str(p)) for p in (ref_path, new_path, warp_path))
    a = ref.data.reshape(-1, 3).astype(float)
    b = new.data.reshape(-1, 3).astype(float)
    fa, fb = np.all(np.isfinite(a), 1), np.all(np.isfinite(b), 1)
    d = np.linalg.norm(a - b, axis=1)[fa & fb]
    y = ref.grid.world_coords()
    on_a = fa & inside(warp.grid, y + np.where(np.isfinite(a), a, 0))
    on_b = fb & inside(warp.grid, y + np.where(np.isfinite(b), b, 0))
    id_a, id_b = np.all(a == 0, 1), np.all(b == 0, 1)
    return {"finite_differ": int((fa != fb).sum()), "onto_differ": int((on_a != on_b).sum()),
            "identity_differ": int((id_a != id_b).sum()), "onto": int(on_a.sum()), "voxels": len(a),
            "p99": float(np.percentile(d, 99)) if d.size else float("nan"),
            "max": float(d.max()) if d.size else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warps", type=Path, help="register-to-template output folder holding the warps")
    ap.add_argument("--baseline", help="git revision of the old src")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case and side (the table gives the median)")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    data = data_dir()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_invert_"))
    out.mkdir(parents=True, exist_ok=True)
    t2 = data / "sct_testing_data" / "t2"
    warps = args.warps
    if warps is None:
        warps = out / "r2t"
        if not (warps / "warp_template2anat.nii.gz").exists():
            subprocess.run([sys.executable, "-c", RUN, "register-to-template", "-i", str(t2 / "t2.nii.gz"),
                            "-s", str(t2 / "t2_seg-manual.nii.gz"), "-l", str(t2 / "labels.nii.gz"), "-c", "t2",
                            "-o", str(warps)], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    rev = args.baseline
    if rev is None:
        last = subprocess.run(["git", "log", "-1", "--format=%H", "--", "src/spinereg/transforms/displacement.py"],
                              cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        rev = f"{last}~1"
    rev = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    old = out / f"old_{rev}"
    if not (old / "src").exists():
        old.mkdir(parents=True, exist_ok=True)
        arch = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=arch, check=True)
    sides = {f"old {rev}": old / "src", "new": ROOT / "src"}
    cases = {"template2anat -d PAM50": (warps / "warp_template2anat.nii.gz",
                                        data / "PAM50" / "template" / "PAM50_cord.nii.gz"),
             "anat2template -d t2": (warps / "warp_anat2template.nii.gz", t2 / "t2.nii.gz")}
    rows = []
    for ci, (case, (warp, dest)) in enumerate(cases.items()):
        outputs = {}
        for si, (side, src) in enumerate(sides.items()):
            walls, peaks, rcs = [], [], []
            for r in range(args.repeat):
                o = out / f"inv_{ci}_{si}.nii.gz"
                wall, peak, rc = run_cli(["invert", "-w", str(warp), "-d", str(dest), "-o", str(o), "--overwrite"],
                                         src, out / f"log_{ci}_{si}_{r}.txt")
                walls.append(wall)
                peaks.append(peak)
                rcs.append(rc)
                print(f"  {case:24s} {side:12s} run {r + 1}: {wall:7.1f} s, peak {peak:6.0f} MiB, exit {rc}", flush=True)
            outputs[side] = o
            rows.append((case, side, float(np.median(walls)), max(peaks), rcs))
        ref_out, new_out = outputs.values()
        cmp = compare(ref_out, new_out, warp, ROOT / "src")
        rows.append((case, "accuracy", cmp))
    print(f"\nspinereg invert, whole command (median of {args.repeat}; {os.cpu_count()} CPUs; baseline {rev})")
    print("| case | src | wall s | peak MiB | exit |\n|---|---|---|---|---|")
    base = {}
    for row in rows:
        if row[1] == "accuracy":
            continue
        case, side, wall, peak, rcs = row
        base.setdefault(case, wall)
        speed = "" if side.startswith("old") else f" ({base[case] / wall:.1f}x)"
        print(f"| {case} | {side} | {wall:.1f}{speed} | {peak:.0f} | {','.join(map(str, rcs))} |")
    print("\nnew vs old output: distance (mm) where the old is finite; voxels whose class differs")
    print("| case | voxels | p99 mm | max mm | finite differ | sent-onto-grid differ (of) | identity differ |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if row[1] == "accuracy":
            c = row[2]
            print(f"| {row[0]} | {c['voxels']} | {c['p99']:.2g} | {c['max']:.2g} | {c['finite_differ']} | "
                  f"{c['onto_differ']} ({c['onto']}) | {c['identity_differ']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
