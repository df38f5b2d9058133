"""Does ``register``'s verdict see a destination stored upside down? (``similarity_si_peak``)

A cord-driven registration aligns a cord with a cord even when one image's data runs the other
way along S-I (a header/conversion error): Dice stays 0.95-0.97 and the verdict passed. The score
``similarity_si_peak`` (:mod:`spinereg.metrics.similarity`) is the fraction of the post-registration
similarity lost when the moved image slides 6 mm up or down the cord: vertebrae, discs and
rootlets make a right result peak there, anatomy running the other way does not.

Each pair is registered twice with the ``spinereg register`` command (both cord segmentations
given): as it is, and with the destination's data (image and segmentation) flipped along its S-I
voxel axis, header unchanged. Truth is the flip (made here, not by the method). Pairs:

* real, sct_testing_data: t1 -> t2, t2 -> t1, t2s -> t2 (7.5 mm slices: not judged), mt1 -> t2;
* phantoms from the independent generator (:mod:`spinereg.phantom.independent`; its contrasts
  share no code with the registration), the same subject in two contrasts: ``test_t1`` -> ``test``
  (T1 tissue mixture onto the real T2 average), ``test`` -> ``test_t1``, ``iso1mm_t1`` ->
  ``sagittal_thick`` (1 mm onto 3 mm L-R slices), seeds given by ``--seeds``.

Prints one row per run (score, shift gain, Dice, verdict and reasons). Usage:
``python bench/qc_si_peak.py [--seeds 0,1,2,3] [--out DIR]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

PAIRS_REAL = (("t1_t2", "t1/t1w", "t1/t1w_seg-manual", "t2/t2", "t2/t2_seg-manual"),
              ("t2_t1", "t2/t2", "t2/t2_seg-manual", "t1/t1w", "t1/t1w_seg-manual"),
              ("t2s_t2", "t2s/t2s", "t2s/t2s_seg", "t2/t2", "t2/t2_seg-manual"),
              ("mt1_t2", "mt/mt1", "mt/mt1_seg", "t2/t2", "t2/t2_seg-manual"))
PAIRS_PHANTOM = (("test_t1", "test"), ("test", "test_t1"), ("iso1mm_t1", "sagittal_thick"))


def flip_si(src: Path, dst: Path) -> None:
    """``src``'s data flipped along its S-I voxel axis, header unchanged."""
    im = nib.load(src)
    ax = [i for i, c in enumerate(nib.aff2axcodes(im.affine)) if c in "SI"][0]
    data = np.ascontiguousarray(np.flip(np.asanyarray(im.dataobj), ax))
    nib.save(nib.Nifti1Image(data, im.affine, im.header), dst)


def phantom_pair(work: Path, src_variant: str, dest_variant: str, seed: int) -> tuple[Path, ...]:
    from spinereg.io.image import save_image
    from spinereg.phantom.independent import make_independent_subject

    paths = []
    for role, variant in (("src", src_variant), ("dest", dest_variant)):
        subj = make_independent_subject(variant, seed=seed)
        img, seg = work / f"{role}_{variant}_{seed}.nii.gz", work / f"{role}_{variant}_{seed}_seg.nii.gz"
        save_image(subj.image, img)
        save_image(subj.seg, seg)
        paths += [img, seg]
    return tuple(paths)


def run(out: Path, src: Path, iseg: Path, dest: Path, dseg: Path) -> dict:
    cmd = ["spinereg", "register", "-i", str(src), "--iseg", str(iseg), "-d", str(dest), "--dseg", str(dseg),
           "-o", str(out), "--overwrite", "--allow-fail"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text())["qc"]


def row(name: str, qc: dict) -> str:
    s = qc["scores"]

    def f(key: str) -> str:
        v = s.get(key)
        return "-" if v is None else f"{v:.3f}"
    return (f"| {name} | {f('similarity_si_peak')} | {f('similarity_shift_gain')} | {f('cord_dice')} | "
            f"{qc['verdict']} | {'; '.join(qc['reasons'])} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--out", type=Path, default=Path("/tmp/spinereg_qc_si_peak"))
    args = ap.parse_args(argv)
    data = Path(os.environ.get("SPINEREG_DATA", "../shared/data")) / "sct_testing_data"
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, Path, Path, Path, Path]] = []
    for name, s, si, d, ds in PAIRS_REAL:
        cases.append((name, *(data / f"{x}.nii.gz" for x in (s, si, d, ds))))
    for seed in (int(x) for x in args.seeds.split(",")):
        for sv, dv in PAIRS_PHANTOM:
            cases.append((f"{sv}->{dv} seed {seed}", *phantom_pair(work, sv, dv, seed)))
    print("| pair | si_peak | shift_gain | cord Dice | verdict | reasons |\n|---|---|---|---|---|---|")
    for k, (name, src, iseg, dest, dseg) in enumerate(cases):
        print(row(name, run(work / f"run{k}", src, iseg, dest, dseg)), flush=True)
        fd, fs = work / f"ud{k}.nii.gz", work / f"ud{k}_seg.nii.gz"
        flip_si(dest, fd)
        flip_si(dseg, fs)
        print(row(f"{name}, destination upside down", run(work / f"run{k}_ud", src, iseg, fd, fs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
