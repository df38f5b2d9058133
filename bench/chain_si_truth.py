"""Does a link onto a thick-slice target find the S-I offset between the scans? (known truth)

A chain's thick-slice target (T2*w, EPI: 5-7.5 mm axial slices) is reached from the anatomical
image by a link registration, and the landmarks of the target's direct template registration are
carried through that link. Here the target is made from sct_testing_data's t2 itself: the subject
moved by a known rigid motion (a rotation about S-I, an in-plane translation and an S-I
translation), resampled onto 0.5 x 0.5 x 7.5 mm axial slices by averaging 15 planes per slab
(numpy/scipy only, not spinereg's resampling); its cord mask made the same way from t2's manual
mask. So the true link is known. ``spinereg register -i t2 -d TARGET --iseg --dseg`` (the chain's
default link with both segmentations) is scored at the target's cord voxels: S-I and in-plane
error of the link, beside the headers' (no registration).

Also printed, as a lead (not used by spinereg): the S-I offset that best matches the target's
cord area per slice with the anatomical cord's area along S-I, through the registered link
(correlation over 1 mm offsets): where it differs from 0, the link's S-I is off.

Usage: ``python bench/chain_si_truth.py [--out DIR]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

#: (name, S-I translation mm, rotation about S-I deg); in-plane translation (1.0, -1.5) mm each
CASES = (("si0", 0.0, 0.0), ("si+4", 4.0, 3.0), ("si-6", -6.0, -4.0), ("si+2.5", 2.5, 5.0),
         ("si+8", 8.0, -2.0), ("si-3", -3.0, 2.0))
DX, DZ, PLANES = 0.5, 7.5, 15


def _thick_target(src: nib.Nifti1Image, seg: nib.Nifti1Image, shift_z: float, rot_deg: float, out: Path,
                  name: str) -> tuple[np.ndarray, np.ndarray]:
    """Write ``name``.nii.gz and ``name``_seg.nii.gz; return (R, t): target world y = R x + t."""
    s_img, s_seg = np.asarray(src.dataobj, np.float32), np.asarray(seg.dataobj, np.float32)
    inv = np.linalg.inv(src.affine)
    ijk = np.argwhere(s_seg > 0.5)
    w = ijk @ src.affine[:3, :3].T + src.affine[:3, 3]
    lo, hi = w.min(0) - [12, 12, 0], w.max(0) + [12, 12, 0]
    nx, ny, nz = int((hi[0] - lo[0]) / DX), int((hi[1] - lo[1]) / DX), int((hi[2] - lo[2] - 4) / DZ)
    a = np.deg2rad(rot_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    t = np.array([1.0, -1.5, shift_z])
    aff = np.diag([DX, DX, DZ, 1.0])
    aff[:3, 3] = [lo[0], lo[1], lo[2] + 2 + DZ / 2]
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    img, msk = np.zeros((nx, ny, nz), np.float32), np.zeros((nx, ny, nz), np.float32)
    for k in range(nz):
        for sub in np.linspace(-DZ / 2 + DZ / PLANES / 2, DZ / 2 - DZ / PLANES / 2, PLANES):
            y = np.stack([ii * DX + aff[0, 3], jj * DX + aff[1, 3], np.full(ii.shape, aff[2, 3] + k * DZ + sub)],
                         -1).reshape(-1, 3)
            v = ((y - t) @ rot) @ inv[:3, :3].T + inv[:3, 3]  # x = R^T (y - t), then t2's voxels
            img[..., k] += map_coordinates(s_img, v.T, order=1, cval=0).reshape(ii.shape) / PLANES
            msk[..., k] += map_coordinates(s_seg, v.T, order=1, cval=0).reshape(ii.shape) / PLANES
    nib.save(nib.Nifti1Image(img, aff), str(out / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image((msk > 0.5).astype(np.uint8), aff), str(out / f"{name}_seg.nii.gz"))
    return rot, t


def _csa_offset(target_seg, to_anat, anat_seg) -> tuple[float, float, int]:
    """Best S-I offset (mm), its correlation and the slices used: target cord area per slice
    against the anatomical cord's area in a slab of the slice's thickness along world S-I."""
    m = np.asarray(target_seg.data) > 0.5
    zooms = target_seg.grid.zooms
    aw = anat_seg.grid.voxel_to_world(np.argwhere(np.asarray(anat_seg.data) > 0.5).astype(float))
    va = float(np.prod(anat_seg.grid.zooms[:3]))
    area, qz = [], []
    for k in range(m.shape[2]):
        if m[:, :, k].any():
            c = np.argwhere(m[:, :, k]).mean(0)
            area.append(m[:, :, k].sum() * zooms[0] * zooms[1])
            qz.append(to_anat.map(target_seg.grid.voxel_to_world(np.array([[c[0], c[1], k]], float)))[0, 2])
    area, qz = np.asarray(area), np.asarray(qz)
    best = (-2.0, 0.0, 0)
    for off in np.arange(-20, 20.5, 1.0):
        a = np.array([(np.abs(aw[:, 2] - (z + off)) <= zooms[2] / 2).sum() * va / zooms[2] for z in qz])
        ok = a > 0
        if ok.sum() >= 3:
            r = float(np.corrcoef(area[ok], a[ok])[0, 1])
            if r > best[0]:
                best = (r, float(off), int(ok.sum()))
    return best[1], best[0], best[2]


def main(argv: list[str] | None = None) -> int:
    from spinereg.io.image import load_image
    from spinereg.transforms.itk import load_transform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("SPINEREG_DATA", root.parent / "shared" / "data")) / "sct_testing_data" / "t2"
    out = Path(args.out or tempfile.mkdtemp(prefix="chain_si_truth_"))
    out.mkdir(parents=True, exist_ok=True)
    src, seg = nib.load(str(data / "t2.nii.gz")), nib.load(str(data / "t2_seg-manual.nii.gz"))
    anat_seg = load_image(str(data / "t2_seg-manual.nii.gz"))
    print("| target | true S-I (mm) | headers: S-I / in-plane error (mm) | registered link: S-I / in-plane error (mm) "
          "| cord-area S-I offset (r, slices) |")
    print("|---|---|---|---|---|")
    for name, dz, rot_deg in CASES:
        rot, t = _thick_target(src, seg, dz, rot_deg, out, name)
        reg = out / f"reg_{name}"
        subprocess.run(["spinereg", "register", "-i", str(data / "t2.nii.gz"), "-d", str(out / f"{name}.nii.gz"),
                        "--iseg", str(data / "t2_seg-manual.nii.gz"), "--dseg", str(out / f"{name}_seg.nii.gz"),
                        "-o", str(reg), "--overwrite", "--allow-fail"], check=True, capture_output=True)
        to_anat = load_transform(str(reg / f"warp_t22{name}.nii.gz"))  # target points -> t2 points
        tseg = load_image(str(out / f"{name}_seg.nii.gz"))
        y = tseg.grid.voxel_to_world(np.argwhere(np.asarray(tseg.data) > 0.5).astype(float))
        true_x = (y - t) @ rot
        e_reg, e_hdr = to_anat.map(y) - true_x, y - true_x
        off, r, n = _csa_offset(tseg, to_anat, anat_seg)
        print(f"| {name} | {dz:+.1f} | {e_hdr[:, 2].mean():+.2f} / {np.linalg.norm(e_hdr[:, :2], axis=1).mean():.2f} | "
              f"{e_reg[:, 2].mean():+.2f} / {np.linalg.norm(e_reg[:, :2], axis=1).mean():.2f} | "
              f"{off:+.0f} ({r:.2f}, {n}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
