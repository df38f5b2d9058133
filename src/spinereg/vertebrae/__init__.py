"""Automatic vertebral labeling along the spinal cord (discs and levels)."""

from spinereg.vertebrae.label import label_vertebrae
from spinereg.vertebrae.names import level_name, level_number
from spinereg.vertebrae.result import Disc, VertebralLabeling, disc_name

__all__ = ["Disc", "VertebralLabeling", "disc_name", "label_vertebrae", "level_name", "level_number"]
