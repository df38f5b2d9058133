"""Transforms in world space with inverse and composition; ITK/ANTs file adapters."""

from spinereg.transforms.affine import AffineTransform
from spinereg.transforms.apply import apply_transforms, apply_transforms_file, resample
from spinereg.transforms.apply_checks import CheckedOutput, apply_checked, concat_checked
from spinereg.transforms.base import Chain, Transform
from spinereg.transforms.displacement import DisplacementField, InversionReport
from spinereg.transforms.itk import (
    load_transform,
    read_affine,
    read_displacement,
    save_transform,
    write_affine,
    write_displacement,
)

__all__ = [
    "AffineTransform",
    "Chain",
    "CheckedOutput",
    "DisplacementField",
    "InversionReport",
    "Transform",
    "apply_checked",
    "apply_transforms",
    "apply_transforms_file",
    "concat_checked",
    "load_transform",
    "read_affine",
    "read_displacement",
    "resample",
    "save_transform",
    "write_affine",
    "write_displacement",
]
