"""``run_batch``: a BIDS dataset through the configured pipelines on Dask, resumable.

Order of a run: check everything cheap first (BIDS folder, configuration, output folder, the lock:
one batch per output folder at a time) -> ``dataset_description.json`` -> remove temporary
folders of killed runs -> redo complete units whose inputs changed (``unit.stale_inputs``) -> skip every unit
whose folder is complete -> run the others on the
cluster, each reported as it ends (``done``, or ``failed`` with its one-line reason; the others go
on) -> group outputs from all complete units -> summary.

The run log ``OUT/logs/batch.jsonl`` gets one JSON line per event (run start with the command,
configuration digest and engine; each unit ``skipped`` / ``done`` / ``failed`` with its times;
run end). Run-specific records live only under ``OUT/logs/``.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spinereg.batch.bids import Dataset, discover
from spinereg.batch.config import BatchConfig, config_to_text, load_config
from spinereg.batch.unit import stale_inputs
from spinereg.errors import InputError, OutputError

STATE = ".spinereg-batch.json"
LOCK = ".spinereg-batch.lock"


@dataclass
class BatchResult:
    out: Path
    run_id: str
    results: dict[str, dict] = field(default_factory=dict)  # unit -> last result
    skipped: list[str] = field(default_factory=list)
    group: dict[str, Path] = field(default_factory=dict)
    subjects: list[dict] = field(default_factory=list)  # group/subjects.tsv: every unit of the selection

    def units_with(self, status: str) -> list[str]:
        return sorted(k for k, r in self.results.items() if r.get("status") == status)

    @property
    def failed(self) -> dict[str, str]:
        """Units of this run that failed (reason); see :attr:`subjects` for the whole selection."""
        return {k: str(r.get("reason")) for k, r in sorted(self.results.items()) if r.get("status") == "failed"}

    @property
    def failed_units(self) -> dict[str, str]:
        """Every unit of the selection that is not complete with a passing verdict, this run or earlier."""
        return {r["unit"]: r["reason"] for r in self.subjects if r["status"] == "failed"}


def _utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dataset_description(cfg: BatchConfig, bids: Path) -> dict:
    from spinereg.io.provenance import code_version

    v = code_version()
    gen = {"Name": "spinereg", "Version": v["spinereg"], "Description": "spinereg batch (BIDS in, derivatives out)"}
    if v.get("git_commit"):
        gen["CodeURL"] = f"git commit {v['git_commit']}"
    return {"Name": "spinereg derivatives", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [gen], "SourceDatasets": [{"URL": Path(os.path.abspath(bids)).as_uri()}],
            "spinereg": {"config_sha256": cfg.digest(), "template": cfg.template,
                         "aliases": "SCT names link to the BIDS names in sub-*/[ses-*/]sct/<contrast>_<step>/ "
                                    "(see spinereg.batch.naming)"}}


class Lock:
    """Exclusive lock on the output folder (released by the kernel when the process dies)."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fh = None

    def __enter__(self) -> Lock:
        self.fh = open(self.path, "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.fh.seek(0)
            who = self.fh.read().strip() or "another process"
            self.fh.close()
            raise OutputError(f"another spinereg batch is writing this folder ({who})", self.path.parent,
                              "wait for it to finish, or give another -o") from exc
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}\n")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.fh:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


def check_output(out: Path, cfg: BatchConfig, bids: Path, overwrite: bool) -> None:
    """The output folder can take this run: not a file, not inside the BIDS folder's raw data,
    and (when it holds a previous batch) made with the same configuration unless ``overwrite``."""
    out_abs, bids_abs = Path(os.path.abspath(out)), Path(os.path.abspath(bids))
    if out.exists() and not out.is_dir():
        raise OutputError("output folder is a file", out, "give a folder for -o")
    if out_abs == bids_abs or (bids_abs in out_abs.parents and "derivatives" not in out_abs.relative_to(bids_abs).parts):
        raise OutputError("output folder inside the raw BIDS data", out, "use BIDS_DIR/derivatives/spinereg or a folder outside it")
    state = out / STATE
    if out.is_dir() and any(out.iterdir()):
        if not state.is_file():
            if not overwrite:
                raise OutputError("output folder is not empty and holds no spinereg batch", out,
                                  "give an empty or new folder (or --overwrite to write into it anyway)")
            return
        try:
            prev = json.loads(state.read_text())
        except (OSError, ValueError):
            prev = {}
        if prev.get("config_sha256") != cfg.digest() and not overwrite:
            raise OutputError("this folder holds a batch made with another configuration", out,
                              "give the same --config to resume it, --overwrite to redo every subject, or another -o")
    parent = out_abs.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent if not out.exists() else out, os.W_OK | os.X_OK):
        raise OutputError("output folder is not writable", out, "choose a writable folder")


