"""One unit of the batch (a subject-session), as a Dask worker runs it.

Everything is written into a hidden temporary folder beside the unit's final folder
(``OUT/sub-X/.ses-Y.<random>.part``), which is renamed to ``OUT/sub-X/ses-Y`` only when every
step, table, QC page and the unit's provenance.json are written: a unit folder exists complete or
not at all, whenever the process is killed. A rerun skips units whose folder exists.

Byte-identical reruns: images are written with gzip headers without time (nibabel), tables
without timestamps, and every provenance.json of the unit keeps only what does not change
between runs (inputs and their sha256, configuration digest, steps, versions). What does change
(UTC times, durations, working folder, host, process) goes to the run log
``OUT/logs/units/<unit>.<run id>.json``, outside the unit folder; the QC pages are dated with the
newest modification time of the unit's inputs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import resource
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinereg.batch import steps as st
from spinereg.batch.bids import Unit
from spinereg.batch.config import BatchConfig
from spinereg.io.provenance import describe_inputs, versions, write_json
from spinereg.io.tempdirs import make_temp_dir, release_temp_dir, remove_temp_dir, signals_held

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable

#: keys of provenance records that differ from run to run (moved to the run log)
RUN_SPECIFIC = frozenset({"time", "started_utc", "finished_utc", "wall_seconds", "timings_s", "chain_timings_s", "timings",
                          "seconds", "cwd", "command_line", "stages"})
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


def cap_threads(n: int) -> None:
    """ITK/OpenMP/BLAS threads of this process limited to ``n`` (workers must not oversubscribe)."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scipy's usual installs
        pass


def split_run_specific(obj: Any) -> tuple[Any, Any]:
    """(stable, run-specific) parts of a JSON record (see :data:`RUN_SPECIFIC`)."""
    if isinstance(obj, dict):
        keep, moved = {}, {}
        for k, v in obj.items():
            if k in RUN_SPECIFIC:
                moved[k] = v
                continue
            a, b = split_run_specific(v)
            keep[k] = a
            if b not in (None, {}, []):
                moved[k] = b
        return keep, moved
    if isinstance(obj, list):
        pairs = [split_run_specific(v) for v in obj]
        kept = [a for a, _ in pairs]
        moved = [b for _, b in pairs]
        return kept, (moved if any(m not in (None, {}, []) for m in moved) else None)
    return obj, None


def _stabilise_provenance(tmp: Path, final: Path) -> dict:
    """Rewrite every provenance.json under ``tmp`` without its run-specific fields (returned),
    and every JSON file naming the temporary folder with the final one instead."""
    moved = {}
    for p in sorted(tmp.rglob("*.json")):
        if p.is_symlink():
            continue
        text = p.read_text()
        if str(tmp) in text:
            text = text.replace(str(tmp), str(final))
            p.write_text(text)
        if p.name != "provenance.json":
            continue
        keep, run = split_run_specific(json.loads(text))
        write_json(p, keep, overwrite=True)
        if run:
            moved[str(p.relative_to(tmp))] = run
    (tmp / "qc" / ".lock").unlink(missing_ok=True)
    return moved


def final_folder(out: Path, unit: Unit) -> Path:
    return out / unit.rel


def inputs_date(paths: Iterable[str | Path]) -> str:
    """Newest modification time of the inputs, UTC (the date shown on the unit's QC pages)."""
    newest = max((Path(p).stat().st_mtime for p in paths if p and Path(p).is_file()), default=0.0)
    return _dt.datetime.fromtimestamp(int(newest), _dt.UTC).isoformat().replace("+00:00", "Z")


def _qc_pages(ctx: st.Context, final: Path, date: str) -> None:
    from spinereg.qc.report import prepare_entry

    for rec in ctx.records:
        if rec.kind and rec.run_dir and ctx.cfg.qc_for(rec.step):
            pending = prepare_entry(ctx.tmp / rec.run_dir, ctx.tmp / "qc", rec.kind,
                                    record_run_dir=final / rec.run_dir, record_root=final / "qc")
            pending.entry["date"] = date
            pending.commit()


