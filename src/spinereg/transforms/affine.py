"""Affine transforms (4x4 matrices in RAS+ mm, pull convention)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from spinereg.transforms.base import Transform

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence


class AffineTransform(Transform):
    """``map(x) = M @ x``: reference-space points to source-space points (RAS+ mm)."""

    def __init__(self, matrix: np.ndarray):
        m = np.asarray(matrix, dtype=float)
        if m.shape == (3, 4):
            m = np.vstack([m, [0, 0, 0, 1]])
        if m.shape != (4, 4):
            raise ValueError(f"affine matrix must be 4x4, got {m.shape}")
        self.matrix = m

    @classmethod
    def identity(cls) -> AffineTransform:
        return cls(np.eye(4))

    @classmethod
    def from_params(cls, rotation_deg: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
                    translation: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
                    scale: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0),
                    center: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0)) -> AffineTransform:
        """Rotation about x, y, z (degrees, applied x then y then z), scale, translation, about ``center``."""
        ax, ay, az = np.deg2rad(rotation_deg)
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        a = rz @ ry @ rx @ np.diag(scale)
        c = np.asarray(center, dtype=float)
        m = np.eye(4)
        m[:3, :3] = a
        m[:3, 3] = c - a @ c + np.asarray(translation, dtype=float)
        return cls(m)

    def map(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=float)
        return pts @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def inverse(self) -> AffineTransform:
        det = float(np.linalg.det(self.matrix[:3, :3]))
        if not np.isfinite(det) or abs(det) < 1e-12:
            from spinereg.errors import InputError

            raise InputError(f"the affine is singular (determinant {det:.3g}): it has no inverse", None,
                             "check the affine file (a 3D affine with a non-zero determinant is needed)")
        return AffineTransform(np.linalg.inv(self.matrix))

    def inverse_map(self, points: np.ndarray) -> np.ndarray:
        return self.inverse().map(points)

    @property
    def is_linear(self) -> bool:
        return True

    def __matmul__(self, other: Transform) -> Transform:
        if isinstance(other, AffineTransform):
            # apply self first (to the image), then other: pull map = self.map(other.map(x))
            return AffineTransform(self.matrix @ other.matrix)
        return super().__matmul__(other)

    def __repr__(self) -> str:
        return f"AffineTransform({np.round(self.matrix, 5).tolist()})"
