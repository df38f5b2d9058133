"""Known smooth deformations of real images: spinereg ``register`` beside plain ANTs SyN.

For each case (an sct_testing_data image and its cord segmentation) and seed, a smooth field is
made with numpy/scipy only (no spinereg code): a sum of Gaussian bumps of 15-20 mm width scaled
to a 5 mm peak over the field of view, plus a 3-5 degree rotation about the cord centre (on
thick slices: in the slice plane only, about the slice normal). The real image is the source;
the destination is the real image pulled through that map (cubic spline), its segmentation
through the same map (linear, > 0.5). The true destination -> source map is written as an ITK
displacement field, so the truth is exact on the destination grid.

Every method's result is written as ITK transform files and scored the same way, outside
spinereg: ANTs pulls images of the source's world coordinates through them onto the
destination grid (linear interpolation is exact for coordinates), and the recovered source
points are compared with the true ones inside the destination cord (mean, p95, S-I part).
The true field scored this way gives 0 (checked every run).

Methods: ``ants_syn`` (``ants.registration(type_of_transform="SyN")``, defaults), spinereg
``register`` with both segmentations (``seg``: multimodal_spinereg_seg, centermass + seg demons;
``imseg``: the default preset multimodal_spinereg_imseg, image-driven 3D demons with the
segmentations as a constraint, then stiff seg demons), image-only (``im``, the default preset multimodal_spinereg_im) and with ``--old``
the image-only default before it (``im_old``: SCT's multimodal_default, ANTs SyN MeanSquares).

``--speed N``: image-only ``spinereg register`` on a 256 x 256 x 22 pair (whole command, median of
N, beside ``spinereg --version``). ``--lumbar 0,1,2``: folding on the thoracolumbar conus phantom.

Usage: ``python bench/register_robustness.py [--cases t2,t1,t2s,mt1] [--seeds 0,1,2] [--old]``.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

CASES = {
    "t2": ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz"),
    "t1": ("t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz"),
    "t2s": ("t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz"),
    "mt1": ("mt/mt1.nii.gz", "mt/mt1_seg.nii.gz"),
}
PRESETS = {"seg": "multimodal_spinereg_seg", "imseg": None, "im": None, "im_old": "multimodal_default"}
_LPS = np.array([-1.0, -1.0, 1.0])


def data_root() -> Path:
    return Path(os.environ.get("SPINEREG_DATA", "/work/shared/data")) / "sct_testing_data"


def _world(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.deg2rad(deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def true_map(affine: np.ndarray, shape, seg: np.ndarray, seed: int, peak_mm: float = 5.0):
    """Destination world points (RAS, shape + (3,)) -> their source points, and the parameters.

    Thick slices (slice spacing > 2x the in-plane one): no motion along the slice normal."""
    rng = np.random.default_rng(seed)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    x = _world(affine, shape)
    thick = zooms.max() > 2 * zooms.min()
    normal = affine[:3, int(np.argmax(zooms))] / zooms.max() if thick else None
    scale = rng.uniform(15.0, 20.0)
    lo, hi = x.reshape(-1, 3).min(0) - scale, x.reshape(-1, 3).max(0) + scale
    centres = np.stack(np.meshgrid(*[np.arange(a, b + scale, scale) for a, b in zip(lo, hi, strict=True)],
                                   indexing="ij"), -1).reshape(-1, 3)
    centres = centres + rng.uniform(-0.3, 0.3, centres.shape) * scale
    w = rng.normal(size=centres.shape)
    u = np.zeros_like(x)
    for c, wc in zip(centres, w, strict=True):
        u += np.exp(-((x - c) ** 2).sum(-1) / (2 * scale**2))[..., None] * wc
    if thick:
        u -= (u @ normal)[..., None] * normal
    u *= peak_mm / np.sqrt((u**2).sum(-1)).max()
    centre = x[seg > 0.5].mean(0)
    deg = rng.uniform(3.0, 5.0) * rng.choice([-1.0, 1.0])
    axis = normal if thick else rng.normal(size=3)
    rot = _rotation(axis, deg)
    src = centre + (x - centre) @ rot.T + u
    return src, {"scale_mm": round(scale, 1), "rot_deg": round(deg, 2), "thick": bool(thick)}


def make_case(name: str, seed: int, out: Path) -> dict:
    """Write the source/destination images, segmentations and the true ITK field for one case."""
    im_path, seg_path = (data_root() / p for p in CASES[name])
    img, seg = nib.load(str(im_path)), nib.load(str(seg_path))
    data = np.asarray(img.dataobj, np.float32)
    sdata = (np.asarray(seg.dataobj) > 0.5).astype(np.float32)
    aff = img.affine
    src_pts, params = true_map(aff, data.shape, sdata, seed)
    vox = (src_pts - aff[:3, 3]) @ np.linalg.inv(aff[:3, :3]).T
    coords = [vox[..., k] for k in range(3)]
    dest = ndimage.map_coordinates(data, coords, order=3, mode="nearest").astype(np.float32)
    dseg = (ndimage.map_coordinates(sdata, coords, order=1, mode="nearest") > 0.5).astype(np.uint8)
    paths = {k: out / f"{name}_{seed}_{k}.nii.gz" for k in ("src", "src_seg", "dest", "dest_seg", "truth")}
    nib.save(nib.Nifti1Image(data, aff), str(paths["src"]))
    nib.save(nib.Nifti1Image(sdata.astype(np.uint8), aff), str(paths["src_seg"]))
    nib.save(nib.Nifti1Image(dest, aff), str(paths["dest"]))
    nib.save(nib.Nifti1Image(dseg, aff), str(paths["dest_seg"]))
    disp = (src_pts - _world(aff, data.shape)) * _LPS
    timg = nib.Nifti1Image(disp[:, :, :, None, :].astype(np.float32), aff)
    timg.header.set_intent("vector", (), name="")
    nib.save(timg, str(paths["truth"]))
    return {"paths": paths, "src_pts": src_pts, "dest_seg": dseg > 0, "params": params,
            "affine": aff, "shape": data.shape}


def coordinate_images(case: dict, pad: int = 12):
    """ANTs images of the source's LPS world coordinates on a grid padded by ``pad`` voxels."""
    import ants

    aff = case["affine"].copy()
    shape = np.array(case["shape"]) + 2 * pad
    aff[:3, 3] = aff[:3, 3] - aff[:3, :3] @ np.full(3, pad)
    x = _world(aff, shape) * _LPS
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(3):
            p = str(Path(tmp) / f"c{k}.nii.gz")
            nib.save(nib.Nifti1Image(x[..., k].astype(np.float64), aff), p)
            out.append(ants.image_read(p))
    return out


