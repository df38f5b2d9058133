"""Is the independent phantom's truth where its image says? (spinereg.phantom.truth_check)

Prints, for the phantom's two intensity sources and for real images with manual masks, where the
image shows the cord's edge relative to the mask that is taken as truth (mm, + = the image shows
the cord wider than the mask; median over slices, IQR). With ``--bare SEEDS`` it also runs the
bare-image template registration (automatic segmentation, automatic discs, registration with
them; what register-to-template does without -s/-l) on the full 0.8 mm C1-T6 phantom with each
source, and scores it against the phantom's truth.

    python bench/phantom_truth.py [--bare 0,1,2,3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.io.resample import slice_like
from spinereg.io.template import load_template
from spinereg.phantom.tissue_contrast import average_t2, template_volume, tissue_image
from spinereg.phantom.truth_check import edge_offset

#: PAM50 levels of the full phantom (C1-T6) and the slice stride used on the 0.5 mm template
LEVELS = (1, 13)
STRIDE = 3
REAL = {"t2": ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz"), "t1": ("t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz"),
        "t2s": ("t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz")}


def template_slices(levels: tuple[int, int] = LEVELS, stride: int = STRIDE) -> tuple[Image, np.ndarray]:
    """PAM50_cord and the indices of its axial slices whose cord lies in ``levels`` (every ``stride``-th)."""
    tpl = load_template("PAM50")
    cord = template_volume(str(tpl.path("cord")))
    lev = np.asarray(template_volume(str(tpl.path("levels"))).data)
    m = np.asarray(cord.data) >= 0.5
    keep = []
    for k in range(m.shape[2]):
        v = lev[:, :, k][m[:, :, k]]
        if len(v) and levels[0] <= np.median(v) <= levels[1]:
            keep.append(k)
    return cord, np.asarray(keep[::stride], int)


def average_source_offset() -> dict:
    """PAM50_small_t2 (the ``average`` source, placed as the phantom places it) vs PAM50_cord."""
    cord, ks = template_slices()
    data, grid, _ = average_t2()
    return edge_offset(Image(data, grid.affine), cord, slices=ks).as_dict()


def tissue_source_offset(contrast: str = "t2", seed: int = 0) -> dict:
    """The ``tissue`` source (on PAM50's own grid, over the C1-T6 slices) vs PAM50_cord."""
    cord, ks = template_slices()
    k0, k1 = int(ks.min()), int(ks.max()) + 1
    aff = cord.affine.copy()
    aff[:3, 3] = cord.grid.voxel_to_world(np.array([[0.0, 0.0, k0]]))[0]
    region = Grid((cord.shape[0], cord.shape[1], k1 - k0), aff)
    img, _, _ = tissue_image(load_template("PAM50"), region, contrast, np.random.default_rng(seed))
    sub = Image(slice_like(cord, region), region.affine)
    return edge_offset(Image(img, region.affine), sub, slices=ks - k0).as_dict()


def real_offsets(root: Path) -> dict:
    """Real images against their manual masks (sct_testing_data)."""
    out = {}
    for name, (img, seg) in REAL.items():
        out[name] = edge_offset(load_image(root / img), load_image(root / seg)).as_dict()
    return out


def bare_full_phantom(seed: int, source: str) -> dict:
    """The bare-image job on the full phantom with ``source``, scored against its truth."""
    from spinereg.metrics import dice
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import auto_labeling, register_to_template
    from spinereg.segment import segment
    from spinereg.transforms import apply_transforms
    from spinereg.vertebrae.evaluate import compare_to_truth
    from spinereg.vertebrae.outputs import disc_landmarks

    ph = make_independent_subject("full", seed=seed, source=source)
    seg = segment(ph.image, ph.contrast).seg
    lab = auto_labeling(ph.image, seg, ph.contrast)
    r = compare_to_truth(lab, {int(v): np.asarray(p) for v, p in ph.disc_points.items()})
    reg = register_to_template(ph.image, seg, ldisc=disc_landmarks(lab, ph.image.grid, template="PAM50"), template="PAM50",
                               contrast=ph.contrast)
    err = ph.error(reg.template2anat)
    tcord = template_volume(str(load_template("PAM50").path("cord")))
    cd = dice(apply_transforms(tcord, ph.seg.grid, [reg.template2anat], "linear"), ph.seg).dice
    return {"levels_right": bool(r["identity_ok"]), "flagged": bool(lab.ambiguous), "disc_mae_mm": r["mae_mm"],
            "seg_dice": dice(seg, ph.seg).dice, "mean_mm": err["mean_mm"], "p95_mm": err["p95_mm"], "cord_dice": cd}


def given_discs_full_phantom(seed: int, source: str) -> dict:
    """The bare job's registration given discs instead of detecting them (automatic segmentation
    kept), on the full phantom: the phantom's true discs C2/C3 and below (every disc that shows a
    band; C1/C2 has none), the same with the true C1/C2 added, and PAM50's second disc file (``PAM50_label_discPosterior``, the same
    discs marked at their posterior tips) moved by the phantom's deformation. Cord error mean /
    p95 (mm): what a perfect band reader, or a perfect reader of PAM50's other disc convention,
    could reach."""
    from spinereg.io.image import load_image
    from spinereg.io.resample import place_labels
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import register_to_template
    from spinereg.segment import segment

    ph = make_independent_subject("full", seed=seed, source=source)
    seg = segment(ph.image, ph.contrast).seg
    post_img = load_image(load_template("PAM50").path("disc_posterior"))
    post_lab = np.asarray(post_img.data).round().astype(int)
    vals = [v for v in sorted(ph.disc_points) if 2 < v < 60]
    post = {int(v): post_img.grid.voxel_to_world(np.argwhere(post_lab == v)[:1].astype(float))[0] for v in vals}
    out = {}
    with_c12 = [v for v in sorted(ph.disc_points) if 1 < v < 60]
    for name, vv, pts in (("true", vals, np.array([ph.disc_points[v] for v in vals])),
                          ("true_c1c2", with_c12, np.array([ph.disc_points[v] for v in with_c12])),
                          ("posterior", vals, ph.deformation.push(np.array([post[v] for v in vals])))):
        ld = ph.image.with_data(place_labels(pts, np.array(vv), ph.image.grid, dtype=np.uint8))
        err = ph.error(register_to_template(ph.image, seg, ldisc=ld, template="PAM50", contrast=ph.contrast).template2anat)
        out[name] = (err["mean_mm"], err["p95_mm"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bare", default="", help="seeds of the full phantom to run the bare-image job on (e.g. 0,1,2,3)")
    ap.add_argument("--given-discs", default="", help="seeds of the full phantom to register with given discs "
                                                      "(true C2/C3 and below; PAM50's posterior disc labels)")
    a = ap.parse_args(argv)
    root = Path(os.environ.get("SPINEREG_DATA", "../shared/data")) / "sct_testing_data"
    t0 = time.perf_counter()
    rows = [("phantom source 'average' (PAM50_small_t2) vs PAM50_cord", average_source_offset()),
            ("phantom source 'tissue' (t2, seed 0) vs PAM50_cord", tissue_source_offset())]
    rows += [(f"sct_testing_data {k} vs its manual mask", v) for k, v in real_offsets(root).items()]
    print("Cord edge shown by the image relative to the mask taken as truth (mm, + = image wider)")
    print(f"{'image vs mask':58s} {'median':>7s} {'IQR':>15s} {'slices':>6s}")
    for name, r in rows:
        print(f"{name:58s} {r['median_mm']:+7.2f} {r['iqr_mm'][0]:+7.2f}..{r['iqr_mm'][1]:+5.2f} {r['slices']:6d}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if a.bare:
        print("\nBare-image job on the full 0.8 mm C1-T6 phantom, by source (truth: the phantom's)")
        print(f"{'source':8s} {'seed':>4s} {'levels':>7s} {'discMAE':>7s} {'segDice':>7s} {'mean':>6s} {'p95':>6s} {'cordDice':>8s}")
        for source in ("average", "tissue"):
            for seed in (int(s) for s in a.bare.split(",")):
                r = bare_full_phantom(seed, source)
                lv = ("right" if r["levels_right"] else "WRONG") + ("*" if r["flagged"] else "")
                print(f"{source:8s} {seed:4d} {lv:>7s} {r['disc_mae_mm']:7.2f} {r['seg_dice']:7.4f} "
                      f"{r['mean_mm']:6.3f} {r['p95_mm']:6.3f} {r['cord_dice']:8.4f}", flush=True)
    if a.given_discs:
        print("\nFull phantom registered with given discs (automatic segmentation), cord error mean / p95 mm")
        for source in ("average", "tissue"):
            for seed in (int(s) for s in a.given_discs.split(",")):
                r = given_discs_full_phantom(seed, source)
                print(f"{source:8s} {seed:4d} true C2/C3-: {r['true'][0]:.3f} / {r['true'][1]:.3f}   "
                      f"with true C1/C2: {r['true_c1c2'][0]:.3f} / {r['true_c1c2'][1]:.3f}   "
                      f"PAM50 discPosterior: {r['posterior'][0]:.3f} / {r['posterior'][1]:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
