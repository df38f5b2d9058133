"""spinereg batch on a synthetic BIDS cohort (tests/bids_synth.py: sct_testing_data's t2, t2s and
MT images moved by known fields; 12 subjects, 2 of them with 2 sessions, plus 2 broken subjects),
run as a user runs it: the ``spinereg`` command in its own process.

* every good unit finishes (status done) with verdict warn: its template registration passes and
  its chains warn, their targets' cords reaching 17-46 % beyond T2w's field of view, where the
  composed template warp is extrapolated (before session 50 the chains' verdicts did not reach the
  unit, which said pass); the broken ones are reported with their one-line reason and skipped,
  the group outputs cover every unit;
* killed mid-way (SIGKILL to the whole process group), the same command resumes: completed
  units are not recomputed (the log says skipped, their files are untouched), a worker killed
  during the resumed run is replaced, and the final outputs equal, byte for byte, those of an
  uninterrupted run into the same folder (the main run: four of its units are redone by the
  killed and resumed runs, its other units are copied in as an earlier run would have left them);
* a ``dask scheduler`` and a ``dask worker`` started on localhost run the batch (--scheduler).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

LIGHT = """\
template: PAM50_small
crop: true
qc: [register-to-template]
contrasts:
  T2w: {steps: [register-to-template, warp-template, csa], contrast: t2}
  T2starw: {steps: [chain], via: [T2w], contrast: t2s, direct: false}
  MTS:
    steps: [chain, mtr, warp-template, extract-metric]
    via: [T2w]
    target: {mt: "on"}
    direct: false
    extract: {metric: mtr, labels: spinal cord, method: wa, perlevel: true}
