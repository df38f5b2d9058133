"""The two PAM50 layouts the code must handle, built from the reference data for tests.

``mirror``: PAM50 without the intensity templates (PAM50_t1/t2/t2s), as the data mirror here.
``full``: the full release, with stand-ins for the intensity templates made from
PAM50_small_t2 (a real T2 average, 1 x 1 x 2 mm, old PAM50 space) moved into the current PAM50
space (+ tissue_contrast.SMALL_TO_PAM50_MM) and resampled onto PAM50's 0.5 mm grid: ``t2`` is
that image, ``t2s`` the same, ``t1`` its inverse (CSF dark). Every other file is a symbolic link
to the reference copy. Both layouts are built whatever the reference copy holds, so the suite
exercises both code paths with the mirror and with the full release.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

INTENSITY = ("PAM50_t1.nii.gz", "PAM50_t2.nii.gz", "PAM50_t2s.nii.gz")


def _link_tree(src: Path, dest: Path, skip: tuple[str, ...] = ()) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or path.name in skip:
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.resolve(), out)


def stand_in_t2(pam50: Path) -> tuple[np.ndarray, np.ndarray]:
    """PAM50_small_t2 moved into the current PAM50 space, on PAM50's grid (uint16), and the affine.

    Both grids are axis-aligned with the same orientation, so the trilinear resampling is done
    one axis at a time."""
    from spinereg.phantom.tissue_contrast import average_t2

    ref = nib.load(str(pam50 / "template" / "PAM50_cord.nii.gz"))
    data, sgrid, _ = average_t2()
    lin, slin = ref.affine[:3, :3], sgrid.affine[:3, :3]
    if not (np.allclose(lin, np.diag(np.diag(lin))) and np.allclose(slin, np.diag(np.diag(slin)))):
        raise ValueError("the stand-in needs axis-aligned grids")
    out = np.asarray(data, np.float32)
    for a, n in enumerate(ref.shape[:3]):
        world = ref.affine[a, a] * np.arange(n) + ref.affine[a, 3]
        pos = (world - sgrid.affine[a, 3]) / sgrid.affine[a, a]
        inside = (pos >= -0.5) & (pos <= out.shape[a] - 0.5)
        pos = np.clip(pos, 0, out.shape[a] - 1)
        i0 = np.minimum(np.floor(pos).astype(int), out.shape[a] - 2)
        w = (pos - i0).astype(np.float32)
        shape = [-1 if b == a else 1 for b in range(3)]
        out = (np.take(out, i0, axis=a) * (1 - w.reshape(shape)) + np.take(out, i0 + 1, axis=a) * w.reshape(shape)) \
            * inside.reshape(shape)
    return np.clip(out * 1000, 0, 65535).astype(np.uint16), ref.affine


def build_layout(pam50: Path, dest: Path, kind: str) -> Path:
    """A PAM50 folder of ``kind`` (``mirror`` or ``full``) at ``dest`` (see the module docstring)."""
    _link_tree(pam50, dest, skip=INTENSITY)
    if kind == "full":
        t2, aff = stand_in_t2(pam50)
        t1 = (t2.max() - t2).astype(np.uint16) * (t2 > 0)
        old = nib.openers.Opener.default_compresslevel
        nib.openers.Opener.default_compresslevel = 1
        try:
            for name, data in (("PAM50_t2.nii.gz", t2), ("PAM50_t1.nii.gz", t1)):
                nib.save(nib.Nifti1Image(data, aff), str(dest / "template" / name))
        finally:
            nib.openers.Opener.default_compresslevel = old
        os.symlink(dest / "template" / "PAM50_t2.nii.gz", dest / "template" / "PAM50_t2s.nii.gz")
    return dest
