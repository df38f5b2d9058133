"""The working grid of the cord models (axial slices, fixed in-plane pixels) and the way back.

The models see axial slices with fixed in-plane pixels at the input's own S-I spacing. The slice
frame is a function of the *world* geometry only, never of the voxel order or flips:

* images with thin S-I spacing (isotropic, sagittal, coronal, thin axial; ``dz < THICK_MM``):
  world-aligned axial slices (in-plane axes world R and A), or, when the grid is oblique by up to
  :data:`OWN_PLANES_MAX_DEG`, the planes of its own lattice across its S-I-most axis (in-plane
  axes the projections of world R and A onto them), so that the working grid covers the field of
  view exactly. World-axial slices through a grid turned 10 deg about R and 7 deg about A cut its
  slanted ends: the cord in t1's last 3 slices was lost and the next 3 were partial (Dice 0.926
  with the unturned copy's mask; t2 0.979) before session 48, 1.000 on both since;
* stacks of thick slices (``dz >= THICK_MM``, e.g. 0.5 x 0.5 x 7.5 mm): the slices' own planes,
  in-plane axes the projections of world R and A onto them, so every working slice is one input
  slice, also when the stack is oblique, and the model's slab-averaged prediction is that
  slice's partial volume.

The S-I lattice goes through voxel (0, 0, 0) (a slice centre for any order of the voxel axes).
The probability is mapped back by averaging it over each input voxel's footprint (sub-samples
along every voxel axis that spans several working pixels), so a 1 mm voxel gets the mean of its
2 x 2 working pixels and a 3 mm sagittal slice the mean over its thickness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinereg.io.grid import Grid

#: S-I spacing (mm) from which a stack is thick: its slices' partial volume is what the model reads
THICK_MM = 2.0
#: a thin grid whose planes across its S-I-most axis lie within this of world-axial (deg) is read
#: on those planes: an acquisition tilted to follow the spine has the cord along its own axis, and
#: world-axial slices cut its slanted ends (below). Beyond it, world-axial slices: on t2 resampled
#: onto grids turned by 20-30 deg (the cord turned in the lattice with them) the own planes cut
#: the cord obliquely and the mask's Dice with the unturned one's fell from 0.986-0.990 to
#: 0.965-0.969 (session 48)
OWN_PLANES_MAX_DEG = 15.0
#: direction cosines closer than this to world-axial are float noise in a header's rotation
OBLIQUE_TOL = 1e-6


@dataclass(frozen=True)
class WorkGrid:
    """Working grid: pixel (k, i, j) is at world ``origin + i*px*u + j*px*v + k*dz*n`` where
    ``frame = [u, v, n]`` (columns; u ~ R, v ~ A, n ~ S). Arrays are ordered (k, i, j)."""

    frame: np.ndarray
    origin: np.ndarray
    px: float
    dz: float
    nx: int
    ny: int
    nz: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.nz, self.nx, self.ny)

    @property
    def aligned(self) -> bool:
        """Slices in their input's own (oblique) planes, not world-axial."""
        return not np.allclose(self.frame, np.eye(3))

    @property
    def thick(self) -> bool:
        """A stack of thick slices (:data:`THICK_MM`): each working slice is one input slice."""
        return self.dz >= THICK_MM

    def affine(self) -> np.ndarray:
        """Voxel (i, j, k) -> world affine."""
        aff = np.eye(4)
        aff[:3, :3] = self.frame * np.array([self.px, self.px, self.dz])
        aff[:3, 3] = self.origin
        return aff

    def grid(self) -> Grid:
        return Grid((self.nx, self.ny, self.nz), self.affine())

    def to_world(self, ijk: np.ndarray) -> np.ndarray:
        """World points of working (i, j, k) indices (N, 3) (not (k, i, j))."""
        return Grid((self.nx, self.ny, self.nz), self.affine()).voxel_to_world(ijk)

    def to_index(self, world: np.ndarray) -> np.ndarray:
        """Continuous working (i, j, k) indices of world points (N, 3)."""
        local = (np.asarray(world, float) - self.origin) @ self.frame
        return local / np.array([self.px, self.px, self.dz])

    def crop(self, i_lo: float, i_hi: float, j_lo: float, j_hi: float, multiple: int = 8) -> WorkGrid:
        """The part of this grid over pixel ranges ``[i_lo, i_hi] x [j_lo, j_hi]`` (clipped), its
        sizes rounded up to ``multiple`` (the box grows symmetrically)."""
        i0, i1 = max(0, int(np.floor(i_lo))), min(self.nx - 1, int(np.ceil(i_hi)))
        j0, j1 = max(0, int(np.floor(j_lo))), min(self.ny - 1, int(np.ceil(j_hi)))
        nx, ny = _round_up(i1 - i0 + 1, multiple), _round_up(j1 - j0 + 1, multiple)
        ci, cj = (i0 + i1) / 2 - (nx - 1) / 2, (j0 + j1) / 2 - (ny - 1) / 2
        origin = self.origin + self.frame[:, 0] * self.px * ci + self.frame[:, 1] * self.px * cj
        return WorkGrid(self.frame, origin, self.px, self.dz, nx, ny, self.nz)

    def rescaled(self, px: float, multiple: int = 8) -> WorkGrid:
        """The same slices and extent with ``px`` mm pixels."""
        ext = np.array([(self.nx - 1), (self.ny - 1)]) * self.px
        nx, ny = (_round_up(int(np.ceil(e / px - 1e-6)) + 1, multiple) for e in ext)
        centre = self.origin + self.frame[:, :2] @ (ext / 2)
        origin = centre - self.frame[:, :2] @ (np.array([nx - 1, ny - 1]) * px / 2)
        return WorkGrid(self.frame, origin, px, self.dz, nx, ny, self.nz)


