"""Series access for ``spinereg moco``: a 4D image read volume by volume as float32 (cached when
small), with the volumes that hold no signal (all NaN/Inf or constant) found and named."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinereg.errors import InputError
from spinereg.io.image import Image, load_image


def _read_volume(img: Image, t: int) -> np.ndarray:
    """Volume ``t`` as float32 without the NaN/Inf check of a loaded series (the caller checks)."""
    check = img.check_finite
    img.check_finite = False
    try:
        return np.asarray(img.volume(t), np.float32)
    finally:
        img.check_finite = check


def _is_constant(vol: np.ndarray) -> bool:
    lo, hi = float(vol.min()), float(vol.max())
    return hi - lo <= 1e-6 * (max(abs(lo), abs(hi)) + 1e-12)


class _Series:
    """Volumes of a 4D image as float32, cached in memory when small enough.

    Checks every volume as it is first read: a volume with some NaN/Inf voxels is refused (as
    :func:`~spinereg.io.image.load_image` refuses it), an all-NaN/Inf volume is recorded in
    ``all_nan`` and read as zeros, a constant (e.g. zero-filled) volume in ``constant``."""

    def __init__(self, img: Image, cache_mb: float = 2048.0):
        self.img = img
        self.shape = tuple(img.shape[:3])
        self.n = img.nvols
        self.all_nan = np.zeros(self.n, bool)
        self.constant = np.zeros(self.n, bool)
        nbytes = 4 * np.prod(self.shape) * self.n
        cache = nbytes <= cache_mb * 2**20
        self._cache: list[np.ndarray] | None = [] if cache else None
        for t in range(self.n):
            vol = self._checked(t)
            if self._cache is not None:
                self._cache.append(vol)

    def _checked(self, t: int) -> np.ndarray:
        vol = _read_volume(self.img, t)
        bad = ~np.isfinite(vol)
        if bad.all():
            self.all_nan[t] = True
            return np.zeros_like(vol)
        if bad.any():
            raise InputError(f"{self.img.what} has {int(bad.sum())} NaN/Inf voxels (volume {t})", self.img.name,
                             "replace them by finite values (e.g. `fslmaths IN -nan OUT`)")
        self.constant[t] = _is_constant(vol)
        return vol

    def __getitem__(self, t: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[t]
        vol = _read_volume(self.img, t)
        return np.zeros_like(vol) if self.all_nan[t] else vol

    def no_signal(self) -> tuple[np.ndarray, list[str]]:
        """Volumes left out (all NaN/Inf, or constant while 2+ volumes have signal) and the
        warning naming them; refuses a series whose every volume is NaN/Inf."""
        name = self.img.name
        if self.all_nan.all():
            raise InputError(f"every volume of the {self.img.what} is NaN/Inf", name,
                             "give the series as reconstructed (this one holds no values)")
        missing = self.all_nan | self.constant
        if (~missing).sum() < 2:  # no signal to speak of: judged by the QC verdict (image_empty)
            missing = self.all_nan.copy()
        warnings = []
        if missing.any():
            idx = np.flatnonzero(missing)
            kinds = [k for k, m in (("all NaN/Inf", self.all_nan), ("constant, e.g. zero-filled", self.constant))
                     if (m & missing).any()]
            shown = ", ".join(str(int(t)) for t in idx[:20]) + (", ..." if idx.size > 20 else "")
            warnings.append(f"{name}: {idx.size} of {self.n} volumes have no signal ({' or '.join(kinds)}): "
                            f"volume(s) {shown} left out of the reference, the mean and tSNR and written as read "
                            "-- fix: drop them from the series (e.g. fslroi / fslsplit + fslmerge) or check "
                            "the reconstruction")
        return missing, warnings


def _as_image(series: Image | str | Path) -> Image:
    if isinstance(series, Image):
        return series
    return load_image(series, ndim=4, lazy=True, what="series")

