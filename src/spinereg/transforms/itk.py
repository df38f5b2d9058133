"""ITK/ANTs file adapters: displacement fields (5D NIfTI, LPS+ mm) and affines (.mat, .txt).

Everything inside spinereg is RAS+; the sign flips of x and y happen only here.
"""

from __future__ import annotations

import re
import weakref
from pathlib import Path

import nibabel as nib
import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import atomic_write
from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.displacement import DisplacementField, FieldInverse

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_FLIP3 = np.array([-1.0, -1.0, 1.0], dtype=np.float32)
#: the 'no value' marker of SCT's own warps (float32's largest, e.g. ``mt/warp_t22mt1``): read as
#: undefined by spinereg (any |value| > 1e4 mm) and sending a point off every image in ANTs/ITK
UNDEFINED_MARK = float(np.finfo(np.float32).max)
AFFINE_SUFFIXES = (".mat", ".txt", ".tfm")


def is_affine_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AFFINE_SUFFIXES


# -- displacement fields ------------------------------------------------------------------------
#: fields this process wrote: resolved path -> (size, mtime_ns, the field); read back from memory
#: while the file is unchanged (see read_displacement); the last few only, held weakly
_WRITTEN: dict[str, tuple[int, int, weakref.ref, bool]] = {}
_WRITTEN_MAX = 4


def _remember(path: Path, field: DisplacementField, marked: bool = False) -> None:
    st = path.stat()
    _WRITTEN[str(path.resolve())] = (st.st_size, st.st_mtime_ns, weakref.ref(field), marked)
    while len(_WRITTEN) > _WRITTEN_MAX:
        _WRITTEN.pop(next(iter(_WRITTEN)))


def _written(p: Path) -> DisplacementField | None:
    """The field read back from ``p`` without decompressing it, when this process wrote ``p``, the
    file is unchanged and the field is still alive: its values as the file holds them (NaN
    written as 0, or kept undefined where it was written as ``UNDEFINED_MARK``) on the grid the
    file's header gives (float32 affine), as a read would."""
    key = str(p.resolve())
    entry = _WRITTEN.get(key)
    if entry is None:
        return None
    size, mtime, ref, marked = entry
    field = ref()
    st = p.stat()
    if field is None or (st.st_size, st.st_mtime_ns) != (size, mtime):
        _WRITTEN.pop(key, None)
        return None
    hdr = nib.load(str(p))  # the header only: the data stays on disk
    if hdr.shape != tuple(field.grid.shape) + (1, 3) or hdr.get_data_dtype() != np.float32:
        return None
    data = field.data if marked else np.nan_to_num(field.data, nan=0.0)
    return DisplacementField(Grid(field.grid.shape, hdr.affine), data)


def read_displacement(path: str | Path) -> DisplacementField:
    """Read an ITK/ANTs displacement field (nx, ny, nz, 1, 3) or (nx, ny, nz, 3), LPS+ mm."""
    p = Path(path)
    if not p.exists():
        raise InputError("warp not found", p, "check the path")
    known = _written(p)
    if known is not None:
        return known
    try:
        img = nib.load(str(p))
        data = np.asanyarray(img.dataobj).astype(np.float32, copy=False)
    except Exception as exc:
        raise InputError(f"not a readable warp field ({exc.__class__.__name__}: {exc})", p,
                         "give an ITK/ANTs displacement field (5D NIfTI, intent vector)") from exc
    if data.ndim == 5 and data.shape[3] == 1 and data.shape[4] == 3:
        vec = data[:, :, :, 0, :]
    elif data.ndim == 4 and data.shape[3] == 3:
        vec = data
    else:
        raise InputError(
            f"not a 3D displacement field (shape {data.shape}, expected (nx, ny, nz, 1, 3))", p,
            "give a warp_*.nii.gz written by spinereg, SCT or ANTs; use -w only for warps and affines",
        )
    # LPS -> RAS in the same pass that lays the field out in C order (the order DisplacementField
    # keeps; the file's data comes in Fortran order): one copy of the field, not two
    ras = np.empty(vec.shape, np.float32)
    np.multiply(vec, _FLIP3, out=ras)
    del data, vec
    return DisplacementField(Grid(ras.shape[:3], img.affine), ras)


