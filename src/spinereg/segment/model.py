"""The shipped cord models (ONNX, run with onnxruntime) and slice-wise inference.

``models/models.json`` describes each model (file, pixel size, input multiple, training
provenance); ``models/<name>.provenance.json`` has the full record written by the training
scripts in ``training/segment/``. Nothing is downloaded: the models ship inside the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from spinereg.errors import SpineregError

_DIR = "models"


@dataclass(frozen=True)
class CordModel:
    """One network: ``px`` mm pixels, inputs padded to multiples of ``multiple``."""

    name: str
    path: Path
    px: float
    multiple: int
    info: dict

    @property
    def threshold(self) -> float:
        """Mask threshold on the partial-volume map (calibrated; 0.5 when not given)."""
        return float(self.info.get("threshold", 0.5))

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def models_dir() -> Path:
    """The shipped models; ``SPINEREG_SEGMENT_MODELS`` (a folder with its own ``models.json``)
    overrides it, for evaluating candidate models during development."""
    env = os.environ.get("SPINEREG_SEGMENT_MODELS")
    if env:
        return Path(env)
    return Path(str(resources.files("spinereg.segment") / _DIR))


def _table() -> dict:
    return _read_table(str(models_dir()))


@lru_cache(maxsize=4)
def _read_table(folder: str) -> dict:
    return json.loads((Path(folder) / "models.json").read_text())


def get_model(role: str) -> CordModel:
    """The model for ``role`` (``"fine"`` or ``"locate"``)."""
    entry = _table()["models"][role]
    path = models_dir() / entry["file"]
    if not path.exists():
        raise SpineregError(f"cord model file missing ({path.name})", path,
                            "reinstall spinereg (the model ships inside the package)")
    return CordModel(role, path, float(entry["px_mm"]), int(entry["multiple"]), entry)


def model_summary() -> dict:
    """Names, sizes and training provenance of the shipped models (for outputs and provenance)."""
    out = {}
    for role in _table()["models"]:
        m = get_model(role)
        out[role] = {"file": m.path.name, "version": _table().get("version", ""), "bytes": m.size_bytes, "px_mm": m.px,
                     "training": m.info.get("training", {})}
        if "threshold" in m.info:
            out[role]["threshold"] = m.threshold
    return out


@lru_cache(maxsize=4)
def _session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    threads = int(os.environ.get("SPINEREG_THREADS", "0") or 0)
    so.intra_op_num_threads = threads if threads > 0 else min(os.cpu_count() or 1, 4)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def normalise(slices: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Per slice: 1st-99th percentile of the pixels inside the field of view -> 0-1 (clipped to
    [-0.5, 1.5]); outside the field of view: 0. As the training sets (synth._normalise)."""
    out = np.zeros(slices.shape, np.float32)
    for k in range(slices.shape[0]):
        vals = slices[k][inside[k]]
        if vals.size < 4:
            continue
        lo, hi = np.percentile(vals, [1, 99])
        if hi - lo < 1e-6:
            continue
        out[k] = np.where(inside[k], np.clip((slices[k] - lo) / (hi - lo), -0.5, 1.5), 0.0)
    return out


def predict(model: CordModel, slices: np.ndarray, batch_pixels: int = 600_000) -> np.ndarray:
    """Cord probability (nz, nx, ny) of normalised slices (nz, nx, ny); sizes are padded to the
    model's multiple with zeros and cropped back."""
    nz, nx, ny = slices.shape
    m = model.multiple
    px_, py_ = (-nx) % m, (-ny) % m
    x = np.pad(slices, ((0, 0), (0, px_), (0, py_))).astype(np.float32)[:, None]
    sess = _session(str(model.path))
    per = max(1, batch_pixels // (x.shape[2] * x.shape[3]))
    out = np.empty((nz, nx, ny), np.float32)
    for k0 in range(0, nz, per):
        logit = sess.run(None, {"image": x[k0: k0 + per]})[0][:, 0, :nx, :ny]
        out[k0: k0 + per] = 1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))
    return out
