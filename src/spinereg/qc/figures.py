"""QC reportlets: PNG/GIF figures rendered with matplotlib (Agg) from a run's files.

Every figure is drawn from arrays on a cropped copy of the subject's grid, reoriented to RAS so
that axial slices are ``data[:, :, k]`` and sagittal slices ``data[i, :, :]`` whatever the
file's voxel order. Axial views are radiological (patient right on the left of the picture,
anterior up); sagittal views put anterior on the right and superior up.

``render_run(kind, run_dir, provenance, outdir)`` writes the reportlets of one run and returns
their descriptions (title, file names, kind ``toggle``/``single``/``anim``) for the report.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nibabel import orientations as ornt

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image

log = logging.getLogger(__name__)

#: vertebral level names by PAM50 value (1 = C1 ... 7 = C7, 8 = T1 ... 19 = T12, 20 = L1 ...)
_LEVELS = ([f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
           + [f"S{i}" for i in range(1, 6)] + ["Co"])

SEG_COLOR = "#ff3b3b"
TEMPLATE_COLOR = "#30e060"
LABEL_COLOR = "#ffd400"


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
    """A 3D array in RAS voxel order with its voxel sizes (mm)."""

    data: np.ndarray
    zooms: np.ndarray


def to_ras(data: np.ndarray, affine: np.ndarray) -> View:
    """``data`` (3D, on ``affine``) reordered and flipped to RAS voxel axes."""
    tr = ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt(("R", "A", "S")))
    out = ornt.apply_orientation(np.asarray(data), tr)
    new_aff = affine @ ornt.inv_ornt_aff(tr, np.asarray(data).shape[:3])
    zooms = np.sqrt((new_aff[:3, :3] ** 2).sum(0))
    return View(np.ascontiguousarray(out), zooms)


def crop_grid(grid: Grid, mask: np.ndarray | None, margin_mm: float = 25.0) -> Grid:
    """Sub-grid of ``grid`` around ``mask`` (in-plane margin ``margin_mm``; whole grid if empty)."""
    if mask is None or not np.any(mask):
        return grid
    nz = np.argwhere(mask)
    margin = np.ceil(margin_mm / grid.zooms).astype(int)
    lo = np.maximum(nz.min(0) - margin, 0)
    hi = np.minimum(nz.max(0) + margin + 1, np.array(grid.shape))
    aff = grid.affine.copy()
    aff[:3, 3] = grid.voxel_to_world(lo[None].astype(float))[0]
    return Grid(tuple(int(v) for v in hi - lo), aff)


def on_grid(img: Image, grid: Grid, transforms=None, interp: str = "linear") -> np.ndarray:
    """``img`` resampled on ``grid`` (through ``transforms`` when given)."""
    from spinereg.transforms.apply import apply_transforms

    return np.asarray(apply_transforms(img, grid, transforms or [], interp).data)


# -- overlays -------------------------------------------------------------------------------------
@dataclass
class Overlay:
    """A layer drawn over the base image: ``contour`` of a mask, ``labels`` fill, or ``points``."""

    data: np.ndarray
    kind: str = "contour"  # contour | labels
    color: str = SEG_COLOR
    name: str = ""


@dataclass
class Figure:
    """One reportlet as stored in the report: files relative to the entry folder."""

    title: str
    kind: str  # toggle | single | anim
    files: dict[str, str]
    caption: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"title": self.title, "kind": self.kind, "files": self.files, "caption": self.caption,
                "labels": self.labels}


def _norm(data: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    vals = data[mask] if mask is not None and np.any(mask) else data[data != 0]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [1.0, 99.8])
    return float(lo), float(hi if hi > lo else lo + 1)


def _new_figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width_in, height_in), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_facecolor("black")
    return fig, ax


def save_png(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` through a temporary file in the same folder (atomic)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _cmap_labels():
    from matplotlib.colors import ListedColormap

    rng = np.random.default_rng(7)
    colors = rng.uniform(0.25, 1.0, size=(64, 3))
    return ListedColormap(np.c_[colors, np.full(64, 0.55)])


def _draw_overlays(ax, overlays: Sequence[Overlay], aspect: float) -> None:
    for ov in overlays:
        if ov.kind == "contour":
            if np.any(ov.data > 0.5) and np.any(ov.data <= 0.5):
                ax.contour((ov.data > 0.5).astype(float).T, levels=[0.5], colors=[ov.color], linewidths=1.0,
                           origin="lower")
        elif ov.kind == "labels":
            lab = np.ma.masked_equal(np.round(ov.data).astype(int) % 64, 0)
            lab = np.ma.masked_where(ov.data <= 0, lab)
            ax.imshow(lab.T, origin="lower", cmap=_cmap_labels(), vmin=0, vmax=63, aspect=aspect,
                      interpolation="nearest")


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
    out = []
    known = {}
    for k in range(center_mask.shape[2]):
        ij = np.argwhere(center_mask[:, :, k])
        if ij.size:
            known[k] = ij.mean(0)
    ks = np.array(sorted(known))
    for k in slices:
        if ks.size == 0:
            out.append(((nx - 1) / 2, (ny - 1) / 2))
        else:
            cx = np.interp(k, ks, [known[i][0] for i in ks])
            cy = np.interp(k, ks, [known[i][1] for i in ks])
            out.append((float(cx), float(cy)))
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


def mosaic_array(vol: np.ndarray, slices: Sequence[int], centres, hx: int, hy: int, ncols: int) -> np.ndarray:
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
                 window: tuple[float, float] | None = None) -> Path:
    """Axial windows centred on the cord (``center_mask``), overlays drawn on top, saved as PNG."""
    slices = list(slices) if slices is not None else axial_slices(center_mask)
    centres = _centres(center_mask, slices)
    hx = int(np.ceil(half_width_mm / base.zooms[0]))
    hy = int(np.ceil(half_width_mm / base.zooms[1]))
    ncols = min(ncols, len(slices))
    img = mosaic_array(base.data, slices, centres, hx, hy, ncols)
    aspect = float(base.zooms[1] / base.zooms[0])
    scale = 120.0 / (2 * hx + 1)  # ~120 px per tile
    w, h = img.shape[0] * scale, img.shape[1] * scale * aspect
    fig, ax = _new_figure(w / 100, h / 100)
    lo, hi = window or _norm(base.data)
    ax.imshow(img.T, origin="lower", cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="bilinear")
    _draw_overlays(ax, [Overlay(mosaic_array(o.data.astype(np.float32), slices, centres, hx, hy, ncols), o.kind,
                                o.color, o.name) for o in overlays], aspect)
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
                  window: tuple[float, float] | None = None, height_px: int = 520) -> Path:
    """Sagittal slice through the cord; ``texts``/``points`` are (y, z, name) in voxels."""
    i = sagittal_index(center_mask)
    sl = base.data[i]  # (y, z): anterior right, superior up
    aspect = float(base.zooms[2] / base.zooms[1])
    h_mm, w_mm = sl.shape[1] * base.zooms[2], sl.shape[0] * base.zooms[1]
    h = height_px / 100
    fig, ax = _new_figure(max(h * w_mm / h_mm, 1.5) + 0.6, h)
    lo, hi = window or _norm(base.data)
    ax.imshow(sl.T, origin="lower", cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="bilinear")
    _draw_overlays(ax, [Overlay(o.data[i], o.kind, o.color, o.name) for o in overlays], aspect)
    for y, z, name in texts:
        ax.text(y - 2, z, name, color=TEMPLATE_COLOR, fontsize=8, ha="right", va="center", fontweight="bold",
                bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1})
    for y, z, name in points:
        ax.plot([y], [z], "o", color=LABEL_COLOR, markersize=4)
        ax.text(y + 2, z, name, color=LABEL_COLOR, fontsize=8, ha="left", va="center",
                bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1})
    ax.set_xlim(-0.5, sl.shape[0] - 0.5)
    ax.set_ylim(-0.5, sl.shape[1] - 0.5)
    return save_png(fig, path)


def level_texts(levels: np.ndarray, cord: np.ndarray | None = None) -> list[tuple[float, float, str]]:
    """(y, z, name) at each level's centre: just behind (posterior to) the cord in sagittal views."""
    out = []
    vals = np.unique(np.round(levels[levels > 0]).astype(int))
    for v in vals:
        ijk = np.argwhere(np.round(levels).astype(int) == v)
        z = float(ijk[:, 2].mean())
        y = float(ijk[:, 1].min()) - 1.0
        out.append((y, z, level_name(v)))
    return out


