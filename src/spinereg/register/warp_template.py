"""Warp a template (and its atlas) onto a subject image, as SCT's ``sct_warp_template``.

``warp_template(dest, warps, outdir)`` writes ``outdir/template/<file>`` for every object listed in
the template's ``info_label.txt`` that exists on disk, with ``atlas=True`` ``outdir/atlas/<file>``
for every tract, with ``spinal_levels=True`` ``outdir/spinal_levels/<file>`` (templates that ship
per-level maps, as MNI-Poly-AMU), a copy of each ``info_label.txt`` next to them (so that SCT's
``sct_extract_metric -f outdir/atlas`` reads the folder) and ``outdir/provenance.json``.

Each object is resampled with its kind's interpolation (``TemplateObject.interp``): nearest for
masks and discrete levels, point-wise (``label``) for point labels, linear for probabilistic maps
and intensity templates. The template coordinates of the destination voxels are computed once
(:class:`DestinationMap`) and reused for every object; each file is read only within the
bounding box those coordinates need.

Outputs are staged in a hidden folder inside ``outdir`` and moved into place at the end: a failed
run leaves no partial output, and nothing is replaced without ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.spatial import cKDTree

from spinereg.errors import InputError, OutputError
from spinereg.io.box import pad_voxels
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image, output_os_error, require_writable_folder
from spinereg.io.provenance import describe_inputs, versions
from spinereg.io.resample import VolumeSampler, place_labels
from spinereg.io.tempdirs import make_temp_dir, remove_temp_dir
from spinereg.io.template import Template, TemplateObject, load_template
from spinereg.transforms.apply import as_chain
from spinereg.transforms.base import Chain, Transform

log = logging.getLogger(__name__)

__all__ = ["DestinationMap", "SkippedObject", "WarpTemplateResult", "WrittenObject", "warp_template"]


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrittenObject:
    """One warped file: ``folder`` is ``template``, ``atlas`` or ``spinal_levels``."""

    folder: str
    file: str
    path: Path
    description: str
    kind: str
    interp: str
    dtype: str
    nonzero: int

    def as_dict(self) -> dict:
        return {"folder": self.folder, "file": self.file, "description": self.description,
                "kind": self.kind, "interpolation": self.interp, "dtype": self.dtype,
                "nonzero_voxels": self.nonzero}


@dataclass(frozen=True)
class SkippedObject:
    """A listed object that was not written, and why."""

    folder: str
    file: str
    reason: str

    def as_dict(self) -> dict:
        return {"folder": self.folder, "file": self.file, "reason": self.reason}


@dataclass
class WarpTemplateResult:
    """What :func:`warp_template` wrote (paths are final), skipped, and how long it took."""

    outdir: Path
    template: str
    written: list[WrittenObject] = field(default_factory=list)
    skipped: list[SkippedObject] = field(default_factory=list)
    info_labels: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: Path | None = None
    seconds: float = 0.0

    def path(self, file: str) -> Path:
        """Output path of a template/atlas file name (e.g. ``PAM50_cord.nii.gz``)."""
        for w in self.written:
            if w.file == file:
                return w.path
        raise KeyError(file)


# -- mapped coordinates ------------------------------------------------------------------------
def _grid_key(grid: Grid) -> tuple:
    return tuple(grid.shape), np.round(grid.affine, 6).tobytes()


class DestinationMap:
    """Template-space world coordinates of every destination voxel, computed once.

    ``voxels(src)`` converts them to continuous voxel indices of a source grid (cached per
    grid) together with the bounding box of the source voxels that sampling needs. Points where
    the chain is undefined (legacy "undefined" warp values) are NaN and sample as 0.
    """

    def __init__(self, dest: Grid, transforms: Transform | Sequence[Transform] | None,
                 max_points: int = 2_000_000):
        self.dest = dest
        self.chain: Chain = as_chain(transforms)
        self.slabs = list(dest.chunks(max_points))
        self.world: list[np.ndarray] = []
        for k0, k1 in self.slabs:
            x = dest.world_coords(k0, k1)
            self.world.append(self.chain.map(x) if len(self.chain) else x)
        self._cache: dict[tuple, tuple[list[np.ndarray], tuple[slice, ...] | None]] = {}
        self._seed_tree: tuple[cKDTree, np.ndarray] | None = None
        self._lock = threading.Lock()

    def voxels(self, src: Grid) -> tuple[list[np.ndarray], tuple[slice, ...] | None]:
        """Per-slab voxel coordinates in ``src`` and the box (slices) of ``src`` they need.

        The box is ``None`` when no destination voxel maps inside ``src``. Linear sampling at
        a coordinate uses its floor and floor + 1, so the box spans floor(min) .. floor(max) + 1.
        """
        key = _grid_key(src)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._voxels(src)
        return self._cache[key]

    def _voxels(self, src: Grid) -> tuple[list[np.ndarray], tuple[slice, ...] | None]:
        ijk = [src.world_to_voxel(w).astype(np.float32) for w in self.world]
        shape = np.array(src.shape)
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for c in ijk:
            inside = np.all((c >= -0.5) & (c <= shape - 0.5), axis=1)
            if inside.any():
                lo = np.minimum(lo, c[inside].min(axis=0))
                hi = np.maximum(hi, c[inside].max(axis=0))
        box = None
        if np.all(np.isfinite(lo)):
            a = np.clip(np.floor(lo).astype(int), 0, shape - 1)
            b = np.clip(np.floor(hi).astype(int) + 2, 1, shape)
            box = tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))
        return ijk, box

    def label_box(self, src: Grid) -> tuple[slice, ...] | None:
        """Box of ``src`` holding every point label that can land on a destination voxel.

        A destination voxel reaches half a voxel beyond its centre: the sampling box is widened
        by twice that extent (allowing a local Jacobian up to 2) plus two source voxels.
        """
        _, box = self.voxels(src)
        if box is None:
            return None
        margin = pad_voxels(float(self.dest.zooms.max()), src.zooms, extra=2)
        shape = np.array(src.shape)
        return tuple(slice(max(0, s.start - m), min(int(n), s.stop + m))
                     for s, m, n in zip(box, margin, shape, strict=True))

    def sample(self, volume: np.ndarray, src: Grid, offset: Sequence[int], interp: str) -> np.ndarray:
        """Sample ``volume`` (the part of ``src`` starting at voxel ``offset``) on the destination grid."""
        ijk, _ = self.voxels(src)
        sampler = VolumeSampler(volume, interp, 0.0)
        out = np.empty(self.dest.shape, dtype=np.float32 if sampler.order else volume.dtype)
        off = np.asarray(offset, dtype=np.float32)
        nx, ny = self.dest.shape[:2]
        for (k0, k1), c in zip(self.slabs, ijk, strict=True):
            out[:, :, k0:k1] = sampler.at_voxels(c - off).reshape(nx, ny, k1 - k0)
        return out

    def push(self, points: np.ndarray, tol_mm: float) -> np.ndarray:
        """Destination world points ``x`` with ``chain.map(x) = points`` (NaN where none found).

        Newton's method (Jacobian by central differences), started at the destination node whose
        mapped position is nearest: unlike a fixed-point iteration started at the point itself,
        it cannot stop at the trivial solution that a field's identity outside its grid offers.
        Solutions with a residual above ``tol_mm`` are rejected.
        """
        pts = np.asarray(points, dtype=float)
        if not len(self.chain):
            return pts.copy()
        tree, seeds = self._seeds()
        _, j = tree.query(pts)
        x = seeds[j].copy()
        best, best_r = x.copy(), np.full(len(pts), np.inf)
        h = 0.25 * float(self.dest.zooms.min())
        eye = np.eye(3)
        for _ in range(30):
            f = self.chain.map(x) - pts
            r = np.linalg.norm(f, axis=1)
            better = r < best_r
            best[better], best_r[better] = x[better], r[better]
            active = r > 1e-4  # NaN (undefined) is not active
            if not active.any():
                break
            xa = x[active]
            jac = np.empty((len(xa), 3, 3))
            for d in range(3):
                jac[:, :, d] = (self.chain.map(xa + h * eye[d]) - self.chain.map(xa - h * eye[d])) / (2 * h)
            bad = ~np.all(np.isfinite(jac), axis=(1, 2))
            bad |= np.abs(np.linalg.det(np.where(bad[:, None, None], eye, jac))) < 1e-6
            jac[bad] = eye
            x[active] = xa - np.linalg.solve(jac, f[active][:, :, None])[:, :, 0]
        best[~(best_r <= tol_mm)] = np.nan
        return best

    def _seeds(self) -> tuple[cKDTree, np.ndarray]:
        with self._lock:
            if self._seed_tree is None:
                self._seed_tree = self._make_seeds()
        return self._seed_tree

    def _make_seeds(self) -> tuple[cKDTree, np.ndarray]:
        stride = max(1, int(np.ceil((self.dest.size / 200_000) ** (1 / 3))))
        coarse = self.dest.coarsened(stride)
        x = coarse.world_coords()
        y = self.chain.map(x)
        ok = np.all(np.isfinite(y), axis=1)
        if not ok.any():
            x, y = x[:1], np.full((1, 3), 1e12)
        else:
            x, y = x[ok], y[ok]
        return cKDTree(y), x

    def place_points(self, volume: np.ndarray, src: Grid, offset: Sequence[int]) -> np.ndarray:
        """Move each non-zero voxel of ``volume`` (a part of ``src``) to its nearest destination voxel.

        A point is kept when it has a pre-image in the destination grid (within half a template
        voxel); points landing on one voxel keep the last value.
        """
        idx = np.argwhere(volume != 0)
        vals = volume[tuple(idx.T)]
        pts = src.voxel_to_world(idx + np.asarray(offset))
        pushed = self.push(pts, 0.5 * float(src.zooms.min())) if len(pts) else pts
        ok = np.all(np.isfinite(pushed), axis=1)
        return place_labels(pushed[ok], vals[ok], self.dest, dtype=volume.dtype)


# -- reading a box of a file --------------------------------------------------------------------
def _open(path: Path) -> tuple[nib.Nifti1Image, Grid]:
    try:
        img = nib.load(str(path), keep_file_open=False)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(f"template file is not a readable NIfTI ({type(exc).__name__})", path,
                         "fetch the template again (`spinereg data fetch NAME`)") from exc
    shape = img.shape
    if len(shape) < 3 or (len(shape) > 3 and int(np.prod(shape[3:])) != 1):
        raise InputError(f"template file is not a 3D volume (shape {shape})", path,
                         "remove it from info_label.txt or give a 3D file")
    return img, Grid(shape[:3], img.affine)


def _read_box(img: nib.Nifti1Image, box: tuple[slice, ...], path: Path) -> np.ndarray:
    index = box + (0,) * (len(img.shape) - 3)
    try:
        data = np.asarray(img.dataobj[index])
    except (EOFError, OSError, ValueError) as exc:
        raise InputError(f"cannot read the template file ({type(exc).__name__}: {exc})", path,
                         "fetch the template again (`spinereg data fetch NAME`)") from exc
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    return data


def _warp_file(path: Path, interp: str, dmap: DestinationMap) -> np.ndarray:
    img, src = _open(path)
    if interp == "label":
        box = dmap.label_box(src)
    else:
        _, box = dmap.voxels(src)
    if box is None:  # nothing of this file reaches the destination: zeros of the output dtype
        probe = _read_box(img, (slice(0, 1),) * 3, path)
        return np.zeros(dmap.dest.shape, dtype=np.float32 if interp == "linear" else probe.dtype)
    data = _read_box(img, box, path)
    offset = [s.start for s in box]
    if interp == "label":
        return dmap.place_points(data, src, offset)
    return dmap.sample(data, src, offset, interp)


# -- info_label.txt ------------------------------------------------------------------------------
def _filtered_info_label(src: Path, drop: set[str]) -> str:
    """``src`` with the IndivLabels rows of files in ``drop`` removed (comments kept)."""
    text = src.read_text(encoding="utf-8", errors="replace")
    if not drop:
        return text
    out = []
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if s and not s.startswith("#") and s.split(",")[-1].strip() in drop:
            continue
        out.append(line)
    return "".join(out)


# -- the job -------------------------------------------------------------------------------------
@dataclass
class _Job:
    folder: str
    file: str
    src: Path
    description: str
    kind: str
    interp: str


def _jobs(tpl: Template, atlas: bool, spinal_levels: bool) -> tuple[list[_Job], list[SkippedObject],
                                                                     dict[str, Path], list[str]]:
    jobs: list[_Job] = []
    skipped: list[SkippedObject] = []
    infos: dict[str, Path] = {"template": tpl.template_dir / "info_label.txt"}
    notes: list[str] = []

    def add(folder: str, obj: TemplateObject) -> None:
        if obj.exists:
            jobs.append(_Job(folder, obj.file, obj.path, obj.description, obj.kind, obj.interp))
        else:
            skipped.append(SkippedObject(folder, obj.file, "missing from the template folder"))

    for obj in tpl.objects:
        add("template", obj)
    if atlas:
        if tpl.atlas.root is None:
            raise InputError(f"template {tpl.name} has no atlas", tpl.root,
                             "drop --atlas or give a template with atlas/info_label.txt (PAM50, MNI-Poly-AMU)")
        infos["atlas"] = tpl.atlas.root / "info_label.txt"
        for tract in tpl.atlas.tracts:
            if tract.exists and tract.path is not None:
                jobs.append(_Job("atlas", str(tract.file), tract.path, tract.name, tract.kind, "linear"))
            else:
                skipped.append(SkippedObject("atlas", str(tract.file), "missing from the atlas folder"))
    if spinal_levels:
        maps = tpl.spinal_level_maps
        if maps:
            infos["spinal_levels"] = maps[0].path.parent / "info_label.txt"
            for obj in maps:
                add("spinal_levels", obj)
        else:
            own = [o.file for o in tpl.objects if o.role in ("spinal_levels", "spinal_midpoint") and o.exists]
            notes.append(f"template {tpl.name} has no spinal_levels/ folder"
                         + (f"; its spinal levels are template objects ({', '.join(own)}), written in template/"
                            if own else "; no spinal level maps written"))
    return jobs, skipped, infos, notes


def _dest_grid(dest: str | Path | Image | Grid) -> tuple[Grid, str, nib.Nifti1Header | None]:
    if isinstance(dest, Grid):
        return dest, repr(dest), None
    if isinstance(dest, Image):
        return dest.grid, dest.name, dest.header
    img = load_image(dest, ndim=(3, 4), check_finite=False, lazy=True, what="destination image")
    return img.grid, str(dest), img.header


def _load_warps(warps: Sequence[str | Path | Transform]) -> list[Transform]:
    from spinereg.transforms.itk import load_transform

    return [w if isinstance(w, Transform) else load_transform(w) for w in warps]


#: a warp field covering less than this share of the destination is warned of
MIN_FIELD_COVERAGE = 0.95


class _InverseOnGrid(Transform):
    """``inv:W`` where it is the inverse of ``W``'s grid: the points ``y = W.map(x)`` of some ``x``
    on ``W``'s grid (within half a voxel). Elsewhere (NaN here) the inverse applied is the identity
    that ``W`` is continued with beyond its grid: the pre-image found is the point itself."""

    def __init__(self, inverse: Transform, field: Transform, grid: Grid):
        self._inv, self._field, self._grid = inverse, field, grid
        self._tol = 0.25 * float(grid.zooms.min())

    def map(self, points: np.ndarray) -> np.ndarray:
        y = np.asarray(points, dtype=float)
        x = self._inv.map(y)
        ijk = self._grid.world_to_voxel(x)
        on = np.all((ijk >= -0.5) & (ijk <= np.array(self._grid.shape) - 0.5), axis=1)
        on &= np.linalg.norm(self._field.map(x) - y, axis=1) <= self._tol  # NaN: False
        x[~on] = np.nan
        return x

    def inverse(self) -> Transform:  # pragma: no cover - only mapped
        return self._field


def _on_grid_only(u: Transform) -> Transform | None:
    """``u`` undefined (NaN) where it applies a displacement field's outside identity, or None
    when ``u`` is no such field (an affine, a field with another continuation)."""
    import copy

    from spinereg.transforms.displacement import DisplacementField, FieldInverse

    if isinstance(u, DisplacementField) and u.outside == "identity":
        g = copy.copy(u)
        g.outside = "nan"
        return g
    if isinstance(u, FieldInverse) and u.field.outside == "identity":
        return _InverseOnGrid(u, u.field, u.field.grid)
    return None


def _field_coverage_notes(grid: Grid, transforms: Sequence[Transform], names: Sequence[str],
                          dest_name: str) -> list[str]:
    """Warn when a displacement field of the chain covers only part of the destination: outside
    its grid the displacement is zero (as ITK/ANTs), the template placed there unregistered (t2
    given mt's warp_template2mt: PAM50_small_t2 written on 144k voxels of t2, 109k of them outside
    the warp, with no word before session 40). An inverted field (``inv:W``) covers the points
    that ``W`` maps its grid to; elsewhere its inverse is the identity (``inv:`` of
    warp_anat2template cut to its upper half on t2: no word before session 41)."""
    stride = max(1, int(np.ceil((grid.size / 50_000) ** (1 / 3))))
    ijk = np.stack(np.meshgrid(*[np.arange(0, n, stride) for n in grid.shape], indexing="ij"), -1)
    x = grid.voxel_to_world(ijk.reshape(-1, 3))  # voxel centres (a coarsened grid's reach past the edge)
    parts = [list(t.transforms) if isinstance(t, Chain) else [t] for t in transforms]
    defined = np.all(np.isfinite(as_chain(transforms).map(x)), axis=1)
    out: list[str] = []
    for k, own in enumerate(parts):
        strict = {id(u): s for u in own if (s := _on_grid_only(u)) is not None}
        if not strict:
            continue
        chain = Chain([strict.get(id(u), u) for p in parts for u in p])
        covered = np.all(np.isfinite(chain.map(x)), axis=1) & defined
        share = float(covered.sum() / max(int(defined.sum()), 1))
        if share < MIN_FIELD_COVERAGE:
            name = names[k] if k < len(names) else str(k + 1)
            inverted = any(isinstance(s, _InverseOnGrid) for s in strict.values())
            where = ("outside the image of its grid its inverse is the identity, the template placed "
                     "without it" if inverted else
                     "outside its grid the template is placed without it (zero displacement, as ANTs does)")
            msg = (f"the warp {name} covers {100 * share:.0f} % of the destination {dest_name}: {where}, "
                   "not registered; give the warp made for this image")
            log.warning(msg)
            out.append(msg)
            break  # one note: the first field that falls short is enough to name
    return out


def _nifti(data: np.ndarray, grid: Grid, header: nib.Nifti1Header | None) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, grid.affine)
    img.header.set_data_dtype(data.dtype)
    scode = int(header["sform_code"]) if header is not None and "sform_code" in header else 0
    qcode = int(header["qform_code"]) if header is not None and "qform_code" in header else 0
    img.set_sform(grid.affine, code=scode or 1)
    img.set_qform(grid.affine, code=qcode or 1)
    img.header["xyzt_units"] = 2 | (int(header["xyzt_units"]) & 0x38 if header is not None else 0)
    return img


def warp_template(
    dest: str | Path | Image | Grid,
    warps: Sequence[str | Path | Transform],
    outdir: str | Path,
    template: str | Path | Template = "PAM50",
    atlas: bool = False,
    spinal_levels: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    command_line: str | None = None,
) -> WarpTemplateResult:
    """Warp every template object (and the atlas) onto ``dest``'s grid, as ``sct_warp_template``.

    Parameters
    ----------
    dest: the subject image (or its grid) whose grid the outputs take.
    warps: transforms in application order, template -> subject first (e.g.
        ``["warp_template2anat.nii.gz", "warp_anat2mt.nii.gz"]``); ``inv:W`` or ``[W,1]`` uses an
        inverse. An empty list resamples in world space.
    outdir: output folder; gets ``template/``, ``atlas/`` (``atlas=True``), ``spinal_levels/``
        (``spinal_levels=True``, templates with per-level maps) and ``provenance.json``.
    template: ``PAM50``, ``MNI-Poly-AMU``, ``PAM50_small``, a template folder or a
        :class:`~spinereg.io.template.Template`.
    overwrite: replace existing outputs; without it, any existing output is an error raised
        before any work.
    workers: threads reading, warping and writing files (default: CPUs available, at most 8).
    command_line: the command that ran (for provenance.json, which also holds the sha256 of
        every input file, the versions and the UTC time).

    Listed objects missing on disk (mirrors omit the intensity templates) are skipped and
    reported in ``result.skipped``; the copied ``info_label.txt`` then omits their rows.
    """
    t0 = time.perf_counter()
    tpl = template if isinstance(template, Template) else load_template(template)
    grid, dest_name, dest_header = _dest_grid(dest)
    transforms = _load_warps(warps)
    jobs, skipped, infos, notes = _jobs(tpl, atlas, spinal_levels)
    if not jobs:
        raise InputError(f"template {tpl.name} has no object file on disk", tpl.template_dir,
                         "fetch the template (`spinereg data fetch NAME`) or give another one")

    if transforms:  # < 1 s, before the work: a warp for the other direction brings nothing (all-zero files)
        from spinereg.io.image import read_grid
        from spinereg.transforms.sanity import check_overlap

        names = [w if isinstance(w, str | Path) else f"transform {k + 1}" for k, w in enumerate(warps)]
        check_overlap(read_grid(jobs[0].src, what="template object"), grid, transforms, [str(n) for n in names],
                      source_name=str(tpl.template_dir), reference_name=str(dest_name),
                      source_option="(the template)", reference_option="-d")
        notes.extend(_field_coverage_notes(grid, transforms, [str(n) for n in names], str(dest_name)))
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise OutputError("output folder is a file", out, "choose a folder name")
    targets = [out / j.folder / j.file for j in jobs] + [out / f / "info_label.txt" for f in infos]
    targets.append(out / "provenance.json")
    if not overwrite:
        existing = [str(p.relative_to(out)) for p in targets if p.exists()]
        if existing:
            more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
            raise OutputError(f"outputs exist ({', '.join(existing[:3])}{more})", out,
                              "pass --overwrite or choose another folder")
    # before the work: the folder (or the first one there is above it) and its existing subfolders
    # are written into when the files are moved in, after everything was warped
    for folder in [out, *out.parents]:
        if folder.is_dir():
            require_writable_folder(folder)
            break
    for sub in sorted({p.parent for p in targets} - {out}):
        if sub.is_dir():
            require_writable_folder(sub)

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = make_temp_dir(".warp_template.", dir=out)
    except OSError as exc:
        raise output_os_error(exc, out) from exc
    result = WarpTemplateResult(out, tpl.name, skipped=skipped, notes=notes)
    done = False
    try:
        dmap = DestinationMap(grid, transforms)
        t_map = time.perf_counter() - t0
        for folder in {j.folder for j in jobs}:
            (stage / folder).mkdir(exist_ok=True)

        def run(job: _Job) -> WrittenObject:
            data = _warp_file(job.src, job.interp, dmap)
            nib.save(_nifti(data, grid, dest_header), str(stage / job.folder / job.file))
            return WrittenObject(job.folder, job.file, out / job.folder / job.file, job.description,
                                 job.kind, job.interp, str(data.dtype), int(np.count_nonzero(data)))

        # reading (gzip) and writing release the GIL: a few threads overlap them
        n_workers = workers or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                   else (os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
            futures = [pool.submit(run, job) for job in jobs]
            for n, fut in enumerate(as_completed(futures), 1):
                fut.result()
                if progress:
                    progress(n, len(jobs))
            result.written = [f.result() for f in futures]
        drop: dict[str, set[str]] = {}
        for s in skipped:
            drop.setdefault(s.folder, set()).add(s.file)
        for folder, info in infos.items():
            (stage / folder).mkdir(exist_ok=True)
            text = _filtered_info_label(info, drop.get(folder, set()))
            (stage / folder / "info_label.txt").write_text(text, encoding="utf-8")
            result.info_labels.append(out / folder / "info_label.txt")
        result.provenance = out / "provenance.json"
        result.seconds = time.perf_counter() - t0
        prov = _provenance(result, tpl, dest_name, grid, warps, atlas, spinal_levels, t_map)
        prov["command_line"] = command_line
        prov["input_files"] = describe_inputs({"dest": dest if isinstance(dest, (str, Path)) else None,
                                               "warps": [w for w in warps if isinstance(w, (str, Path))]})
        (stage / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n", encoding="utf-8")
        # move into place: renames within one file system, after everything was written
        for folder in {j.folder for j in jobs} | set(infos):
            (out / folder).mkdir(exist_ok=True)
        for src in sorted(stage.rglob("*")):
            if src.is_file():
                os.replace(src, out / src.relative_to(stage))
        done = True
    except OSError as exc:
        raise output_os_error(exc, out) from exc
    finally:
        remove_temp_dir(stage)
        if created and not done:
            shutil.rmtree(out, ignore_errors=True)
    log.info("warp-template: %d files in %.2f s", len(result.written), result.seconds)
    return result


def _provenance(result: WarpTemplateResult, tpl: Template, dest_name: str, grid: Grid,
                warps: Sequence, atlas: bool, spinal_levels: bool, t_map: float) -> dict:
    return {
        "command": "warp-template",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": {"dest": dest_name, "warps": [str(w) for w in warps], "atlas": atlas,
                   "spinal_levels": spinal_levels},
        "template": {"name": tpl.name, "root": str(tpl.root)},
        "dest_grid": {"shape": list(grid.shape), "affine": np.round(grid.affine, 6).tolist()},
        "objects": [w.as_dict() for w in result.written],
        "skipped": [s.as_dict() for s in result.skipped],
        "notes": result.notes,
        "seconds": {"coordinates": round(t_map, 3), "total": round(result.seconds, 3)},
        "versions": versions(),
    }