def _run_steps(ctx: st.Context) -> None:
    cfg, unit = ctx.cfg, ctx.unit
    anat = cfg.anatomical
    present = [s for s in cfg.data["contrasts"] if unit.of(s)]
    if not present:
        raise st.UnitError(f"{unit.root / unit.rel}: no image of a configured contrast "
                           f"({', '.join(cfg.data['contrasts'])}) -- fix: check the file names (BIDS suffixes)")
    needs_anat = any("chain" in cfg.steps(s) for s in present) or anat in present
    for suffix in present:
        im = st.target_image(ctx, suffix)
        if im is None:
            ctx.notes.append(f"{suffix}: no image matching {cfg.contrast(suffix).get('target')}")
            continue
        if im.sidecar_error:
            raise st.UnitError(im.sidecar_error)
        st.check_readable(im)
        ctx.targets[suffix] = im
        ctx.inputs[suffix] = str(im.path)
    if anat not in ctx.targets:  # a configuration chaining nothing got a KeyError here (session 39)
        why = ("the anatomical image every other contrast is chained through" if needs_anat
               else "the anatomical contrast of the configuration, whose steps cannot run without it")
        raise st.UnitError(f"{unit.root / unit.rel}: missing contrast {anat} ({why}) -- fix: add it, or set "
                           f"anatomical in the configuration")
    order = [anat] + [s for s in ctx.targets if s != anat]
    for suffix in order:
        im = ctx.targets[suffix]
        is_anat = suffix == anat
        ctx.segs[suffix] = st.segmentation(ctx, suffix, im, required=is_anat)
        if is_anat:
            ctx.landmarks = st.anatomical_landmarks(ctx, suffix, im, ctx.segs[suffix])
        for step in cfg.steps(suffix):
            if step in ("segment", "label"):
                continue  # done above, when needed
            fn = {"register-to-template": st.register_anatomical, "chain": st.chain, "mtr": st.mtr,
                  "warp-template": st.warp_template_step, "extract-metric": st.extract_step,
                  "csa": st.csa_step}[step]
            fn(ctx, suffix, im)


def planned_inputs(unit: Unit, cfg: BatchConfig) -> dict[str, Path]:
    """The input files a run of ``unit`` would read now (as :func:`_run_steps` records them in
    ``inputs``): each configured contrast's target image, its given segmentation, the anatomical
    contrast's given labels. Images and given files only: files made by the steps are not inputs."""
    from spinereg.batch.bids import find_given

    out: dict[str, Path] = {}
    for suffix in cfg.data["contrasts"]:
        ims = st.target_candidates(unit, cfg, suffix)  # the image target_image picks
        if not ims:
            continue
        im = ims[0]
        out[suffix] = im.path
        seg = find_given(im, unit.root, cfg.data["given"]["seg"])
        if seg is not None:
            out[f"{suffix}_seg"] = seg
        if suffix == cfg.anatomical:
            for kind in ("labels", "ldisc"):
                given = find_given(im, unit.root, cfg.data["given"][kind])
                if given is not None:
                    out[f"{suffix}_{kind}"] = given
                    break
    return out


def stale_inputs(folder: Path, unit: Unit, cfg: BatchConfig) -> str | None:
    """Why the complete unit folder ``folder`` no longer matches its inputs (one phrase), or None:
    an input file changed (size or sha256) or is gone, or the unit now has an image / given
    segmentation or labels the folder was not made from (or no longer has one it was made from).
    A folder without a readable provenance.json is taken as it is."""
    from spinereg.io.provenance import sha256_file

    try:
        prov = json.loads((folder / "provenance.json").read_text())
    except (OSError, ValueError):
        return None
    recorded = prov.get("input_files")
    if not isinstance(recorded, dict):
        return None
    for key, recs in sorted(recorded.items()):
        for rec in recs if isinstance(recs, list) else [recs]:
            if not isinstance(rec, dict) or not rec.get("path"):
                continue
            p = Path(rec["path"])
            if not p.is_file():
                return f"{key} input {p} is gone"
            if p.stat().st_size != rec.get("bytes") or sha256_file(p) != rec.get("sha256"):
                return f"{key} input {p.name} changed"
    made_from = {k: str(Path(v["path"])) for k, v in recorded.items() if isinstance(v, dict) and v.get("path")}
    now = {k: str(Path(v).resolve()) for k, v in planned_inputs(unit, cfg).items()}
    for key in sorted(set(now) | set(made_from)):
        if key == "MTS_off" or (key in made_from and key not in now and "_" not in key):
            continue  # MT-off is found by the mtr step; a contrast skipped softly is noted, not an input
        if now.get(key) != made_from.get(key):
            if key not in made_from:
                return f"{key} {Path(now[key]).name} is new"
            if key not in now:
                return f"{key} {Path(made_from[key]).name} is no longer found"
            return f"{key} is now {Path(now[key]).name}"
    return None


