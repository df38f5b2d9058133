"""Write a 4D NIfTI volume by volume (bounded memory), atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from spinereg.io.fastgz import ParallelGzipWriter
from spinereg.io.image import check_writable, make_temp, output_os_error

if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

    from numpy.typing import DTypeLike

#: deflate block of streamed series (bytes)
STREAM_BLOCK = 1 << 20
#: bytes of a volume serialised at a time
SLAB_BYTES = 4 << 20


class StreamingNiftiWriter:
    """Context manager: header first, then one volume at a time, renamed into place on success.

    The output is written to a hidden temporary file in the destination folder; it replaces
    ``path`` only when every volume was written, and is removed on any failure.
    """

    def __init__(self, path: str | Path, shape: tuple[int, ...], affine: np.ndarray,
                 dtype: DTypeLike,
                 template_header: nib.Nifti1Header | None = None, overwrite: bool = False):
        self.path = check_writable(path, overwrite)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        hdr = template_header.copy() if template_header is not None else nib.Nifti1Header()
        hdr = nib.Nifti1Header.from_header(hdr)
        hdr["magic"] = b"n+1"  # single file, whatever the template was
        hdr.set_data_shape(self.shape)
        hdr.set_data_dtype(self.dtype)
        hdr.set_qform(affine, code=int(hdr["qform_code"]) or 1)
        hdr.set_sform(affine, code=int(hdr["sform_code"]) or 1)
        hdr["scl_slope"] = 1.0
        hdr["scl_inter"] = 0.0
        hdr.set_data_offset(0)  # let nibabel place the data after the header (and extensions)
        self.header = hdr
        self.written = 0
        self._tmp: str | None = None
        self._fh = None

    @property
    def expected(self) -> int:
        return int(np.prod(self.shape[3:])) if len(self.shape) > 3 else 1

    def __enter__(self) -> StreamingNiftiWriter:
        gz = self.path.name.endswith(".gz")
        self._tmp = make_temp(self.path)
        try:
            # parallel deflate, level 1 (spinereg.io.fastgz): one standard gzip stream; 1 MiB blocks
            # so that the blocks in flight stay a few MB whatever the series' length
            self._fh = ParallelGzipWriter(self._tmp, block=STREAM_BLOCK) if gz else open(self._tmp, "wb")  # noqa: SIM115
            # write_to sets vox_offset and writes the 348-byte header plus the 4-byte extension
            # flag (and extensions); pad up to vox_offset in case it is larger
            self.header.write_to(self._fh)
            pad = int(self.header.get_data_offset()) - self._fh.tell()
            if pad < 0:
                raise RuntimeError(f"NIfTI header overran the data offset by {-pad} bytes")
            self._fh.write(b"\x00" * pad)
        except BaseException as exc:
            self._discard()
            if isinstance(exc, OSError):
                raise output_os_error(exc, self.path) from exc
            raise
        return self

    def write_volume(self, vol: np.ndarray) -> None:
        if tuple(vol.shape) != self.shape[:3]:
            raise ValueError(f"volume shape {vol.shape} != {self.shape[:3]}")
        if self.written >= self.expected:
            raise ValueError(f"all {self.expected} volumes were already written")
        v = np.asarray(vol, dtype=self.dtype)
        # the volume's Fortran-order bytes slab by slab along the last axis (each slab's bytes are
        # the next run of the whole volume's): no second copy of a large volume in memory
        step = max(1, SLAB_BYTES // max(1, v[:, :, :1].nbytes))
        try:
            for k in range(0, v.shape[2], step):
                self._fh.write(v[:, :, k:k + step].tobytes(order="F"))
        except OSError as exc:
            raise output_os_error(exc, self.path) from exc
        self.written += 1

    def _discard(self) -> None:
        if self._fh is not None:
            try:
                getattr(self._fh, "abort", self._fh.close)()  # a gzip stream is not finished
            except OSError:
                pass
            self._fh = None
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None or self.written != self.expected:
            self._discard()
            if exc_type is None:
                raise RuntimeError(f"{self.written} of {self.expected} volumes written; output discarded")
            return
        try:
            self._fh.close()
            self._fh = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except OSError as exc:
            self._discard()
            raise output_os_error(exc, self.path) from exc
        except BaseException:
            self._discard()
            raise

