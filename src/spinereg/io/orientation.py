"""Orientation codes and reorientation.

Two spellings exist. nibabel (and spinereg) codes name the direction each voxel axis points *to*
(``LAS`` = i increases to the Left, j to Anterior, k to Superior). SCT names the side each axis
starts *from*, so SCT's ``RPI`` is nibabel ``LAS`` and SCT's ``LPI`` is nibabel ``RAS``. Functions
here take nibabel codes; :func:`sct_to_nibabel` converts.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def axcodes(affine: np.ndarray) -> str:
    """nibabel orientation code (e.g. ``'LAS'``) of an affine."""
    return "".join(nib.aff2axcodes(affine))


def sct_to_nibabel(code: str) -> str:
    """Convert an SCT orientation string (``RPI``) to nibabel's (``LAS``)."""
    code = code.upper()
    _validate(code)
    return "".join(_OPPOSITE[c] for c in code)


def _validate(code: str) -> None:
    axes = {"L": 0, "R": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    if len(code) != 3 or any(c not in axes for c in code) or len({axes[c] for c in code}) != 3:
        raise InputError(
            f"invalid orientation code {code!r}",
            None,
            "use three letters, one of L/R, A/P, S/I each, e.g. LAS (nibabel) or sct:RPI",
        )


def parse_orientation(code: str) -> str:
    """Accept ``LAS``/``LAS+`` (nibabel) or ``sct:RPI`` (SCT); return the nibabel code."""
    if code.lower().startswith("sct:"):
        return sct_to_nibabel(code[4:])
    code = code.rstrip("+").upper()
    _validate(code)
    return code


def reorient(img: Image, code: str) -> Image:
    """Reorder/flip the voxel axes of ``img`` to nibabel orientation ``code``; world unchanged."""
    code = parse_orientation(code)
    cur = ornt.io_orientation(img.affine)
    tgt = ornt.axcodes2ornt(tuple(code))
    tr = ornt.ornt_transform(cur, tgt)
    data = img.data
    out = ornt.apply_orientation(data, tr) if data.ndim >= 3 else data
    new_aff = img.affine @ ornt.inv_ornt_aff(tr, img.shape[:3])
    res = Image(np.ascontiguousarray(out), new_aff, img.header, None)
    return res


def positive_code(affine: np.ndarray) -> str:
    """The orientation code of ``affine`` with every axis turned to point to R, A or S, the axis
    order kept (``PSR`` -> ``ASR``, ``LAS`` -> ``RAS``): a working grid that does not depend on how
    the voxels of an image are flipped (same world)."""
    return "".join(c if c in "RAS" else _OPPOSITE[c] for c in axcodes(affine))


def positive_grid(grid: Grid) -> Grid:
    """``grid`` with its voxel axes flipped to :func:`positive_code` (same nodes, same shape):
    what samples a grid every few voxels (``Grid.coarsened``) starts from the same corner however
    the image's voxels are flipped."""
    tr = ornt.ornt_transform(ornt.io_orientation(grid.affine), ornt.axcodes2ornt(tuple(positive_code(grid.affine))))
    return Grid(tuple(grid.shape), grid.affine @ ornt.inv_ornt_aff(tr, tuple(grid.shape)))


def si_last_code(affine: np.ndarray) -> str:
    """nibabel code with the same in-plane axes but the S-I axis moved last (axial slices along
    the last voxel axis, as slice-wise algorithms need), every axis pointing to R, A or S
    (:func:`positive_code`; registrations work on this grid: before session 35 the same
    destination with a voxel axis flipped gave ``register`` another result, cord points up to
    0.6 mm elsewhere)."""
    codes = list(positive_code(affine))
    si = next(i for i, c in enumerate(codes) if c == "S")
    return "".join(codes[:si] + codes[si + 1:] + [codes[si]])
