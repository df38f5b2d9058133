"""Whether an image can support a registration or a motion correction at all.

:func:`image_structure` flags ``empty`` images (no signal, or constant) and measures
``structure``: the fraction of the image's variance that survives a Gaussian smoothing of one
voxel (real and phantom images 0.30-0.90, Rician or white noise 0.02-0.03). The registration
verdicts (``spinereg.metrics``) and moco's (``spinereg.epi.moco``) read it; it lives in the io
layer so that both may.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinereg.io.box import box_slices, mask_box
from spinereg.io.image import Image


def image_structure(img: Image, region: np.ndarray | None = None) -> dict[str, float]:
    """``empty`` (1.0 when the image has no signal or is constant in ``region``) and
    ``structure`` (variance kept by a one-voxel Gaussian smoothing, 0-1)."""
    data = np.asarray(img.data, np.float32)
    sel = None if region is None else np.asarray(region, bool)
    vals = data.ravel() if sel is None else data[sel]  # the whole image: its values in order, no copy
    if vals.size == 0 or not np.isfinite(vals).all() or float(vals.std()) <= 1e-6 * (abs(float(vals.mean())) + 1e-12) \
            or not np.any(vals != 0):
        return {"empty": 1.0, "structure": 0.0}
    sigma = [1.0 if n > 1 else 0.0 for n in data.shape]
    if sel is None:
        smooth = ndimage.gaussian_filter(data, sigma, mode="nearest").ravel()
    else:
        # smoothed on the region's bounding box plus the filter's radius (4 sigma): every region
        # voxel's window lies inside it (or meets the image's own border, treated alike), so its
        # smoothed values are those of the whole image
        box = box_slices(*mask_box(sel, 4))
        smooth = ndimage.gaussian_filter(data[box], sigma, mode="nearest")[sel[box]]
    var = float(vals.var())
    return {"empty": 0.0, "structure": round(float(np.clip(smooth.var() / var, 0, 1)), 4)}
