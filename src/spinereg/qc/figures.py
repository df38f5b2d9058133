"""QC pictures: axial mosaics, sagittal views and animations drawn with matplotlib (Agg).

Every picture is drawn from arrays on a cropped copy of an image's grid, reoriented to RAS so
that axial slices are ``data[:, :, k]`` and sagittal slices ``data[i, :, :]`` whatever the
file's voxel order. Axial views are radiological (patient right on the left of the picture,
anterior up) and carry R/L/A/P markers; each axial tile is labelled with its slice number in the
original file (and its vertebral level when known). Sagittal views put anterior on the right and
superior up (A/P/S/I markers), with level names beside the cord. Pictures are written through
:func:`spinereg.io.image.atomic_write` (temporary name, then rename).

Renderers of whole runs live in the ``page_*`` modules (see :mod:`spinereg.qc.pages`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from nibabel import orientations as ornt

from spinereg.io.box import mask_box, pad_voxels
from spinereg.io.grid import Grid
from spinereg.io.image import Image, atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from spinereg.transforms.base import Transform

#: vertebral level names by PAM50 value (1 = C1 ... 7 = C7, 8 = T1 ... 19 = T12, 20 = L1 ...)
_LEVELS = ([f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
           + [f"S{i}" for i in range(1, 6)] + ["Co"])

SEG_COLOR = "#ff3b3b"
TEMPLATE_COLOR = "#30e060"
LABEL_COLOR = "#ffd400"
MARKER_COLOR = "#8fd3ff"
TILE_PX = 200  # axial tile width in the picture


def level_name(value: int) -> str:
    """Name of a PAM50 vertebral level / body label value (``3`` -> ``C3``, ``8`` -> ``T1``)."""
    v = int(value)
    return _LEVELS[v - 1] if 1 <= v <= len(_LEVELS) else str(v)


def disc_name(value: int) -> str:
    """Name of a PAM50 disc label value (``3`` -> ``C2/C3``; ``1`` PMJ, ``2`` C1)."""
    v = int(value)
    if v == 1:
        return "PMJ"
    if v == 2:
        return "C1"
    if 3 <= v <= len(_LEVELS) + 1:
        return f"{level_name(v - 1)}/{level_name(v)}"
    return str(v)


# -- arrays on a display grid ---------------------------------------------------------------------
@dataclass
class View:
    """A 3D array in RAS voxel order with its voxel sizes (mm) and affine."""

    data: np.ndarray
    zooms: np.ndarray
    affine: np.ndarray | None = None


def to_ras(data: np.ndarray, affine: np.ndarray) -> View:
    """``data`` (3D, on ``affine``) reordered and flipped to RAS voxel axes."""
    tr = ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt(("R", "A", "S")))
    out = ornt.apply_orientation(np.asarray(data), tr)
    new_aff = affine @ ornt.inv_ornt_aff(tr, np.asarray(data).shape[:3])
    zooms = np.sqrt((new_aff[:3, :3] ** 2).sum(0))
    return View(np.ascontiguousarray(out), zooms, new_aff)


def crop_grid(grid: Grid, mask: np.ndarray | None, margin_mm: float = 25.0) -> Grid:
    """Sub-grid of ``grid`` around ``mask`` (margin ``margin_mm``; whole grid if empty)."""
    box = None if mask is None else mask_box(mask, pad_voxels(margin_mm, grid.zooms))
    return grid if box is None else grid.box(*box)


def on_grid(img: Image, grid: Grid, transforms: Sequence[Transform] | None = None,
            interp: str = "linear") -> np.ndarray:
    """``img`` resampled on ``grid`` (through ``transforms`` when given)."""
    from spinereg.transforms.apply import apply_transforms

    if not transforms and img.grid.same_as(grid, atol=1e-4):
        return np.asarray(img.data if img.ndim == 3 else img.volume(0))
    return np.asarray(apply_transforms(img, grid, transforms or [], interp).data)


def slice_numbers(view: View, slices: Sequence[int], original: Grid) -> list[int]:
    """Index, along ``original``'s most superior-inferior voxel axis, of each axial slice of
    ``view`` (what FSLeyes or SCT show for that slice of the original file)."""
    if view.affine is None:
        return list(slices)
    ctr = np.array([(view.data.shape[0] - 1) / 2, (view.data.shape[1] - 1) / 2, 0.0])
    ijk = np.array([[ctr[0], ctr[1], k] for k in slices], float)
    world = ijk @ view.affine[:3, :3].T + view.affine[:3, 3]
    vox = original.world_to_voxel(world)
    axis = int(np.argmax(np.abs(original.affine[2, :3]) / original.zooms))
    return [int(round(v)) for v in vox[:, axis]]


# -- overlays -------------------------------------------------------------------------------------
@dataclass
class Overlay:
    """A layer drawn over the base image: ``contour`` of a mask (``data > 0.5``) or ``labels`` fill."""

    data: np.ndarray
    kind: str = "contour"  # contour | labels
    color: str = SEG_COLOR
    name: str = ""
    width: float = 1.6


def _norm(data: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    vals = data[mask] if mask is not None and np.any(mask) else data[data != 0]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [1.0, 99.8])
    return float(lo), float(hi if hi > lo else lo + 1)


def _new_figure(width_in: float, height_in: float) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width_in, height_in), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_facecolor("black")
    return fig, ax


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary name in the same folder, then rename)."""
    return atomic_write(Path(path), lambda tmp: fig.savefig(str(tmp), format="png", facecolor=fig.get_facecolor()),
                        overwrite=True)


