"""Images on disk and in world space: loading with checks, atomic saving, orientation, resampling."""

from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image, save_image
from spinereg.io.orientation import axcodes, reorient, sct_to_nibabel
from spinereg.io.resample import place_labels, sample_world

__all__ = [
    "Grid",
    "Image",
    "axcodes",
    "load_image",
    "reorient",
    "place_labels",
    "sample_world",
    "save_image",
    "sct_to_nibabel",
]
