"""Write a 4D NIfTI volume by volume (bounded memory), atomically."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from spinereg.io.image import check_writable


class StreamingNiftiWriter:
    """Context manager: header first, then one volume at a time, renamed into place on success."""

    def __init__(self, path: str | Path, shape: tuple[int, ...], affine: np.ndarray, dtype,
                 template_header: nib.Nifti1Header | None = None, overwrite: bool = False):
        self.path = check_writable(path, overwrite)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        hdr = template_header.copy() if template_header is not None else nib.Nifti1Header()
        hdr = nib.Nifti1Header.from_header(hdr)
        hdr.set_data_shape(self.shape)
        hdr.set_data_dtype(self.dtype)
        hdr.set_qform(affine, code=int(hdr["qform_code"]) or 1)
        hdr.set_sform(affine, code=int(hdr["sform_code"]) or 1)
        hdr["scl_slope"] = 1.0
        hdr["scl_inter"] = 0.0
        hdr.set_data_offset(352)
        self.header = hdr
        self.written = 0
        self._tmp = None
        self._fh = None

    def __enter__(self) -> StreamingNiftiWriter:
        gz = self.path.name.endswith(".gz")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        os.close(fd)
        self._tmp = tmp
        self._fh = gzip.open(tmp, "wb", compresslevel=4) if gz else open(tmp, "wb")
        self.header.write_to(self._fh)
        self._fh.write(b"\x00" * (352 - self.header.sizeof_hdr))
        return self

    def write_volume(self, vol: np.ndarray) -> None:
        if tuple(vol.shape) != self.shape[:3]:
            raise ValueError(f"volume shape {vol.shape} != {self.shape[:3]}")
        self._fh.write(np.asarray(vol, dtype=self.dtype).tobytes(order="F"))
        self.written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self._fh.close()
        expected = int(np.prod(self.shape[3:])) if len(self.shape) > 3 else 1
        if exc_type is None and self.written == expected:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)
            if exc_type is None:
                raise RuntimeError(f"{self.written} of {expected} volumes written; output discarded")