"""
ENV = {**os.environ, "MPLBACKEND": "Agg", "CI": "1"}


def batch(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spinereg.cli.main", "batch", *args], capture_output=True,
                          text=True, env=ENV, timeout=1500, **kw)


def tsv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "logs" / "batch.jsonl").read_text().splitlines()]


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and link (target) under root, except the run logs and the lock."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.startswith("logs") or rel == ".spinereg-batch.lock":
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, sct_data: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from bids_synth import build_bids

    root = tmp_path_factory.mktemp("cohort")
    info = build_bids(root / "bids", sct_data, n_subjects=12, two_sessions=2, seed=0)
    cfg = root / "light.yaml"
    cfg.write_text(LIGHT)
    return {"bids": root / "bids", "config": cfg, "root": root, **info}


@pytest.fixture(scope="module")
def main_run(cohort: dict) -> dict:
    out = cohort["root"] / "derivatives"
    t0 = time.monotonic()
    res = batch(str(cohort["bids"]), "-o", str(out), "--config", str(cohort["config"]), "--workers", "2")
    return {"out": out, "res": res, "seconds": time.monotonic() - t0}


def test_cohort_all_good_units_pass_broken_reported(cohort: dict, main_run: dict):
    res, out = main_run["res"], main_run["out"]
    assert len(cohort["units"]) == 14 and len(cohort["broken"]) == 2
    assert res.returncode == 3, res.stderr  # some subjects failed: exit 3, the others written
    rows = {r["unit"]: r for r in tsv(out / "group" / "subjects.tsv")}
    assert sorted(rows) == sorted(cohort["units"] + cohort["broken"])
    for uid in cohort["units"]:
        assert rows[uid]["status"] == "done" and rows[uid]["verdict"] == "warn", rows[uid]
        prov = json.loads((out / rows[uid]["folder"] / "provenance.json").read_text())
        assert prov["verdict"] == "warn" and prov["config_sha256"]
        steps = {(s["contrast"], s["step"]): s for s in prov["steps"]}
        assert steps[("T2w", "register-to-template")]["verdict"] == "pass"
        for contrast in ("T2starw", "MTS"):
            rec = steps[(contrast, "chain")]
            assert rec["verdict"] == "warn" and any("cord_outside_anat_fov" in r for r in rec["reasons"]), rec
    bad = rows["sub-corrupt"]["reason"]
    assert "sub-corrupt_T2w.nii.gz" in bad and "fix:" in bad and "\n" not in bad
    assert "missing contrast T2w" in rows["sub-notwo"]["reason"]
    for uid in cohort["broken"]:
        assert rows[uid]["status"] == "failed" and rows[uid]["folder"] == "n/a"
        assert not (out / uid).exists()
        assert f"{uid}: failed" in res.stdout and uid in res.stderr  # reported, one line each
    assert not list(out.rglob("*.part"))
    # BIDS derivatives: description, names, SCT aliases as links
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "spinereg"
    anat = out / "sub-01" / "ses-02" / "anat"
    xfm = anat / "sub-01_ses-02_from-T2w_to-PAM50small_mode-image_xfm.nii.gz"
    assert xfm.is_file() and (anat / "sub-01_ses-02_from-PAM50small_to-T2starw_mode-image_xfm.nii.gz").is_file()
    alias = out / "sub-01" / "ses-02" / "sct" / "T2w_register-to-template" / "warp_anat2template.nii.gz"
    assert alias.is_symlink() and alias.resolve() == xfm.resolve()
    assert (anat / "sub-01_ses-02_MTRmap.nii.gz").is_file()


def test_cohort_group_outputs(cohort: dict, main_run: dict):
    out = main_run["out"]
    rows = list(csv.DictReader(open(out / "group" / "qc_scores.csv")))
    scores = [r for r in rows if r["command"] != "chain"]
    assert len(scores) == 14 and {r["verdict"] for r in scores} == {"pass"}
    # measured 0.9629-0.9756 over the 14 units, the same in three runs (Dask, 2 workers; 0.9 asserted
    # before session 41, README's figure)
    assert all(float(r["cord_dice"]) > 0.955 for r in scores), [r["cord_dice"] for r in scores]
    # since session 37 every chain unit has a verdict (kind "chain") and a row here. At 1266fcd 26
    # of 28 warned or failed on the target's composed cord Dice (0.19-0.92; 9 fail, 17 warn): on
    # sub-01 ses-01 the link (register -i T2w -d T2starw, headers ~11 mm apart) dropped its image
    # term with the cords' offset (Dice 0.24): fixed (test_register_multimodal.py, composed
    # T2starw 0.19 -> 0.80, sub-10 0.74 -> 0.85 / MTS 0.78 -> 0.88). The composed Dice of most units
    # stays 0.74-0.93 (direct 0.91-0.98): open, the verdict says so.
    chains = [r for r in rows if r["command"] == "chain"]
    assert len(chains) == 28 and {r["verdict"] for r in chains} == {"warn"}
    # session 50: a composed target is judged over the part its links keep inside T2w's field of
    # view (measured 0.8907-0.9675 with the register fix of the same session, 0.8889-0.9736
    # before it; over the whole field, extrapolated part included, 0.737-0.948, and 9 of the 28
    # failed); every chain warns on the fraction beyond (0.17-0.46)
    dices = sorted(float(r["cord_dice"]) for r in chains)
    assert dices[0] > 0.875 and dices[2] > 0.92, dices
    assert all(0.15 < float(r["cord_outside_anat_fov"]) < 0.48 for r in chains)
    metrics = tsv(out / "group" / "metrics_per_level.tsv")
    assert {(r["participant_id"], r["session_id"]) for r in metrics} == \
        {(u.split("_")[0], u.split("_")[1] if "_" in u else "n/a") for u in cohort["units"]}
    summary = {r["level"]: r for r in tsv(out / "group" / "summary_per_level.tsv") if r["metric"] == "mtr"}
    # every unit is the same MT acquisition moved in-plane by a known field: the cord MTR of the
    # levels the 5 thick slices cover fully (C3-C5) must agree across the cohort
    # measured (three runs alike): mean 33.23 / 30.41 / 32.91 %, sd / mean 0.027 / 0.030 / 0.029
    # (asserted before session 41: 20 < mean < 50, sd / mean < 0.15, README's figure)
    for level, mean in (("3", 33.23), ("4", 30.41), ("5", 32.91)):
        s = summary[level]
        assert int(s["n"]) == 14 and abs(float(s["mean"]) - mean) < 1.5, s
        assert float(s["sd"]) / float(s["mean"]) < 0.035, s
    # CSA per level from the given segmentations and the warped template levels: every unit is
    # the same t2 moved by a small known field, so the areas agree across the cohort
    csa = {r["level"]: r for r in tsv(out / "group" / "summary_per_level.tsv") if r["metric"] == "csa"}
    # measured (three runs alike): mean 76.71 / 79.70 mm2, sd / mean 0.0099 / 0.0057 (asserted
    # before session 41: 40 < mean < 110, sd / mean < 0.10)
    for level, mean in (("3", 76.71), ("4", 79.70)):
        s = csa[level]
        assert int(s["n"]) == 14 and abs(float(s["mean"]) - mean) < 3.0, s
        assert float(s["sd"]) / float(s["mean"]) < 0.012, s
    # one QC report over the cohort, its pictures in the unit folders
    index = (out / "qc" / "index.html").read_text()
    entries = json.loads((out / "qc" / "entries.json").read_text())["entries"]
    assert len(entries) == 14 and {e["verdict"] for e in entries} == {"pass"}
    assert 'id="filter-verdict"' in index
    for e in entries:
        for p in e["panels"]:
            for f in p["files"].values():
                assert (out / "qc" / f).is_file(), f


def test_killed_run_resumes_to_identical_outputs(cohort: dict, main_run: dict):
    """The uninterrupted reference is the main run (the same command into the same folder): its
    folder is set aside, and the same command is run again into that folder holding the main run's
    complete units except four (as an earlier interrupted run leaves them). That run is killed
    with two of the four complete and others running; the same command resumes (one of its
    workers killed mid-unit) and must end with the main run's outputs, byte for byte."""
    subset = ["sub-03", "sub-04", "sub-05", "sub-06"]
    place = main_run["out"]
    assert main_run["res"].returncode == 3, main_run["res"].stderr
    reference_dir = cohort["root"] / "derivatives_reference"
    place.rename(reference_dir)
    try:
        reference = tree(reference_dir)
        place.mkdir()
        earlier = sorted(p.name for p in reference_dir.glob("sub-*") if p.is_dir() and p.name not in subset)
        for name in earlier:
            shutil.copytree(reference_dir / name, place / name, symlinks=True)
        for name in (".spinereg-batch.json", "dataset_description.json"):  # the batch's own files, as a run leaves them
            shutil.copy2(reference_dir / name, place / name)
        earlier_units = [u for u in cohort["units"] if u.split("_")[0] not in subset]
        assert len(earlier_units) == len(cohort["units"]) - 4
        _kill_and_resume(cohort, place, subset, earlier_units, reference)
    finally:
        if reference_dir.is_dir():  # the main run's folder back in place for the other tests
            shutil.rmtree(place, ignore_errors=True)
            reference_dir.rename(place)


