"""Fast NIfTI writing: one standard gzip stream compressed in parallel threads, at a fast level.

:class:`ParallelGzipWriter` is a write-only file object. Data written to it is cut into blocks
of ``block`` bytes; each block is deflated on its own in a thread pool (ISA-L's deflate when the
``isal`` package is installed, else ``zlib``; both release the GIL while they compress) and ended with a sync flush, the last one with the final block, so the
blocks join into ONE ordinary deflate stream inside ONE gzip member (as ``pigz`` does): every
gzip reader (nibabel, ITK/ANTs ``gzread``, FSL, ``gzip -d``) opens it. Only the compression
ratio differs from a single-threaded stream (no dictionary shared across blocks; level 1 by
default, nibabel's own default). The uncompressed bytes are exactly what nibabel writes.

:func:`write_nifti` saves a nibabel image through it (``.nii.gz``) or plainly (``.nii``), with
nibabel's own header and data serialisation (``to_file_map``), so scaling, dtypes and header
fields are nibabel's.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from types import ModuleType, TracebackType

    from nibabel.spatialimages import SpatialImage

#: deflate level of the outputs (1: fastest, as nibabel's default)
LEVEL = 1
#: level used when none is passed (``--no-gzip``: 0, see :func:`set_output_level`)
_OUTPUT_LEVEL: int | None = None


def set_output_level(level: int | None) -> None:
    """Deflate level of every ``.nii.gz`` written from now on in this process (``None``: back to
    :data:`LEVEL`). Level 0 (``--no-gzip``) stores the data uncompressed inside a standard gzip
    container: the file names stay ``.nii.gz`` (SCT's names) and every gzip reader opens them,
    but no time goes into compression (the files are about as large as ``.nii``)."""
    global _OUTPUT_LEVEL
    if level is not None and not 0 <= int(level) <= 9:
        raise ValueError(f"deflate level {level} is not in 0..9")
    _OUTPUT_LEVEL = None if level is None else int(level)


def output_level() -> int:
    """The deflate level used when none is given (see :func:`set_output_level`)."""
    return LEVEL if _OUTPUT_LEVEL is None else _OUTPUT_LEVEL
#: uncompressed bytes per independently compressed block
BLOCK = 4 << 20


def default_threads() -> int:
    """Compression threads: ``SPINEREG_WRITE_THREADS`` or the CPUs this process may use (<= 8)."""
    env = os.environ.get("SPINEREG_WRITE_THREADS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The compression threads of this process (a forked child makes its own: threads do not
    survive ``fork``)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(max_workers=default_threads(), thread_name_prefix="spinereg-gz")
            _POOL_PID = os.getpid()
        return _POOL


try:  # ISA-L (python-isal): the same raw deflate format, about 5x faster than zlib at level 1
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - a speed-up only; zlib writes the same kind of stream
    _isal = None


def deflate_library(level: int) -> ModuleType:
    """The deflate implementation for ``level``: ISA-L (``isal.isal_zlib``, levels 1-3, ratio
    about zlib's at the same level, several times faster, releases the GIL) when installed, else
    ``zlib`` (level 0, stored blocks for ``--no-gzip``, and levels above 3)."""
    return _isal if _isal is not None and 1 <= level <= 3 else zlib


def _deflate(data: bytes, level: int, last: bool) -> tuple[bytes, bytes]:
    lib = deflate_library(level)
    c = lib.compressobj(level, lib.DEFLATED, -15, 9)
    return c.compress(data) + c.flush(lib.Z_FINISH if last else lib.Z_SYNC_FLUSH), data


class ParallelGzipWriter(io.IOBase):
    """Write-only binary file object producing a single-member gzip file (module docstring)."""

    def __init__(self, path: str | Path, level: int | None = None, block: int | None = None,
                 threads: int | None = None):
        self.name = str(path)
        self.level = output_level() if level is None else int(level)
        self.block = int(block or BLOCK)
        self.threads = threads or default_threads()
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        # no name, mtime 0 (as nibabel writes it: ITK misreads some files with a set mtime), OS unknown
        self._fh.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        self._buf: list[bytes] = []
        self._buffered = 0
        self._pos = 0
        self._crc = 0
        self._pending: deque[Future] = deque()

    # file-object protocol used by nibabel and the streaming writer
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def seek(self, pos: int, whence: int = 0) -> int:
        """Only to where the stream already is (nibabel seeks to the start and to the data
        offset it has just reached); anything else is refused."""
        target = pos if whence == 0 else self._pos + pos if whence == 1 else None
        if target != self._pos:
            raise io.UnsupportedOperation("ParallelGzipWriter can only seek to its current position")
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: bytes | bytearray | memoryview) -> int:
        mv = memoryview(data).cast("B")
        n = mv.nbytes
        if n == 0:
            return 0
        self._pos += n
        start = 0
        while start < n:
            take = min(self.block - self._buffered, n - start)
            self._buf.append(bytes(mv[start:start + take]))
            self._buffered += take
            start += take
            if self._buffered >= self.block:
                self._submit(last=False)
        return n

    def _submit(self, last: bool) -> None:
        data = b"".join(self._buf) if len(self._buf) != 1 else self._buf[0]
        self._buf, self._buffered = [], 0
        if self.threads > 1 and not (last and not self._pending):  # a single block: no thread
            self._pending.append(_pool().submit(_deflate, data, self.level, last))
            while len(self._pending) > 2 * self.threads:  # bounded memory: write finished blocks
                self._drain_one()
        else:
            done: Future = Future()
            done.set_result(_deflate(data, self.level, last))
            self._pending.append(done)
            self._drain_one()

    def _drain_one(self) -> None:
        out, data = self._pending.popleft().result()
        # the CRC runs over the blocks in order (Python's zlib has no crc32_combine); it is
        # cheap beside deflate and releases the GIL too
        self._crc = zlib.crc32(data, self._crc)
        self._fh.write(out)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._submit(last=True)
            while self._pending:
                self._drain_one()
            self._fh.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._pos & 0xFFFFFFFF))
        finally:
            self.abort()

    def abort(self) -> None:
        """Close without finishing the stream (after a failure; also the end of :meth:`close`)."""
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        self._fh.close()
        super().close()

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_output(path: str | Path,
                level: int | None = None) -> ParallelGzipWriter | BinaryIO:
    """A binary output file: :class:`ParallelGzipWriter` for ``*.gz``, a plain file otherwise."""
    return ParallelGzipWriter(path, level) if str(path).endswith(".gz") else open(path, "wb")  # noqa: SIM115


def write_nifti(img: SpatialImage, path: str | Path, level: int | None = None) -> Path:
    """Save a nibabel NIfTI image at ``path`` (``.nii.gz``: parallel deflate; ``.nii``: plain),
    serialised by nibabel itself (header, scaling, data layout as ``nib.save``)."""
    import nibabel as nib

    p = Path(path)
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image) or not (p.name.endswith(".nii.gz")
                                                                         or p.name.endswith(".nii")):
        nib.save(img, str(p))  # other formats and pairs (.hdr/.img): nibabel's own writer
        return p
    fh = open_output(p, level)
    try:
        img.to_file_map(img.make_file_map({"image": fh}))
    except BaseException:
        if isinstance(fh, ParallelGzipWriter):
            fh.abort()
        else:
            fh.close()
        raise
    fh.close()
    return p


class BackgroundWrites:
    """Context manager running file writes in one background thread, beside the computations
    that follow them; :meth:`wait` (and leaving the block) waits for every write and raises the
    first failure. Leaving after an error cancels the writes not started and waits for the one
    running, so that no thread writes into a folder being removed."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spinereg-write")
        self._futures: list[Future] = []

    serial = False  #: True: each write runs at once, in the caller's thread

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        if self.serial:
            fut: Future = Future()
            fut.set_result(fn(*args, **kwargs))
            return fut
        fut = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(fut)
        return fut

    def wait(self) -> None:
        futures, self._futures = self._futures, []
        error = None
        for fut in futures:
            exc = fut.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            return
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
