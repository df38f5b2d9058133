"""Benchmark ``spinereg batch``: subjects per minute with 1 and 2 local Dask workers, the
scheduler's overhead per task, and the peak memory of each worker.

The cohort is tests/bids_synth.py's synthetic BIDS dataset (sct_testing_data's t2 / t2s / MT moved
by known fields; ``--subjects`` subjects without sessions, no broken ones) with the tests' light
pipeline (PAM50_small, template outputs cropped, QC pages of the T2w registration). Each
configuration is one whole ``spinereg batch`` command in a fresh process, timed from outside.

* subjects per minute: units / the command's wall time (cluster start and group outputs included);
* scheduler overhead per task: on each worker, the idle time between the end of one unit and the
  start of the next while units were still queued (result sent back, scheduler decision, next
  task's arguments received), from the worker-side times in ``OUT/logs/batch.jsonl``, as a fraction
  of the mean unit time (target < 5 %);
* peak memory per worker: the worker process's peak resident size (``ru_maxrss``) after its last unit.

Usage: ``python bench/batch.py [--subjects 6] [--workers 1 2] [--keep DIR]``.
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
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

LIGHT = (HERE.parent / "tests" / "test_batch_run.py").read_text().split('LIGHT = """\\\n', 1)[1].split('"""', 1)[0]


def data_root() -> Path:
    env = os.environ.get("SPINEREG_DATA")
    root = Path(env) if env else HERE.parent.parent / "shared" / "data"
    if not (root / "sct_testing_data").is_dir():
        sys.exit("set SPINEREG_DATA to the folder holding sct_testing_data/")
    return root


def analyse(out: Path) -> dict:
    events = [json.loads(line) for line in (out / "logs" / "batch.jsonl").read_text().splitlines()]
    units = [e for e in events if e["event"] in ("done", "failed") and "start" in e and "end" in e]
    by_worker: dict[int, list[dict]] = defaultdict(list)
    for e in units:
        by_worker[e["pid"]].append(e)
    durations = [e["end"] - e["start"] for e in units]
    gaps = []
    last_start = max(e["start"] for e in units)
    for seq in by_worker.values():
        seq.sort(key=lambda e: e["start"])
        for a, b in zip(seq, seq[1:], strict=False):
            if a["end"] <= last_start:  # units were still queued
                gaps.append(max(b["start"] - a["end"], 0.0))
    mean_task = statistics.fmean(durations)
    mean_gap = statistics.fmean(gaps) if gaps else 0.0
    return {"units": len(units), "failed": sum(e["event"] == "failed" for e in units),
            "mean_unit_s": round(mean_task, 2), "overhead_per_task_s": round(mean_gap, 4),
            "overhead_pct": round(100 * mean_gap / mean_task, 2), "gaps": len(gaps),
            "peak_rss_mb_per_worker": {str(pid): max(e.get("peak_rss_mb") or 0 for e in seq)
                                       for pid, seq in sorted(by_worker.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--keep", help="keep the dataset and outputs in this folder")
    args = ap.parse_args()
    from bids_synth import build_bids

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_batch_"))
    work.mkdir(parents=True, exist_ok=True)
    bids = work / "bids"
    if not bids.is_dir():
        build_bids(bids, data_root() / "sct_testing_data", n_subjects=args.subjects, two_sessions=0, broken=False)
    cfg = work / "light.yaml"
    cfg.write_text(LIGHT)
    env = {**os.environ, "MPLBACKEND": "Agg", "CI": "1"}
    rows = []
    for n in args.workers:
        out = work / f"out_w{n}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "spinereg.cli.main", "batch", str(bids), "-o", str(out),
                              "--config", str(cfg), "--workers", str(n)], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            print(res.stdout, res.stderr, file=sys.stderr)
            sys.exit(f"batch with {n} worker(s) exited {res.returncode}")
        a = analyse(out)
        rows.append({"workers": n, "wall_s": round(wall, 1), "subjects_per_min": round(a["units"] / wall * 60, 2), **a})
    load = os.getloadavg()
    print(f"spinereg batch: {args.subjects} subjects (T2w + T2*w + MTS each), light pipeline; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f}")
    print(f"{'workers':>7} {'wall s':>7} {'subj/min':>8} {'unit s':>7} {'overhead/task':>13} {'% of task':>9} "
          f"peak MB per worker")
    for r in rows:
        print(f"{r['workers']:>7} {r['wall_s']:>7} {r['subjects_per_min']:>8} {r['mean_unit_s']:>7} "
              f"{r['overhead_per_task_s']:>12}s {r['overhead_pct']:>8}% "
              + ", ".join(f"{v:.0f}" for v in r["peak_rss_mb_per_worker"].values()))
    print(json.dumps(rows))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
