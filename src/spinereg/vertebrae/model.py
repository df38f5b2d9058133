"""The template's spine in its own cord frame: tissue classes per depth and arc length.

PAM50 is a straightened template: its cord runs along world S-I, so its cord frame is
``a = x - x_c(z)`` (left-right), ``b = y - y_c(z)`` (depth, anterior positive) and ``s = z``.
:func:`spine_model` reads the template's cord, CSF and spine (bone) masks in a mid-sagittal slab
(``|a| <= slab_mm``) and classifies every (depth, arc length) cell as cord, CSF, vertebral body,
intervertebral disc (the non-bone cells of the vertebral-body column between two bodies),
posterior bone (arches, spinous processes) or other tissue. The disc labels give each disc's arc
length. Nothing here depends on an intensity template: the subject is matched to the classes
with any intensity per class (see :mod:`spinereg.vertebrae.match`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from spinereg.cord.landmarks import read_point_labels
from spinereg.errors import DataNotFoundError
from spinereg.io.image import load_image
from spinereg.io.resample import sample_world
from spinereg.vertebrae.cordwidth import template_lr_width

if TYPE_CHECKING:
    from spinereg.io.image import Image
    from spinereg.io.template import Template

OTHER, CORD, CSF, BODY, DISC, POST, DISC_CORE, BODY_RIM = range(8)
CLASS_NAMES = ("other", "cord", "csf", "body", "disc", "posterior", "disc core", "body rim")
#: PAM50 disc value of the conus medullaris tip
CONUS = 60
#: relative spread of one vertebra's height (disc to disc) around the template's, times the
#: subject's scale (the labeling chain's spacing term, and the checks of its steps)
SPACING_SD = 0.15


@dataclass(frozen=True)
class SpineModel:
    """Template classes ``classes[i, j]`` at depth ``b[i]`` and arc length ``s[j]`` (mm, both
    increasing: anterior, superior); disc ``disc_values[k]`` at ``disc_s[k]`` (sorted top down:
    values increase, ``s`` decreases); ``cord_top_s``/``cord_bottom_s``: the template cord's ends;
    ``column_back``/``column_front``: depth of the vertebral-body column's walls per row;
    ``cord_width``: the cord's left-right width per row."""

    b: np.ndarray
    s: np.ndarray
    classes: np.ndarray
    disc_values: np.ndarray
    disc_s: np.ndarray
    cord_top_s: float
    cord_bottom_s: float
    column_back: np.ndarray
    column_front: np.ndarray
    cord_width: np.ndarray
    name: str = "PAM50"

    @property
    def ds(self) -> float:
        return float(self.s[1] - self.s[0])

    def rows(self, s: np.ndarray) -> np.ndarray:
        """Nearest row indices of arc lengths ``s`` (clipped to the model)."""
        return np.clip(np.rint((np.asarray(s, float) - self.s[0]) / self.ds).astype(int), 0, len(self.s) - 1)


def _slab_mean(img: Image, xc: np.ndarray, yc: np.ndarray, z: np.ndarray, a: np.ndarray,
               b: np.ndarray) -> np.ndarray:
    """Mean over ``a`` of the image at (xc + a, yc + b, z): array (len(b), len(z))."""
    aa, bb, zz = np.meshgrid(a, b, np.arange(len(z)), indexing="ij")
    pts = np.stack([xc[zz] + aa, yc[zz] + bb, z[zz]], -1).reshape(-1, 3)
    vals = sample_world(np.asarray(img.data, np.float32), img.affine, pts, "linear", cval=0.0)
    return vals.reshape(len(a), len(b), len(z)).mean(0)


_FIELDS = ("b", "s", "classes", "disc_values", "disc_s", "cord_top_s", "cord_bottom_s", "column_back",
           "column_front", "cord_width")
_VERSION = 2


@lru_cache(maxsize=4)
def spine_model(template: str = "PAM50") -> SpineModel:
    """The class map of a straight template (default PAM50): cached per process and on disk in
    the user cache (keyed by the template files' names, sizes and times), rebuilt when they
    change."""
    from spinereg.io.registry import cache_dir
    from spinereg.io.template import load_template

    tpl = load_template(template)
    roles = [r for r in ("cord", "spine", "disc", "csf") if tpl.has(r)]
    key = hashlib.sha1(repr((_VERSION, [(str(tpl.path(r)), tpl.path(r).stat().st_size,
                                         tpl.path(r).stat().st_mtime_ns) for r in roles])).encode()).hexdigest()[:16]
    path = cache_dir() / "vertebrae" / f"spine_model_{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return SpineModel(**{f: (z[f] if z[f].ndim else float(z[f])) for f in _FIELDS}, name=tpl.name)
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: rebuild
    model = build_spine_model(tpl)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
        np.savez_compressed(tmp, **{f: getattr(model, f) for f in _FIELDS})
        os.replace(tmp, path)
    except OSError:
        pass  # read-only cache: fine, rebuilt next time
    return model