def score(case: dict, coords, transforms: list[str]) -> dict:
    """Cord error (mm) of the destination -> source map given as ITK ``transforms`` (ANTs order)."""
    import ants

    fixed = ants.image_read(str(case["paths"]["dest"]))
    got = np.stack([ants.apply_transforms(fixed, c, transforms, interpolator="linear").numpy() for c in coords],
                   -1) * _LPS
    truth = case["src_pts"]
    m = case["dest_seg"]
    err = got[m] - truth[m]
    dist = np.sqrt((err**2).sum(-1))
    base = _world(case["affine"], case["shape"])[m]
    return {"mean": float(dist.mean()), "p95": float(np.percentile(dist, 95)),
            "si_err": float(np.abs(err[:, 2]).mean()), "si_true": float(np.abs(truth[m][:, 2] - base[:, 2]).mean()),
            "si_recovered": float(np.abs(got[m][:, 2] - base[:, 2]).mean())}


def run_ants(case: dict, out: Path) -> tuple[list[str], dict]:
    import ants

    fixed = ants.image_read(str(case["paths"]["dest"]))
    moving = ants.image_read(str(case["paths"]["src"]))
    reg = ants.registration(fixed, moving, type_of_transform="SyN", outprefix=str(out) + "/syn_", random_seed=1)  # ANTsPy lists every out/*[0-9]* as a transform
    return list(reg["fwdtransforms"]), {}