def _text(ax: Axes, x: float, y: float, s: str, color: str = "white", size: float = 8,
          ha: str = "left", va: str = "top", bold: bool = False) -> None:
    ax.text(x, y, s, color=color, fontsize=size, ha=ha, va=va, fontweight="bold" if bold else "normal",
            bbox={"facecolor": "black", "alpha": 0.55, "edgecolor": "none", "pad": 1})


def _draw_overlays(ax: Axes, overlays: Sequence[Overlay], aspect: float) -> None:
    from matplotlib.colors import ListedColormap

    for ov in overlays:
        if ov.kind == "contour":
            if np.any(ov.data > 0.5) and np.any(ov.data <= 0.5):
                ax.contour((ov.data > 0.5).astype(float).T, levels=[0.5], colors=[ov.color],
                           linewidths=ov.width, origin="lower")
        elif ov.kind == "labels":
            rng = np.random.default_rng(7)
            cmap = ListedColormap(np.c_[rng.uniform(0.25, 1.0, size=(64, 3)), np.full(64, 0.55)])
            lab = np.ma.masked_equal(np.round(ov.data).astype(int) % 64, 0)
            lab = np.ma.masked_where(ov.data <= 0, lab)
            ax.imshow(lab.T, origin="lower", cmap=cmap, vmin=0, vmax=63, aspect=aspect, interpolation="nearest")


# -- axial mosaic ---------------------------------------------------------------------------------
def axial_slices(center_mask: np.ndarray, n: int = 15) -> list[int]:
    """Up to ``n`` evenly spaced axial slices (indices along the last axis) crossing the mask."""
    zs = np.flatnonzero(center_mask.reshape(-1, center_mask.shape[2]).any(0))
    if zs.size == 0:
        zs = np.arange(center_mask.shape[2])
    pick = np.unique(np.round(np.linspace(0, zs.size - 1, min(n, zs.size))).astype(int))
    return [int(zs[i]) for i in pick]


