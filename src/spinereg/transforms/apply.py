"""Apply a chain of transforms to an image with a single interpolation (3D or streamed 4D)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image
from spinereg.io.resample import VolumeSampler, interp_name, label_points, place_labels
from spinereg.transforms.base import Chain, Transform

#: output voxels mapped at a time (their coordinates and the chain's temporaries: ~100 bytes each)
CHUNK_POINTS = 500_000


def as_chain(transforms: Transform | Sequence[Transform] | None) -> Chain:
    if transforms is None:
        return Chain([])
    if isinstance(transforms, Transform):
        return Chain([transforms])
    return Chain(list(transforms))


def on_grid(transform: Transform, grid: Grid) -> bool:
    """Whether ``transform`` is a displacement field sampled on exactly ``grid`` (its values at
    the grid's voxel centres are then its nodes: see ``DisplacementField.node_displacement``)."""
    from spinereg.transforms.displacement import DisplacementField

    g = getattr(transform, "grid", None)
    return (isinstance(transform, DisplacementField) and g is not None and tuple(g.shape) == tuple(grid.shape)
            and np.array_equal(g.affine, grid.affine))


def map_grid(chain: Chain, ref: Grid, k0: int = 0, k1: int | None = None) -> np.ndarray:
    """``chain.map`` of the world points of ``ref``'s voxels of slab ``k0:k1``; a first-applied
    displacement field on ``ref`` itself (or on a grid ``ref`` is a voxel-aligned part of) is read
    off its nodes instead of interpolated."""
    x = ref.world_coords(k0, k1)
    if not len(chain):
        return x
    first = chain.transforms[-1]
    if on_grid(first, ref):
        x = x + first.node_displacement(k0, k1)
        rest = chain.transforms[:-1]
        return Chain(rest).map(x) if rest else x
    from spinereg.transforms.displacement import _node_slices

    sl = _node_slices(first, ref)
    if sl is not None:  # ``ref`` a voxel-aligned part of the field's grid: its nodes too
        k1 = ref.shape[2] if k1 is None else k1
        x = x + first.data[sl][:, :, k0:k1].reshape(-1, 3)
        rest = chain.transforms[:-1]
        return Chain(rest).map(x) if rest else x
    return chain.map(x)


def source_voxels(chain: Chain, ref: Grid, src: Grid, k0: int = 0, k1: int | None = None) -> np.ndarray:
    """Continuous voxel coordinates in ``src`` of the reference voxels of slab ``k0:k1``."""
    return src.world_to_voxel(map_grid(chain, ref, k0, k1))


def _apply_volume(volume: np.ndarray, src: Grid, ref: Grid, chain: Chain, interp: str, cval: float,
                  coords: list[np.ndarray] | None = None) -> np.ndarray:
    if interp == "label":
        pts, vals = label_points(volume, src.affine)
        pushed = chain.inverse_map(pts) if len(chain) else pts
        return place_labels(pushed, vals, ref, dtype=volume.dtype)
    if (not len(chain) and coords is None and interp in ("linear", "nn") and src.shape == ref.shape
            and np.array_equal(src.affine, ref.affine)):
        # the identity onto the image's own grid: every voxel centre reads its own value
        return np.array(volume, dtype=np.float32 if interp == "linear" else volume.dtype)
    sampler = VolumeSampler(volume, interp, cval)
    out = np.empty(ref.shape, dtype=np.float32 if sampler.order else volume.dtype)
    for n, (k0, k1) in enumerate(ref.chunks(CHUNK_POINTS)):
        ijk = coords[n] if coords is not None else source_voxels(chain, ref, src, k0, k1)
        out[:, :, k0:k1] = sampler.at_voxels(ijk).reshape(ref.shape[0], ref.shape[1], k1 - k0)
    return out


def _ref_grid(reference: Image | Grid) -> Grid:
    return reference if isinstance(reference, Grid) else reference.grid


def _output_dtype(img_dtype: np.dtype, interp: str) -> np.dtype:
    return np.dtype(img_dtype) if interp in ("nn", "label") else np.dtype(np.float32)


class _StoredAs:
    """How ``apply_transforms_file`` stores an nn / label result of a scaled input (a NIfTI with
    ``scl_slope`` / ``scl_inter``, e.g. integers from the scanner).

    nn and label copy input values (and the fill value ``cval``), so the input's stored integers
    with its scaling hold them exactly, in the file size of the input: each value ``v`` is stored as
    ``rint((v - inter) / slope)``. When ``cval`` has no stored integer (``scl_inter`` not a
    multiple of the slope away from it) or the input is stored as floats, the result is written as
    floats (``float32`` for 8/16-bit inputs, else ``float64``: every stored value exactly).
    Before, the scaled values were written as float64 (a 3D image twice the size of its
    int16 input) and a 4D series cast them to the stored type without the scaling (values outside
    its range wrapped)."""

    def __init__(self, path: str | Path, interp: str, cval: float):
        import nibabel as nib

        proxy = nib.load(str(path)).dataobj
        self.dtype = np.dtype(proxy.dtype)
        slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
        #: (slope, inter) to write with the stored integers; None: floats (or an unscaled input as it is)
        self.scaling: tuple[float, float] | None = None
        #: an nn / label result of a scaled input: ``dtype`` and ``scaling`` say how it is stored
        self.scaled = interp in ("nn", "label") and not (slope == 1.0 and inter == 0.0)
        if not self.scaled:
            return
        fill = (cval - inter) / slope if slope else np.nan
        if (self.dtype.kind in "iu" and np.isfinite(fill) and fill == np.rint(fill)
                and np.iinfo(self.dtype).min <= fill <= np.iinfo(self.dtype).max):
            self.scaling = (slope, inter)
        else:
            self.dtype = np.promote_types(self.dtype, np.float32)

    def stored(self, values: np.ndarray) -> np.ndarray:
        """``values`` (scaled, as read) in the stored type."""
        if self.scaling is None:
            return np.asarray(values, dtype=self.dtype)
        slope, inter = self.scaling
        info = np.iinfo(self.dtype)
        return np.clip(np.rint((values - inter) / slope), info.min, info.max).astype(self.dtype)


def apply_transforms(
    img: Image,
    reference: Image | Grid,
    transforms: Transform | Sequence[Transform] | None = None,
    interp: str = "linear",
    cval: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    per_volume: Sequence[Transform] | None = None,
) -> Image:
    """Resample ``img`` onto ``reference`` through ``transforms`` (application order).

    Each output voxel is interpolated once, whatever the number of transforms. 4D images are
    processed volume by volume (the mapped coordinates are computed once and reused).
    ``per_volume[t]`` (e.g. motion correction: reference-volume points -> volume ``t`` points)
    is applied to volume ``t`` before ``transforms``; still one interpolation per volume.
    """
    interp = interp_name(interp)
    ref = _ref_grid(reference)
    chain = as_chain(transforms)
    src = img.grid
    if img.ndim == 3:
        data = _apply_volume(img.data, src, ref, chain, interp, cval)
        return _with_grid(img, data, ref)
    nvol = img.nvols
    _check_per_volume(per_volume, nvol)
    coords = _cached_coords(chain, ref, src) if interp != "label" and per_volume is None else None
    mid = _cached_world(chain, ref) if per_volume is not None else None
    out = None
    for t in range(nvol):
        vol = _volume_t(img.volume(t), src, ref, chain, interp, cval, coords, per_volume, mid, t)
        if out is None:  # the type the volumes come in: nn of a scaled series gives its scaled values
            out = np.empty(tuple(ref.shape) + (nvol,), dtype=vol.dtype)
        out[..., t] = vol
        if progress:
            progress(t + 1, nvol)
    return _with_grid(img, out.reshape(tuple(ref.shape) + tuple(img.shape[3:])), ref)


def _check_per_volume(per_volume: Sequence[Transform] | None, nvol: int) -> None:
    if per_volume is not None and len(per_volume) != nvol:
        from spinereg.errors import InputError

        raise InputError(f"{len(per_volume)} per-volume transforms for {nvol} volumes", None,
                         "give one transform per volume (e.g. the motion table of this series)")


def _cached_world(chain: Chain, ref: Grid) -> list[np.ndarray]:
    """World points of the reference voxels after ``chain`` (per slab), for per-volume links."""
    out = []
    for k0, k1 in ref.chunks(CHUNK_POINTS):
        out.append(map_grid(chain, ref, k0, k1))
    return out


def _volume_t(vol: np.ndarray, src: Grid, ref: Grid, chain: Chain, interp: str, cval: float,
              coords: list[np.ndarray] | None, per_volume: Sequence[Transform] | None,
              mid: list[np.ndarray] | None, t: int) -> np.ndarray:
    if per_volume is None:
        return _apply_volume(vol, src, ref, chain, interp, cval, coords)
    if interp == "label":
        return _apply_volume(vol, src, ref, Chain([per_volume[t], *chain.transforms]), interp, cval)
    vox = [src.world_to_voxel(per_volume[t].map(m)) for m in mid]
    return _apply_volume(vol, src, ref, chain, interp, cval, vox)


def _cached_coords(chain: Chain, ref: Grid, src: Grid, limit: int = 20_000_000) -> list[np.ndarray] | None:
    if ref.size > limit:
        return None
    return [source_voxels(chain, ref, src, k0, k1).astype(np.float32) for k0, k1 in ref.chunks(CHUNK_POINTS)]


def _with_grid(img: Image, data: np.ndarray, ref: Grid) -> Image:
    out = Image(data, ref.affine, img.header, None)
    out.header.set_data_shape(data.shape)
    return out


def apply_transforms_file(
    in_path: str | Path,
    reference: Image | Grid,
    transforms: Transform | Sequence[Transform] | None,
    out_path: str | Path,
    interp: str = "linear",
    cval: float = 0.0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    per_volume: Sequence[Transform] | None = None,
) -> Path:
    """File-to-file apply. 4D series are streamed: one input and one output volume in memory.

    ``per_volume``: one transform per volume applied first (see :func:`apply_transforms`). No
    input checks: :func:`spinereg.transforms.apply_checks.apply_checked` (``spinereg apply``) checks
    the transforms against the images first and returns its warnings."""
    from spinereg.io.stream import StreamingNiftiWriter

    interp = interp_name(interp)
    img = load_image(in_path, lazy=True)
    stored = _StoredAs(in_path, interp, cval)
    if img.ndim == 3:
        from spinereg.io.image import save_image

        out = apply_transforms(img, reference, transforms, interp, cval, per_volume=None)
        if stored.scaling is None:
            return save_image(out, out_path, overwrite=overwrite, dtype=stored.dtype if stored.scaled else None)
        nimg = Image(stored.stored(out.data), out.affine, out.header).to_nifti()
        nimg.header.set_slope_inter(*stored.scaling)  # the stored integers with the input's scaling
        return save_image(nimg, out_path, overwrite=overwrite)
    ref = _ref_grid(reference)
    chain = as_chain(transforms)
    src = img.grid
    nvol = img.nvols
    _check_per_volume(per_volume, nvol)
    coords = _cached_coords(chain, ref, src) if interp != "label" and per_volume is None else None
    mid = _cached_world(chain, ref) if per_volume is not None else None
    dtype = stored.dtype if stored.scaled else _output_dtype(img.header.get_data_dtype(), interp)
    writer = StreamingNiftiWriter(out_path, tuple(ref.shape) + (nvol,), ref.affine, dtype,
                                  template_header=img.header, overwrite=overwrite)
    if stored.scaling is not None:  # the stored integers with the input's scaling (header not yet written)
        writer.header.set_slope_inter(*stored.scaling)
    with writer:
        for t in range(nvol):
            vol = _volume_t(img.volume(t), src, ref, chain, interp, cval, coords, per_volume, mid, t)
            writer.write_volume(stored.stored(vol) if stored.scaled else vol)
            if progress:
                progress(t + 1, nvol)
    return Path(out_path)


def resample(img: Image, reference: Image | Grid, interp: str = "linear", cval: float = 0.0) -> Image:
    """Resample ``img`` onto a reference grid in world space (no transform)."""
    return apply_transforms(img, reference, None, interp, cval)
