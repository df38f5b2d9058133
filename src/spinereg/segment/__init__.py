"""Automatic spinal cord segmentation with small ONNX models shipped in the package.

``segment_cord(image) -> Image`` gives the binary cord mask on the image's grid;
``segment(image)`` also gives the probability (partial volume) and a report. Models and their
training provenance: ``spinereg/segment/models/`` (trained by ``training/segment/``).
"""

from spinereg.segment.cordseg import CONTRASTS, CordSegmentation, segment, segment_cord
from spinereg.segment.model import model_summary

__all__ = ["CONTRASTS", "CordSegmentation", "model_summary", "segment", "segment_cord"]
