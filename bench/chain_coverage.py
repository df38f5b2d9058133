"""How much of a chain's target its composed template warp reaches through measured fields.

``spinereg chain`` writes, for an image with its own segmentation, the cord Dice of the template
warp composed through the links and the anatomical registration (``composed``), over every slice
and over the part the chain covers (``cord_dice_in_anat_fov``), and the fraction of the image's
cord outside the fields of view its warp goes through (``cord_outside_anat_fov``). Beyond them
each field is the identity, so the composed warp there is extrapolated.

Data: the batch tests' synthetic cohort (``tests/bids_synth.py``: sct_testing_data's T2w, T2starw
and MT images, each moved by its own known field; 14 subject-sessions), the chain target ->
T2w -> PAM50 for the targets T2starw (7.5 mm slices) and MTS (17 mm slices), both segmentations
given. One row per run: the fraction outside, the direct registration's Dice (fitted to the
target's segmentation), the composed Dice over every slice and over the covered part, the
verdict. Usage: ``python bench/chain_coverage.py [--out DIR]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("T2starw", "flip-1_mt-on_MTS")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    data = Path(os.environ.get("SPINEREG_DATA", ROOT.parent / "shared" / "data")) / "sct_testing_data"
    work = Path(args.out or tempfile.mkdtemp(prefix="chain_coverage_"))
    sys.path.insert(0, str(ROOT / "tests"))
    from bids_synth import build_bids

    bids = work / "bids"
    if not (bids / "dataset_description.json").exists():
        build_bids(bids, data)
    units = sorted(p.parent for p in bids.glob("sub-*/**/anat/*_T2w.nii.gz") if "corrupt" not in str(p))
    print("| unit | target | cord outside | direct Dice (fitted) | composed Dice whole | composed in covered part | verdict |")
    print("|---|---|---|---|---|---|---|")
    for anat in units:
        key = next(anat.glob("*_T2w.nii.gz")).name[: -len("_T2w.nii.gz")]
        labels = bids / "derivatives" / "labels" / anat.relative_to(bids)
        for tgt in TARGETS:
            out = work / "runs" / f"{key}_{tgt}"
            cmd = ["spinereg", "chain", "-i", str(anat / f"{key}_{tgt}.nii.gz"), str(anat / f"{key}_T2w.nii.gz"),
                   "--seg", str(labels / f"{key}_{tgt}_seg-manual.nii.gz"), str(labels / f"{key}_T2w_seg-manual.nii.gz"),
                   "-l", str(labels / f"{key}_T2w_labels-manual.nii.gz"), "-c", "t2", "-o", str(out),
                   "--overwrite", "--allow-fail"]
            subprocess.run(cmd, check=True, capture_output=True)
            m = json.loads((out / "metrics.json").read_text())
            t = m[f"{key}_{tgt}"]
            c = t["composed"]
            print(f"| {key} | {tgt} | {t['cord_outside_anat_fov']:.3f} | {t['cord_dice_zb']:.3f} | "
                  f"{c['cord_dice_zb']:.3f} | {c['cord_dice_in_anat_fov']:.3f} | {m['qc']['verdict']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