def _round_up(n: int, m: int) -> int:
    return int(-(-max(n, 1) // m) * m)


def si_axis_and_spacing(grid: Grid) -> tuple[int, float]:
    """The voxel axis most aligned with world S-I and the spacing along it (mm)."""
    lin = grid.affine[:3, :3]
    cos = np.abs(lin[2]) / grid.zooms
    ax = int(np.argmax(cos))
    return ax, float(grid.zooms[ax])


def _frame(grid: Grid) -> tuple[np.ndarray, float, int]:
    si, dz = si_axis_and_spacing(grid)
    lin = grid.affine[:3, :3]
    a, b = (lin[:, k] for k in range(3) if k != si)
    n = np.cross(a, b)
    n /= np.linalg.norm(n)
    if n[2] < 0:
        n = -n
    u = np.array([1.0, 0.0, 0.0]) - n[0] * n
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    frame = np.column_stack([u, v, n])
    if dz < THICK_MM:
        tilt = float(np.degrees(np.arccos(np.clip(n[2], -1.0, 1.0))))
        if tilt > OWN_PLANES_MAX_DEG or np.allclose(frame, np.eye(3), rtol=0.0, atol=OBLIQUE_TOL):
            return np.eye(3), dz, si  # world-axial slices (exactly, for a grid on the world axes)
    # the spacing between slice planes along the normal
    dz = float(abs(lin[:, si] @ n))
    return frame, dz, si


def working_grid(grid: Grid, px: float, multiple: int = 8, max_slices: int = 4000) -> WorkGrid:
    """The working grid covering ``grid``'s field of view (voxel centres) with ``px`` mm pixels."""
    frame, dz, _ = _frame(grid)
    corners = np.array([[i, j, k] for i in (0, grid.shape[0] - 1) for j in (0, grid.shape[1] - 1)
                        for k in (0, grid.shape[2] - 1)], float)
    local = grid.voxel_to_world(corners) @ frame
    lo, hi = local.min(0), local.max(0)
    if (hi[2] - lo[2]) / dz + 1 > max_slices:
        dz = (hi[2] - lo[2]) / (max_slices - 1)
    zref = float(grid.affine[:3, 3] @ frame[:, 2])
    k0 = int(np.floor((lo[2] - zref) / dz + 1e-6))
    k1 = int(np.ceil((hi[2] - zref) / dz - 1e-6))
    nx = _round_up(int(np.ceil((hi[0] - lo[0]) / px - 1e-6)) + 1, multiple)
    ny = _round_up(int(np.ceil((hi[1] - lo[1]) / px - 1e-6)) + 1, multiple)
    c = np.array([(lo[0] + hi[0]) / 2 - px * (nx - 1) / 2, (lo[1] + hi[1]) / 2 - px * (ny - 1) / 2,
                  zref + k0 * dz])
    return WorkGrid(frame, frame @ c, px, dz, nx, ny, k1 - k0 + 1)


def sample_to_work(volume: np.ndarray, grid: Grid, wg: WorkGrid, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The image on the working grid (nz, nx, ny) float32 (linear interpolation) and the mask of
    working pixels inside the image's field of view (within half a voxel of its voxel centres)."""
    m = np.linalg.inv(grid.affine) @ wg.affine()  # working (i, j, k) -> input voxel
    shape = np.array(grid.shape[:3], float)
    out = np.zeros(wg.shape, np.float32)
    inside = np.zeros(wg.shape, bool)
    vol = np.asarray(volume, np.float32)
    ii = np.arange(wg.nx, dtype=float)[None, :, None]
    jj = np.arange(wg.ny, dtype=float)[None, None, :]
    for k in range(wg.nz):
        ijk = m[:3, 3, None, None] + m[:3, 2, None, None] * k + m[:3, 0, None, None] * ii + m[:3, 1, None, None] * jj
        if wg.aligned:  # exactly on the input's slices: remove rounding noise along the slice axis
            r = np.rint(ijk)
            ijk = np.where(np.abs(ijk - r) < 1e-3, r, ijk)
        ok = np.all((ijk >= -0.5) & (ijk <= shape[:, None, None] - 0.5), axis=0)
        if not ok.any():
            continue
        inside[k] = ok
        out[k] = ndimage.map_coordinates(vol, ijk.reshape(3, -1), order=order, mode="nearest",
                                         prefilter=False).reshape(ok.shape) * ok
    return out, inside


def footprint_offsets(grid: Grid, wg: WorkGrid, max_per_axis: int = 5) -> np.ndarray:
    """World offsets (M, 3) of the sub-samples averaged over one input voxel."""
    lin = grid.affine[:3, :3]
    spacing = np.array([wg.px, wg.px, wg.dz])
    per_axis = []
    for a in range(3):
        v = lin[:, a]
        n = int(np.clip(np.ceil(np.max(np.abs(v @ wg.frame) / spacing) - 1e-3), 1, max_per_axis))
        f = (np.arange(n) + 0.5) / n - 0.5
        per_axis.append(f[:, None] * v[None, :])
    offs = per_axis[0][:, None, None, :] + per_axis[1][None, :, None, :] + per_axis[2][None, None, :, :]
    return offs.reshape(-1, 3)


def work_to_input(prob: np.ndarray, wg: WorkGrid, grid: Grid, sub: Grid | None = None) -> np.ndarray:
    """Mean of the working-grid ``prob`` (nz, nx, ny) over each voxel of ``grid`` (float32).

    Only the voxels of ``sub`` (a voxel-aligned sub-grid of ``grid`` covering the working box)
    are computed; the others are 0.
    """
    out = np.zeros(grid.shape[:3], np.float32)
    sub = sub or grid
    off = np.rint(grid.world_to_voxel(sub.voxel_to_world(np.zeros((1, 3))))[0]).astype(int)
    offs = footprint_offsets(grid, wg)
    vol = np.transpose(prob, (1, 2, 0)).astype(np.float32)  # (i, j, k)
    acc = np.zeros(sub.shape, np.float32)
    for k0, k1 in sub.chunks(400_000):
        pts = sub.world_coords(k0, k1)
        a = np.zeros(len(pts), np.float32)
        for o in offs:
            c = wg.to_index(pts + o)
            if wg.aligned:
                r = np.rint(c[:, 2])
                c[:, 2] = np.where(np.abs(c[:, 2] - r) < 1e-3, r, c[:, 2])
            a += ndimage.map_coordinates(vol, c.T, order=1, mode="constant", cval=0.0, prefilter=False)
        acc[:, :, k0:k1] = (a / len(offs)).reshape(sub.shape[0], sub.shape[1], k1 - k0)
    sl = tuple(slice(o, o + s) for o, s in zip(off, sub.shape, strict=True))
    out[sl] = acc
    return out