def _clean_stale(out: Path) -> int:
    """Remove the temporary folders of runs that were killed (only under the lock)."""
    n = 0
    for p in list(out.glob(".*.part")) + list(out.glob("sub-*/.*.part")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


def _log(out: Path, event: dict) -> None:
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "batch.jsonl", "a") as fh:
        fh.write(json.dumps({"utc": _utc(), **event}, default=str) + "\n")


def _group_units(bids: Path, out: Path, ds: Dataset, participant_label: Sequence[str] | None,
                 session: Sequence[str] | None, failed: dict[str, str]) -> tuple[list, dict[str, str]]:
    """Units of the group outputs and the reasons of those without a folder: with a selection
    (``--participant-label`` / ``--session``), every unit of the dataset, those outside the
    selection with the reason the previous ``group/subjects.tsv`` gave them (else 'not run')."""
    if not participant_label and not session:
        return list(ds.units), dict(failed)
    from spinereg.batch.tables import read_tsv

    try:
        units = discover(bids).units
    except InputError:  # pragma: no cover - the selection was found in it
        return list(ds.units), dict(failed)
    previous = {}
    try:
        previous = {r["unit"]: r for r in read_tsv(out / "group" / "subjects.tsv")}
    except (OSError, KeyError, ValueError):
        pass
    selected = {u.uid for u in ds.units}
    reasons = {}
    for u in units:
        if u.uid in selected or (out / u.rel).is_dir():
            continue
        prev = previous.get(u.uid) or {}
        reasons[u.uid] = (prev["reason"] if prev.get("status") == "failed" and prev.get("reason") not in
                          (None, "", "n/a", "not run") else "not run (outside the --participant-label / --session "
                          "selection of the last run) -- fix: run the batch on it")
    return units, {**reasons, **failed}