def run_spinereg(case: dict, out: Path, kind: str, param: str | None) -> tuple[list[str], dict]:
    from spinereg.register.multimodal import register_multimodal
    from spinereg.transforms.itk import write_displacement

    p = case["paths"]
    segs = {"iseg": p["src_seg"], "dseg": p["dest_seg"]} if kind in ("seg", "imseg") else {}
    reg = register_multimodal(p["src"], p["dest"], param=param, **segs)
    path = out / "warp_src2dest.nii.gz"
    write_displacement(reg.warp_src2dest(), path, overwrite=True)
    info = {}
    for r in reg.records:
        rep = r.get("report", {})
        if "similarity_before" in rep:
            info["sim"] = f"{rep['similarity_before']:.3f}->{rep['similarity_after']:.3f}"
            info["used"] = rep.get("used")
    return [str(path)], info


def full_fov_pair(out: Path, seed: int = 0) -> dict:
    """A 256 x 256 x 22 axial pair (0.625 x 0.625 x 3.75 mm, t2s_uncropped resampled with scipy)
    and a known in-plane deformation of it, as :func:`make_case` writes them."""
    img = nib.load(str(data_root() / "t2s" / "t2s_uncropped.nii.gz"))
    data = np.asarray(img.dataobj, np.float32)
    zooms = np.array([0.625, 0.625, 3.75])
    lin = img.affine[:3, :3] / np.sqrt((img.affine[:3, :3] ** 2).sum(0)) * zooms
    aff = np.eye(4)
    aff[:3, :3] = lin
    centre = img.affine[:3, :3] @ ((np.array(data.shape) - 1) / 2) + img.affine[:3, 3]
    aff[:3, 3] = centre - lin @ ((np.array([256, 256, 22]) - 1) / 2)
    vox = (_world(aff, (256, 256, 22)) - img.affine[:3, 3]) @ np.linalg.inv(img.affine[:3, :3]).T
    full = ndimage.map_coordinates(data, [vox[..., k] for k in range(3)], order=1, mode="nearest")
    p = out / "fullfov.nii.gz"
    nib.save(nib.Nifti1Image(full.astype(np.float32), aff), str(p))
    seg = np.zeros(full.shape, np.float32)
    seg[96:160, 96:160, :] = 1.0  # the central 40 x 40 mm (the spine) is scored
    nib.save(nib.Nifti1Image(seg, aff), str(out / "fullfov_seg.nii.gz"))
    CASES["fullfov"] = (str(p), str(out / "fullfov_seg.nii.gz"))
    return make_case("fullfov", seed, out)