def write_displacement(field: DisplacementField, path: str | Path, overwrite: bool = False,
                       mark_undefined: bool = True) -> Path:
    """Write a field as ITK/ANTs expect: 5D float32, intent vector (1007), LPS+ mm.

    Undefined (NaN) voxels are written as ``UNDEFINED_MARK``, SCT's own 'no value' marker, which
    every reader (spinereg, ANTs) takes for "no image there" (``mark_undefined=False``: as 0, the
    identity). A composition whose points run through an SCT warp's undefined voxels must not
    become the identity there (:func:`~spinereg.transforms.apply_checks.concat_checked`). Fields
    spinereg estimates have no undefined voxel (none in register, register-to-template, chain and
    straighten on sct_testing_data); a given ``--init-warp`` can: ``register -i t2 -d mt1
    --init-warp mt/warp_t22mt1`` wrote 358 of mt1's 8000 voxels as the identity, before session 49."""
    data = np.nan_to_num(field.data, nan=UNDEFINED_MARK if mark_undefined else 0.0) * _FLIP3
    img = nib.Nifti1Image(data[:, :, :, None, :].astype(np.float32), field.grid.affine)
    img.header.set_intent("vector", (), name="")
    img.set_qform(field.grid.affine, code=1)
    img.set_sform(field.grid.affine, code=1)
    img.header["xyzt_units"] = 2  # mm
    from spinereg.io.fastgz import write_nifti

    out = atomic_write(path, lambda tmp: write_nifti(img, tmp), overwrite)
    _remember(Path(out), field, mark_undefined)
    return out