def build_spine_model(tpl: Template, slab_mm: float = 3.0, db: float = 1.0, ds: float = 0.5,
                      b_range: tuple[float, float] = (-45.0, 60.0), core_mm: float = 1.5,
                      rim_mm: float = 3.0) -> SpineModel:
    """Build the class map of ``tpl`` (a :class:`~spinereg.io.template.Template`)."""
    for role in ("cord", "spine", "disc"):
        if not tpl.has(role):
            raise DataNotFoundError(f"template {tpl.name} has no '{role}' file, needed for vertebral labeling",
                                    tpl.template_dir, "use PAM50 (the default template)")
    cord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    spine = load_image(tpl.path("spine"), ndim=3, check_finite=False)
    csf = load_image(tpl.path("csf"), ndim=3, check_finite=False) if tpl.has("csf") else None
    discs = read_point_labels(load_image(tpl.path("disc"), ndim=3, check_finite=False), "disc")

    # straight cord axis: per-slice centre of mass of the cord, smoothed
    cm = np.asarray(cord.data) > 0.5
    idx = np.argwhere(cm)
    world = cord.grid.voxel_to_world(idx)
    zs = np.round(world[:, 2] / ds) * ds
    zu, inv = np.unique(zs, return_inverse=True)
    xc = np.bincount(inv, world[:, 0]) / np.bincount(inv)
    yc = np.bincount(inv, world[:, 1]) / np.bincount(inv)
    cord_bottom, cord_top = float(zu[0]), float(zu[-1])
    zmin = float(cord.grid.voxel_to_world(np.zeros((1, 3)))[0, 2])
    zmax = float(cord.grid.voxel_to_world(np.array([cord.shape]) - 1.0)[0, 2])
    z = np.arange(np.ceil(min(zmin, zmax) / ds) * ds, max(zmin, zmax), ds)
    xs = ndimage.gaussian_filter1d(np.interp(z, zu, xc), 10.0 / ds, mode="nearest")
    ys = ndimage.gaussian_filter1d(np.interp(z, zu, yc), 10.0 / ds, mode="nearest")
    a = np.arange(-slab_mm, slab_mm + 1e-6, 1.0)
    b = np.arange(b_range[0], b_range[1] + 1e-6, db)

    cord_m = _slab_mean(cord, xs, ys, z, a, b) > 0.5
    bone = _slab_mean(spine, xs, ys, z, a, b) > 0.5
    csf_m = (_slab_mean(csf, xs, ys, z, a, b) > 0.5) if csf is not None else np.zeros_like(bone)
    classes = np.full(bone.shape, OTHER, np.int8)
    canal = cord_m | csf_m
    # the body column: bone anterior to the canal; its walls per row, widened over +-10 mm of s
    front_of_canal = np.where(canal.any(0), np.max(np.where(canal, b[:, None], -np.inf), 0), 0.0)
    ant = bone & (b[:, None] > front_of_canal[None] + 0.5)
    has = ant.any(0)
    back = np.where(has, np.min(np.where(ant, b[:, None], np.inf), 0), np.nan)
    front = np.where(has, np.max(np.where(ant, b[:, None], -np.inf), 0), np.nan)
    win = int(round(10.0 / ds))
    rows = np.arange(len(z))
    back_f = np.interp(rows, rows[has], back[has])
    front_f = np.interp(rows, rows[has], front[has])
    back_f = ndimage.minimum_filter1d(back_f, 2 * win + 1, mode="nearest")
    front_f = ndimage.median_filter(ndimage.maximum_filter1d(front_f, 2 * win + 1, mode="nearest"), 2 * win + 1)
    column = (b[:, None] >= back_f[None]) & (b[:, None] <= front_f[None])
    classes[bone] = POST
    classes[bone & column] = BODY
    classes[column & ~bone & ~canal] = DISC
    # disc core: the middle of each gap along s (within core_mm of the run's mid-point);
    # body rim: body cells within rim_mm of a gap along s (the endplates)
    disc = classes == DISC
    runs, n = ndimage.label(disc, structure=np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]]))
    jj = np.broadcast_to(np.arange(disc.shape[1])[None], disc.shape)
    mid = np.asarray(ndimage.mean(jj, runs, np.arange(1, n + 1))) if n else np.zeros(0)
    mid_of = np.concatenate([[0.0], mid])[runs]
    classes[disc & (np.abs(jj - mid_of) * ds <= core_mm)] = DISC_CORE
    body = classes == BODY
    dist = ndimage.distance_transform_edt(~disc, sampling=(1e6, ds))
    classes[body & (dist <= rim_mm)] = BODY_RIM
    classes[csf_m] = CSF
    classes[cord_m] = CORD
    keep = discs.values != CONUS
    order = np.argsort(discs.values[keep])
    return SpineModel(b, z, classes, discs.values[keep][order].astype(int), discs.points[keep][order, 2],
                      cord_top, cord_bottom, back_f, front_f, template_lr_width(cord, z), tpl.name)
