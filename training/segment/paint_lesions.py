"""Paint intramedullary lesions into a synthetic set (make_data.py), for fine-tuning.

    python training/segment/paint_lesions.py --set DIR/fine_s1_n24000.npz --share 0.4 --seed 31

writes ``DIR/fine_s1_n24000_les31.npz``: the same samples, a share of those that show a cord
(at least 20 pixels of cord fraction > 0.5) with one to three lesions painted inside the cord.
The target is not changed: a lesion is cord.

A lesion (multiple sclerosis plaques, myelitis, tumour oedema, syrinx walls) moves the cord's
signal toward the CSF's on T2-, T2*- and T1-weighted images alike: bright on T2, dark on T1.
Each lesion is an ellipse (0.5-3.5 mm semi-axes at 0.5 mm pixels, any orientation), most often
centred in the cord's outer rim (where plaques sit, touching the cord's surface), blurred by
0.6-1.5 pixels and cut by the cord fraction, so it never leaves the cord. Its level lies between
the cord's and the CSF's as read off the sample itself (medians inside the cord and in a ring
1-3 pixels outside it), a fraction 0.35-1.1 of the way to the CSF; the painted difference is added
to the image, so its noise and texture stay. Lesions cover at most 60 % of the cord's cross-section
(a lesion that fills the whole section looks like CSF on one slice: segment.refine's gap filling
handles it along S-I). Samples whose cord and CSF levels differ by less than 0.08 are left as they
are (the lesion would be invisible).

Nothing here reads a subject image; the generator of the set is unchanged.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

MIN_CORD_PX = 20
MAX_COVER = 0.6
MIN_CONTRAST = 0.08


def paint(rng: np.random.Generator, img: np.ndarray, cord: np.ndarray) -> tuple[np.ndarray, float]:
    """One sample: ``img`` normalised (n, n), ``cord`` the cord fraction 0-1. Returns the painted
    image and the lesion's share of the cord (0 when nothing was painted)."""
    core = cord > 0.5
    if core.sum() < MIN_CORD_PX:
        return img, 0.0
    inner = ndimage.binary_erosion(core)
    ring = ndimage.binary_dilation(core, iterations=3) & ~ndimage.binary_dilation(core, iterations=1)
    if inner.sum() < 5 or ring.sum() < 10:
        return img, 0.0
    c_lvl = float(np.median(img[inner]))
    f_lvl = float(np.median(img[ring]))
    if abs(f_lvl - c_lvl) < MIN_CONTRAST:
        return img, 0.0
    n = img.shape[0]
    ii, jj = np.mgrid[0:n, 0:n].astype(np.float32)
    dist = ndimage.distance_transform_edt(core)
    rim = np.argwhere(core & (dist <= 3))
    anywhere = np.argwhere(core)
    les = np.zeros((n, n), np.float32)
    for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3]))):
        pool = rim if (rng.random() < 0.7 and len(rim)) else anywhere
        ci, cj = pool[rng.integers(len(pool))]
        a, b = rng.uniform(1.0, 7.0), rng.uniform(1.0, 7.0)
        th = rng.uniform(0, np.pi)
        u = (ii - ci) * np.cos(th) + (jj - cj) * np.sin(th)
        v = -(ii - ci) * np.sin(th) + (jj - cj) * np.cos(th)
        les = np.maximum(les, ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.float32))
    les = np.clip(ndimage.gaussian_filter(les, rng.uniform(0.6, 1.5)), 0, 1) * cord
    cover = float(les.sum() / max(cord.sum(), 1e-6))
    if cover > MAX_COVER:
        les *= MAX_COVER / cover
        cover = MAX_COVER
    if cover < 0.01:
        return img, 0.0
    level = c_lvl + rng.uniform(0.35, 1.1) * (f_lvl - c_lvl)
    local = ndimage.gaussian_filter(img, 1.0)
    # the lesion's own texture (a little), then the image's noise stays on top
    tex = 1 + 0.05 * rng.standard_normal() * ndimage.gaussian_filter(rng.standard_normal((n, n)), 2.0)
    out = img + les * (level * tex - local)
    return out.astype(np.float32), cover


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", required=True)
    ap.add_argument("--share", type=float, default=0.4)
    ap.add_argument("--seed", type=int, required=True)
    a = ap.parse_args()
    src = Path(a.set)
    z = np.load(src)
    img, tgt = z["image"].astype(np.float32), z["target"]
    rng = np.random.default_rng(a.seed)
    out = img.astype(np.float16)
    t0 = time.time()
    covers = []
    for k in range(len(img)):
        if rng.random() >= a.share:
            continue
        p, cover = paint(rng, img[k], tgt[k].astype(np.float32) / 255.0)
        if cover > 0:
            out[k] = p.astype(np.float16)
            covers.append(cover)
    dst = src.with_name(f"{src.stem}_les{a.seed}.npz")
    np.savez(dst, image=out, target=tgt)
    c = np.array(covers)
    print(f"wrote {dst}: {len(c)} of {len(img)} painted, lesion share of the cord median {np.median(c):.2f} "
          f"(p10 {np.percentile(c, 10):.2f}, p90 {np.percentile(c, 90):.2f}) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
