"""NIfTI images: checked loading, header-preserving atomic saving.

``load_image`` turns every way a file can be wrong (missing, not a NIfTI, truncated gzip, wrong
dimensionality, NaN/Inf voxels) into a :class:`~spinereg.errors.InputError` naming the file and
the fix. ``save_image`` writes to a temporary name in the destination folder and renames, so a
failed run never leaves a partial output, and refuses to overwrite unless asked.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from spinereg.errors import InputError, OutputError
from spinereg.io.fastgz import write_nifti
from spinereg.io.grid import Grid

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from nibabel.arrayproxy import ArrayProxy
    from numpy.typing import DTypeLike

log = logging.getLogger(__name__)

_READ_ERRORS = (EOFError, zlib.error, OSError, ValueError)


class Image:
    """A 3D or 4D image in world space.

    ``data`` is loaded on first access (4D series can instead be read volume by volume with
    :meth:`volume`). ``affine`` maps voxel indices to RAS+ mm; ``header`` is the original NIfTI
    header, kept so that saved outputs carry the input's metadata.
    """

    def __init__(
        self,
        data: np.ndarray | None,
        affine: np.ndarray,
        header: nib.Nifti1Header | None = None,
        path: str | Path | None = None,
        dataobj: ArrayProxy | np.ndarray | None = None,
    ):
        self._data = None if data is None else np.asanyarray(data)
        self._dataobj = dataobj
        self.affine = np.asarray(affine, dtype=float)
        self.header = header.copy() if header is not None else nib.Nifti1Header()
        self.path = None if path is None else Path(path)
        #: set by :func:`load_image`: volumes read lazily are checked for NaN/Inf as they are read
        self.check_finite = False
        self.what = "image"

    # -- shape and geometry -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        if self._data is not None:
            return tuple(self._data.shape)
        return tuple(self._dataobj.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nvols(self) -> int:
        return 1 if self.ndim == 3 else int(np.prod(self.shape[3:]))

    @property
    def grid(self) -> Grid:
        return Grid(self.shape[:3], self.affine)

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "<image>"

    # -- data -------------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            data = _read(self._dataobj, self.name, slice(None))
            if self.check_finite:
                _check_finite(data, self.name, self.what)
            self._data = data
        return self._data

    def volume(self, t: int) -> np.ndarray:
        """Volume ``t`` of a 4D series (the image itself for 3D), read without loading the rest."""
        if self.ndim == 3:
            return self.data
        if self._data is not None:
            return self._data.reshape(self.shape[:3] + (-1,), order="F")[..., t]
        if len(self.shape) > 4:  # 5D+: volume t in Fortran order of the trailing axes
            index = (Ellipsis,) + np.unravel_index(t, self.shape[3:], order="F")
        else:
            index = (Ellipsis, t)
        vol = _read(self._dataobj, self.name, index)
        if self.check_finite:
            _check_finite(vol, self.name, self.what, f" (volume {t})")
        return vol

    def with_data(self, data: np.ndarray, affine: np.ndarray | None = None) -> Image:
        """A new image sharing this one's header (and affine unless given)."""
        return Image(data, self.affine if affine is None else affine, self.header, None)

    def to_nifti(self, dtype: DTypeLike | None = None) -> nib.Nifti1Image:
        data = self.data if dtype is None else self.data.astype(dtype)
        hdr = self.header.copy()
        img = nib.Nifti1Image(data, self.affine, hdr)
        img.header.set_data_dtype(data.dtype)
        codes = (int(hdr["sform_code"]) or 1, int(hdr["qform_code"]) or 1)
        img.set_sform(self.affine, code=codes[0])
        img.set_qform(self.affine, code=codes[1])
        return img


def _check_finite(data: np.ndarray, name: str, what: str, where: str = "") -> None:
    if data.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(
            f"{what} has {int(bad.sum())} NaN/Inf voxels{where}",
            name,
            "replace them by finite values (e.g. `fslmaths IN -nan OUT`)",
        )


