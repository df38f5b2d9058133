"""ANTs-backed registration steps (translation, rigid, affine, syn, bsplinesyn), in-process.

antsRegistration is called through antspyx with an explicit argument list, so the step language
maps one-to-one onto ANTs options (metric, iterations, shrink, smoothing, gradient step,
restricted deformation). Both images are given on the same grid (the fixed grid); the result is
a pull transform on that grid (fixed points -> moving points).

The compiled ANTs library is loaded on its own (:mod:`spinereg.register.ants_lib`): antspyx's
Python package, with its learning and plotting modules, is never imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from spinereg.errors import SpineregError
from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.io.orientation import axcodes, positive_code, reorient
from spinereg.io.tempdirs import temporary_directory
from spinereg.register.ants_lib import LibImage, ants_registration, read_affine_2d
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.displacement import DisplacementField
from spinereg.transforms.itk import read_affine, read_displacement

if TYPE_CHECKING:
    from collections.abc import Callable

    from spinereg.transforms.base import Transform

_FLIP = np.diag([-1.0, -1.0, 1.0])
_LINEAR = {"translation": "Translation", "rigid": "Rigid", "affine": "Affine"}
_METRIC_PARAM = {"MeanSquares": "1,0", "CC": "1,4", "MI": "1,32"}


def _si_axis(grid: Grid) -> int:
    """The voxel axis closest to S-I (the last one on ``register``'s grid, which moves S-I last)."""
    return int(np.argmax(np.abs(grid.affine[2, :3]) / grid.zooms))


def _padded_slices(grid: Grid, n: int, axis: int) -> Grid:
    """``grid`` with ``n`` more slices at both ends of voxel axis ``axis``."""
    aff = grid.affine.copy()
    aff[:3, 3] -= n * aff[:3, axis]
    shape = list(grid.shape)
    shape[axis] += 2 * n
    return Grid(tuple(shape), aff)


def to_ants(data: np.ndarray, grid: Grid) -> LibImage:
    """An ANTs image (LPS physical space) with ``grid``'s geometry."""
    zooms = grid.zooms
    direction = _FLIP @ (grid.affine[:3, :3] / zooms)
    origin = _FLIP @ grid.affine[:3, 3]
    return LibImage(np.asarray(data, dtype=np.float32), origin=tuple(origin), spacing=tuple(zooms),
                    direction=direction)


def _get(step: Any, key: str, default: Any):
    return getattr(step, key, default) if not isinstance(step, dict) else step.get(key, default)


def ants_step(fixed: np.ndarray, moving: np.ndarray, grid: Grid, step: Any,
              fixed_mask: np.ndarray | None = None) -> DisplacementField | AffineTransform:
    """Run one ANTs stage (``slicewise=1``: one 2D registration per axial slice, see
    :func:`ants_slicewise`); ``fixed`` and ``moving`` are arrays on ``grid``.

    ``step`` provides ``algo``, ``metric``, ``iter``, ``shrink``, ``smooth`` (mm), ``gradStep``
    (``grad_step``), ``deformation`` ("1x1x0") and ``spline_distance`` (mm, bsplinesyn).
    """
    stage = ants_slicewise if int(_get(step, "slicewise", 0) or 0) == 1 else _ants_3d
    # every axis flipped to point to R, A or S, the order kept (slicewise=1 slices along the last
    # axis; deformation=1x1x0 names axes)
    return _in_orientation(positive_code(grid.affine), fixed, moving, grid, fixed_mask,
                           lambda f, m, g, k: stage(f, m, g, step, k))


def _in_orientation(code: str, fixed: np.ndarray, moving: np.ndarray, grid: Grid, fixed_mask: np.ndarray | None,
                    run: Callable[[np.ndarray, np.ndarray, Grid, np.ndarray | None], Transform]) -> Transform:
    """``run`` on the arrays with their voxel axes reordered / flipped to orientation ``code`` (the
    same world points), its displacement field put back on ``grid``. ANTs works from the grid's
    first voxel: a rigid MI step (field map magnitude onto an EPI) on the same images with one
    voxel axis flipped came out 0.13 mm / 4 Hz elsewhere (session 35). With every axis pointing
    the same way, the result does not depend on how the voxels are flipped."""
    cur = axcodes(grid.affine)
    if cur == code:
        return run(fixed, moving, grid, fixed_mask)

    def turned(a: np.ndarray) -> Image:
        return reorient(Image(np.asarray(a, np.float32), grid.affine), code)

    f, m = turned(fixed), turned(moving)
    k = None if fixed_mask is None else turned(fixed_mask).data
    out = run(f.data, m.data, Grid(f.shape[:3], f.affine), k)
    if isinstance(out, DisplacementField):  # world vectors: only their voxels move
        return DisplacementField(grid, reorient(Image(np.asarray(out.data), out.grid.affine), cur).data)
    return out


def _ants_3d(fixed: np.ndarray, moving: np.ndarray, grid: Grid, step: Any,
             fixed_mask: np.ndarray | None) -> DisplacementField | AffineTransform:
    """One 3D ANTs stage on ``grid`` (see :func:`ants_step`)."""
    algo = _get(step, "algo", "syn")
    metric = _get(step, "metric", "MeanSquares")
    iters = int(_get(step, "iter", 10))
    shrink = int(_get(step, "shrink", 1))
    smooth = float(_get(step, "smooth", 0))
    grad = float(_get(step, "gradStep", _get(step, "grad_step", 0.5)))
    deformation = str(_get(step, "deformation", "1x1x0"))
    spline = float(_get(step, "spline_distance", 5.0))
    m_img = to_ants(moving, grid)
    f_grid = grid
    pad = int(_get(step, "pad", 0))
    if algo in ("syn", "bsplinesyn") and iters > 0 and pad > 0:
        # ``pad``: SCT pads the destination with 5 empty slices at both ends of the slice axis
        # (sct_register_multimodal -z 5) "because ants doesn't deform the extremities": SyN holds
        # the field at zero on the border of its domain, which on mt1's 5 slices froze 2 of them
        # (session 50: mt0 -> mt1 with SCT's syn test steps, NCC with mt1 in the cord 0.827 -> 0.875,
        # SCT's own result 0.881; tests/test_ants_syn_sct.py).
        # The moving image keeps its own domain (outside it ANTs leaves the metric out, as in SCT).
        # Not by default: on the articulated-spine phantom (tests/test_articulated_registration.py)
        # pad=5 raised the rigid-bone SyN pipeline's cord error 0.30 -> 0.50 mm; the SCT presets
        # (multimodal_default, multimodal_seg) set it.
        # Along the voxel axis closest to S-I (SCT pads its z after reorienting to RPI; before
        # session 51 the third voxel axis, S-I on ``register``'s grid but not on every grid).
        ax = _si_axis(grid)
        widths = [(pad, pad) if a == ax else (0, 0) for a in range(3)]
        f_grid = _padded_slices(grid, pad, ax)
        fixed = np.pad(np.asarray(fixed, np.float32), widths)
        if fixed_mask is not None:
            fixed_mask = np.pad(np.asarray(fixed_mask) > 0, widths)
    f_img = to_ants(fixed, f_grid)
    with temporary_directory("spinereg-ants-") as tmp:
        prefix = os.path.join(tmp, "s")
        args = ["-d", "3", "--float", "1", "--random-seed", "1",
                "-m", f"{metric}[{f_img.ptr},{m_img.ptr},{_METRIC_PARAM.get(metric, '1,0')}]"]
        if algo in _LINEAR:
            args += ["-t", f"{_LINEAR[algo]}[{grad}]"]
        elif algo == "syn":
            args += ["-t", f"SyN[{grad},3,0]", "-g", deformation]
        elif algo == "bsplinesyn":
            args += ["-t", f"BSplineSyN[{grad},{spline},0,3]", "-g", deformation]
        else:
            raise ValueError(f"not an ANTs algorithm: {algo}")
        args += ["-c", f"[{iters},1e-6,10]", "-f", str(shrink), "-s", f"{smooth}mm", "-o", prefix]
        if fixed_mask is not None:
            mask_img = to_ants((np.asarray(fixed_mask) > 0).astype(np.float32), f_grid)
            args += ["-x", mask_img.ptr]
        code = ants_registration(args)
        if code != 0:
            raise SpineregError(f"antsRegistration failed (exit {code}) in step algo={algo}", None,
                                "check the inputs overlap after the previous steps; try type=seg")
        if algo in _LINEAR:
            return read_affine(Path(prefix + "0GenericAffine.mat"))
        field = read_displacement(Path(prefix + "0Warp.nii.gz"))
    if field.grid.shape != tuple(grid.shape):
        # padded slices, or shrink > 1 (ANTs's last level, hence its warp, is on the shrunk grid:
        # same extent, coarser voxels; before, any shrink=2 SyN step, as SCT's mt0 syn test, raised
        # ValueError): interpolated onto ours as antsApplyTransforms does (trilinear, outer node's
        # value within half a voxel)
        return DisplacementField.from_transform(field, grid)
    # resample onto our grid object exactly (same geometry, avoids float drift in the header)
    return DisplacementField(grid, field.data)


def _args_2d(f_img: LibImage, m_img: LibImage, step: Any, prefix: str,
             mask_img: LibImage | None = None) -> list[str]:
    algo = _get(step, "algo", "syn")
    metric = _get(step, "metric", "MeanSquares")
    grad = float(_get(step, "gradStep", _get(step, "grad_step", 0.5)))
    args = ["-d", "2", "--float", "1", "--random-seed", "1",
            "-m", f"{metric}[{f_img.ptr},{m_img.ptr},{_METRIC_PARAM.get(metric, '1,0')}]"]
    if algo in _LINEAR:
        args += ["-t", f"{_LINEAR[algo]}[{grad}]"]
    elif algo == "syn":
        args += ["-t", f"SyN[{grad},3,0]"]
    else:
        args += ["-t", f"BSplineSyN[{grad},{float(_get(step, 'spline_distance', 5.0))},0,3]"]
    args += ["-c", f"[{int(_get(step, 'iter', 10))},1e-6,10]", "-f", str(int(_get(step, "shrink", 1))),
             "-s", f"{float(_get(step, 'smooth', 0))}mm", "-o", prefix]
    if mask_img is not None:
        args += ["-x", mask_img.ptr]
    return args


def ants_slicewise(fixed: np.ndarray, moving: np.ndarray, grid: Grid, step: Any,
                   fixed_mask: np.ndarray | None = None) -> DisplacementField:
    """SCT's ``slicewise=1``: an independent 2D ANTs registration in each axial slice (the last
    voxel axis), assembled into one in-plane pull field on ``grid``. Slices where either image is
    empty keep a zero displacement."""
    zooms = grid.zooms
    nx, ny, nz = grid.shape
    disp = np.zeros((nx, ny, nz, 2), np.float32)  # in-plane mm along voxel axes i, j
    for k in range(nz):
        f2, m2 = np.asarray(fixed[:, :, k], np.float32), np.asarray(moving[:, :, k], np.float32)
        if not (np.any(f2) and np.any(m2)):
            continue
        f_img = LibImage(f2, spacing=(float(zooms[0]), float(zooms[1])))
        m_img = LibImage(m2, spacing=(float(zooms[0]), float(zooms[1])))
        mask_img = None
        if fixed_mask is not None and np.any(fixed_mask[:, :, k]):
            mask_img = LibImage((np.asarray(fixed_mask[:, :, k]) > 0).astype(np.float32),
                                spacing=(float(zooms[0]), float(zooms[1])))
        with temporary_directory("spinereg-ants2d-") as tmp:
            prefix = os.path.join(tmp, "s")
            code = ants_registration(_args_2d(f_img, m_img, step, prefix, mask_img))
            if code != 0:
                raise SpineregError(f"antsRegistration (2D, slice {k}) failed (exit {code})", None,
                                    "check that both images have the cord in this slice")
            if _get(step, "algo", "syn") in _LINEAR:
                a, t, c = read_affine_2d(prefix + "0GenericAffine.mat")
                ii, jj = np.meshgrid(np.arange(nx) * zooms[0], np.arange(ny) * zooms[1], indexing="ij")
                pts = np.stack([ii.ravel(), jj.ravel()], -1)
                moved = (pts - c) @ a.T + t + c  # ITK: A (x - c) + t + c
                disp[:, :, k] = (moved - pts).reshape(nx, ny, 2)
            else:
                warp = nib.load(prefix + "0Warp.nii.gz")
                w = np.asarray(warp.dataobj, dtype=np.float32)
                if w.shape[:2] != (nx, ny):  # shrink > 1: the warp is on the shrunk 2D grid
                    w = _upsample_2d(w.reshape(w.shape[0], w.shape[1], 2), warp.affine, nx, ny, zooms)
                disp[:, :, k] = w.reshape(nx, ny, 2)
    a3 = grid.affine[:3, :3] / zooms
    data = disp[..., 0:1] * a3[:, 0].astype(np.float32) + disp[..., 1:2] * a3[:, 1].astype(np.float32)
    return DisplacementField(grid, data)


def _upsample_2d(w: np.ndarray, affine: np.ndarray, nx: int, ny: int, zooms: np.ndarray) -> np.ndarray:
    """A 2D ANTs warp ``w`` (X, Y, 2) on a shrunk grid (NIfTI ``affine``, RAS; the 2D LPS frame
    of :func:`ants_slicewise` has its origin at 0 and unit directions) sampled bilinearly at the
    (nx, ny) voxel centres of the full slice, outer node's value beyond them (as ITK)."""
    ii, jj = np.meshgrid(np.arange(nx) * zooms[0], np.arange(ny) * zooms[1], indexing="ij")
    pts = np.stack([ii.ravel(), jj.ravel()], -1)  # LPS physical points of the full slice
    a = np.asarray(affine, float)
    lin = (_FLIP @ a[:3, :3])[:2, :2]  # NIfTI stores RAS: back to the LPS frame ANTs used
    origin = (_FLIP @ a[:3, 3])[:2]
    ij = np.linalg.solve(lin, (pts - origin).T)
    out = [ndimage.map_coordinates(w[..., d], ij, order=1, mode="nearest") for d in range(2)]
    return np.stack(out, -1).reshape(nx, ny, 2).astype(np.float32)