def run_unit(unit: Unit, cfg: BatchConfig, out: str | Path, run_id: str, threads: int = 1) -> dict:
    """Run one unit (see module doc). Never raises for the unit's own failures: returns
    ``{"unit", "status": done|failed|skipped, "reason", "verdict", "records", "start", "end",
    "peak_rss_mb", "worker"}``."""
    cap_threads(threads)
    out = Path(out)
    t_start = time.time()
    final = final_folder(out, unit)
    base = {"unit": unit.uid, "rel": str(unit.rel), "start": t_start, "pid": os.getpid(), "host": socket.gethostname()}
    if final.is_dir():
        return {**base, "status": "skipped", "reason": "complete", "end": time.time()}
    final.parent.mkdir(parents=True, exist_ok=True)
    # the worker's pid in the name: which process is writing it (``ls -a``, tests killing a worker)
    tmp = make_temp_dir(f".{final.name}.{os.getpid()}.", ".part", final.parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())
    except BaseException:
        remove_temp_dir(tmp)
        raise
    ctx = st.Context(unit, cfg, tmp)
    try:
        _run_steps(ctx)
        date = inputs_date(list(ctx.inputs.values()))
        _qc_pages(ctx, final, date)
        run_log = _stabilise_provenance(tmp, final)
        verdicts = [r.verdict for r in ctx.records if r.verdict]
        verdict = "fail" if "fail" in verdicts else "warn" if "warn" in verdicts else "pass" if verdicts else None
        prov = {"command": "batch", "unit": unit.uid, "subject": f"sub-{unit.subject}",
                "session": f"ses-{unit.session}" if unit.session else None, "verdict": verdict,
                "config_sha256": cfg.digest(), "template": cfg.template,
                "steps": [r.as_dict() for r in ctx.records], "notes": ctx.notes,
                "inputs": dict(sorted(ctx.inputs.items())),
                "input_files": describe_inputs(dict(sorted(ctx.inputs.items()))), "versions": versions()}
        write_json(tmp / "provenance.json", prov)
        t_end = time.time()
        _write_log(out, unit, run_id, {**base, "end": t_end, "provenance": run_log})
        try:
            with signals_held():
                os.rename(tmp, final)
                release_temp_dir(tmp)  # the unit's output folder now: never removed as a leftover
        except OSError:
            if final.is_dir():  # the same unit finished elsewhere meanwhile (a task run twice)
                remove_temp_dir(tmp)
                return {**base, "status": "skipped", "reason": "completed by another attempt", "end": time.time()}
            raise
        reasons = [f"{r.contrast} {r.step}: {'; '.join(r.reasons)}" for r in ctx.records if r.verdict == "fail"]
        return {**base, "status": "failed" if verdict == "fail" else "done", "verdict": verdict, "notes": ctx.notes,
                "reason": ("QC verdict fail -- " + " | ".join(reasons)) if verdict == "fail" else None,
                "records": [r.as_dict() for r in ctx.records], "end": time.time(), "peak_rss_mb": _peak_mb()}
    except BaseException as err:
        remove_temp_dir(tmp)  # (a no-op once renamed to the final folder)
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        return {**base, "status": "failed", "reason": one_line(err), "notes": ctx.notes, "end": time.time(),
                "peak_rss_mb": _peak_mb()}


def one_line(err: BaseException) -> str:
    from spinereg.errors import SpineregError

    if isinstance(err, SpineregError):
        return err.one_line()
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, st.UnitError):
        return text
    return f"internal error ({type(err).__name__}: {text}) -- fix: rerun the unit with -v and report it"


def _write_log(out: Path, unit: Unit, run_id: str, record: dict) -> None:
    logs = out / "logs" / "units"
    logs.mkdir(parents=True, exist_ok=True)
    write_json(logs / f"{unit.uid}.{run_id}.json", record, overwrite=True)


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _umask() -> int:
    from spinereg.io.staging import umask

    return umask()