def _centres(center_mask: np.ndarray, slices: Sequence[int]) -> list[tuple[float, float]]:
    """In-plane centre of mass of the mask on each slice (interpolated where a slice is empty)."""
    nx, ny = center_mask.shape[:2]
    known = {}
    for k in range(center_mask.shape[2]):
        ij = np.argwhere(center_mask[:, :, k])
        if ij.size:
            known[k] = ij.mean(0)
    ks = np.array(sorted(known))
    out = []
    for k in slices:
        if ks.size == 0:
            out.append(((nx - 1) / 2, (ny - 1) / 2))
        else:
            out.append((float(np.interp(k, ks, [known[i][0] for i in ks])),
                        float(np.interp(k, ks, [known[i][1] for i in ks]))))
    return out


def _tile(vol: np.ndarray, k: int, c: tuple[float, float], hx: int, hy: int) -> np.ndarray:
    """A (2hx+1, 2hy+1) window of slice ``k`` centred on ``c``, zero outside the volume."""
    out = np.zeros((2 * hx + 1, 2 * hy + 1), dtype=np.float32)
    x0, y0 = int(round(c[0])) - hx, int(round(c[1])) - hy
    xs = slice(max(x0, 0), min(x0 + 2 * hx + 1, vol.shape[0]))
    ys = slice(max(y0, 0), min(y0 + 2 * hy + 1, vol.shape[1]))
    if xs.start < xs.stop and ys.start < ys.stop:
        out[xs.start - x0:xs.stop - x0, ys.start - y0:ys.stop - y0] = vol[xs, ys, k]
    return out


def mosaic_array(vol: np.ndarray, slices: Sequence[int], centres: Sequence[tuple[float, float]],
                 hx: int, hy: int, ncols: int) -> np.ndarray:
    """Axial windows laid out in rows (first slice top left, inferior to superior)."""
    tw, th = 2 * hx + 1, 2 * hy + 1
    nrows = int(np.ceil(len(slices) / ncols))
    out = np.zeros((ncols * tw, nrows * th), dtype=np.float32)
    for n, (k, c) in enumerate(zip(slices, centres, strict=True)):
        r, col = divmod(n, ncols)
        tile = _tile(vol, k, c, hx, hy)[::-1]  # radiological: patient right on the left
        out[col * tw:(col + 1) * tw, (nrows - 1 - r) * th:(nrows - r) * th] = tile
    return out


def axial_mosaic(base: View, path: Path, center_mask: np.ndarray, overlays: Sequence[Overlay] = (),
                 slices: Sequence[int] | None = None, half_width_mm: float = 15.0, ncols: int = 5,
                 window: tuple[float, float] | None = None, tile_labels: Sequence[str] | None = None,
                 tile_px: int = TILE_PX) -> Path:
    """Axial windows centred on the cord (``center_mask``), overlays on top, one label per tile
    (e.g. ``"slice 23 · C4"``) and R/L/A/P markers on the first tile; saved as PNG."""
    slices = list(slices) if slices is not None else axial_slices(center_mask)
    centres = _centres(center_mask, slices)
    hx = int(np.ceil(half_width_mm / base.zooms[0]))
    hy = int(np.ceil(half_width_mm / base.zooms[1]))
    ncols = max(1, min(ncols, len(slices)))
    img = mosaic_array(base.data, slices, centres, hx, hy, ncols)
    aspect = float(base.zooms[1] / base.zooms[0])
    scale = tile_px / (2 * hx + 1)
    w, h = img.shape[0] * scale, img.shape[1] * scale * aspect
    fig, ax = _new_figure(w / 100, h / 100)
    lo, hi = window or _norm(base.data)
    ax.imshow(img.T, origin="lower", cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="bilinear")
    _draw_overlays(ax, [Overlay(mosaic_array(o.data.astype(np.float32), slices, centres, hx, hy, ncols), o.kind,
                                o.color, o.name, o.width) for o in overlays], aspect)
    tw, th = 2 * hx + 1, 2 * hy + 1
    nrows = int(np.ceil(len(slices) / ncols))
    for n in range(len(slices)):
        r, col = divmod(n, ncols)
        x0, y1 = col * tw - 0.5, (nrows - r) * th - 0.5
        ax.plot([x0, x0 + tw, x0 + tw, x0, x0], [y1 - th, y1 - th, y1, y1, y1 - th], color="#333", lw=0.8)
        if tile_labels is not None:
            _text(ax, x0 + 2, y1 - 2, tile_labels[n], size=9)
        if n == 0:  # radiological markers
            mid_x, mid_y = x0 + tw / 2, y1 - th / 2
            _text(ax, x0 + 2, mid_y, "R", MARKER_COLOR, 10, "left", "center", True)
            _text(ax, x0 + tw - 2, mid_y, "L", MARKER_COLOR, 10, "right", "center", True)
            _text(ax, mid_x, y1 - 2, "A", MARKER_COLOR, 10, "center", "top", True)
            _text(ax, mid_x, y1 - th + 2, "P", MARKER_COLOR, 10, "center", "bottom", True)
    ax.set_xlim(-0.5, img.shape[0] - 0.5)
    ax.set_ylim(-0.5, img.shape[1] - 0.5)
    return save_png(fig, path)