def _kill_and_resume(cohort: dict, place: Path, subset: list[str], earlier_units: list[str], reference: dict) -> None:
    args = [str(cohort["bids"]), "-o", str(place), "--config", str(cohort["config"]), "--workers", "2"]

    # 1. the client and its workers killed at once, mid-way
    cmd = [sys.executable, "-m", "spinereg.cli.main", "batch", *args]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 900:
        done = [u for u in subset if (place / u).is_dir()]
        if len(done) >= 2 and list(place.glob(".sub-*.part")):  # two complete, others running
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sorted(u for u in subset if (place / u).is_dir())
    assert 2 <= len(kept) < 4, kept
    assert list(place.glob(".sub-*.part")), "units were running when the run was killed"
    complete = sorted(p.name for p in place.glob("sub-*") if p.is_dir())
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for u in complete for p in (place / u).rglob("*")}

    # 2. the same command resumes; one worker is killed while it runs a unit
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_worker = False
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 900:
        # a unit's temporary folder names the worker process writing it: kill it mid-unit
        busy = [int(p.name.split(".")[2]) for p in place.glob(".sub-*.part")]
        busy = [pid for pid in busy if pid != proc.pid and Path(f"/proc/{pid}").is_dir()]
        if not killed_worker and busy:
            os.kill(busy[0], signal.SIGKILL)
            killed_worker = True
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 3, stderr  # the two broken subjects fail again, every other unit is written
    assert killed_worker
    assert f"{len(earlier_units) + len(kept)} unit(s) already complete" in stdout
    # the log: completed units skipped by the resumed run, never done again
    log = events(place)
    runs = [e["run"] for e in log if e["event"] == "start"]
    assert len(runs) == 2
    last = [e for e in log if e["run"] == runs[-1]]
    assert sorted(e["unit"] for e in last if e["event"] == "skipped") == sorted(earlier_units + kept)
    assert sorted(e["unit"] for e in last if e["event"] == "done") == sorted(u for u in subset if u not in kept)
    assert sorted(e["unit"] for e in last if e["event"] == "failed") == sorted(cohort["broken"])
    assert all(p.stat().st_ino == ino and p.stat().st_mtime_ns == mt for p, (ino, mt) in stamps.items())
    # byte-identical to the uninterrupted run
    final = tree(place)
    assert sorted(final) == sorted(reference)
    diff = [k for k in reference if final[k] != reference[k]]
    assert not diff, diff[:10]


def test_external_dask_scheduler_and_worker(cohort: dict, tmp_path: Path):
    sched_file = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                       "--scheduler-file", str(sched_file)], env=ENV,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        t0 = time.monotonic()
        while not sched_file.is_file() and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen(["dask", "worker", "--scheduler-file", str(sched_file), "--nworkers", "1",
                                       "--nthreads", "1", "--no-dashboard"], env=ENV,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out = tmp_path / "out"
        res = batch(str(cohort["bids"]), "-o", str(out), "--config", str(cohort["config"]), "--scheduler", address,
                    "--participant-label", "03", "notwo")
        assert res.returncode == 3, res.stderr
        assert "on scheduler Dask" in res.stdout
        rows = {r["unit"]: r for r in tsv(out / "group" / "subjects.tsv")}
        assert rows["sub-03"]["status"] == "done" and rows["sub-03"]["verdict"] == "warn"  # its chains warn
        assert rows["sub-notwo"]["status"] == "failed"
        engine = [e for e in events(out) if e["event"] == "engine"][0]
        assert engine["kind"] == "scheduler" and engine["address"] == address
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