def _read(dataobj: ArrayProxy | np.ndarray, name: str,
          index: slice | tuple[object, ...]) -> np.ndarray:
    try:
        return np.asanyarray(dataobj[index])
    except _READ_ERRORS as exc:
        raise InputError(
            f"cannot read the voxel data ({type(exc).__name__}: {exc}); the file looks truncated or corrupt",
            name,
            "copy or download the file again (check `gzip -t` for .nii.gz)",
        ) from exc


#: the fix for a 2D file where an image is needed
SLICE_AS_3D_FIX = "give a 3D image (a single slice must be stored 3D, (x, y, 1), with its slice thickness in the header)"


def load_image(
    path: str | Path,
    *,
    ndim: int | tuple[int, ...] | None = None,
    check_finite: bool = True,
    lazy: bool = False,
    what: str = "image",
) -> Image:
    """Load a NIfTI image with checks.

    Parameters
    ----------
    path: file to read (``.nii`` or ``.nii.gz``).
    ndim: required dimensionality (3, 4 or a tuple of allowed values). A 4D image with a single
        volume is accepted as 3D.
    check_finite: refuse images with NaN or Inf voxels.
    lazy: for 4D series, do not read the voxels now (use :meth:`Image.volume`).
    what: word used in error messages ("image", "mask", "label file", ...).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found", p, "check the path and spelling")
    if p.is_dir():
        raise InputError(f"{what} is a folder, not a NIfTI file", p, "give a .nii or .nii.gz file")
    try:
        # lazy 4D series are read volume by volume in order: keep one decompression stream open
        nimg = nib.load(str(p), keep_file_open=bool(lazy))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise _unreadable(p, what, exc) from exc
    if not isinstance(nimg, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"not a NIfTI {what} ({type(nimg).__name__})", p, "convert it to NIfTI")
    _check_qform_sform(nimg, p)
    _check_affine(nimg.affine, p, what)
    shape = nimg.shape
    dataobj = nimg.dataobj
    if len(shape) > 4 and sum(d > 1 for d in shape[3:]) == 1:
        # a series stored 5D (x, y, z, 1, t), as some converters write it: read as 4D
        shape = (*shape[:3], int(np.prod(shape[3:])))
        dataobj = dataobj.reshape(shape)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    eff_ndim = 3 if (len(shape) > 3 and int(np.prod(shape[3:])) == 1) else len(shape)
    if allowed is not None and eff_ndim not in allowed:
        want = " or ".join(f"{a}D" for a in allowed)
        if eff_ndim > 3 and 4 not in allowed:
            fix = "give one volume (e.g. the mean: `spinereg` accepts a 3D image here; `fslmaths IN -Tmean OUT`)"
        elif eff_ndim > 4:
            fix = "give a 4D series (x, y, z, volumes)"
        elif eff_ndim < 3:
            # a single slice stored 2D (x, y): the grid needs the third axis (before session 36 the
            # fix said "give a 4D series" to a 2D image where a 3D one was needed)
            fix = SLICE_AS_3D_FIX
        elif 4 in allowed:
            fix = "give a 4D series"
        else:
            fix = "give a 3D image"
        # a 4D file of one volume is read as 3D: said so (moco said 'series is 3D (68, 68, 6, 1)')
        single = " (a 4D file of one volume)" if len(shape) > 3 and eff_ndim == 3 else ""
        if single and 4 in allowed:
            fix = "give the whole series (more than one volume)"
        raise InputError(f"{what} is {eff_ndim}D {shape}{single}, {want} needed", p, fix)
    img = Image(None, nimg.affine, nimg.header, p, dataobj=dataobj)
    img.check_finite = check_finite
    img.what = what
    if eff_ndim == 3 and len(shape) > 3:
        img._data = _read(nimg.dataobj, str(p), slice(None)).reshape(shape[:3])
        if check_finite:
            _check_finite(img._data, str(p), what)
    if not lazy or eff_ndim == 3:
        img.data  # noqa: B018 -- read (and check) now
    return img


#: a NIfTI-1 header's size; a file (or gzip stream) that ends before it holds no header
_NIFTI_HEADER_BYTES = 348


def _unreadable(p: Path, what: str, exc: Exception) -> InputError:
    """The error for a file nibabel cannot open: a NIfTI file (or the gzip stream of one) that
    ends inside its header is named truncated (a 200-byte piece of t2.nii.gz was 'not a readable
    NIfTI ... convert DICOM with dcm2niix' before session 39), anything else not a NIfTI file."""
    import gzip

    if p.stat().st_size == 0:  # was "not a readable NIfTI ... convert DICOM" (session 49)
        return InputError(f"{what} is an empty file (0 bytes)", p,
                          "copy or convert the image again (an interrupted copy or conversion leaves an empty file)")
    with open(p, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    head = b""
    with contextlib.suppress(OSError, EOFError, zlib.error):
        with gzip.open(p, "rb") if gz else open(p, "rb") as f:
            head = f.read(_NIFTI_HEADER_BYTES)
    nifti_start = head[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c")  # sizeof_hdr 348, either byte order
    if (gz or nifti_start) and len(head) < _NIFTI_HEADER_BYTES:
        return InputError(f"{what} ends inside its NIfTI header ({len(head)} of {_NIFTI_HEADER_BYTES} header bytes "
                          "readable): the file looks truncated",
                          p, "copy or download the file again (check `gzip -t` for .nii.gz)")
    return InputError(f"not a readable NIfTI {what} ({exc.__class__.__name__})", p,
                      "give a .nii or .nii.gz file (convert DICOM with dcm2niix)")


def read_grid(path: str | Path, what: str = "image") -> Grid:
    """The voxel grid of a NIfTI file from its header alone (no voxel data read), with the same
    one-line errors as :func:`load_image` for missing or unreadable files."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found", p, "check the path and spelling")
    if p.is_dir():
        raise InputError(f"{what} is a folder, not a NIfTI file", p, "give a .nii or .nii.gz file")
    try:
        nimg = nib.load(str(p))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise _unreadable(p, what, exc) from exc
    if not isinstance(nimg, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"not a NIfTI {what} ({type(nimg).__name__})", p, "convert it to NIfTI")
    if len(nimg.shape) < 3:
        raise InputError(f"{what} is {len(nimg.shape)}D {tuple(nimg.shape)}, 3D needed", p, SLICE_AS_3D_FIX)
    _check_affine(nimg.affine, p, what)
    return Grid(nimg.shape[:3], nimg.affine)


def _check_affine(affine: np.ndarray, p: Path, what: str) -> None:
    """A voxel-to-world matrix with no inverse (a zero voxel size or a zeroed axis in the sform)
    gives no geometry: refused (before session 36: an overflow or a header error from deep inside
    `segment` / `apply`, as an internal error)."""
    lin = np.asarray(affine, float)[:3, :3]
    det = float(np.linalg.det(lin)) if np.all(np.isfinite(lin)) else float("nan")
    scale = float(np.prod(np.linalg.norm(lin, axis=0))) if np.all(np.isfinite(lin)) else float("nan")
    if not np.isfinite(det) or abs(det) <= 1e-6 * max(scale, 1e-12):
        raise InputError(f"the {what}'s voxel-to-world matrix is singular (determinant {det:.3g}: a zero voxel "
                         "size or axis in its header)", p,
                         "repair the header's sform / qform (e.g. convert the DICOM again with dcm2niix)")


def _check_qform_sform(nimg: nib.Nifti1Image, p: Path) -> None:
    hdr = nimg.header
    if int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 0:
        # nibabel then builds an affine from the voxel sizes alone (axes L-R, P-A, I-S): every
        # result in world space rests on that guess (t2.nii.gz so stripped: "no spinal cord found")
        warnings.warn(f"{p}: the header holds no orientation (qform and sform codes are 0): its voxel axes are "
                      "taken as L-R, P-A, I-S; if the image is not stored that way, every result in world space "
                      "is wrong (set the orientation, e.g. convert the DICOM again with dcm2niix)", stacklevel=3)
        return
    if int(hdr["qform_code"]) > 0 and int(hdr["sform_code"]) > 0:
        q = hdr.get_qform()
        s = hdr.get_sform()
        if not np.allclose(q, s, atol=1e-3):
            shear = shear_deg(s)
            if shear > SHEAR_TOL_DEG:
                # a qform holds no shear (nibabel writes the sform's nearest rotation): ITK (ANTs, SCT)
                # then refuses the sform and reads the qform, so the two worlds differ
                far = _corner_gap_mm(q, s, nimg.shape[:3])
                msg = (f"{p}: the sform holds a shear ({shear:.2g} deg between voxel axes) that a qform cannot hold; "
                       f"spinereg uses the sform (as nibabel), ITK / ANTs / SCT the qform, which puts voxels up to "
                       f"{far:.2g} mm elsewhere: results exchanged with those tools differ by as much (resample the "
                       "image onto a grid without shear before mixing tools)")
            else:
                msg = (f"{p}: qform and sform disagree (max difference {np.abs(q - s).max():.3g}); "
                       "using the sform, as nibabel and ITK do")
            warnings.warn(msg, stacklevel=3)


#: voxel axes further than this from perpendicular (deg) are a shear
SHEAR_TOL_DEG = 0.01


def shear_deg(affine: np.ndarray) -> float:
    """Largest departure (deg) from 90 of the angles between an affine's voxel axes (0 for the
    rotation-and-scaling affines of scanners; a CT's tilted gantry shears its axes)."""
    m = np.asarray(affine, float)[:3, :3]
    n = m / np.linalg.norm(m, axis=0)
    c = np.clip(np.abs((n.T @ n)[np.triu_indices(3, 1)]), 0.0, 1.0)
    return float(np.degrees(np.arcsin(c)).max())


def _corner_gap_mm(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance (mm) between where two affines put the grid's corner voxels."""
    corners = np.array(np.meshgrid(*[[0, max(int(n) - 1, 0)] for n in shape], indexing="ij")).reshape(3, -1)
    pts = np.vstack([corners, np.ones(corners.shape[1])])
    return float(np.linalg.norm((a @ pts - b @ pts)[:3], axis=0).max())


def check_writable(path: str | Path, overwrite: bool = False) -> Path:
    """Check that ``path`` may be written: refuse existing files without ``overwrite``."""
    p = Path(path)
    if p.is_dir():
        raise OutputError("output is a folder", p, "give a file name (e.g. out.nii.gz)")
    if p.exists() and not overwrite:
        raise OutputError("output exists", p, "pass --overwrite or choose another name")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if parent.exists() and not parent.is_dir():
            why = "a file of that name exists"
        raise OutputError(f"cannot create the output folder ({why})", parent, "choose a writable folder") from exc
    require_writable_folder(parent)
    return p


def require_writable_folder(folder: str | Path) -> None:
    """Raise :class:`OutputError` unless the existing folder ``folder`` may be written into (files
    created, renamed, removed). Every command checks its output folder with it before its work."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError("output folder is not writable", folder, "choose a writable folder or fix its permissions")


_OUTPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT,
                  errno.ENOTDIR, errno.EISDIR, errno.EFBIG}


def output_os_error(exc: OSError, path: str | Path) -> Exception:
    """An :class:`OutputError` for an OS error while writing ``path`` (others are returned as is)."""
    if exc.errno not in _OUTPUT_ERRNOS:
        return exc
    why = exc.strerror or type(exc).__name__
    fix = "free disk space or choose another folder" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) \
        else "choose a writable folder or fix its permissions"
    return OutputError(f"cannot write the output ({why})", path, fix)


def file_mode() -> int:
    """Mode of new output files: read/write as the umask allows (``mkstemp`` alone gives 0600)."""
    from spinereg.io.staging import umask

    return 0o666 & ~umask()


def make_temp(path: Path, suffix: str = "") -> str:
    """Create a hidden temporary file next to ``path`` (``.NAME.XXXX.part``); return its name.

    The file gets the mode a plain ``open`` would give (0666 less the umask), so that the output
    renamed from it is readable by the colleagues the umask lets in.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    except OSError as exc:
        raise output_os_error(exc, path) from exc
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return tmp


def atomic_write(path: str | Path, writer: Callable[[Path], object],
                 overwrite: bool = False) -> Path:
    """Call ``writer(tmp_path)`` then rename ``tmp_path`` to ``path`` (same folder, same suffix).

    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    p = check_writable(path, overwrite)
    suffix = "".join(p.suffixes[-2:]) if p.name.endswith(".nii.gz") else p.suffix
    tmp = make_temp(p, suffix)
    try:
        writer(Path(tmp))
        os.replace(tmp, p)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise output_os_error(exc, p) from exc
        raise
    return p


def save_image(
    img: Image | nib.Nifti1Image, path: str | Path, *, overwrite: bool = False,
    dtype: DTypeLike | None = None,
) -> Path:
    """Write ``img`` atomically (temporary name, then rename). Refuses to overwrite by default.
    ``.nii.gz`` is deflated in parallel threads (:mod:`spinereg.io.fastgz`: one standard gzip
    stream, the bytes nibabel would write)."""
    nimg = img.to_nifti(dtype) if isinstance(img, Image) else img
    return atomic_write(path, lambda tmp: write_nifti(nimg, tmp), overwrite)


def require_same_grid(a: Image, b: Image, atol: float = 1e-4, what: str = "images") -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` share one voxel grid (shape and affine)."""
    ga, gb = a.grid, b.grid
    if ga.same_as(gb, atol=atol):
        return
    if ga.shape != gb.shape:
        diff = f"shape {ga.shape} vs {gb.shape}"
    else:
        diff = f"affines differ by up to {np.abs(ga.affine - gb.affine).max():.3g} mm"
    raise InputError(
        f"{what} are not on the same voxel grid ({diff}): {a.name} and {b.name}",
        b.name,
        f"resample one onto the other, e.g. `spinereg apply -i {b.name} -d {a.name} -x nn -o OUT`",
    )


def reordered_onto(grid: Grid, img: Image, atol: float = 1e-4) -> Image | None:
    """``img`` with its voxel axes reordered/flipped onto ``grid`` when that gives ``grid`` exactly
    (every voxel at the same world position within ``atol``, the tolerance of :meth:`Grid.same_as
    <spinereg.io.grid.Grid.same_as>`), else None. No interpolation; the result has ``grid``'s
    affine, ``img``'s header and path, and its trailing (4D) axes unchanged."""
    from nibabel import orientations as ornt

    ga = img.grid
    if sorted(ga.shape) != sorted(grid.shape):
        return None
    tr = ornt.ornt_transform(ornt.io_orientation(ga.affine), ornt.io_orientation(grid.affine))
    moved_affine = ga.affine @ ornt.inv_ornt_aff(tr, ga.shape)
    shape = tuple(ga.shape[int(i)] for i in np.argsort(tr[:, 0]))
    if not Grid(shape, moved_affine).same_as(grid, atol=atol):
        return None
    data = np.ascontiguousarray(ornt.apply_orientation(img.data, tr))
    out = Image(data, grid.affine, img.header, img.path)
    out.check_finite, out.what = img.check_finite, img.what
    return out


def on_grid_of(img: Image, ref: Image, atol: float = 1e-4) -> Image:
    """``img`` moved exactly onto ``ref``'s voxel grid when it holds the same voxels stored in
    another axis order or with flipped axes (e.g. one of them reoriented by ``sct_image
    -setorient RPI`` or ``fslreorient2std`` and the other not; :func:`reordered_onto`).
    Otherwise (already on ``ref``'s grid, or a real grid difference: another shape, spacing or
    position) ``img`` itself is returned, for :func:`require_same_grid` to accept or refuse as
    before. Such a pair was refused as "not on the same voxel grid" before session 39 (save for
    ``topup``'s blip-down image, and the metrics' own reordering, :mod:`spinereg.metrics.overlap`)."""
    if img.grid.same_as(ref.grid, atol=atol):
        return img
    return reordered_onto(ref.grid, img, atol) or img


def onto_grid_of(img: Image, ref: Image, *, what: str = "images", atol: float = 1e-4) -> Image:
    """``img`` on ``ref``'s voxel grid, or refused: :func:`on_grid_of` (the same voxels in another
    axis order or with flipped axes moved exactly onto ``ref``'s grid; ``img`` itself when already
    on it) then :func:`require_same_grid` ``(ref, img, what=what)``, whose :class:`InputError`
    ("{what} are not on the same voxel grid (...): REF and IMG", naming ``img``'s file, with the
    ``spinereg apply`` resample hint) refuses any other difference (shape, spacing, position).

    The argument order is that of :func:`on_grid_of`: the image to move first, the reference second
    (:func:`spinereg.metrics.overlap.same_grid_as` takes them the other way round)."""
    moved = on_grid_of(img, ref, atol)
    require_same_grid(ref, moved, atol, what)
    return moved


def require_nonempty(mask: Image, what: str = "mask") -> None:
    """Raise :class:`InputError` if ``mask`` has no non-zero voxel."""
    if not np.any(mask.data):
        raise InputError(f"{what} is empty (no non-zero voxel)", mask.name,
                         f"check that the right {what} was given (it may have been thresholded away)")


def require_labels(img: Image, what: str = "label file") -> np.ndarray:
    """Raise :class:`InputError` if ``img`` holds no non-zero label; return the sorted label values."""
    data = img.data
    vals = np.unique(data[data != 0])
    if vals.size == 0:
        raise InputError(f"{what} has no labels (all voxels are 0)", img.name,
                         "give the file with non-zero values at the labelled points")
    return vals


def output_path(path: str | Path) -> Path:
    """Normalise an output name: add ``.nii.gz`` when no NIfTI suffix is given. An existing folder
    is refused (``segment -o FOLDER`` wrote ``FOLDER.nii.gz`` beside it)."""
    p = Path(path)
    if p.is_dir():
        raise OutputError("output is a folder", p, f"give a file name (e.g. {p / 'out.nii.gz'})")
    if not (p.name.endswith(".nii") or p.name.endswith(".nii.gz")):
        p = p.with_name(p.name + ".nii.gz")
    return p


def path_stem(path: str | Path) -> str:
    """A file's name without ``.nii``/``.nii.gz`` (SCT's naming of outputs)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def pair_stems(src: str, dest: str) -> tuple[str, str]:
    """Output stems of a source / destination pair: their own, or ``<stem>_src`` / ``<stem>_dest``
    when they are the same (two files called t2.nii.gz, or an image registered onto itself), so
    that ``warp_A2B`` and ``warp_B2A`` are two files (before session 36 `register` worked ~11 s and
    stopped: "warp_t22t2.nii.gz: output exists")."""
    return (src, dest) if src != dest else (f"{src}_src", f"{dest}_dest")


def file_stem(img: Image, default: str) -> str:
    """``img``'s file name without ``.nii``/``.nii.gz`` (SCT's naming of outputs); ``default`` for an
    image that has no file."""
    if img.path is None:
        return default
    return path_stem(img.path)
