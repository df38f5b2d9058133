"""An image's intensity floor: the labeling reads intensities on a scale that starts near 0.

Several cues of the labeling take intensities as a magnitude image has them, dark air and dark
bone near 0: the CSF around the cord is what lies above half the brightest value on a disk about
the cord (:func:`spinereg.vertebrae.c1c2.disk_areas`, read by the CSF identity and the C1/C2
profile). An additive offset breaks that reading: sct_testing_data t2 with 1000 added to every
voxel (its range 0-1257) was relabelled seven levels low by the CSF profile (flagged), with 1000
or 2000 taken off one or seven levels off, where t2 itself is labelled right. Scaling, mean
subtraction and offsets up to +-500 change nothing.

:func:`intensity_offset` is the image's floor (the 0.5th percentile of a strided sample) when that
floor lies further from 0 than :data:`OFFSET_FRACTION` of the image's range (floor to the 99.5th
percentile), else 0; :func:`zero_based` takes it off. Every image measured here has an offset of 0
by this rule (|floor| / range: sct_testing_data t2 0, t1 0.02, t2s 0.07, mt0 / mt1 0.06 / 0.03,
dwi_mean 0.15; the independent phantoms 0-0.11), so their labelings are untouched
(tests/test_label_vertebrae_offset.py). Images of noise matched to an image's mean and SD reach below
0 and are shifted; they are refused as before (tests/test_label_vertebrae_noise.py).
"""

from __future__ import annotations

import numpy as np

from spinereg.io.image import Image

#: a floor further from 0 than this fraction of the range is an offset, not dark tissue or air
OFFSET_FRACTION = 0.25
#: every STRIDE-th voxel along each axis is sampled for the percentiles
STRIDE = 3


def intensity_offset(image: Image) -> float:
    """The image's additive intensity offset (0 when its floor is near 0; module doc)."""
    data = np.asarray(image.data)
    sample = data[tuple(slice(None, None, STRIDE) for _ in range(data.ndim))].astype(np.float32, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0
    lo, hi = np.percentile(sample, [0.5, 99.5])
    return float(lo) if hi > lo and abs(lo) > OFFSET_FRACTION * (hi - lo) else 0.0


def zero_based(image: Image) -> tuple[Image, float]:
    """``image`` with its :func:`intensity_offset` taken off, and that offset (the same image when 0).
    The shifted image keeps the file it came from, so errors still name it."""
    offset = intensity_offset(image)
    if offset == 0.0:
        return image, 0.0
    out = Image(np.asarray(image.data, np.float32) - np.float32(offset), image.affine, image.header, image.path)
    out.what = image.what
    return out, offset