# -- sagittal -------------------------------------------------------------------------------------
def sagittal_index(center_mask: np.ndarray) -> int:
    """Left-right index through the cord (median of the mask), the middle without a mask."""
    ij = np.argwhere(center_mask)
    return int(np.median(ij[:, 0])) if ij.size else center_mask.shape[0] // 2


def sagittal_view(base: View, path: Path, center_mask: np.ndarray, overlays: Sequence[Overlay] = (),
                  texts: Sequence[tuple[float, float, str]] = (), points: Sequence[tuple[float, float, str]] = (),
                  window: tuple[float, float] | None = None, height_px: int = 640) -> Path:
    """Sagittal slice through the cord with A/P/S/I markers; ``texts`` (level names, left of the
    cord) and ``points`` (labelled landmarks) are (y, z, name) in voxels."""
    i = sagittal_index(center_mask)
    sl = base.data[i]  # (y, z): anterior right, superior up
    aspect = float(base.zooms[2] / base.zooms[1])
    h_mm, w_mm = sl.shape[1] * base.zooms[2], sl.shape[0] * base.zooms[1]
    h = height_px / 100
    fig, ax = _new_figure(max(h * w_mm / h_mm, 2.0) + 0.8, h)
    lo, hi = window or _norm(base.data)
    ax.imshow(sl.T, origin="lower", cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="bilinear")
    _draw_overlays(ax, [Overlay(o.data[i], o.kind, o.color, o.name, o.width) for o in overlays], aspect)
    for y, z, name in texts:
        _text(ax, y - 2, z, name, TEMPLATE_COLOR, 9, "right", "center", True)
    for y, z, name in points:
        ax.plot([y], [z], "o", color=LABEL_COLOR, markersize=5)
        _text(ax, y + 2, z, name, LABEL_COLOR, 9, "left", "center")
    ny, nz = sl.shape
    _text(ax, 1, nz / 2, "P", MARKER_COLOR, 10, "left", "center", True)
    _text(ax, ny - 2, nz / 2, "A", MARKER_COLOR, 10, "right", "center", True)
    _text(ax, ny / 2, nz - 2, "S", MARKER_COLOR, 10, "center", "top", True)
    _text(ax, ny / 2, 1, "I", MARKER_COLOR, 10, "center", "bottom", True)
    ax.set_xlim(-0.5, ny - 0.5)
    ax.set_ylim(-0.5, nz - 0.5)
    return save_png(fig, path)


def level_texts(levels: np.ndarray, cord: np.ndarray | None = None) -> list[tuple[float, float, str]]:
    """(y, z, name) at each level's centre: just behind (posterior to) the cord in sagittal views."""
    out = []
    lev = np.round(levels).astype(int)
    for v in np.unique(lev[lev > 0]):
        ijk = np.argwhere(lev == v)
        out.append((float(ijk[:, 1].min()) - 1.0, float(ijk[:, 2].mean()), level_name(v)))
    return out