def run_batch(bids: str | Path, out: str | Path, *, config: str | Path | BatchConfig | None = None,
              participant_label: Sequence[str] | None = None, session: Sequence[str] | None = None,
              scheduler: str | None = None, workers: int | None = None,
              threads_per_worker: int | None = None, slurm: dict | None = None, overwrite: bool = False,
              argv: list[str] | None = None, report: Callable[[str], None] | None = None,
              live: bool | None = None) -> BatchResult:
    """Run the batch (see module doc). ``report(line)`` gets one line per unit as it ends
    (default: print to stdout); ``live``: the redrawn progress line on stderr (default: when it
    is a terminal). ``overwrite``: redo every unit (previous unit folders are replaced)."""
    from spinereg.batch.engine import LiveLine, cluster, follow
    from spinereg.batch.group import write_group
    from spinereg.io.provenance import write_json
    from spinereg.progress import interactive

    report = report or (lambda line: print(line, flush=True))
    bids, out = Path(bids), Path(out)
    cfg = config if isinstance(config, BatchConfig) else load_config(config)
    ds: Dataset = discover(bids, participant_label, session)
    check_output(out, cfg, bids, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    run_id = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    result = BatchResult(out, run_id)
    eng = cfg.data.get("engine") or {}
    threads = int(threads_per_worker or eng.get("threads_per_worker") or 1)
    n_workers = workers or (None if eng.get("workers") in (None, "auto") else int(eng["workers"]))
    mem = eng.get("memory_per_worker_gb")
    mem = None if mem in (None, "auto") else float(mem)
    with Lock(out):
        if overwrite:
            for u in ds.units:
                if (out / u.rel).is_dir():
                    shutil.rmtree(out / u.rel)
        write_json(out / "dataset_description.json", dataset_description(cfg, bids), overwrite=True)
        write_json(out / STATE, {"config_sha256": cfg.digest(), "bids": str(Path(os.path.abspath(bids)))},
                   overwrite=True)
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / "config.yaml").write_text(config_to_text(cfg))
        stale = _clean_stale(out)
        for u in ds.units:  # a complete unit made from other inputs than today's is redone
            why = stale_inputs(out / u.rel, u, cfg) if (out / u.rel).is_dir() else None
            if why:
                report(f"{u.uid}: its inputs changed since its outputs were made ({why}): redone")
                _log(out, {"event": "inputs-changed", "run": run_id, "unit": u.uid, "reason": why})
                shutil.rmtree(out / u.rel)
        todo = [u for u in ds.units if not (out / u.rel).is_dir()]
        _log(out, {"event": "start", "run": run_id, "argv": argv, "bids": str(bids), "units": len(ds.units),
                   "todo": len(todo), "stale_removed": stale, "config_sha256": cfg.digest(), "pid": os.getpid()})
        for u in ds.units:
            if u not in todo:
                result.skipped.append(u.uid)
                _log(out, {"event": "skipped", "run": run_id, "unit": u.uid, "reason": "complete"})
        for note in ds.notes:
            report(f"note: {note}")
        if result.skipped:
            report(f"{len(result.skipped)} unit(s) already complete, kept as they are; {len(todo)} to run")
        live_line = LiveLine(len(todo), interactive() if live is None else live)
        if todo:
            with cluster(scheduler, n_workers, threads, mem, slurm) as (client, info):
                _log(out, {"event": "engine", "run": run_id, "kind": info.kind, "address": info.address,
                           "workers": info.workers, "threads_per_worker": info.threads_per_worker})
                report(f"{len(todo)} unit(s) on {info.kind} Dask ({info.workers} worker(s) x {threads} thread(s))")

                def on_result(res: dict) -> None:
                    result.results[res["unit"]] = res
                    st = res.get("status")
                    if st == "failed":
                        live_line.failed += 1
                    else:
                        live_line.done += 1
                    _log(out, {"event": st, "run": run_id, **{k: v for k, v in res.items() if k != "records"}})
                    secs = (res.get("end", 0) - res.get("start", 0)) if res.get("start") else None
                    took = f" ({secs:.1f} s)" if secs else ""
                    line = f"{res['unit']}: {st}{took}"
                    if res.get("verdict"):
                        line += f" verdict {res['verdict']}"
                    if res.get("reason") and st != "done":
                        line += f" -- {res['reason']}"
                    for note in res.get("notes") or []:
                        line += f"\n  note: {note}"
                    if live_line.enabled:
                        sys.stderr.write("\r\033[K")
                    report(line)

                jobs = [(u.uid, (u, cfg, str(Path(os.path.abspath(out))), run_id)) for u in todo]
                follow(client, jobs, threads, on_result, live_line, run_id)
            _clean_stale(out)  # attempts of units whose worker was killed (the unit was run again)
        # the group outputs cover every unit of the dataset, not only this run's selection: a rerun of
        # one subject (--participant-label) left tables and a QC index of that subject alone before
        units, failures = _group_units(bids, out, ds, participant_label, session, result.failed)
        result.group = write_group(out, units, failures)
        from spinereg.batch.tables import read_tsv

        selected = {u.uid for u in ds.units}
        result.subjects = [r for r in read_tsv(out / "group" / "subjects.tsv") if r["unit"] in selected]
        _log(out, {"event": "end", "run": run_id, "done": len(result.units_with("done")),
                   "failed": len(result.failed), "skipped": len(result.skipped)})
    return result


def check_inputs(bids: str | Path, out: str | Path, config: str | Path | BatchConfig | None = None,
                 participant_label: Sequence[str] | None = None,
                 session: Sequence[str] | None = None,
                 overwrite: bool = False) -> tuple[BatchConfig, Dataset]:
    """The checks :func:`run_batch` makes before any work (for ``--dry-run``)."""
    cfg = config if isinstance(config, BatchConfig) else load_config(config)
    ds = discover(bids, participant_label, session)
    check_output(Path(out), cfg, Path(bids), overwrite)
    if not ds.units:  # pragma: no cover - discover raises first
        raise InputError("nothing to do", bids, "check the BIDS folder")
    return cfg, ds