def time_command(args: list[str], repeats: int = 3) -> float:
    """Median wall time (s) of a whole ``spinereg`` command run from outside the process."""
    import subprocess

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([shutil.which("spinereg") or "spinereg", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def speed(repeats: int) -> None:
    """Image-only ``spinereg register`` on the 256 x 256 x 22 pair, whole command, beside
    ``spinereg --version`` and ANTs SyN on the same pair."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        case = full_fov_pair(out)
        coords = coordinate_images(case)
        p = case["paths"]
        base = time_command(["--version"], repeats)
        cmd = ["register", "-i", str(p["src"]), "-d", str(p["dest"]), "-o", str(out / "reg"), "--allow-fail"]
        t = time_command(cmd, repeats)
        s = score(case, coords, [str(out / "reg" / "warp_fullfov_0_src2fullfov_0_dest.nii.gz")])
        t0 = time.perf_counter()
        tf, _ = run_ants(case, out)
        ta = time.perf_counter() - t0
        sa = score(case, coords, tf)
        print(f"\n| 256x256x22 image-only | wall s (median of {repeats}) | central 40 mm mean / p95 mm |")
        print("|---|---|---|")
        print(f"| spinereg --version | {base:.2f} | |")
        print(f"| spinereg register (default) | {t:.2f} | {s['mean']:.3f} / {s['p95']:.3f} |")
        print(f"| ANTs SyN (in process) | {ta:.2f} | {sa['mean']:.3f} / {sa['p95']:.3f} |")
        print(f"| no registration | | {score(case, coords, [str(_identity(case, out))])['mean']:.3f} |")


def lumbar(seeds: list[int]) -> None:
    """Folding on the thoracolumbar independent phantom (T9-L1, 1 mm, the cord ending in the conus)
    registered to the full PAM50 with disc label 17 and the conus tip (60), default preset."""
    from spinereg.metrics.jacobian import determinant_map
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import register_to_template

    print("\n| lumbar seed | Jacobian min in the cord | folding template2anat % | folding anat2template % | "
          "cord error mean / p95 mm | s |")
    print("|---|---|---|---|---|---|")
    for seed in seeds:
        t0 = time.perf_counter()
        ph = make_independent_subject("thoracolumbar", seed=seed)
        reg = register_to_template(ph.image, ph.seg, ldisc=ph.labels("disc", (17, 60)), template="PAM50",
                                   contrast=ph.contrast)
        inv, fwd = reg.warp_template2anat(), reg.warp_anat2template()
        d = determinant_map(inv)
        folds = []
        for w in (inv, fwd):
            dw = determinant_map(w)
            dw = dw[np.isfinite(dw)]
            folds.append(100 * float(np.mean(dw <= 0)))
        err = ph.error(reg.template2anat)
        print(f"| {seed} | {float(np.nanmin(d[np.asarray(ph.seg.data) > 0])):.3f} | {folds[0]:.3f} | {folds[1]:.3f} | "
              f"{err['mean_mm']:.2f} / {err['p95_mm']:.2f} | {time.perf_counter() - t0:.0f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="t2,t1,t2s,mt1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="none,ants_syn,seg,imseg,im")
    ap.add_argument("--old", action="store_true", help="also the image-only default before (SCT's SyN step)")
    ap.add_argument("--speed", type=int, default=0, metavar="N",
                    help="only the 256x256x22 image-only timing, median of N whole commands")
    ap.add_argument("--lumbar", default="", metavar="SEEDS", help="only the lumbar conus folding table (e.g. 0,1,2)")
    args = ap.parse_args(argv)
    if args.lumbar:
        lumbar([int(v) for v in args.lumbar.split(",")])
        return 0
    if args.speed:
        speed(args.speed)
        return 0
    methods = args.methods.split(",")
    if args.old:
        methods += ["im_old"]
    print("| case | seed | field | method | cord mean mm | p95 mm | S-I true mm | S-I residual mm | similarity | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp)
                case = make_case(name, seed, out)
                coords = coordinate_images(case)
                check = score(case, coords, [str(case["paths"]["truth"])])
                assert check["mean"] < 1e-3, f"scoring does not reproduce the truth: {check}"
                prm = case["params"]
                field = f"{prm['scale_mm']} mm, {prm['rot_deg']} deg{' in-plane' if prm['thick'] else ''}"
                for meth in methods:
                    t0 = time.perf_counter()
                    mdir = out / meth
                    mdir.mkdir()
                    info: dict = {}
                    if meth == "none":
                        tf = []
                    elif meth == "ants_syn":
                        tf, info = run_ants(case, mdir)
                    else:
                        tf, info = run_spinereg(case, mdir, meth.split("_")[0], PRESETS[meth])
                    sec = time.perf_counter() - t0
                    s = score(case, coords, tf) if tf else score(case, coords, [str(_identity(case, mdir))])
                    sim = info.get("sim", "")
                    if info.get("used") is False:
                        sim += " (dropped)"
                    print(f"| {name} | {seed} | {field} | {meth} | {s['mean']:.3f} | {s['p95']:.3f} | "
                          f"{s['si_true']:.2f} | {s['si_err']:.3f} | {sim} | {sec:.1f} |", flush=True)
    return 0


def _identity(case: dict, out: Path) -> Path:
    p = out / "identity.nii.gz"
    img = nib.Nifti1Image(np.zeros(tuple(case["shape"]) + (1, 3), np.float32), case["affine"])
    img.header.set_intent("vector", (), name="")
    nib.save(img, str(p))
    return p


if __name__ == "__main__":
    sys.exit(main())
