"""Where spinereg's disc detector reads PAM50's own discs, against PAM50_label_disc.

The automatic labeling (:func:`spinereg.vertebrae.label_vertebrae`) places each disc where its
band crosses the vertebral column (the tilt pivot 3 mm in front of the posterior wall, projected
on the cord centerline). PAM50_label_disc, the registration's target, was placed by hand with
another convention: on PAM50's own anatomy the detector reads C3/C4 and C4/C5 about 1 mm above
their labels, C7/T1 0.45 mm below. Registering detected discs straight onto the labels carries
those offsets into every subject (docs/labeling_bare_image.md, "The template's discs read by the
detector").

This script measures them once: PAM50's tissue maps (cord, CSF, vertebral bodies with the gaps
between them, ligaments, soft tissue) painted as a T2-like image by
:mod:`spinereg.phantom.tissue_contrast` (texture seeds 0-3; no deformation, no subject, no real
image), labelled with PAM50_cord as the segmentation; each disc's arc length along PAM50's cord
centerline minus its label's, averaged over the seeds. Bright discs only: on the T1-like image
(dark discs) the readings moved by up to 1.5 mm between texture seeds, so no offsets are given
for dark discs (read on session 25's smoothed response they are one grid step, +0.54..+0.59 mm,
at every disc but T12/L1 over 16 texture seeds: not the independent phantoms' per-level bias;
still not given, session 30). Writes ``src/spinereg/data/template_disc_offsets.json``.

    python training/template_disc_offsets.py [--seeds 0,1,2,3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.io.template import load_template
from spinereg.phantom.tissue_contrast import template_volume, tissue_image
from spinereg.register.template import template_centerline, template_landmarks
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.model import CONUS

OUT = Path(__file__).resolve().parents[1] / "src" / "spinereg" / "data" / "template_disc_offsets.json"


def template_region(cord: Image, margin_vox: int = 60) -> tuple[Grid, tuple[slice, ...]]:
    """The voxel-aligned part of the template grid around its cord (``margin_vox`` in-plane)."""
    idx = np.argwhere(np.asarray(cord.data) > 0.5)
    lo = np.maximum(idx.min(0) - np.array([margin_vox, margin_vox, 0]), 0)
    hi = np.minimum(idx.max(0) + np.array([margin_vox, margin_vox, 1]), np.array(cord.shape[:3]))
    aff = cord.grid.affine.copy()
    aff[:3, 3] = cord.grid.voxel_to_world(lo[None].astype(float))[0]
    return Grid(tuple(int(x) for x in hi - lo), aff), tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def detector_offsets(template: str = "PAM50", contrast: str = "t2", seed: int = 0) -> dict[int, float]:
    """Arc length (template mm) of each disc the labeling finds on the template's tissue image
    minus that of the template's disc label of the same value."""
    tpl = load_template(template)
    cord = template_volume(str(tpl.path("cord")))
    region, box = template_region(cord)
    data, _, _ = tissue_image(tpl, region, contrast, np.random.default_rng(seed))
    seg = Image((np.asarray(cord.data)[box] > 0.5).astype(np.uint8), region.affine)
    lab = label_vertebrae(Image(data, region.affine), seg, contrast=contrast)
    labels = template_landmarks(tpl, "disc")
    cl = template_centerline(load_image(tpl.path("cord"), ndim=3, check_finite=False))
    s_label = dict(zip(labels.values.tolist(), cl.project(labels.points)[0], strict=True))
    found = [d for d in lab.measured if d.value != CONUS and d.source == "band"]
    s_found = cl.project(np.array([d.point for d in found]))[0]
    return {int(d.value): float(s - s_label[d.value]) for d, s in zip(found, s_found, strict=True) if d.value in s_label}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--contrast", default="t2")
    ap.add_argument("-o", "--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = [detector_offsets("PAM50", a.contrast, s) for s in seeds]
    for s, r in zip(seeds, runs, strict=True):
        print(f"seed {s}: " + ", ".join(f"{v}: {o:+.2f}" for v, o in sorted(r.items())), flush=True)
    common = sorted(set.intersection(*(set(r) for r in runs)))
    mean = {v: round(float(np.mean([r[v] for r in runs])), 2) for v in common}
    spread = max(float(np.ptp([r[v] for r in runs])) for v in common)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    doc = {"_doc": "Arc length (template mm, + = superior) at which spinereg's disc detector reads each of the "
                   "template's discs on its own anatomy, minus that of the template's disc label "
                   "(PAM50_label_disc) of the same value; written by training/template_disc_offsets.py. "
                   "A detected subject disc is moved by minus this (times the subject's scale) before it is "
                   "registered onto the label. Bright discs only.",
           "made_by": {"script": "training/template_disc_offsets.py", "commit": commit, "contrast": a.contrast,
                       "texture_seeds": seeds, "largest_spread_between_seeds_mm": round(spread, 2)},
           "PAM50": {"bright": {str(v): o for v, o in mean.items()}}}
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {a.out} (discs {common[0]}-{common[-1]}, largest spread between seeds {spread:.2f} mm)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
