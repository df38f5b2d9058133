"""File-to-file apply and concat with their input checks: the library behind ``spinereg apply``
and ``spinereg concat`` (the commands parse their options and call these).

Before any work the transforms are checked against the images (:mod:`spinereg.transforms.sanity`):
a warp made for another space, input and reference swapped, or no common extent raise
:class:`~spinereg.errors.InputError`; an existing output without ``overwrite`` raises
:class:`~spinereg.errors.OutputError`. What does not stop the work is returned as warnings (one
line each, said once the result exists): transforms that look listed in ANTs' order
(:func:`~spinereg.transforms.sanity.order_warning`) and an interpolation that will spoil a label
image, a point-label file or a mask (:func:`~spinereg.transforms.interp_check.interp_warning`).

:func:`~spinereg.transforms.apply.apply_transforms_file` itself checks nothing: it takes loaded
transforms and a grid, for callers that made them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CheckedOutput:
    """The file written, the warnings for it (one line each, in the order found) and, for
    :func:`apply_checked`, whether the result is all zero (the transforms bring nothing of the
    input onto the reference; for a 4D series judged on its middle volume)."""

    path: Path
    warnings: list[str] = field(default_factory=list)
    all_zero: bool | None = None


def is_all_zero(path: str | Path) -> bool:
    """Whether the image at ``path`` holds only zeros (a 4D series: its middle volume)."""
    import nibabel as nib
    import numpy as np

    img = nib.load(str(path))
    if len(img.shape) <= 3:
        return not np.any(np.asanyarray(img.dataobj))
    return not np.any(np.asanyarray(img.dataobj[..., img.shape[3] // 2]))


def apply_checked(
    in_path: str | Path,
    ref_path: str | Path,
    warps: Sequence[str | Path],
    out_path: str | Path,
    interp: str = "linear",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CheckedOutput:
    """Resample the image ``in_path`` onto the grid of ``ref_path`` through the transform files
    ``warps`` (application order, A->B first; ``inv:W`` or ``[W,1]`` for an inverse), one
    interpolation, 4D series streamed; ``.nii.gz`` is added to an ``out_path`` without a NIfTI
    suffix.

    Refused before any work (:class:`~spinereg.errors.InputError` /
    :class:`~spinereg.errors.OutputError`): unreadable inputs, transforms that bring nothing of
    the input onto the reference (:func:`~spinereg.transforms.sanity.check_overlap`), an existing
    output without ``overwrite``. Returned: the output path, the warnings (ANTs' order, the
    interpolation for this image) and whether the result is all zero."""
    from spinereg.io.image import check_writable, output_path, read_grid
    from spinereg.io.resample import interp_name
    from spinereg.transforms.apply import apply_transforms_file
    from spinereg.transforms.interp_check import interp_warning
    from spinereg.transforms.itk import load_transform
    from spinereg.transforms.sanity import check_overlap, order_warning

    interp = interp_name(interp)
    names = [str(w) for w in warps]
    ref = read_grid(ref_path, what="reference image")
    src = read_grid(in_path, what="input image")
    transforms = [load_transform(w) for w in names]
    check_overlap(src, ref, transforms, names, str(in_path), str(ref_path))  # < 1 s, before the work
    out = check_writable(output_path(out_path), overwrite)
    warnings = [w for w in (order_warning(ref, transforms, names, "-d"), interp_warning(in_path, interp)) if w]
    apply_transforms_file(in_path, ref, transforms, out, interp=interp, overwrite=overwrite, progress=progress)
    return CheckedOutput(out, warnings, is_all_zero(out))


def concat_checked(ref_path: str | Path, warps: Sequence[str | Path], out_path: str | Path,
                   overwrite: bool = False) -> CheckedOutput:
    """Compose the transform files ``warps`` (application order, A->B first) into one ITK/ANTs
    displacement field on the grid of ``ref_path`` (``.nii.gz`` added to an ``out_path`` without a
    suffix), or into one affine when ``out_path`` is an affine file (``.txt``/``.mat``/``.tfm``)
    and every transform is one.

    Refused before any work (:class:`~spinereg.errors.InputError` /
    :class:`~spinereg.errors.OutputError`): no transform, a displacement field the reference's
    points never reach (:func:`~spinereg.transforms.sanity.check_chain_domain`), an affine output
    for a composition holding a field, an existing output without ``overwrite``. Returned: the
    output path and the warnings (ANTs' order).

    Where the composition is undefined (a point runs through the 'no value' voxels of an SCT warp,
    e.g. the FLT_MAX slices 0 and 4 of ``mt/warp_template2mt``) the field is written with that
    marker (:data:`~spinereg.transforms.itk.UNDEFINED_MARK`), as the input warp had it. It was
    written as 0, the identity: ``concat -d mt1 -w warp_template2mt`` applied to
    ``PAM50_small_cord`` then put 59 and 62 cord voxels on mt1's slices 0 and 4 (the template read
    at the subject's own coordinates) where applying the warp itself gives none, and 276 of mt1's
    8000 voxels of ``apply -w concat(aff.txt, warp_t22mt1)`` differed from ``apply -w aff.txt
    warp_t22mt1`` (by up to 539) (before session 49; now equal to 2e-4)."""
    from spinereg.errors import InputError
    from spinereg.io.image import check_writable, output_path, read_grid
    from spinereg.transforms.affine import AffineTransform
    from spinereg.transforms.base import Chain
    from spinereg.transforms.displacement import DisplacementField
    from spinereg.transforms.itk import (
        is_affine_file,
        load_transform,
        write_affine,
        write_displacement,
    )
    from spinereg.transforms.sanity import check_chain_domain, order_warning

    names = [str(w) for w in warps]
    if not names:
        raise InputError("no transform given", None, "pass at least one -w")
    ref = read_grid(ref_path, what="reference image")
    transforms = [load_transform(w) for w in names]
    check_chain_domain(ref, transforms, names, str(ref_path))
    if is_affine_file(out_path):  # -o w.txt wrote the field to w.txt.nii.gz, exit 0 (before session 38)
        fields = [w for w, t in zip(names, transforms, strict=True) if not isinstance(t, AffineTransform)]
        if fields:
            name = Path(out_path)
            raise InputError(f"the composition holds a displacement field ({fields[0]}): it is a warp, "
                             f"not an affine ({name.suffix})", out_path,
                             f"name the output .nii.gz (e.g. {name.with_suffix('.nii.gz').name})")
        out = check_writable(out_path, overwrite)
        composed = transforms[0]
        for t in transforms[1:]:
            composed = composed @ t  # application order: pull map = first(second(...(x)))
        return CheckedOutput(Path(write_affine(composed, out, overwrite=overwrite)))
    chain = Chain(transforms)
    out = check_writable(output_path(out_path), overwrite)  # fail before the work
    field_ = DisplacementField.from_transform(chain, ref)
    out = write_displacement(field_, out, overwrite=overwrite)
    warning = order_warning(ref, transforms, names, "-d")
    return CheckedOutput(Path(out), [warning] if warning is not None else [])
