"""``spinereg qc``: (re)build the HTML QC report of a run folder, or the index of a QC folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser
from spinereg.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "qc", "add a run folder to the HTML QC report (figures, scores, verdict)",
                   "Render the QC figures of a register-to-template / register / chain / moco output folder "
                   "and add it to QCROOT/index.html (open it in a browser from file://). "
                   "With --index, only rebuild QCROOT/index.html from QCROOT/entries.json.")
    p.add_argument("run_dir", nargs="?", help="output folder of a spinereg run (holds provenance.json)")
    p.add_argument("--root", help="QC folder; share one between runs for a cohort index (default: RUN_DIR/qc)")
    p.add_argument("--kind", help="kind of run: register-to-template, register, chain, moco, spine-metrics or any "
                                  "kind with a QC page (default: the command named in provenance.json)")
    p.add_argument("--index", metavar="QCROOT", help="rebuild the index of QCROOT (no run folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.qc import add_to_report, build_index

    if args.index:
        if args.run_dir:
            raise InputError("give either a run folder or --index, not both", args.run_dir,
                             "run `spinereg qc RUN_DIR --root QCROOT` or `spinereg qc --index QCROOT`")
        print(build_index(args.index))
        return 0
    if not args.run_dir:
        raise InputError("no run folder given", None, "run `spinereg qc RUN_DIR [--root QCROOT]`")
    print(add_to_report(args.run_dir, args.root, args.kind))
    return 0
