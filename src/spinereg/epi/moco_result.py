"""The result of :func:`spinereg.epi.moco.motion_correct`: per-slice shifts, per-volume pull
transforms, the motion table and the ``moco_params.json`` document (and reading it back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinereg.epi.artifacts import ArtifactScores
from spinereg.epi.moco_acquisition import read_sidecar
from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.register.slicewise import SliceParams, field_from_params
from spinereg.transforms.displacement import DisplacementField

PARAMS_SCHEMA = "spinereg.moco.params/1"


@dataclass
class MocoResult:
    """Estimated slice-wise motion of a series.

    ``shifts`` ``(nvol, nz, 2)``: in-plane translation of every slice in voxels along the first
    two voxel axes, pull convention: the corrected volume ``t`` at reference voxel ``(i, j, k)``
    is volume ``t`` sampled at ``(i + shifts[t, k, 0], j + shifts[t, k, 1], k)``.
    ``slice_groups`` ``(nz,)``: the estimation group of each slice (slices sharing an estimate).
    ``volume_units`` ``(nvol,)``: volumes estimated together (DWI group averaging).
    ``classes`` ``(nvol,)``: 0 for b=0 (or every fMRI volume), 1 for b>0.
    """

    grid: Grid
    shifts: np.ndarray
    raw_shifts: np.ndarray  # (nvol, n_groups, 2), NaN where not estimated
    slice_groups: np.ndarray
    volume_units: np.ndarray
    classes: np.ndarray
    reference: np.ndarray
    scores: ArtifactScores
    excluded: np.ndarray  # (nvol,) left out of the reference mean
    tsnr_before: np.ndarray | None = None
    tsnr_after: np.ndarray | None = None
    mean: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    #: (nvol,) volumes without signal (all NaN/Inf, or constant such as a zero-filled volume):
    #: not estimated, left out of the reference, the mean and tSNR, written as they were read
    no_signal: np.ndarray | None = None
    #: one line per problem found in the input (the CLI prints them on stderr)
    warnings: list[str] = field(default_factory=list)
    #: :func:`~spinereg.io.structure.image_structure` of the temporal mean of the input
    #: volumes with signal (``empty``, ``structure``): a noise or empty series is no image
    image_scores: dict = field(default_factory=dict)

    @property
    def n_volumes(self) -> int:
        return int(self.shifts.shape[0])

    def shifts_mm(self) -> np.ndarray:
        """Translations as world (RAS+ mm) vectors ``(nvol, nz, 3)``."""
        return self.shifts @ self.grid.affine[:3, :2].T

    def slice_params(self, t: int) -> SliceParams:
        nz = self.grid.shape[2]
        center = np.tile((np.array(self.grid.shape[:2], float) - 1) / 2, (nz, 1))
        return SliceParams(shift=self.shifts[t].astype(float), angle=np.zeros(nz), center=center,
                           valid=np.ones(nz, bool), raw_shift=self.shifts[t].astype(float),
                           raw_angle=np.full(nz, np.nan))

    def volume_transform(self, t: int) -> DisplacementField:
        """Pull transform of volume ``t`` on the series grid: ``map(x)`` takes a reference
        (corrected) point to the point of volume ``t`` holding its signal."""
        return field_from_params(self.grid, self.slice_params(t))

    def volume_transforms(self) -> list[DisplacementField]:
        """One pull transform per volume (see :meth:`volume_transform`), for a 4D apply.

        In a chain, the motion transform comes first (it moves the raw volume onto the moco
        reference, which is the series grid): ``Chain([moco[t], warp_epi2anat, ...])`` maps
        raw volume ``t`` onto the chain's destination with a single interpolation.
        """
        return [self.volume_transform(t) for t in range(self.n_volumes)]

    def motion_table(self) -> list[dict]:
        """Rows ``volume, slice, group, tx_mm, ty_mm, tz_mm`` (world RAS+ mm, pull)."""
        mm = self.shifts_mm()
        rows = []
        for t in range(self.n_volumes):
            for k in range(self.grid.shape[2]):
                rows.append({"volume": t, "slice": k, "group": int(self.slice_groups[k]),
                             "tx_mm": round(float(mm[t, k, 0]), 5) + 0.0, "ty_mm": round(float(mm[t, k, 1]), 5) + 0.0,
                             "tz_mm": round(float(mm[t, k, 2]), 5) + 0.0})
        return rows

    def params_json(self) -> dict:
        return {
            "schema": PARAMS_SCHEMA,
            "convention": ("pull: corrected volume t at reference voxel (i, j, k) = raw volume t at "
                           "(i + shift_vox[t][k][0], j + shift_vox[t][k][1], k); shift_mm is the same "
                           "translation in world RAS+ mm"),
            "grid": {"shape": list(self.grid.shape), "affine": self.grid.affine.tolist()},
            "slice_groups": self.slice_groups.tolist(),
            "volume_units": self.volume_units.tolist(),
            "classes": self.classes.tolist(),
            "shift_vox": np.round(self.shifts, 6).tolist(),
            "shift_mm": np.round(self.shifts_mm(), 6).tolist(),
        }


def load_volume_transforms(path: str | Path) -> list[DisplacementField]:
    """Per-volume pull transforms from a ``moco_params.json`` written by :func:`write_moco_outputs`."""
    p = Path(path)
    d = read_sidecar(p)
    if d.get("schema") != PARAMS_SCHEMA:
        raise InputError("not a spinereg moco parameter file", p, "give the moco_params.json of `spinereg moco`")
    grid = Grid(tuple(d["grid"]["shape"]), np.array(d["grid"]["affine"]))
    shifts = np.array(d["shift_vox"], float)
    nz = grid.shape[2]
    center = np.tile((np.array(grid.shape[:2], float) - 1) / 2, (nz, 1))
    return [field_from_params(grid, SliceParams(s, np.zeros(nz), center, np.ones(nz, bool), s,
                                                np.full(nz, np.nan))) for s in shifts]
