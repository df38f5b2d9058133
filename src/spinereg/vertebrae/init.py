"""Pinning one disc as SCT does: ``-initz Z,DISC`` (a slice) or ``-initlabel FILE`` (a point)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinereg.cord.centerline import si_axis
from spinereg.cord.landmarks import read_point_labels
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image


def init_from_slice(text: str, seg: Image, source: str | Path | None = None) -> tuple[np.ndarray, int]:
    """``"Z,DISC"`` -> (world point, disc value): slice ``Z`` along the image's S-I voxel axis,
    counted from the inferior end (SCT's slice number in RPI), at the cord's centre of mass in
    that slice (the slice centre when the cord is not segmented there). ``source``: the init file
    the text was read from (SCT's ``-initfile``), named by the errors; before session 50 a slice
    past the image's end in ``t2/init_label_vertebrae.txt`` was blamed on the segmentation."""
    try:
        z_txt, v_txt = text.split(",")
        z, value = int(z_txt), int(v_txt)
    except ValueError as exc:
        raise InputError(f"-initz {text!r} is not 'Z,DISC'", None if source is None else str(source),
                         "write e.g. -initz 34,3 (slice 34 is C2/C3)") from exc
    axis = si_axis(seg.affine)
    n = seg.shape[axis]
    if not 0 <= z < n:
        raise InputError(f"-initz slice {z} is outside the image (0..{n - 1} along S-I)",
                         seg.name if source is None else str(source),
                         "give a slice index counted from the inferior end")
    superior_up = seg.affine[2, axis] > 0
    k = z if superior_up else n - 1 - z
    plane = np.take(np.asarray(seg.data) > 0.5, k, axis=axis)
    if plane.any():
        ij = np.argwhere(plane).mean(0)
    else:
        ij = (np.array(plane.shape) - 1) / 2.0
    vox = np.insert(ij, axis, k)
    return seg.grid.voxel_to_world(vox[None])[0], value


def init_from_label_file(path: str) -> tuple[np.ndarray, int]:
    """The single disc label of ``path`` -> (world point, disc value)."""
    lm = read_point_labels(load_image(path, ndim=3, what="label file"), "disc")
    if len(lm) != 1:
        raise InputError(f"-initlabel file has {len(lm)} labels ({lm.values.tolist()})", path,
                         "keep exactly one disc label (e.g. 3 at the C2/C3 disc)")
    return lm.points[0], int(lm.values[0])


def resolve_init(initz: str | None, initlabel: str | Path | None, seg: Image,
                 initfile: str | Path | None = None) -> tuple[np.ndarray, int] | None:
    """``-initz`` or ``-initlabel`` (at most one) -> (world point, disc value), or None.
    ``initfile``: the file ``initz`` was read from (SCT's ``-initfile``), named by the errors."""
    if initz and initlabel:
        raise InputError("-initz and -initlabel both given", None, "pin one disc, with one of them")
    if initz:
        return init_from_slice(initz, seg, initfile)
    if initlabel:
        text = sct_init_file(str(initlabel))
        if text is not None:
            return init_from_slice(text, seg, initlabel)
        return init_from_label_file(str(initlabel))
    return None


def sct_init_file(path: str) -> str | None:
    """The ``Z,DISC`` of SCT's ``-initfile`` text (``-initz 55,3``, as sct_testing_data's
    ``t1/init_label_vertebrae.txt``) given as ``-initlabel``, or None for any other file.

    Before session 49 ``register-to-template -initlabel t1/init_label_vertebrae.txt`` stopped with
    "not a readable NIfTI label file" (exit 2); now it pins the disc as ``-initz 55,3`` does (t1:
    the same discs and warps). SCT's other form, ``-initcenter``, is refused naming -initz.
    """
    p = Path(path)
    if p.suffix.lower() != ".txt" or not p.is_file() or p.stat().st_size > 4096:
        return None
    return read_initfile(path)


def read_initfile(path: str | Path) -> str:
    """The ``Z,DISC`` of SCT's ``-initfile`` (a text file holding ``-initz Z,DISC``); refused
    (:class:`InputError`) for anything else, SCT's ``-initcenter`` form included."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", path, "give SCT's init text file (one line: -initz Z,DISC)")
    words = p.read_bytes()[:4096].decode(errors="replace").split() if p.stat().st_size <= 4096 else []
    if len(words) == 2 and words[0].lower() in ("-initz", "--initz"):
        return words[1]
    raise InputError(f"not SCT's '-initz Z,DISC' init file ({' '.join(words[:4])!r})" if words else
                     "not SCT's '-initz Z,DISC' init file", path,
                     "give -initz Z,DISC (slice Z from the inferior end holds disc DISC, 3 = C2/C3) "
                     "or a NIfTI file with one disc label (-initlabel)")
