"""What every labeling pass of one image and segmentation shares (:class:`_Prepared`): the
checked inputs, their cord signal, the contrast given and the one read, the cord frame
(centerline, cross-section roll and the slab's turn) and the pontomedullary junction; also how
finely the image samples the cord, why too little is in view to label, and the one-thread BLAS
the labeling runs under."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.cord.roll import MAX_DEG, TOLERANCE_DEG, Roll, cross_section_roll, frame_turn
from spinereg.errors import InputError
from spinereg.io.image import Image, onto_grid_of, require_nonempty
from spinereg.vertebrae.contrast import CONTRAST_POLARITY, _csf_sign, read_contrast
from spinereg.vertebrae.cord_signal import require_cord_signal
from spinereg.vertebrae.model import SpineModel
from spinereg.vertebrae.pmj import PMJ, find_pmj
from spinereg.vertebrae.straight import straighten_slab

if TYPE_CHECKING:
    from spinereg.vertebrae.cord_signal import CordSignal


#: the mid-sagittal slab follows the subject's turn about S-I (the cord cross-section's roll,
#: :mod:`spinereg.cord.roll`) beyond ROLL_TOLERANCE_DEG; every figure measured before (phantoms
#: turned -5..+5 deg, t2, t1) stays as it was; a larger turn is followed up to within the
#: tolerance (sct_testing_data t2 turned 15 deg was labelled T10/T11-T11/T12, and 30 deg lost
#: C2/C3: docs/labeling_bare_image.md); nothing beyond MAX_ROLL_DEG
ROLL_TOLERANCE_DEG = TOLERANCE_DEG
MAX_ROLL_DEG = MAX_DEG


def _si_spacing(image: Image, cl: Centerline) -> float:
    """Extent (mm) of one voxel along the cord's mean direction: how finely the image samples the
    cord's length (a 7.5 mm axial slice crossed by a cord tilted 20 degrees: about 7.2 mm)."""
    return image.grid.extent_along(cl.tangent(np.linspace(0.0, cl.length, 20)).mean(0))


def _one_blas_thread():
    """Small dense products and solves (the centerline fit) run far faster on one BLAS thread
    than on a pool competing for busy cores; ``threadpoolctl`` when installed, else nothing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


@dataclass(frozen=True)
class _Prepared:
    """What every labeling pass of one image and segmentation shares: the checked inputs' cord
    signal, the contrast given and the one read, and the cord frame (centerline and roll)."""

    signal: CordSignal
    given: str
    contrast: str
    mismatch: str | None
    frame: tuple
    pmj: PMJ | None = None
    #: the PMJ's arc length on the frame's centerline (None without a PMJ)
    pmj_s: float | None = None


def _prepare(image: Image, seg: Image, contrast: str) -> tuple[_Prepared, Image]:
    """Check the inputs (one-line errors) and compute what the passes share (:class:`_Prepared`);
    also ``seg`` on ``image``'s grid (holding the image's voxels in another axis order: moved exactly
    onto it; any other grid difference refused, after the contrast and dimension checks)."""
    if contrast not in CONTRAST_POLARITY:
        raise InputError(f"unknown contrast {contrast!r}", None, "use t1, t2, t2s or auto")
    if image.ndim != 3:
        raise InputError(f"image must be 3D, got shape {image.shape}", image.name, "give one 3D volume")
    seg = onto_grid_of(seg, image, what="image and segmentation")
    require_nonempty(seg, "segmentation")
    signal = require_cord_signal(image, seg)
    read, mismatch = read_contrast(contrast, signal)
    cl = Centerline.from_mask(seg)
    roll = cross_section_roll(seg, cl)
    pmj = find_pmj(image, seg, _slab_frame(cl, roll)[0], csf_sign=_csf_sign(signal))
    pmj_s = None if pmj is None else float(cl.project(pmj.point[None])[0][0])
    return _Prepared(signal, contrast, read, mismatch, (cl, roll), pmj, pmj_s), seg


def _slab_frame(cl: Centerline, roll: Roll) -> tuple[Centerline, float]:
    """The centerline whose frame the slab follows, and how far (degrees) it is turned, for the
    cross-section ``roll`` (:func:`~spinereg.cord.roll.cross_section_roll`) of ``cl``."""
    turn = _slab_turn(roll.angle_deg)
    return (cl.rolled(turn) if turn else cl), turn


def _slab_turn(roll_deg: float) -> float:
    """How far (degrees) the slab's frame is turned for a cross-section roll of ``roll_deg``."""
    return frame_turn(roll_deg, ROLL_TOLERANCE_DEG, MAX_ROLL_DEG)


def _too_little_in_view(image: Image, cl: Centerline, model: SpineModel,
                        pts: tuple[np.ndarray, np.ndarray]) -> None:
    """Raise the reason no labeling can be read: too short a stretch of cord, or a field of view
    too narrow around it (an axial stack cropped to the cord, as sct_testing_data's t2s, shows no
    vertebral body)."""
    if cl.length < 10.0:
        raise InputError(f"the image covers {cl.length:.0f} mm of the cord (less than 1 cm)", image.name,
                         "give an image with at least one vertebra in view")
    every = straighten_slab(image, cl, model.b, ds=0.5, margin_mm=40.0, min_valid=0.0, points=pts)
    seen = float(np.isfinite(every.values).mean(1).max()) if len(every.s) else 0.0
    span = float(model.b.max() - model.b.min())
    raise InputError(f"the field of view shows {seen:.0%} of the {span:.0f} mm in front of and behind the cord where "
                     "discs and vertebral bodies are read (30% needed)", image.name,
                     "label an image of the subject with a wider field of view (e.g. its T2w) and bring its levels "
                     "over with the registration, or give vertebral labels yourself")
