"""``spinereg warp-template``: warp the template (and atlas) onto a subject, as sct_warp_template."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser

if TYPE_CHECKING:  # pragma: no cover
    import argparse

WARP_HELP = ("warps/affines in application order, template -> subject first (e.g. "
             "warp_template2anat.nii.gz warp_anat2mt.nii.gz); 'inv:W' or '[W,1]' uses an inverse")


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "warp-template",
                   "warp every template object (and the atlas) onto an image, as sct_warp_template",
                   "Writes DIR/template/<file> for each object of the template's info_label.txt "
                   "(nearest for masks and levels, point-wise for point labels, linear for "
                   "probabilistic maps and intensities), DIR/atlas/<file> with --atlas, a copy of "
                   "each info_label.txt (for sct_extract_metric) and DIR/provenance.json.")
    p.add_argument("-d", "--dest", required=True, help="destination image (its grid is the output grid)")
    p.add_argument("-w", "--warp", nargs="+", required=True, help=WARP_HELP)
    p.add_argument("-o", "--outdir", required=True, help="output folder (several files; SCT's default name is 'label')")
    p.add_argument("-t", "--template", default="PAM50",
                   help="PAM50, MNI-Poly-AMU, PAM50_small or a template folder (SCT's -t)")
    p.add_argument("-a", "--atlas", action="store_true", help="also warp the white matter atlas (DIR/atlas)")
    p.add_argument("-s", "--spinal-levels", action="store_true",
                   help="also warp per-level spinal maps where the template ships them (MNI-Poly-AMU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.io.provenance import RunRecord
    from spinereg.progress import progress_bar

    def command_line(a: argparse.Namespace) -> str | None:
        return RunRecord("warp-template", getattr(a, "_argv", None)).command_line
    from spinereg.register.warp_template import warp_template

    res = warp_template(args.dest, args.warp, args.outdir, template=args.template, atlas=args.atlas,
                        spinal_levels=args.spinal_levels, overwrite=args.overwrite,
                        progress=progress_bar("warp-template"), command_line=command_line(args))
    folders = sorted({w.folder for w in res.written})
    counts = ", ".join(f"{sum(w.folder == f for w in res.written)} in {f}/" for f in folders)
    print(f"{res.outdir}: {len(res.written)} files ({counts}) from {res.template} in {res.seconds:.1f} s")
    for s in res.skipped:
        print(f"skipped {s.folder}/{s.file}: {s.reason}")
    for note in res.notes:
        print(f"note: {note}")
    return 0
