"""The cord's left-right width (vertebrae.cordwidth.lr_width) reads a one-sided notch in the
segmentation from the intact side (session 16), and leaves intact and thick-slice masks alone."""

from __future__ import annotations

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.io.image import Image
from spinereg.vertebrae import cordwidth
from spinereg.vertebrae.cordwidth import lr_width


def _cord(zoom_z: float = 1.0, notch: tuple[int, int] | None = None, shift: float = 0.0) -> Image:
    """A 12 mm wide, 8 mm deep elliptic cord along z (1 mm in-plane); ``notch``: slices whose left
    40 % is cut off; ``shift``: the section moved right on those slices instead (area kept)."""
    nz = int(round(60 / zoom_z))
    x, y = np.meshgrid(np.arange(40) - 19.5, np.arange(40) - 19.5, indexing="ij")
    data = np.zeros((40, 40, nz), np.uint8)
    for k in range(nz):
        dx = shift if notch and notch[0] <= k < notch[1] else 0.0
        sec = ((x - dx) / 6.0) ** 2 + (y / 4.0) ** 2 <= 1
        if notch and notch[0] <= k < notch[1] and not shift:
            sec &= x > -6.0 + 0.4 * 12.0
        data[:, :, k] = sec
    aff = np.diag([1.0, 1.0, zoom_z, 1.0])
    return Image(data, aff)


def _width(img: Image) -> tuple[np.ndarray, np.ndarray]:
    cl = Centerline.from_mask(img)
    s = np.arange(0.0, cl.length, 1.0)
    return s, lr_width(img, cl, s)


def test_a_one_sided_notch_is_read_from_the_intact_side():
    s, intact = _width(_cord())
    s2, notched = _width(_cord(notch=(28, 33)))
    mid = (s > 26) & (s < 35)
    assert abs(np.nanmedian(intact[mid]) - 12.34) < 0.25  # measured 12.34 mm (a 12 mm wide ellipse)
    assert np.nanmin(notched[mid]) > 0.96 * np.nanmedian(intact[mid])  # measured 0.969 (11.96 mm)
    old = cordwidth.ONE_SIDED_RATIO
    try:  # without the rule the notch reads as a narrowing of the cord
        cordwidth.ONE_SIDED_RATIO = float("inf")
        _, plain = _width(_cord(notch=(28, 33)))
    finally:
        cordwidth.ONE_SIDED_RATIO = old
    assert np.nanmin(plain[mid]) < 0.9 * np.nanmedian(intact[mid])


def test_intact_shifted_and_thick_masks_keep_their_width():
    old = cordwidth.ONE_SIDED_RATIO
    for img in (_cord(), _cord(notch=(28, 33), shift=2.0), _cord(zoom_z=5.0, notch=(5, 7))):
        s, w = _width(img)
        try:
            cordwidth.ONE_SIDED_RATIO = float("inf")
            _, plain = _width(img)
        finally:
            cordwidth.ONE_SIDED_RATIO = old
        np.testing.assert_allclose(w, plain, equal_nan=True)
