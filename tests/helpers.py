"""Shared test utilities: synthetic images, every voxel orientation, oblique headers, CLI runs.

Nothing here uses spinereg's own reorientation: :func:`reoriented` permutes/flips with plain
numpy so that tests of :func:`spinereg.io.orientation.reorient` compare against an independent
implementation.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.transforms.base import Transform

#: (permutation, flips) for all 48 voxel orientations: 6 axis orders x 8 flip combinations.
ORIENTATIONS: list[tuple[tuple[int, int, int], tuple[bool, bool, bool]]] = [
    (perm, flips)
    for perm in itertools.permutations(range(3))
    for flips in itertools.product((False, True), repeat=3)
]

SYNTH_SHAPE = (20, 24, 18)
SYNTH_ZOOMS = (1.0, 1.2, 1.5)


def orientation_id(o: tuple[tuple[int, int, int], tuple[bool, bool, bool]]) -> str:
    perm, flips = o
    return "p" + "".join(map(str, perm)) + "f" + "".join("1" if f else "0" for f in flips)


def reorder_matrix(shape: tuple[int, ...], perm, flips) -> tuple[np.ndarray, tuple[int, int, int]]:
    """4x4 matrix taking new voxel indices to old ones, and the new shape.

    New axis ``j`` is old axis ``perm[j]``, reversed when ``flips[j]``.
    """
    new_shape = tuple(int(shape[p]) for p in perm)
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    for j, (p, f) in enumerate(zip(perm, flips, strict=True)):
        if f:
            m[p, j] = -1.0
            m[p, 3] = new_shape[j] - 1
        else:
            m[p, j] = 1.0
    return m, new_shape


def reoriented(img: Image, perm, flips) -> Image:
    """The same world image with voxel axes permuted by ``perm`` and reversed where ``flips``."""
    m, _ = reorder_matrix(img.shape[:3], perm, flips)
    data = np.transpose(img.data, tuple(perm) + tuple(range(3, img.data.ndim)))
    for j, f in enumerate(flips):
        if f:
            data = np.flip(data, axis=j)
    return Image(np.ascontiguousarray(data), img.affine @ m, img.header)


def reoriented_grid(grid: Grid, perm, flips) -> Grid:
    m, shape = reorder_matrix(grid.shape, perm, flips)
    return Grid(shape, grid.affine @ m)


def rotation(angles_deg) -> np.ndarray:
    """3x3 rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotated_grid(grid: Grid, angles_deg, shape=None, zooms=None, shift_vox=(0.0, 0.0, 0.0)) -> Grid:
    """A grid rotated about ``grid``'s centre (world rotation), optionally resized and shifted.

    ``shape`` and ``zooms`` default to ``grid``'s; the new grid is centred where ``grid`` is, plus
    ``shift_vox`` voxels of the new grid.
    """
    shape = tuple(grid.shape) if shape is None else tuple(shape)
    lin = grid.affine[:3, :3]
    if zooms is not None:
        lin = lin / grid.zooms * np.asarray(zooms, dtype=float)
    lin = rotation(angles_deg) @ lin
    aff = np.eye(4)
    aff[:3, :3] = lin
    centre_vox = (np.asarray(shape) - 1) / 2.0 + np.asarray(shift_vox, dtype=float)
    aff[:3, 3] = grid.center_world() - lin @ centre_vox
    return Grid(shape, aff)


def oblique(img: Image, angles_deg, interp: str = "spline") -> Image:
    """An image with an oblique header (the grid rotated about its centre) and the same world
    content: the data are resampled with spinereg onto the rotated grid."""
    from spinereg.transforms.apply import resample

    grid = rotated_grid(img.grid, angles_deg)
    return resample(img, grid, interp=interp)


# -- synthetic content --------------------------------------------------------------------------
def synth_grid(shape=SYNTH_SHAPE, zooms=SYNTH_ZOOMS, origin=(-9.5, -13.0, -12.0)) -> Grid:
    aff = np.diag(list(zooms) + [1.0])
    aff[:3, 3] = origin
    return Grid(shape, aff)


def blob(points: np.ndarray) -> np.ndarray:
    """Smooth, asymmetric world function: an off-centre Gaussian, a second smaller one and a ramp.

    Any flip or axis swap of the voxel data changes the values at given world points.
    """
    x, y, z = np.asarray(points, dtype=float).T
    g1 = 100.0 * np.exp(-((x - 2.0) ** 2 / 18.0 + (y + 1.5) ** 2 / 30.0 + (z - 1.0) ** 2 / 40.0))
    g2 = 40.0 * np.exp(-((x + 4.0) ** 2 + (y - 5.0) ** 2 + (z + 4.0) ** 2) / 12.0)
    return g1 + g2 + 0.8 * x + 0.5 * y - 0.3 * z + 30.0


def analytic_image(f: Callable[[np.ndarray], np.ndarray], grid: Grid, dtype=np.float32) -> Image:
    """Image on ``grid`` holding ``f`` sampled at its voxel centres (world coordinates)."""
    vals = f(grid.world_coords()).reshape(grid.shape)
    img = Image(vals.astype(dtype), grid.affine)
    img.header.set_data_dtype(np.dtype(dtype))
    img.header.set_xyzt_units("mm", "sec")
    return img


def synth_image(grid: Grid | None = None) -> Image:
    return analytic_image(blob, synth_grid() if grid is None else grid)


def synth_labels(grid: Grid | None = None) -> Image:
    """Single-voxel point labels (values 1..6) at asymmetric places near the centre."""
    grid = synth_grid() if grid is None else grid
    data = np.zeros(grid.shape, np.int16)
    for v, ijk in enumerate([(6, 9, 7), (12, 14, 9), (9, 8, 10), (11, 13, 6), (7, 15, 8), (13, 10, 11)], 1):
        data[ijk] = v
    return Image(data, grid.affine)


class SmoothWarp(Transform):
    """Analytic smooth, invertible pull map ``x + a * sin(x / L)`` (mm), for building fields."""

    def __init__(self, amplitude=(1.5, -1.0, 0.8), length=(6.0, 7.0, 9.0)):
        self.a = np.asarray(amplitude, dtype=float)
        self.length = np.asarray(length, dtype=float)

    def map(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=float)
        return p + self.a * np.sin(p[:, [1, 2, 0]] / self.length)

    def inverse(self) -> Transform:  # pragma: no cover - not needed by the tests
        raise NotImplementedError


# -- files and the CLI -----------------------------------------------------------------------------
def save(img: Image, path: Path) -> Path:
    nimg = img.to_nifti()
    nib.save(nimg, str(path))
    return path


def folder_listing(folder: Path) -> set[str]:
    """All names in ``folder``, hidden ones (temporary ``.*.part*`` files) included."""
    return set(os.listdir(folder)) if folder.is_dir() else set()
