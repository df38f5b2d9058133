"""``spinereg batch``: every subject of a BIDS dataset through the configured pipelines on Dask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse

DESCRIPTION = """\
Run the pipeline of the configuration (default: spinereg/data/batch_default.yaml) on every
subject-session of the BIDS dataset BIDS_DIR, on Dask (a local cluster unless --scheduler or
--slurm), and write BIDS derivatives into OUT: OUT/sub-X[/ses-Y]/anat/... (transforms named
sub-X_from-T2w_to-PAM50_mode-image_xfm.nii.gz; SCT names as links in sub-X[/ses-Y]/sct/), one QC
report over all subjects (OUT/qc/index.html), OUT/group/ tables (subjects, QC scores, metrics per
level, summary per level), OUT/logs/.

Each subject-session is written into a temporary folder renamed when complete. Killed at any
moment, the same command resumes: complete subjects are kept as they are, the others are redone
(so is a complete subject whose input images or given segmentation / labels changed since).
A failing subject is reported with its reason and the others go on. Exit code 3 when a subject
failed (its reason is in OUT/group/subjects.tsv), 2 when the batch could not start."""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "batch", "run a BIDS dataset through the pipelines on Dask (resumable; group QC)",
                   DESCRIPTION)
    p.add_argument("bids_dir", metavar="BIDS_DIR", help="root of the BIDS dataset (holds sub-* folders)")
    p.add_argument("-o", "--outdir", required=True, help="derivatives folder (e.g. BIDS_DIR/derivatives/spinereg)")
    p.add_argument("--config", help="pipeline configuration (YAML or JSON; default: the package's batch_default.yaml)")
    p.add_argument("--participant-label", nargs="+", metavar="LABEL", help="only these subjects (01 or sub-01)")
    p.add_argument("--session", nargs="+", metavar="LABEL", help="only these sessions (01 or ses-01)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS", help="existing Dask scheduler (tcp://HOST:8786)")
    g.add_argument("--slurm", metavar="JSON", help="SLURM through dask-jobqueue: SLURMCluster options as JSON "
                                                   "(e.g. '{\"queue\": \"normal\", \"walltime\": \"02:00:00\"}')")
    p.add_argument("--workers", type=int, help="local workers or SLURM jobs (default: the configuration's, auto)")
    p.add_argument("--threads-per-worker", type=int, help="threads per worker (default: the configuration's, 1)")
    p.add_argument("--dry-run", action="store_true", help="check the inputs and list the subjects, run nothing")
    p.add_argument("--allow-fail", action="store_true", help="exit 0 even when subjects failed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from spinereg.batch.run import check_inputs, run_batch
    from spinereg.errors import InputError

    # checked before --dry-run too: a dry run said these were fine (and --workers 0 ran as 'auto'),
    # before session 37
    for name, value in (("--workers", args.workers), ("--threads-per-worker", args.threads_per_worker)):
        if value is not None and value < 1:
            raise InputError(f"{name} {value}: at least 1 is needed", None, f"give {name} 1 or more (or leave it out)")
    slurm = None
    if args.slurm:
        try:
            slurm = json.loads(args.slurm)
        except ValueError as exc:
            raise InputError(f"--slurm is not JSON ({exc})", None, "e.g. --slurm '{\"queue\": \"normal\"}'") from exc
        if not isinstance(slurm, dict):
            raise InputError("--slurm is not a JSON object of SLURMCluster options", None,
                             "e.g. --slurm '{\"queue\": \"normal\"}'")
    if args.dry_run:
        cfg, ds = check_inputs(args.bids_dir, args.outdir, args.config, args.participant_label, args.session,
                               args.overwrite)
        for u in ds.units:
            print(f"{u.uid}: " + ", ".join(sorted({im.suffix for im in u.images})) if u.images else f"{u.uid}: no image")
        for note in ds.notes:
            print(f"note: {note}")
        print(f"{len(ds.units)} unit(s); configuration {cfg.source}")
        return 0
    res = run_batch(args.bids_dir, args.outdir, config=args.config, participant_label=args.participant_label,
                    session=args.session, scheduler=args.scheduler, workers=args.workers,
                    threads_per_worker=args.threads_per_worker, slurm=slurm, overwrite=args.overwrite,
                    argv=getattr(args, "_argv", None))
    failed = res.failed_units
    done = len(res.subjects) - len(failed)
    print(f"batch: {done} unit(s) complete ({len(res.skipped)} kept from an earlier run), {len(failed)} failed "
          f"-> {res.out}")
    if "qc" in res.group:
        print(f"QC report: {res.group['qc']}")
    if failed:
        import sys

        for unit, reason in failed.items():
            print(f"  {unit}: {reason}", file=sys.stderr)
        return 0 if args.allow_fail else 3
    return 0
