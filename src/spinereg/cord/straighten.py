"""Straightening of the spinal cord: the straight space and the fields between it and the image.

Straight space (world RAS+ mm, its own frame): a point ``(x, y, z)`` of the straight space is the
curved-space point ``c(s) + a * binormal(s) + b * normal(s)`` with

* ``a = x - x0`` (toward subject right, +x), ``b = y - y0`` (toward anterior, +y),
* ``s = z`` by default (arc length along the cord, 0 at the inferior end), or ``s = f^-1(z)``
  when a monotone map ``z_of_s = f`` (arc length -> target z, e.g. a template's z) is given.

The centre line is therefore ``x = x0, y = y0`` (``(0, 0)`` by default) and right/left,
anterior/posterior are preserved (the frame is right-handed and equals the world axes for a
straight vertical cord; see :mod:`spinereg.cord.centerline`).

Fields (pull convention, as SCT/ANTs ``warp_A2B``):

* ``curve2straight`` lives on the straight grid and maps straight points to curved points:
  ``apply_transforms(img, straight_grid, [curve2straight])`` straightens an image;
* ``straight2curve`` lives on the curved image's grid and maps each curved voxel to its straight
  point (closest centerline point -> ``s``, in-plane offsets ``a, b``).

Far from the cord (beyond the radius of curvature, typically > 30 mm) the closest centerline point
can be ambiguous; ``straight2curve`` is then approximate but always finite. Fields are cached per
input signature (centerline samples, both grids, z map), in memory and optionally on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinereg.cord.centerline import Centerline, si_axis
from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.transforms.apply import apply_transforms
from spinereg.transforms.displacement import DisplacementField

log = logging.getLogger(__name__)

_CACHE_VERSION = b"spinereg-straighten-1"
_MEMO: OrderedDict[str, tuple[DisplacementField, DisplacementField]] = OrderedDict()
_MEMO_SIZE = 4


# ---------------------------------------------------------------------------------------------
# z mapping
# ---------------------------------------------------------------------------------------------
class ZMap:
    """Monotone map arc length ``s`` -> straight ``z`` (identity by default), with its inverse.

    ``z_of_s`` is sampled on ``[0, length]`` and linearly extended beyond with the end slopes.
    """

    def __init__(self, length: float, z_of_s: Callable[[np.ndarray], np.ndarray] | None = None,
                 step_mm: float = 0.25):
        self.length = float(length)
        n = max(2, int(np.ceil(self.length / step_mm)) + 1)
        self.s = np.linspace(0.0, self.length, n)
        if z_of_s is None:
            self.z = self.s.copy()
            self.identity = True
        else:
            z = np.asarray(z_of_s(self.s.copy()), dtype=float).ravel()
            if z.shape != self.s.shape or not np.all(np.isfinite(z)):
                raise InputError("z_of_s must return one finite z per arc length", None,
                                 "give a vectorised function mapping arc length (mm) to z (mm)")
            if not np.all(np.diff(z) > 0):
                raise InputError("z_of_s must increase strictly with arc length", None,
                                 "give a monotone increasing arc length -> template z map")
            self.z = z
            self.identity = False
        self.slope0 = (self.z[1] - self.z[0]) / (self.s[1] - self.s[0])
        self.slope1 = (self.z[-1] - self.z[-2]) / (self.s[-1] - self.s[-2])

    def forward(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, float)
        if self.identity:
            return s.copy()
        z = np.interp(s, self.s, self.z)
        z = np.where(s < 0, self.z[0] + s * self.slope0, z)
        return np.where(s > self.length, self.z[-1] + (s - self.length) * self.slope1, z)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, float)
        if self.identity:
            return z.copy()
        s = np.interp(z, self.z, self.s)
        s = np.where(z < self.z[0], (z - self.z[0]) / self.slope0, s)
        return np.where(z > self.z[-1], self.length + (z - self.z[-1]) / self.slope1, s)

    def signature(self) -> bytes:
        return b"id" if self.identity else np.round(self.z, 6).tobytes()


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------
@dataclass
class StraighteningResult:
    """Centerline, straight grid, both fields and quality figures of a straightening."""

    centerline: Centerline
    straight_grid: Grid
    curve2straight: DisplacementField
    straight2curve: DisplacementField
    metrics: dict = field(default_factory=dict)
    zmap: ZMap | None = None
    center_xy: tuple[float, float] = (0.0, 0.0)

    def to_straight(self, img: Image, interp: str = "linear") -> Image:
        """Straighten an image of the curved space."""
        return apply_transforms(img, self.straight_grid, [self.curve2straight], interp)

    def to_curved(self, img: Image, interp: str = "linear") -> Image:
        """Bring an image of the straight space back onto the curved grid."""
        return apply_transforms(img, self.straight2curve.grid, [self.straight2curve], interp)

    def save(self, folder: str | Path, overwrite: bool = False) -> dict[str, Path]:
        """Write ``warp_curve2straight``, ``warp_straight2curve`` (ITK/ANTs, as SCT names them),
        ``straight_ref`` (an empty image on the straight grid) and ``centerline.json``."""
        import json

        import nibabel as nib

        from spinereg.io.image import atomic_write, save_image
        from spinereg.transforms.itk import write_displacement

        d = Path(folder)
        out = {
            "warp_curve2straight": write_displacement(
                self.curve2straight, d / "warp_curve2straight.nii.gz", overwrite),
            "warp_straight2curve": write_displacement(
                self.straight2curve, d / "warp_straight2curve.nii.gz", overwrite),
        }
        ref = nib.Nifti1Image(np.zeros(self.straight_grid.shape, np.uint8), self.straight_grid.affine)
        out["straight_ref"] = save_image(ref, d / "straight_ref.nii.gz", overwrite=overwrite)
        text = json.dumps({"centerline": self.centerline.to_dict(), "metrics": self.metrics})
        out["centerline"] = atomic_write(d / "centerline.json",
                                         lambda tmp: Path(tmp).write_text(text), overwrite)
        return out


# ---------------------------------------------------------------------------------------------
# grids and fields
# ---------------------------------------------------------------------------------------------
def _voxel_size(curved: Grid, voxel_size: float | Sequence[float] | None) -> np.ndarray:
    if voxel_size is not None:
        v = np.broadcast_to(np.asarray(voxel_size, float), (3,)).copy()
        if np.any(v <= 0) or not np.all(np.isfinite(v)):
            raise InputError(f"invalid voxel size {voxel_size}", None, "give positive sizes in mm")
        return v
    ax = si_axis(curved.affine)
    z = curved.zooms
    inplane = float(np.min(np.delete(z, ax)))
    return np.array([inplane, inplane, float(z[ax])])


#: the most voxels a straight grid may hold: its two warp fields take 24 bytes a voxel (--voxel-size
#: 0.05 mm on sct_testing_data t2 asked for 1.44e9 and ran for minutes before session 48; PAM50's
#: own straight 0.5 mm grid holds 2e7)
MAX_STRAIGHT_VOXELS = 1.5e8


def straight_grid_for(
    centerline: Centerline,
    curved: Grid,
    voxel_size: float | Sequence[float] | None = None,
    *,
    half_width_mm: float | Sequence[float] | None = None,
    max_radius_mm: float = 40.0,
    z_of_s: Callable[[np.ndarray], np.ndarray] | None = None,
    center_xy: Sequence[float] = (0.0, 0.0),
) -> Grid:
    """The straight reference grid (LAS voxel axes, as SCT's RPI straight images).

    Voxel size: ``voxel_size`` (one value or three, mm) or the input's in-plane resolution and
    S-I slice spacing. In-plane extent: ``half_width_mm`` around the centre line, by default
    what covers the curved image's field of view, capped at ``max_radius_mm``. The centre line
    falls on voxel centres; z runs from ``f(0)`` to ``f(length)`` (0 to length by default).
    """
    vs = _voxel_size(curved, voxel_size)
    zmap = ZMap(centerline.length, z_of_s)
    if half_width_mm is None:
        lc = centerline.local_coords(curved.voxel_to_world(_strided_voxels(curved, 40_000)))
        on = (lc[:, 2] >= 0) & (lc[:, 2] <= centerline.length)
        lc = lc[on] if on.any() else lc
        hw = np.minimum(np.abs(lc[:, :2]).max(0) + float(vs[:2].max()), max_radius_mm)
    else:
        hw = np.broadcast_to(np.asarray(half_width_mm, float), (2,))
    nxy = 2 * np.ceil(hw / vs[:2] - 1e-6).astype(int) + 1
    z0, z1 = float(zmap.forward(0.0)), float(zmap.forward(centerline.length))
    nz = int(np.floor((z1 - z0) / vs[2] + 1e-6)) + 1
    n_vox = float(nxy[0]) * float(nxy[1]) * nz
    if n_vox > MAX_STRAIGHT_VOXELS:
        raise InputError(f"the straight grid would hold {n_vox:.3g} voxels ({int(nxy[0])} x {int(nxy[1])} x {nz} at "
                         f"{' x '.join(f'{v:g}' for v in vs)} mm; at most {MAX_STRAIGHT_VOXELS:.2g})", None,
                         "give a coarser --voxel-size (or a smaller --xy-size)")
    x0, y0 = float(center_xy[0]), float(center_xy[1])
    aff = np.diag([-vs[0], vs[1], vs[2], 1.0])
    aff[:3, 3] = [x0 + vs[0] * (nxy[0] - 1) / 2, y0 - vs[1] * (nxy[1] - 1) / 2, z0]
    return Grid((int(nxy[0]), int(nxy[1]), nz), aff)


def _strided_voxels(g: Grid, target: int) -> np.ndarray:
    """About ``target`` voxel centres of ``g`` on a regular stride, the same world points whatever
    the order and direction in which the grid stores its axes (strided in the grid's RAS-nearest
    order: a 57- or a 59-voxel-wide straight image for sct_testing_data t2 stored LPI or RAS
    before session 42)."""
    import nibabel as nib

    stride = max(1, int(np.ceil((g.size / target) ** (1 / 3))))
    ornt = nib.orientations.io_orientation(g.affine)  # voxel axis i -> world axis, direction
    axes = []
    for i, n in enumerate(g.shape):
        k = np.arange(0, n, stride)
        axes.append(n - 1 - k if ornt[i, 1] < 0 else k)  # counted from the RAS-nearest end
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(float)


def _grid_signature(g: Grid) -> bytes:
    return np.array(g.shape, np.int64).tobytes() + np.round(g.affine, 6).tobytes()


def _cache_key(cl: Centerline, curved: Grid, straight: Grid, zmap: ZMap, center: np.ndarray) -> str:
    h = hashlib.sha1(_CACHE_VERSION)
    for part in (cl.signature(), _grid_signature(curved), _grid_signature(straight),
                 zmap.signature(), np.round(center, 6).tobytes()):
        h.update(part)
    return h.hexdigest()


def straightening_fields(
    centerline: Centerline,
    curved: Grid,
    straight: Grid,
    *,
    z_of_s: Callable[[np.ndarray], np.ndarray] | None = None,
    center_xy: Sequence[float] = (0.0, 0.0),
    cache_dir: str | Path | None = None,
    max_points: int = 2_000_000,
) -> tuple[DisplacementField, DisplacementField]:
    """``(curve2straight, straight2curve)`` displacement fields (see the module docstring).

    Cached in memory (last few inputs) and, with ``cache_dir``, on disk as ``.npz``.
    """
    zmap = ZMap(centerline.length, z_of_s)
    center = np.array([float(center_xy[0]), float(center_xy[1])])
    key = _cache_key(centerline, curved, straight, zmap, center)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    path = Path(cache_dir) / f"straighten-{key[:24]}.npz" if cache_dir is not None else None
    fields = None
    if path is not None and path.exists():
        try:
            with np.load(path) as z:
                fields = (DisplacementField(straight, z["curve2straight"]),
                          DisplacementField(curved, z["straight2curve"]))
            log.debug("straightening fields read from cache %s", path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable straightening cache %s (%s)", path, exc)
            fields = None
    if fields is None:
        c2s = _field(straight, max_points, lambda x: _straight_to_curved(centerline, zmap, center, x))
        s2c = _field(curved, max_points, lambda x: _curved_to_straight(centerline, zmap, center, x))
        fields = (DisplacementField(straight, c2s), DisplacementField(curved, s2c))
        if path is not None:
            _save_npz(path, curve2straight=c2s, straight2curve=s2c)
    _MEMO[key] = fields
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return fields


def clear_cache() -> None:
    """Forget the in-memory straightening fields."""
    _MEMO.clear()


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part.npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:  # a cache that cannot be written is not an error
        log.warning("cannot write straightening cache %s (%s)", path, exc)


def _field(grid: Grid, max_points: int, mapping: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.empty(tuple(grid.shape) + (3,), np.float32)
    for k0, k1 in grid.chunks(max_points):
        x = grid.world_coords(k0, k1)
        out[:, :, k0:k1] = (mapping(x) - x).reshape(grid.shape[0], grid.shape[1], k1 - k0, 3)
    return out


def _straight_to_curved(cl: Centerline, zmap: ZMap, center: np.ndarray, x: np.ndarray) -> np.ndarray:
    local = np.column_stack([x[:, 0] - center[0], x[:, 1] - center[1], zmap.inverse(x[:, 2])])
    return cl.from_local(local)


def _curved_to_straight(cl: Centerline, zmap: ZMap, center: np.ndarray, x: np.ndarray) -> np.ndarray:
    lc = cl.local_coords(x)
    return np.column_stack([lc[:, 0] + center[0], lc[:, 1] + center[1], zmap.forward(lc[:, 2])])


# ---------------------------------------------------------------------------------------------
# top level
# ---------------------------------------------------------------------------------------------
def straighten(
    seg: Image | str | Path,
    *,
    centerline: Centerline | None = None,
    voxel_size: float | Sequence[float] | None = None,
    straight_grid: Grid | None = None,
    half_width_mm: float | Sequence[float] | None = None,
    max_radius_mm: float = 40.0,
    z_of_s: Callable[[np.ndarray], np.ndarray] | None = None,
    center_xy: Sequence[float] = (0.0, 0.0),
    smooth_mm: float | None = None,
    cache_dir: str | Path | None = None,
    qc: bool = True,
) -> StraighteningResult:
    """Straighten the cord of a segmentation (binary or soft) image or file.

    ``centerline``: use this one instead of fitting it from ``seg`` (``smooth_mm`` is passed to
    the fit otherwise). ``straight_grid``: an explicit straight grid (e.g. a template's), else
    :func:`straight_grid_for` builds one from ``voxel_size``, ``half_width_mm`` and
    ``max_radius_mm``. ``z_of_s``: monotone arc length -> straight z map (template alignment).
    ``qc``: compute SCT's straightening figures on the segmentation (see
    :func:`straightening_error`), added to ``metrics``.
    """
    img = seg if isinstance(seg, Image) else load_image(seg, ndim=3, what="segmentation")
    if img.ndim != 3:
        raise InputError(f"segmentation must be 3D, got shape {img.shape}", img.name,
                         "give a 3D cord segmentation")
    t0 = time.perf_counter()
    cl = centerline if centerline is not None else Centerline.from_mask(img, smooth_mm=smooth_mm)
    t1 = time.perf_counter()
    grid = straight_grid if straight_grid is not None else straight_grid_for(
        cl, img.grid, voxel_size, half_width_mm=half_width_mm, max_radius_mm=max_radius_mm,
        z_of_s=z_of_s, center_xy=center_xy)
    c2s, s2c = straightening_fields(cl, img.grid, grid, z_of_s=z_of_s, center_xy=center_xy,
                                    cache_dir=cache_dir)
    t2 = time.perf_counter()
    kappa = cl.curvature(np.linspace(0, cl.length, max(2, int(cl.length) + 1)))
    metrics: dict = {
        "length_mm": cl.length,
        "z_range_mm": list(cl.z_range),
        "max_curvature_per_mm": float(kappa.max()),
        "straight_shape": list(grid.shape),
        "straight_voxel_mm": np.round(grid.zooms, 6).tolist(),
        "centerline_fit": cl.fit.summary() if cl.fit is not None else None,
        "time_centerline_s": t1 - t0,
        "time_fields_s": t2 - t1,
    }
    result = StraighteningResult(cl, grid, c2s, s2c, metrics, ZMap(cl.length, z_of_s),
                                 (float(center_xy[0]), float(center_xy[1])))
    if qc:
        metrics.update(straightening_error(img, result))
        metrics["time_qc_s"] = time.perf_counter() - t2
    return result


def straightening_error(seg: Image, result: StraighteningResult, threshold: float = 0.5,
                        exclude_end_slices: int = 2) -> dict:
    """SCT's straightening figures and the round-trip error on cord voxels.

    The segmentation is straightened (linear) and thresholded at ``threshold``; per straight
    slice its centre of mass is compared with the straight centre line. As SCT does, the
    ``exclude_end_slices`` slices at each end are left out when at least 10 slices hold cord
    (the ends are cut by the field of view where the cord is oblique to the slices):
    ``mse_vox2`` (mean squared in-plane distance, voxels^2; SCT's test requires < 0.8),
    ``max_dist_vox`` (SCT: < 1.2), ``sct_rms_mm`` (what SCT prints as "MSE": the RMS distance in
    mm). ``*_all`` figures include every slice. ``roundtrip_*``:
    ``|curve2straight(straight2curve(p)) - p|`` on the cord voxels ``p`` whose straight point lies
    in the straight grid (``roundtrip_outside_fraction`` of them do not: the half end slices
    beyond the centerline's ends, see ``margin_mm`` of :func:`straight_grid_for`).
    """
    g = result.straight_grid
    straight = apply_transforms(seg, g, [result.curve2straight], "linear").data > threshold
    area = straight.sum(axis=(0, 1))
    ks = np.nonzero(area > 0)[0]
    out: dict = {"n_straight_slices": int(len(ks))}
    if len(ks):
        ii = (straight.sum(axis=1) * np.arange(g.shape[0])[:, None]).sum(0)[ks] / area[ks]
        jj = (straight.sum(axis=0) * np.arange(g.shape[1])[:, None]).sum(0)[ks] / area[ks]
        line = np.array([[result.center_xy[0], result.center_xy[1], g.affine[2, 3]]])
        centre = g.world_to_voxel(line)[0]
        di, dj = ii - centre[0], jj - centre[1]
        d2 = di**2 + dj**2
        dmm2 = (di * g.zooms[0]) ** 2 + (dj * g.zooms[1]) ** 2
        n = exclude_end_slices if len(ks) >= 10 else 0
        inner = slice(n, len(ks) - n)
        out.update(
            mse_vox2=float(d2[inner].mean()),
            max_dist_vox=float(np.sqrt(d2[inner].max())),
            sct_rms_mm=float(np.sqrt(dmm2[inner].mean())),
            mse_vox2_all=float(d2.mean()),
            max_dist_vox_all=float(np.sqrt(d2.max())),
        )
    data = np.asarray(seg.data, float)
    cord = np.argwhere(data >= threshold * max(float(data.max()), 1e-12))
    if len(cord):
        p = seg.grid.voxel_to_world(cord.astype(float))
        q = result.straight2curve.map(p)
        ijk = g.world_to_voxel(q)
        inside = np.all((ijk >= -0.5) & (ijk <= np.array(g.shape) - 0.5), axis=1)
        err = np.linalg.norm(result.curve2straight.map(q[inside]) - p[inside], axis=1)
        vox = float(np.min(seg.grid.zooms))
        out["roundtrip_outside_fraction"] = float(1.0 - inside.mean())
        if err.size:
            out.update(roundtrip_mean_mm=float(err.mean()), roundtrip_max_mm=float(err.max()),
                       roundtrip_max_vox=float(err.max() / vox))
    return out