def label_points(labels: np.ndarray, kind: str) -> list[tuple[float, float, str]]:
    """(y, z, name) of point labels (``kind`` body: C3...; disc: C2/C3...)."""
    out = []
    for i, j, k in np.argwhere(np.round(labels) > 0):
        v = int(round(float(labels[i, j, k])))
        out.append((float(j), float(k), disc_name(v) if kind in ("disc", "ldisc") else level_name(v)))
    return out


# -- moco animation -------------------------------------------------------------------------------
def _frame(vol: np.ndarray, lo: float, hi: float, zooms=(1.0, 1.0, 1.0)) -> np.ndarray:
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
    from PIL import Image as PILImage

    ims = [PILImage.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), PILImage.NEAREST)
           for f in frames]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".gif")
    os.close(fd)
    try:
        ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=ms, loop=0)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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


# -- runs -----------------------------------------------------------------------------------------
def _input(prov: dict, key: str) -> Path | None:
    v = prov.get("inputs", {}).get(key)
    if v in (None, "", "None"):
        return None
    return Path(v)


def _list_input(value) -> list[str | None]:
    """A provenance list (a JSON list, or a Python repr of one as ``str(list)`` writes)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        return [str(value)]
    return list(parsed) if isinstance(parsed, (list, tuple)) else [str(parsed)]


def _load(path: Path | str, what: str) -> Image:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} named in provenance.json not found", p,
                         "run QC where the run's inputs are still available")
    return load_image(p, check_finite=False)


def _template(prov: dict):
    from spinereg.io.template import load_template

    info = prov.get("template") or {}
    if isinstance(info, str):
        return load_template(info)
    root = info.get("root")
    if root and Path(root).is_dir():
        try:
            return load_template(root)
        except Exception:  # noqa: BLE001 - fall back to the name
            pass
    name = info.get("name") or prov.get("inputs", {}).get("template") or "PAM50"
    return load_template(name)


def _atlas_labels(template, grid: Grid, inv, threshold: float = 0.3) -> np.ndarray | None:
    """The template's tract atlas on ``grid`` as a label map (argmax of the tract maps > ``threshold``).

    The template points of ``grid`` are computed once; each tract is read only over their
    bounding box and sampled linearly (files are read in parallel threads: gzip releases the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    import nibabel as nib
    from scipy.ndimage import map_coordinates

    tracts = [t for t in template.atlas if t.exists and t.path is not None]
    if not tracts:
        return None
    first = nib.load(str(tracts[0].path))
    tgrid = Grid(tuple(int(v) for v in first.shape[:3]), first.affine)
    vox = tgrid.world_to_voxel(inv.map(grid.world_coords()))
    lo = np.clip(np.floor(vox.min(0)).astype(int) - 1, 0, np.array(tgrid.shape))
    hi = np.clip(np.ceil(vox.max(0)).astype(int) + 2, 0, np.array(tgrid.shape))
    if np.any(hi - lo < 1):
        return None
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    coords = (vox - lo).T

    def sample(path: Path) -> np.ndarray:
        img = nib.load(str(path))
        if img.shape[:3] != tgrid.shape or not np.allclose(img.affine, tgrid.affine, atol=1e-4):
            return on_grid(load_image(path, ndim=3, check_finite=False), grid, [inv], "linear")
        sub = np.asarray(img.dataobj[box], dtype=np.float32)
        return map_coordinates(sub, coords, order=1, cval=0.0).reshape(grid.shape)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as ex:
        maps = list(ex.map(sample, [t.path for t in tracts]))
    stack = np.stack(maps)
    lab = (stack.argmax(0) + 1).astype(np.int16)
    lab[stack.max(0) <= threshold] = 0
    return lab


def render_template_run(outdir: Path, image: Image, seg: Image | None, template, inv,
                        labels: Image | None = None, label_kind: str = "body",
                        template_on_image: Image | None = None, atlas: bool = True,
                        names: tuple[str, str] = ("subject", "template warped onto the subject")) -> list[Figure]:
    """Reportlets of a template registration seen on the subject (``inv``: template -> subject)."""
    from spinereg.io.image import load_image as _li

    tcord_img = _li(template.path("cord"), ndim=3, check_finite=False)
    full = image.grid
    seg_full = None if seg is None else np.asarray(seg.data) > 0.5
    if seg_full is None:
        seg_full = on_grid(tcord_img, full, [inv], "linear") > 0.5
    grid = crop_grid(full, seg_full)
    img = image if image.ndim == 3 else image.with_data(image.volume(0))
    base = to_ras(on_grid(img, grid, None, "linear"), grid.affine)
    segv = to_ras(on_grid(seg, grid, None, "linear") if seg is not None else on_grid(tcord_img, grid, [inv]),
                  grid.affine)
    cordmask = segv.data > 0.5
    tcord = to_ras(on_grid(tcord_img, grid, [inv], "linear"), grid.affine).data
    if template_on_image is not None:
        after = to_ras(on_grid(template_on_image, grid, None, "linear"), grid.affine)
    else:
        timg = _li(template.path("t2"), ndim=3, check_finite=False) if template.has("t2") else tcord_img
        after = to_ras(on_grid(timg, grid, [inv], "linear"), grid.affine)
    figs: list[Figure] = []
    seg_ov = Overlay(segv.data, "contour", SEG_COLOR, "segmentation")
    tpl_ov = Overlay(tcord, "contour", TEMPLATE_COLOR, "template cord")
    slices = axial_slices(cordmask)
    axial_mosaic(base, outdir / "axial_before.png", cordmask, [seg_ov], slices)
    axial_mosaic(after, outdir / "axial_after.png", cordmask, [seg_ov], slices,
                 window=_norm(after.data))
    figs.append(Figure("Axial mosaic", "toggle", {"before": "axial_before.png", "after": "axial_after.png"},
                       "red: subject cord segmentation", {"before": names[0], "after": names[1]}))
    overlays = [seg_ov, tpl_ov]
    caption = "red: segmentation; green: template cord warped onto the subject"
    if atlas:
        try:
            lab = _atlas_labels(template, grid, inv)
        except Exception as exc:  # noqa: BLE001 - an atlas problem must not lose the report
            log.warning("atlas overlay skipped: %s", exc)
            lab = None
        if lab is not None:
            overlays.insert(0, Overlay(to_ras(lab, grid.affine).data, "labels", name="atlas"))
            caption += "; colours: warped atlas tracts"
    axial_mosaic(base, outdir / "axial_overlays.png", cordmask, overlays, slices)
    figs.append(Figure("Template overlays", "single", {"image": "axial_overlays.png"}, caption))
    texts: list = []
    if template.has("levels"):
        lev = on_grid(_li(template.path("levels"), ndim=3, check_finite=False), grid, [inv], "nn")
        texts = level_texts(to_ras(lev, grid.affine).data)
    pts: list = []
    if labels is not None:
        lab_on = on_grid(labels, grid, None, "label")
        pts = label_points(to_ras(lab_on, grid.affine).data, label_kind)
    sag_ov = [seg_ov, tpl_ov]
    sagittal_view(base, outdir / "sagittal_before.png", cordmask, sag_ov, texts, pts)
    sagittal_view(after, outdir / "sagittal_after.png", cordmask, sag_ov, texts, pts,
                  window=_norm(after.data))
    figs.append(Figure("Sagittal view", "toggle", {"before": "sagittal_before.png", "after": "sagittal_after.png"},
                       "green: template cord and vertebral levels; yellow: subject labels; red: segmentation",
                       {"before": names[0], "after": names[1]}))
    return figs


def render_register_to_template(run_dir: Path, prov: dict, outdir: Path) -> list[Figure]:
    from spinereg.transforms.itk import read_displacement

    image = _load(_input(prov, "image"), "image")
    seg = _load(_input(prov, "seg"), "segmentation") if _input(prov, "seg") else None
    labels, kind = None, "body"
    for key in ("labels", "ldisc", "lrootlet"):
        if _input(prov, key):
            labels, kind = _load(_input(prov, key), "labels"), {"labels": "body", "ldisc": "disc"}.get(key, key)
            break
    inv = read_displacement(run_dir / "warp_template2anat.nii.gz")
    t2a = run_dir / "template2anat.nii.gz"
    return render_template_run(outdir, image, seg, _template(prov), inv, labels if kind != "lrootlet" else None,
                               kind, load_image(t2a, check_finite=False) if t2a.exists() else None)


def render_chain(run_dir: Path, prov: dict, outdir: Path) -> list[Figure]:
    from spinereg.register.multimodal_outputs import stem
    from spinereg.transforms.itk import read_displacement

    images = _list_input(prov.get("images") or prov.get("inputs", {}).get("images"))
    segs = _list_input(prov.get("segmentations") or prov.get("inputs", {}).get("segs"))
    if not images:
        raise InputError("provenance.json lists no images", run_dir / "provenance.json", "re-run spinereg chain")
    image = _load(images[0], "target image")
    seg_p = segs[0] if segs and segs[0] not in (None, "none", "None") else None
    seg = _load(seg_p, "segmentation") if seg_p else None
    inv = read_displacement(run_dir / f"warp_template2{stem(image, 'image0')}.nii.gz")
    return render_template_run(outdir, image, seg, _template(prov), inv, atlas=True,
                               names=(image.path.name if image.path else "target", "template warped onto it"))


def render_register(run_dir: Path, prov: dict, outdir: Path) -> list[Figure]:
    from spinereg.register.multimodal_outputs import stem

    src = _load(_input(prov, "input") or _input(prov, "src") or _input(prov, "image"), "source image")
    dest = _load(_input(prov, "dest"), "destination image")
    src_reg = _load(run_dir / f"{stem(src, 'src')}_reg.nii.gz", "registered source")
    dseg = _load(_input(prov, "dseg"), "destination segmentation") if _input(prov, "dseg") else None
    grid = crop_grid(dest.grid, None if dseg is None else np.asarray(dseg.data) > 0.5)
    dimg = dest if dest.ndim == 3 else dest.with_data(dest.volume(0))
    simg = src_reg if src_reg.ndim == 3 else src_reg.with_data(src_reg.volume(0))
    before = to_ras(on_grid(dimg, grid), grid.affine)
    after = to_ras(on_grid(simg, grid), grid.affine)
    if dseg is not None:
        mask = to_ras(on_grid(dseg, grid), grid.affine).data > 0.5
    else:
        mask = np.zeros(before.data.shape, bool)
        mask[tuple(s // 2 for s in mask.shape[:2])] = True
    ov = [Overlay(mask.astype(np.float32), "contour", SEG_COLOR, "destination segmentation")] if dseg is not None else []
    slices = axial_slices(mask)
    names = {"before": dest.path.name if dest.path else "dest", "after": src_reg.path.name}
    axial_mosaic(before, outdir / "axial_before.png", mask, ov, slices)
    axial_mosaic(after, outdir / "axial_after.png", mask, ov, slices, window=_norm(after.data))
    sagittal_view(before, outdir / "sagittal_before.png", mask, ov)
    sagittal_view(after, outdir / "sagittal_after.png", mask, ov, window=_norm(after.data))
    cap = "red: destination cord segmentation" if ov else ""
    return [Figure("Axial mosaic", "toggle", {"before": "axial_before.png", "after": "axial_after.png"}, cap, names),
            Figure("Sagittal view", "toggle", {"before": "sagittal_before.png", "after": "sagittal_after.png"}, cap,
                   names)]


def _moco_output(run_dir: Path, prov: dict, src: Image) -> Path:
    out = prov.get("outputs", {}).get("moco") if isinstance(prov.get("outputs"), dict) else None
    if out:
        p = Path(out)
        return p if p.is_absolute() else run_dir / p
    from spinereg.register.multimodal_outputs import stem

    cand = run_dir / f"{stem(src, 'image')}_moco.nii.gz"
    if cand.exists():
        return cand
    found = sorted(run_dir.glob("*_moco.nii*"))
    if not found:
        raise InputError("no motion-corrected series (*_moco.nii.gz) in the run folder", run_dir,
                         "give the folder written by the motion correction")
    return found[0]


def render_moco(run_dir: Path, prov: dict, outdir: Path) -> list[Figure]:
    src = _load(_input(prov, "image") or _input(prov, "input"), "4D series")
    moco = _load(_moco_output(run_dir, prov, src), "motion-corrected series")
    if src.ndim != 4 or moco.ndim != 4:
        raise InputError("motion correction QC needs 4D series", src.path, "give the 4D input and output")
    fb, fa = moco_frames(src), moco_frames(moco)
    save_gif(fb, outdir / "moco_before.gif")
    save_gif(fa, outdir / "moco_after.gif")
    frame_strip(fb, outdir / "moco_strip_before.png")
    frame_strip(fa, outdir / "moco_strip_after.png")
    names = {"before": "input series", "after": "motion corrected"}
    return [Figure("Motion (animated)", "toggle", {"before": "moco_before.gif", "after": "moco_after.gif"},
                   "mid-sagittal | mid-axial, volumes in time", names),
            Figure("Frames", "toggle", {"before": "moco_strip_before.png", "after": "moco_strip_after.png"}, "",
                   names)]


def render_spine_metrics(run_dir: Path, prov: dict, outdir: Path) -> list[Figure]:
    """Spine measures as charts per vertebra (heights, ratios, HU, angles) from metrics.json."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = metrics.get("rows", [])
    groups = {
        "Vertebral heights (mm)": ("height_anterior", "height_middle", "height_posterior"),
        "Height ratios": ("wedge_ratio", "biconcave_ratio"),
        "Trabecular HU": ("hu_mean",),
        "Angles (deg)": ("segmental_angle", "disc_label_angle", "cobb_angle"),
    }
    figs: list[Figure] = []
    for n, (title, measures) in enumerate(groups.items()):
        sel = [r for r in rows if r.get("measure") in measures and _num(r.get("value")) is not None]
        if not sel:
            continue
        names = sorted({str(r["name"]) for r in sel}, key=lambda x: [r["name"] for r in sel].index(x))
        fig = MplFigure(figsize=(6.4, 3.2), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(111)
        width = 0.8 / len(measures)
        for j, m in enumerate(measures):
            vals = {str(r["name"]): float(r["value"]) for r in sel if r["measure"] == m}
            xs = [i + j * width for i, nm in enumerate(names) if nm in vals]
            ax.bar(xs, [vals[nm] for nm in names if nm in vals], width, label=m)
        flagged = [f"{r['name']} ({r['flag']})" for r in sel if "likely" in str(r.get("flag", ""))]
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=45, fontsize=8)
        ax.set_title(title + (f" — flagged: {', '.join(flagged)}" if flagged else ""), fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fname = f"spine_{n}.png"
        save_png(fig, outdir / fname)
        figs.append(Figure(title, "single", {"image": fname}))
    return figs


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


RENDERERS = {
    "spine-metrics": render_spine_metrics,
    "register-to-template": render_register_to_template,
    "register": render_register,
    "chain": render_chain,
    "moco": render_moco,
}


def render_run(kind: str, run_dir: Path, prov: dict, outdir: Path) -> list[Figure]:
    """Render the reportlets of a run of ``kind`` into ``outdir``."""
    if kind not in RENDERERS:
        raise InputError(f"no QC for runs of '{kind}'", run_dir,
                         f"QC covers: {', '.join(RENDERERS)} (pass the kind explicitly if provenance.json lacks it)")
    return RENDERERS[kind](Path(run_dir), prov, Path(outdir))
