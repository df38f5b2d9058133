"""What every subcommand shares: the parser (one-line usage errors, defaults in --help), common
options, the run record with its progress display, and the end of a run (human summary or
``--json``, exit code 3 for a failed result)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from spinereg.errors import EXIT_OK, EXIT_RESULT_FAILED

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.provenance import RunRecord
    from spinereg.progress import StageProgress


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (``(default: none)`` when it has none); flags are left as
    they are. Descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.required or "default" in text.lower()
                or action.default is argparse.SUPPRESS or isinstance(action.const, bool)
                or action.nargs == 0):
            return text
        default = action.default
        if default is None or default == [] or default == "":
            return f"{text} (default: none)".strip()
        return f"{text} (default: %(default)s)".strip()


class Parser(argparse.ArgumentParser):
    """Usage errors are one line (``spinereg apply: error: ... -- fix: ...``), exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse API
        text = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {text} -- fix: see `{self.prog} -h`\n")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log details; show tracebacks on errors")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_result_options(parser: argparse.ArgumentParser) -> None:
    """``--json`` (full result on stdout), ``--allow-fail`` (exit 0 on a failed result) and
    ``--no-gzip`` (NIfTI outputs stored uncompressed, see :func:`spinereg.io.fastgz.set_output_level`)."""
    parser.add_argument("--json", action="store_true",
                        help="print the full result as JSON instead of the short summary")
    parser.add_argument("--allow-fail", action="store_true",
                        help="exit 0 even when the QC verdict is fail (otherwise exit code 3)")
    parser.add_argument("--no-gzip", action="store_true",
                        help="store the NIfTI outputs uncompressed (same .nii.gz names, a gzip container every "
                             "reader opens, no time spent compressing; files about 2-4x larger)")


def new_parser(sub: argparse._SubParsersAction, name: str, help_: str,
               description: str | None = None) -> argparse.ArgumentParser:
    # help strings are %-formatted by argparse (the command list), descriptions are not: "%%" in
    # a help string read literally in `-h` before session 48
    p = sub.add_parser(name, help=help_, description=description or help_.replace("%%", "%"))
    add_common(p)
    return p


def add_landmarks(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """-l / --ldisc / --lrootlet (exactly one), values as the PAM50 label files."""
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("-l", "--labels", help=f"vertebral body labels{whose} (values as PAM50_label_body, C3 = 3)")
    g.add_argument("--ldisc", help=f"disc labels{whose} (values as PAM50_label_disc, C2/C3 = 3)")
    g.add_argument("--lrootlet", help=f"rootlet segmentation{whose} (values = spinal levels)")


def add_template(parser: argparse.ArgumentParser, contrast_help: str = "image contrast") -> None:
    parser.add_argument("-t", "--template", default="PAM50",
                        help="PAM50, MNI-Poly-AMU, PAM50_small or a template folder")
    parser.add_argument("-c", "--contrast", default="t2", choices=["t1", "t2", "t2s"], help=contrast_help)


# -- a run: record, progress, end ----------------------------------------------------------------
def start_run(args: argparse.Namespace, command: str, stages: int = 0) -> tuple[RunRecord, StageProgress]:
    """The run record (command line from ``args._argv``) and its progress display on stderr."""
    from spinereg.io.fastgz import set_output_level
    from spinereg.io.provenance import RunRecord
    from spinereg.progress import StageProgress

    set_output_level(0 if getattr(args, "no_gzip", False) else None)
    display = StageProgress(total=stages)
    run = RunRecord(command, getattr(args, "_argv", None), on_stage=display.on_stage)
    return run, display


_LABELS = {
    "cord_dice": "cord Dice",
    "landmark_max_residual_mm": "landmarks max {v} mm",
    "inverse_consistency_p95_mm": "inverse consistency p95 {v} mm",
    "pct_folding": "folding {v}%",
    "hausdorff95_mm": "Hausdorff95 {v} mm",
    "jacobian_min": "Jacobian min",
}


def print_warnings(command: str, warnings: list[str] | tuple[str, ...]) -> None:
    """Each warning as one line on stderr, ``spinereg COMMAND: warning: ...``."""
    for w in warnings:
        print(f"spinereg {command}: warning: {w}", file=sys.stderr)


def _fmt(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def key_scores(metrics: dict, limit: int = 5) -> str:
    """``cord Dice 0.972 | landmarks max 0.41 mm | ...`` from the verdict's scores."""
    scores = ((metrics.get("qc") or {}).get("scores") or {})
    parts = []
    for name, label in _LABELS.items():
        if name in scores:
            v = _fmt(scores[name])
            parts.append(label.format(v=v) if "{v}" in label else f"{label} {v}")
    for name, value in scores.items():
        if name not in _LABELS and len(parts) < limit:
            parts.append(f"{name} {_fmt(value)}")
    return " | ".join(parts[:limit])


def finish_run(args: argparse.Namespace, command: str, metrics: dict, outdir: str | Path,
               files: dict | None = None, qc_index: str | Path | None = None,
               seconds: float | None = None, extra: dict | None = None) -> int:
    """Print the short summary (or the full JSON with ``--json``); return the exit code.

    A ``fail`` verdict also prints one line on stderr and returns 3 unless ``--allow-fail``.
    """
    qc = metrics.get("qc") or {}
    verdict = qc.get("verdict", "not scored")
    if getattr(args, "json", False):
        out = {"outdir": str(outdir), "seconds": seconds, **(extra or {}), **metrics}
        if files:
            out["files"] = {k: str(v) for k, v in files.items()}
        if qc_index:
            out["qc_report"] = str(qc_index)
        print(json.dumps(out, indent=1))
    else:
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        print(f"{command}: {verdict.upper()}{took}" + (f" -- {key_scores(metrics)}" if key_scores(metrics) else ""))
        for reason in (qc.get("reasons") or [])[:4]:
            print(f"  {reason}")
        names = ", ".join(Path(p).name for p in (files or {}).values())
        print(f"outputs: {outdir}" + (f" ({names})" if names else ""))
        if qc_index:
            print(f"QC report: {qc_index}")
    if verdict == "fail":
        reasons = "; ".join(qc.get("reasons") or []) or "see metrics.json"
        allowed = getattr(args, "allow_fail", False)
        print(f"spinereg {command}: result: QC verdict fail ({reasons}) -- outputs kept in {outdir}; "
              f"{'--allow-fail given: exit 0' if allowed else 'exit code 3 (--allow-fail to exit 0)'}",
              file=sys.stderr)
        return EXIT_OK if allowed else EXIT_RESULT_FAILED
    return EXIT_OK


def qc_record(args: argparse.Namespace, command: str, **fields: object) -> dict:
    """A provenance record for a command's QC entry made outside a run folder (segment,
    label-vertebrae): its command line and package versions beside ``fields``, as a run folder's
    provenance.json has them. Without them the report showed "spinereg ?" and no command line for
    those entries before session 49."""
    from spinereg.io.provenance import RunRecord, versions

    return {"command": command, "command_line": RunRecord(command, getattr(args, "_argv", None)).command_line,
            "versions": versions(), **fields}

