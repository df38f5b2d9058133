"""Whole-command speed, measured from outside the process, beside a stage profile and a baseline.

Cases (targets of issue 14):

* ``t2``: ``spinereg register-to-template`` on sct_testing_data/t2 (manual seg, body labels) to
  ``PAM50_small``. Target <= 2 s, <= 400 MB.
* ``full``: the full-resolution independent phantom
  (``spinereg.phantom.independent.make_independent_subject('full', seed=0)``: 0.8 mm, about
  64 x 320 x 320) to the full ``PAM50``. Target <= 20 s, <= 0.8 GB.
* ``segment``: ``spinereg segment`` on sct_testing_data/t2. Target <= 3 s.
* ``help``: ``spinereg --help`` (start-up). Target <= 0.3 s.
* ``bare``: the README's main job, ``spinereg register-to-template -i t2.nii.gz -c t2`` on
  sct_testing_data/t2 to the full ``PAM50`` from the bare image (segmentation, disc labeling and
  registration; no QC report). Baseline: plain ANTs SyN on t2 and PAM50_small_t2, which does none
  of the segmentation or labeling.
* ``imreg``: image-only ``spinereg register`` (default preset) on the 256 x 256 x 22 full-FOV axial
  pair of ``bench/register_robustness.py`` (t2s_uncropped resampled, known in-plane deformation,
  seed 0). Target <= 5 s.

Whole command: each run is a separate child process (``python -m spinereg.cli.main``); wall time
from the parent's clock (start-up, imports, output writing and exit included), peak memory is the
child's own maximum resident set (GNU time's ``%M``; ``wait4``'s would count this parent's pages), the 1-minute load average is read before each run.
Median (and min-max) of ``--runs`` runs (>= 3).

Profile: two tables per case, both from separate measured runs.
(1) Stages: the median timed run's own ``provenance.json`` (stages and their parts, timed inside
the process), placed on the parent's clock: "start-up" is launch -> the run record's start,
"exit" is the record's end -> the process is reaped. (2) Calls: one more run inside a child under
cProfile, split along the call tree (start-up and CLI import timed apart); rows are the calls that
took >= 2 % of the run, leaves of the tree, so rows add up. Each table says what share of the
wall time its named rows account for.

Baseline, in the same run: ``--baseline ants`` (plain ANTs SyN through antspyx on the same image
pair: the subject image and the template's T2w, ``ants.registration(type_of_transform="SyN")``),
``--baseline commit:REV`` (the same command from ``git archive REV``, run with PYTHONPATH),
``--baseline flags:ARGS`` (the same command and code with ARGS added, e.g. ``flags:--no-gzip``), or
``none``. Default: ants for t2, the commit before this bench's speed work (``e7f2bb1``) for full.

Usage: ``python bench/speed.py [--case t2,full,segment,help] [--runs 3] [--baseline auto|ants|commit:REV|flags:ARGS|none]
[--out DIR]``. Not part of the test suite; the machine's load is printed with every figure.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGETS = {"t2": (2.0, 400.0), "bare": (None, None), "full": (20.0, 800.0), "segment": (3.0, None), "help": (0.3, None),
           "imreg": (5.0, None)}
BASE_COMMIT = "e7f2bb1"


# -- whole commands --------------------------------------------------------------------------------
def spinereg_cmd(pythonpath: str | None = None) -> list[str]:
    """``python -m spinereg.cli.main`` (what the ``spinereg`` console script runs), the same way for
    the code under test and the baseline commit (a pyenv shim in front of ``spinereg`` would add
    its own start-up to one side only)."""
    return [sys.executable, "-m", "spinereg.cli.main"]


#: GNU time (``/usr/bin/time``), which reports its child's own peak RSS; without it, wait4's
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_timed(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> dict:
    """One child process: wall seconds, peak RSS (MB), exit code, load average before, launch time."""
    load = os.getloadavg()[0]
    # the child's peak RSS: ru_maxrss of a child forked from this (possibly large) process counts
    # the parent's pages it held until exec (after the full case's phantom was built here every
    # later child showed ~0.58 GB); GNU time forks the command from its own small process
    rss = Path(f"{log}.maxrss")
    timed = [GNU_TIME, "-f", "%M", "-o", str(rss), *cmd] if GNU_TIME else cmd
    with open(log, "w") as fh:
        launched = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(timed, stdout=fh, stderr=subprocess.STDOUT, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
    text = rss.read_text().strip().splitlines() if GNU_TIME and rss.is_file() else []
    peak_kb = float(text[-1]) if text and text[-1].isdigit() else usage.ru_maxrss
    return {"wall_s": wall, "peak_mb": peak_kb / 1024.0, "rc": os.waitstatus_to_exitcode(status),
            "load1": load, "launched": launched, "log": str(log)}


def repeat(cmd_of_run, n: int, log_dir: Path, timeout: float, env: dict | None = None) -> dict:
    """``n`` runs (``cmd_of_run(i)`` gives the command and its output folder); median and spread."""
    runs = []
    for i in range(n):
        cmd, outdir = cmd_of_run(i)
        if outdir is not None and Path(outdir).exists():
            shutil.rmtree(outdir)
        r = run_timed(cmd, log_dir / f"run{i}.log", timeout, env)
        r["outdir"] = str(outdir) if outdir else None
        runs.append(r)
    walls = [r["wall_s"] for r in runs]
    med = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    return {"runs": runs, "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "peak_mb": max(r["peak_mb"] for r in runs), "median_run": med,
            "load1": [round(r["load1"], 2) for r in runs], "rc": [r["rc"] for r in runs],
            "cmd": " ".join(cmd_of_run(0)[0])}


# -- profile 1: stages of the run record -----------------------------------------------------------
def _utc(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def stage_table(run: dict) -> tuple[list[tuple[str, float]], float]:
    """Rows (name, seconds) of the median run's provenance.json on the parent's clock, and the
    share of the wall time they account for (``other`` = between stages, not attributed)."""
    prov_path = Path(run["outdir"] or "") / "provenance.json"
    if not prov_path.is_file():
        return [], 0.0
    prov = json.loads(prov_path.read_text())
    start = _utc(prov["started_utc"])
    wall = run["wall_s"]
    rows = [("start-up (launch -> run record: interpreter, imports, parsing)", start - run["launched"])]
    imports_s = _utc(prov["stages"][0]["started_utc"]) - start if prov["stages"] else 0.0
    if prov["stages"]:  # what runs before the first stage: the pipeline's library imports
        rows.append(("library imports (run record -> its first stage)", imports_s))
    for st in prov["stages"]:
        rows.append((st["name"], st["seconds"]))
        for part, secs in (st.get("parts") or {}).items():
            rows.append((f"    {part}", secs))
    named = sum(s for n, s in rows if not n.startswith("    "))
    other = prov["wall_seconds"] - sum(st["seconds"] for st in prov["stages"]) - imports_s
    rows.append(("between stages (not attributed)", other))
    exit_s = wall - (start - run["launched"]) - prov["wall_seconds"]
    rows.append(("exit (last write, summary, interpreter exit)", exit_s))
    named += exit_s
    return rows, named / wall


# -- profile 2: calls under cProfile ---------------------------------------------------------------
def profile_worker(out_json: str, argv: list[str]) -> int:
    """Run ``spinereg argv`` in this process under cProfile; write the call-tree rows."""
    launched = float(os.environ.get("SPEED_LAUNCHED", time.time()))
    entered = time.time()
    t0 = time.perf_counter()
    import spinereg.cli.main as cli

    t_import = time.perf_counter() - t0
    prof = cProfile.Profile()
    t1 = time.perf_counter()
    rc = prof.runcall(cli.main, argv)
    t_main = time.perf_counter() - t1
    stats = pstats.Stats(prof).stats
    root = next(k for k in stats if k[2] == "main" and k[0].endswith(os.path.join("cli", "main.py")))
    callees: dict = {}
    for key, (_, _, _, _, callers) in stats.items():
        for caller, (_, _, _, ct) in callers.items():
            callees.setdefault(caller, []).append((key, ct))
    rows: list[tuple[int, str, float]] = []
    limit = 0.02 * t_main

    def leaf(key) -> bool:  # import machinery and recursive calls: their times nest, keep them whole
        name = _name(key)
        return "importlib" in name or name.endswith(("__import__", ".exec", "<module>")) or key[2] == "<module>"

    def expand(key, secs: float, depth: int, seen: frozenset) -> None:
        kids = [(k, ct) for k, ct in callees.get(key, []) if k not in seen]
        big = [(k, ct) for k, ct in kids if ct >= limit]
        if depth >= 8 or not big or secs < 0.05 * t_main or (depth and leaf(key)):
            rows.append((depth, "imports (library modules loaded on first use)" if leaf(key) else _name(key), secs))
            return
        total = sum(ct for _, ct in big)
        scale = min(1.0, secs / total) if total > 0 else 1.0  # never more than the caller's time
        for k, ct in sorted(big, key=lambda kc: -kc[1]):
            expand(k, ct * scale, depth + 1, seen | {k})
        rest = secs - total * scale
        if rest > 0.005 * t_main:
            rows.append((depth + 1, f"{_name(key)}: itself and calls < 2 %", rest))

    expand(root, t_main, 0, frozenset({root}))
    Path(out_json).write_text(json.dumps({
        "rc": rc, "interpreter_start_s": entered - launched, "cli_import_s": t_import, "main_s": t_main,
        "rows": rows}))
    return 0


def _name(key) -> str:
    file, _, func = key
    if file == "~":
        return func
    p = Path(file)
    parts = p.with_suffix("").parts
    mod = ".".join(parts[parts.index("spinereg"):]) if "spinereg" in parts else p.stem
    return f"{mod}.{func}"


def call_table(argv: list[str], outdir: Path | None, log: Path, timeout: float) -> tuple[list, float, float]:
    if outdir is not None and outdir.exists():
        shutil.rmtree(outdir)
    out_json = log.with_suffix(".json")
    env = {**os.environ, "SPEED_LAUNCHED": repr(time.time())}
    r = run_timed([sys.executable, str(Path(__file__).resolve()), "--profile-worker", str(out_json), "--", *argv],
                  log, timeout, env)
    if not out_json.is_file():
        return [], 0.0, r["wall_s"]
    d = json.loads(out_json.read_text())
    rows = [("interpreter start", d["interpreter_start_s"]), ("import spinereg.cli.main", d["cli_import_s"])]
    rows += [("  " * depth + name, secs) for depth, name, secs in d["rows"]]
    exit_s = r["wall_s"] - d["interpreter_start_s"] - d["cli_import_s"] - d["main_s"]
    rows.append(("exit and cProfile bookkeeping", exit_s))
    # every row names where its time went (a function's own time and its calls under 2 % in the
    # "itself" rows); the rest is what the profiler attributed to no caller
    named = d["interpreter_start_s"] + d["cli_import_s"] + sum(s for _, _, s in d["rows"]) + exit_s
    return rows, named / r["wall_s"], r["wall_s"]


# -- baselines -------------------------------------------------------------------------------------
def ants_worker(fixed: str, moving: str, prefix: str) -> int:
    import ants

    ants.registration(fixed=ants.image_read(fixed), moving=ants.image_read(moving), type_of_transform="SyN",
                      outprefix=prefix, random_seed=1)
    return 0


def commit_tree(rev: str, dest: Path) -> str:
    """``src`` of ``rev`` extracted under ``dest`` (no change to the repository); its path."""
    repo = Path(os.environ.get("SPEED_REPO") or Path(__file__).resolve().parents[1])  # a snapshot: the checkout
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return str(dest / "src")


# -- cases -----------------------------------------------------------------------------------------
def case_inputs(case: str, root: Path, work: Path) -> dict:
    if case == "imreg":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from register_robustness import full_fov_pair

        d = work / "imreg_pair"
        d.mkdir(parents=True, exist_ok=True)
        src, dest = d / "fullfov_0_src.nii.gz", d / "fullfov_0_dest.nii.gz"
        if not (src.is_file() and dest.is_file()):  # kept in --out DIR: its known field takes ~1 min
            p = full_fov_pair(d)["paths"]
            src, dest = p["src"], p["dest"]
        return {"src": src, "dest": dest}
    if case == "full":
        from spinereg.phantom.independent import make_independent_subject

        d = work / "phantom_full"
        if not (d / "labels.nii.gz").is_file():
            ph = make_independent_subject("full", seed=0)
            files = ph.save(d)
            print(f"full phantom: {ph.image.grid!r} ({ph.contrast})", flush=True)
        else:
            files = {"t2": d / "t2.nii.gz"}
        meta = json.loads((d / "phantom.json").read_text()) if (d / "phantom.json").is_file() else {}
        img = next(d.glob(f"{meta.get('contrast', 't2')}.nii.gz"), files.get("t2"))
        tpl_t2 = work / "pam50_t2_region.nii.gz"
        return {"image": img, "seg": d / "seg.nii.gz", "labels": d / "labels.nii.gz", "template": "PAM50",
                "contrast": meta.get("contrast", "t2"), "template_t2": tpl_t2}
    t2 = root / "sct_testing_data" / "t2"
    return {"image": t2 / "t2.nii.gz", "seg": t2 / "t2_seg-manual.nii.gz", "labels": t2 / "labels.nii.gz",
            "template": "PAM50_small", "contrast": "t2",
            "template_t2": root / "sct_testing_data" / "template" / "template" / "PAM50_small_t2.nii.gz"}


def case_argv(case: str, inp: dict, outdir: Path) -> list[str]:
    if case == "help":
        return ["--help"]
    if case == "segment":
        return ["segment", "-i", str(inp["image"]), "-o", str(outdir / "t2_seg.nii.gz"), "--overwrite"]
    if case == "imreg":
        return ["register", "-i", str(inp["src"]), "-d", str(inp["dest"]), "-o", str(outdir), "--overwrite",
                "--allow-fail"]
    if case == "bare":
        return ["register-to-template", "-i", str(inp["image"]), "-t", "PAM50", "-c", "t2", "-o", str(outdir),
                "--overwrite", "--allow-fail"]
    return ["register-to-template", "-i", str(inp["image"]), "-s", str(inp["seg"]), "-l", str(inp["labels"]),
            "-t", inp["template"], "-c", inp["contrast"], "-o", str(outdir), "--overwrite", "--allow-fail"]


def bench_case(case: str, args, root: Path, work: Path) -> dict:
    d = work / case
    d.mkdir(parents=True, exist_ok=True)
    inp = case_inputs(case, root, work) if case != "help" else {}
    folder_out = case in ("t2", "full", "imreg", "bare")

    def cmd_of_run(i: int, base: list[str] | None = None, tag: str = "run"):
        out = d / f"{tag}{i}"
        if case == "segment":
            out.mkdir(parents=True, exist_ok=True)
        return [*(base or spinereg_cmd()), *case_argv(case, inp, out)], (out if folder_out else None)

    print(f"[{case}] {args.runs} whole-command runs ...", flush=True)
    res = {"case": case, "whole": repeat(cmd_of_run, args.runs, d, args.timeout)}
    if folder_out:
        res["stages"] = stage_table(res["whole"]["median_run"])
    if case != "help" and not args.no_profile:
        print(f"[{case}] profiled run ...", flush=True)
        prof_out = d / "profiled"
        prof_out.mkdir(parents=True, exist_ok=True)
        res["calls"] = call_table(case_argv(case, inp, prof_out), prof_out if folder_out else None,
                                  d / "profile.log", args.timeout)
    baseline = args.baseline
    if baseline == "auto":
        baseline = {"t2": "ants", "bare": "ants", "full": f"commit:{BASE_COMMIT}", "segment": "none",
                    "help": f"commit:{BASE_COMMIT}", "imreg": "commit:28356c2"}[case]
    if baseline == "ants" and case in ("t2", "full", "bare"):
        print(f"[{case}] baseline: ANTs SyN ...", flush=True)
        if case == "full" and not Path(inp["template_t2"]).is_file():
            _template_t2_region(inp)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--ants-worker", str(inp["image"]),
               str(inp["template_t2"]), str(d / "ants" / "syn_")]
        (d / "ants").mkdir(exist_ok=True)
        res["baseline"] = {"what": "plain ANTs SyN (antspyx, same pair)",
                           **repeat(lambda i: (cmd, None), args.baseline_runs, d / "ants", args.timeout)}
    elif baseline.startswith("commit:"):
        rev = baseline.split(":", 1)[1]
        print(f"[{case}] baseline: commit {rev} ...", flush=True)
        src = commit_tree(rev, work / f"tree_{rev}")
        env = {**os.environ, "PYTHONPATH": src}
        (d / "base").mkdir(exist_ok=True)
        res["baseline"] = {"what": f"the same command at commit {rev}",
                           **repeat(lambda i: cmd_of_run(i, spinereg_cmd(src), "base"), args.baseline_runs,
                                    d / "base", args.timeout, env)}
    elif baseline.startswith("flags:") and case != "help":
        extra = baseline.split(":", 1)[1].split()
        print(f"[{case}] baseline: the same code with {' '.join(extra)} ...", flush=True)
        (d / "flags").mkdir(exist_ok=True)

        def with_flags(i: int):
            cmd, out = cmd_of_run(i, None, "flags")
            return [*cmd, *extra], out

        res["baseline"] = {"what": f"the same command with {' '.join(extra)}",
                           **repeat(with_flags, args.baseline_runs, d / "flags", args.timeout)}
    return res


def _template_t2_region(inp: dict) -> None:
    """PAM50 T2w on the region the full phantom covers (for the ANTs baseline)."""
    from spinereg.io.image import Image, load_image, save_image
    from spinereg.io.template import load_template
    from spinereg.register.contrast import synthesize_contrast

    tpl = load_template("PAM50")
    tcord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    seg = load_image(inp["seg"], ndim=3)
    region = tcord.grid.bounding_subgrid(seg.grid.world_coords()[::97], margin_mm=20.0) or tcord.grid
    if tpl.has("t2"):
        from spinereg.transforms import apply_transforms

        img = apply_transforms(load_image(tpl.path("t2"), ndim=3), region, [], "linear")
    else:
        img = Image(synthesize_contrast(tpl, "t2", cord=tcord, region=region).data, region.affine)
    save_image(img, inp["template_t2"], overwrite=True)


# -- report ----------------------------------------------------------------------------------------
def report(results: list[dict]) -> str:
    lines = [f"machine: {os.cpu_count()} CPUs, {os.uname().nodename}; load average 1/5/15 min at the end: "
             + "/".join(f"{x:.2f}" for x in os.getloadavg()),
             "", "| case | command | median s (min-max) | peak MB | target | load before each run | exit |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for label, w in (("spinereg", r["whole"]), (f"baseline: {r.get('baseline', {}).get('what', '')}",
                                                    r.get("baseline"))):
            if not w:
                continue
            t_s, t_mb = TARGETS[r["case"]] if label == "spinereg" else (None, None)
            target = (f"<= {t_s:g} s" if t_s else "") + (f", <= {t_mb:g} MB" if t_mb else "")
            lines.append(f"| {r['case']} | {label} | {w['median_s']:.2f} ({w['min_s']:.2f}-{w['max_s']:.2f}) | "
                         f"{w['peak_mb']:.0f} | {target} | {', '.join(f'{x:.1f}' for x in w['load1'])} | "
                         f"{','.join(map(str, w['rc']))} |")
    for r in results:
        wall = r["whole"]["median_run"]["wall_s"]
        if r.get("stages") and r["stages"][0]:
            rows, cover = r["stages"]
            lines += ["", f"[{r['case']}] stages of the median run ({wall:.2f} s, from its provenance.json): "
                          f"named rows account for {100 * cover:.1f} % of the wall time",
                      "| stage | s | % |", "|---|---|---|"]
            lines += [f"| {n} | {s:.3f} | {100 * s / wall:.1f} |" for n, s in rows]
        if r.get("calls") and r["calls"][0]:
            rows, cover, pwall = r["calls"]
            lines += ["", f"[{r['case']}] calls of one run under cProfile ({pwall:.2f} s with the profiler's "
                          f"overhead): its rows account for {100 * cover:.1f} % of its wall time",
                      "| call | s | % |", "|---|---|---|"]
            lines += [f"| {n} | {s:.3f} | {100 * s / pwall:.1f} |" for n, s in rows]
    return "\n".join(lines)


def rereport(work: Path) -> str:
    """The report of an earlier run (``--report DIR``), stage tables recomputed from its folders."""
    results = json.loads((work / "speed.json").read_text())
    for r in results:
        if "stages" in r:
            r["stages"] = stage_table(r["whole"]["median_run"])
        if r.get("calls") and r["calls"][0]:
            rows, _, pwall = r["calls"]
            r["calls"] = (rows, sum(secs for _, secs in rows) / pwall, pwall)
    return report(results)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--report"]:
        print(rereport(Path(argv[1])))
        return 0
    if argv[:1] == ["--profile-worker"]:
        return profile_worker(argv[1], argv[3:])
    if argv[:1] == ["--ants-worker"]:
        return ants_worker(*argv[1:4])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="help,t2,segment,full", help="comma-separated: help, t2, segment, full, imreg, bare")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--baseline", default="auto", help="auto, ants, commit:REV, flags:ARGS or none")
    p.add_argument("--baseline-runs", type=int, default=3)
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--out", type=Path, help="work folder (kept); default: a temporary one")
    args = p.parse_args(argv)
    os.environ.setdefault("SPINEREG_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    root = Path(os.environ["SPINEREG_DATA"])
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_speed_")
    work = args.out or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = [bench_case(c.strip(), args, root, work) for c in args.case.split(",") if c.strip()]
        text = report(results)
        print(text)
        (work / "speed.md").write_text(text + "\n")
        (work / "speed.json").write_text(json.dumps(results, indent=1, default=str))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