def levels_at(levels: np.ndarray, slices: Sequence[int]) -> list[str]:
    """Vertebral level name of each axial slice (most frequent non-zero value), '' where none."""
    out = []
    lev = np.round(levels).astype(int)
    for k in slices:
        vals = lev[:, :, k][lev[:, :, k] > 0]
        out.append(level_name(int(np.bincount(vals).argmax())) if vals.size else "")
    return out


def tile_labels(numbers: Sequence[int], levels: Sequence[str] | None = None) -> list[str]:
    """``"slice 23 · C4"`` per tile."""
    levels = levels or [""] * len(numbers)
    return [f"slice {n}" + (f" · {lv}" if lv else "") for n, lv in zip(numbers, levels, strict=True)]


def label_points(labels: np.ndarray, kind: str) -> list[tuple[float, float, str]]:
    """(y, z, name) of point labels (``kind`` body: C3...; disc: C2/C3...)."""
    out = []
    for i, j, k in np.argwhere(np.round(labels) > 0):
        v = int(round(float(labels[i, j, k])))
        out.append((float(j), float(k), disc_name(v) if kind in ("disc", "ldisc") else level_name(v)))
    return out


# -- animations -----------------------------------------------------------------------------------
def _frame(vol: np.ndarray, lo: float, hi: float,
           zooms: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Mid-sagittal and mid-axial views of one volume side by side (uint8; thick slices repeated)."""
    nx, ny, nz = vol.shape
    sag = np.repeat(vol[nx // 2].T[::-1], max(1, int(round(zooms[2] / zooms[1]))), axis=0)
    ax = vol[:, :, nz // 2][::-1].T[::-1]
    h = max(sag.shape[0], ax.shape[0])
    pad = lambda a: np.pad(a, ((0, h - a.shape[0]), (0, 0)))  # noqa: E731
    both = np.concatenate([pad(sag), np.zeros((h, 2)), pad(ax)], axis=1)
    return (np.clip((both - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def moco_frames(img: Image, max_frames: int = 24) -> list[np.ndarray]:
    """Frames of a 4D series (RAS, up to ``max_frames`` volumes evenly spaced), one intensity window."""
    nvol = img.nvols
    ts = np.unique(np.round(np.linspace(0, nvol - 1, min(max_frames, nvol))).astype(int))
    views = [to_ras(img.volume(int(t)), img.affine) for t in ts]
    lo, hi = _norm(views[len(views) // 2].data)
    return [_frame(v.data.astype(np.float32), lo, hi, v.zooms) for v in views]


def save_gif(frames: Sequence[np.ndarray], path: Path, scale: int = 3, ms: int = 150) -> Path:
    """An animated GIF of uint8 frames (nearest-neighbour enlarged ``scale`` times)."""
    from PIL import Image as PILImage

    ims = [PILImage.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), PILImage.NEAREST)
           for f in frames]
    return atomic_write(Path(path), lambda tmp: ims[0].save(str(tmp), format="GIF", save_all=True,
                                                            append_images=ims[1:], duration=ms, loop=0),
                        overwrite=True)


def frame_strip(frames: Sequence[np.ndarray], path: Path, ncols: int = 8) -> Path:
    """The frames of a series in a grid (a still alternative to the GIF)."""
    h, w = frames[0].shape
    nrows = int(np.ceil(len(frames) / ncols))
    grid = np.zeros((nrows * h, ncols * w), dtype=np.uint8)
    for n, f in enumerate(frames):
        r, c = divmod(n, ncols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = f
    fig, ax = _new_figure(grid.shape[1] * 2 / 100, grid.shape[0] * 2 / 100)
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    return save_png(fig, path)
