"""What an interpolation will do to a label image, a point-label file or a mask (``spinereg apply``'s
warning, said once the result exists).

SCT's default interpolation, spline, mixes label values (levels 3 and 5 warped give 4 between them)
and rings at a mask's edge. A point-label file (one voxel per value: SCT's ``labels.nii.gz``,
PAM50_label_disc) is only carried by ``-x label``: nn keeps a point only where a destination
voxel's nearest source voxel is that point (lost when the destination is coarser, copied when it is
finer), linear and spline spread it into fractions. The values are judged on every non-zero voxel:
the voxel sample of :func:`spinereg.io.sanity.values_of` (one voxel in 9 on PAM50's grid) misses
most of a point-label file's few voxels (PAM50_label_disc warped with -x linear: three voxels
0.13-0.43, no warning; with spline it was called a mask, with the advice -x linear).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinereg.io.sanity import MIN_VOXELS_PER_LEVEL

_POINT_EFFECT = {
    "nn": "keeps a point only where an output voxel's nearest input voxel is it (points lost on a coarser "
          "grid, copied on a finer one)",
    "linear": "spreads each point into fractions that are no label",
    "spline": "spreads each point into fractions that are no label",
}


def _label_warning(path: str | Path, ndim: int) -> str | None:
    """``-x label`` on what is no point-label file: every non-zero voxel is carried as a point (an
    fMRI series gave 280k scattered points, exit 0, before session 39)."""
    from spinereg.io.image import load_image

    if ndim > 3:
        return (f"{path} is {ndim}D: -x label carries point labels (one voxel per value) and makes every "
                "non-zero voxel a point; use -x linear or spline (images), -x nn (labelled segmentations)")
    data = np.asarray(load_image(path, ndim=3, check_finite=False).data)
    nz = data[data != 0]
    if not nz.size:
        return None
    values = np.unique(nz)
    integer = bool(np.all(np.round(values) == values))
    if integer and nz.size / values.size < MIN_VOXELS_PER_LEVEL:
        return None
    kind = "an intensity image" if not integer or values.size >= 64 else "a label image or mask"
    return (f"{path} looks like {kind} ({nz.size} non-zero voxels for {values.size} values), not a point-label "
            "file: -x label carries every non-zero voxel as a point; use -x linear or spline (images), "
            "-x nn (labelled segmentations, atlases, masks)")


def interp_warning(path: str | Path, interp: str) -> str | None:
    """The warning for resampling the image ``path`` with ``interp``, or None (4D images under
    nn/linear/spline, intensity images, point-label files under -x label)."""
    import nibabel as nib

    from spinereg.io.image import load_image
    from spinereg.io.sanity import values_of

    ndim = len(nib.load(str(path)).shape)
    if interp == "label":
        return _label_warning(path, ndim)
    if ndim > 3:
        return None
    img = load_image(path, ndim=3, check_finite=False)
    v = values_of(img)
    if v.n_distinct >= 64 or v.vmin < 0:  # an intensity image (or one with negative values)
        return None
    data = np.asarray(img.data)
    nz = data[data != 0]
    if not nz.size:
        return None
    values = np.unique(nz)
    integer = bool(np.all(np.round(values) == values)) and float(values.min()) > 0
    if integer and nz.size / values.size < MIN_VOXELS_PER_LEVEL and nz.size < 0.001 * data.size:
        return (f"{path} looks like a point-label file ({nz.size} labelled voxels for {values.size} values): "
                f"-x {interp} {_POINT_EFFECT[interp]}; use -x label (point labels)")
    if interp == "nn":
        return None
    frac = nz.size / data.size
    if integer and 3 <= values.size + 1 < 64 and frac <= 0.5:
        return (f"{path} looks like a label image ({values.size + 1} integer values): -x {interp} mixes neighbouring "
                "labels into values that are no label; use -x nn (labelled segmentations, atlases) or -x label "
                "(point labels)")
    if values.size == 1 and interp == "spline":
        return (f"{path} is a mask: -x spline rings at its edge (values outside its two); use -x linear "
                "(partial volume) or -x nn")
    return None