# -- affines ------------------------------------------------------------------------------------
def _lps_to_ras(a: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = t + c - a @ c
    return _LPS @ m @ _LPS


#: ITK text transform types read as a 12-parameter affine (matrix + translation) or a translation
_ITK_AFFINE_TYPES = ("AffineTransform", "MatrixOffsetTransformBase", "Rigid3DTransform", "TranslationTransform")


def _check_itk_text_kind(text: str, p: Path) -> None:
    """Raise :class:`InputError` unless ``text`` holds exactly one affine or translation: a
    composite file (several transforms) was read as its first transform alone and a
    ``ScaleTransform`` (3 parameters) as a translation, exit 0 (before session 39)."""
    kinds = re.findall(r"^Transform:\s*(\S+)", text, re.M)
    inner = [k for k in kinds if not k.startswith("CompositeTransform")]
    if len(inner) > 1 or (kinds and not inner):
        raise InputError(f"an ITK composite of {len(inner)} transforms ({', '.join(inner) or 'none'}): only one "
                         "affine per file is read", p,
                         "split it into one file per transform and give them to -w in application order (a "
                         "composite lists the last applied first), or "
                         "compose them into one warp with ANTs' antsApplyTransforms -o [warp.nii.gz,1]")
    if inner and not inner[0].startswith(_ITK_AFFINE_TYPES):
        raise InputError(f"ITK transform type {inner[0]} is not read (affines and translations are)", p,
                         "give the transform as an affine (e.g. ANTs' antsApplyTransforms -o Linear[out.mat] "
                         "collapses a linear chain) or as a displacement field (.nii.gz)")


def _fsl_matrix(p: Path) -> bool:
    """Whether ``p`` is a 4x4 matrix of numbers in text (FSL FLIRT's ``.mat``: read as an ANTs
    binary .mat it failed with 'not a readable ITK affine (IndexError)')."""
    try:
        rows = [r.split() for r in p.read_text().strip().splitlines() if r.strip()]
        return len(rows) == 4 and all(len(r) == 4 for r in rows) and bool(np.isfinite(np.array(rows, float)).all())
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def read_affine(path: str | Path) -> AffineTransform:
    """Read an ITK affine (ANTs binary ``.mat`` or ITK text ``.txt``/``.tfm``), return RAS+."""
    p = Path(path)
    if not p.exists():
        raise InputError("affine not found", p, "check the path")
    try:
        if p.suffix.lower() == ".mat":
            import scipy.io  # only for ANTs .mat affines (about 30 ms to import)

            m = scipy.io.loadmat(str(p))
            key = next((k for k in m if not k.startswith("__") and k != "fixed"), None)
            params = np.asarray(m[key], dtype=float).ravel()
            fixed = np.asarray(m.get("fixed", np.zeros(3)), dtype=float).ravel()
        else:
            text = p.read_text()
            _check_itk_text_kind(text, p)
            params = np.array(re.search(r"^Parameters:(.*)$", text, re.M).group(1).split(), float)
            fm = re.search(r"^FixedParameters:(.*)$", text, re.M)
            fixed = np.array(fm.group(1).split(), float) if fm else np.zeros(3)
    except InputError:
        raise
    except Exception as exc:
        if _fsl_matrix(p):  # FLIRT's .mat: 4x4 text in FSL's scaled-voxel convention, not ANTs' binary .mat
            raise InputError("an FSL FLIRT matrix (4x4 text), not an ITK/ANTs affine", p,
                             "convert it: c3d_affine_tool -ref DEST -src INPUT FLIRT.mat -fsl2ras -oitk "
                             "affine.txt, then give affine.txt") from exc
        raise InputError(f"not a readable ITK affine ({exc.__class__.__name__})", p,
                         "give an ANTs .mat or ITK .txt affine") from exc
    if params.size == 12:
        a, t = params[:9].reshape(3, 3), params[9:12]
    elif params.size == 3:  # translation transform
        a, t = np.eye(3), params
    else:
        raise InputError(f"unsupported ITK transform with {params.size} parameters", p,
                         "give a 3D affine (12 parameters)")
    return AffineTransform(_lps_to_ras(a, t, fixed[:3] if fixed.size >= 3 else np.zeros(3)))


def write_affine(transform: AffineTransform, path: str | Path, overwrite: bool = False) -> Path:
    """Write an affine as ANTs ``.mat`` (MATLAB v4, ``AffineTransform_double_3_3``) or ITK ``.txt``."""
    m = _LPS @ transform.matrix @ _LPS
    params = np.concatenate([m[:3, :3].ravel(), m[:3, 3]])
    p = Path(path)
    if p.suffix.lower() == ".mat":
        def writer(tmp: Path) -> None:
            import scipy.io

            with open(tmp, "wb") as fh:
                scipy.io.savemat(fh, {"AffineTransform_double_3_3": params.reshape(12, 1),
                                      "fixed": np.zeros((3, 1))}, format="4")
    else:
        text = ("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
                "Parameters: " + " ".join(f"{v:.17g}" for v in params) + "\nFixedParameters: 0 0 0\n")

        def writer(tmp: Path) -> None:
            tmp.write_text(text)
    return atomic_write(p, writer, overwrite)


# -- any transform --------------------------------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, bool]:
    """``path``, ``inv:path``, ``-path`` or ANTs ``[path,1]`` -> (path, use_inverse)."""
    s = spec.strip()
    m = re.fullmatch(r"\[\s*(.+?)\s*,\s*([01])\s*\]", s)
    if m:
        return m.group(1), m.group(2) == "1"
    if s.startswith("inv:"):
        return s[4:], True
    return s, False


def load_transform(spec: str | Path,
                   inverse_grid: Grid | None = None) -> AffineTransform | DisplacementField | FieldInverse:
    """Load a warp or affine from a spec (see :func:`parse_spec`); invert if asked.

    An inverted displacement field is sampled on ``inverse_grid`` when one is given; by default it
    is a :class:`~spinereg.transforms.displacement.FieldInverse`, solved at the points it is applied
    to (inverting it on its own grid first took minutes for PAM50's, and that grid is the wrong
    space for the inverse of a warp between two spaces).
    """
    path, inv = parse_spec(str(spec))
    t = read_affine(path) if is_affine_file(path) else read_displacement(path)
    if inv:
        if isinstance(t, AffineTransform):
            return t.inverse()
        return FieldInverse(t) if inverse_grid is None else t.inverse(inverse_grid)
    return t


def transform_output_path(affine: bool, path: str | Path) -> Path:
    """The file a transform is written to, checked before the work: an affine goes to an ITK affine
    file (.mat, .txt, .tfm), a displacement field to NIfTI (``.nii.gz`` added without a suffix, as
    apply / concat do). Anything else raises :class:`InputError` with the name to use: ``invert -w
    WARP -o inv.txt`` (or ``-o inv``) solved the inverse for minutes, then ended on an internal error
    (nibabel: cannot work out the file type), and an affine's inverse written to ``inv`` or
    ``inv.h5`` was ITK text under a name ANTs reads otherwise (before session 39)."""
    p = Path(path)
    name = p.name.lower()
    if affine:
        if is_affine_file(p):
            return p
        raise InputError(f"the transform is an affine: it is written as an ITK affine file, not "
                         f"{p.suffix or 'a file without suffix'}", p,
                         f"name the output .txt or .mat (e.g. {p.name.split('.')[0] or 'out'}.txt)")
    if is_affine_file(p) or name.endswith((".h5", ".hdf5")):
        raise InputError(f"the transform is a displacement field: it is written as a NIfTI warp, not {p.suffix}", p,
                         f"name the output .nii.gz (e.g. {p.name.split('.')[0] or 'warp'}.nii.gz)")
    if p.is_dir():
        raise InputError("output is a folder", p, f"give a file name (e.g. {p / 'warp.nii.gz'})")
    return p if name.endswith((".nii", ".nii.gz")) else p.with_name(p.name + ".nii.gz")


def save_transform(transform: AffineTransform | DisplacementField, path: str | Path,
                   overwrite: bool = False) -> Path:
    if isinstance(transform, AffineTransform):
        return write_affine(transform, path, overwrite)
    return write_displacement(transform, path, overwrite)
