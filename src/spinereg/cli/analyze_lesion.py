"""``spinereg analyze-lesion``: lesion metrics along the cord (SCT's ``sct_analyze_lesion``)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from spinereg.cli.common import new_parser, print_warnings

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "analyze-lesion", "lesion metrics along the cord (volume, length, diameter, damage ratio)",
                   "Each lesion is a connected component of -m (18-connectivity, as SCT), numbered from "
                   "superior to inferior. Writes into -o: <lesion>_analysis.csv (one row per lesion: label, "
                   "volume [mm3], length [mm] along the centerline, max_equivalent_diameter [mm] and "
                   "max_axial_damage_ratio [] on sections perpendicular to the cord, centre_x/y/z_mm "
                   "(world), inside_cord_fraction, outside_cord, levels, midsagittal_dorsal/ventral/total_"
                   "bridge_width [mm] (tissue bridges on the plane through the centerline), and with --levels / -f the "
                   "volume per level (vol_level_<k> [mm3]; vol_no_level [mm3] for lesion voxels the levels image "
                   "leaves at 0) and the share per tract), <lesion>_label.nii.gz (each lesion its "
                   "own label), <lesion>_analysis.json (totals, lesion load per level, the tissue bridges "
                   "per section along the cord, provenance) and <lesion>_bridges.csv (those per-section bridges, "
                   "one row per lesion and section). "
                   "All files appear together or none. An empty lesion mask gives 0 lesions and a note.")
    p.add_argument("-m", "--mask", required=True, help="lesion mask (binary or soft: > 0.5 is lesion)")
    p.add_argument("-s", "--seg", required=True, help="cord segmentation (any grid in the same world space)")
    p.add_argument("--levels", help="vertebral levels image (cord voxels valued by level; any grid)")
    p.add_argument("-f", "--atlas-folder", help="warped template folder (label, or label/atlas with "
                                                "info_label.txt): share per tract; its template/"
                                                "PAM50_levels.nii.gz serves as --levels when none is given")
    p.add_argument("-o", "--outdir", default=".", help="output folder: several files (default: the current folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spinereg.io.image import load_image
    from spinereg.io.staging import OutputFolder
    from spinereg.lesion import analyze_lesions
    from spinereg.lesion.outputs import output_names, write_report

    t0 = time.perf_counter()
    OutputFolder(args.outdir, list(output_names(args.mask).values()), overwrite=args.overwrite).check()
    lesion = load_image(args.mask, ndim=3, what="lesion mask")
    cord = load_image(args.seg, ndim=3, what="cord segmentation")
    report = analyze_lesions(lesion, cord, levels=args.levels, atlas_folder=args.atlas_folder)
    inputs = {"lesion": str(args.mask), "seg": str(args.seg)}
    if args.levels:
        inputs["levels"] = str(args.levels)
    if args.atlas_folder:
        inputs["atlas_folder"] = str(args.atlas_folder)
    files = write_report(report, lesion, args.outdir, overwrite=args.overwrite, inputs=inputs, stem_from=args.mask)
    print_warnings("analyze-lesion", report.notes)
    print(json.dumps({"outdir": str(args.outdir), "seconds": round(time.perf_counter() - t0, 2),
                      "files": {k: str(v) for k, v in files.items()}, "n_lesions": report.n_lesions,
                      "total_volume_mm3": round(report.total_volume_mm3, 3)}, indent=1))
    return 0
