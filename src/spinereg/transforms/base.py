"""Transforms in world space (RAS+ mm), pull convention.

A transform ``T`` from space A to space B (``warp_A2B`` in SCT's naming) *pulls*: ``T.map(x)``
takes points ``x`` of B (the reference, where the output lives) to the points of A where the
image must be sampled. So resampling A into B is ``out(x) = A(T.map(x))``. This is the ITK/ANTs
convention; file adapters convert their LPS+ files at the boundary.

Composition follows the order in which a user lists transforms for an image (SCT and spinereg
order, A->B first, then B->C): ``Chain([t_ab, t_bc])`` or ``t_ab @ t_bc`` moves an A image into C.
Its pull map is ``t_ab.map(t_bc.map(x))``. ``~T`` is the inverse.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class Transform(ABC):
    """Abstract pull transform between two world spaces."""

    @abstractmethod
    def map(self, points: np.ndarray) -> np.ndarray:
        """Pull-map world points (N, 3) of the reference space to the source space.

        Points where the transform is undefined come back as NaN.
        """

    @abstractmethod
    def inverse(self) -> Transform:
        """The inverse transform (exact for affines, numerical for fields)."""

    def inverse_map(self, points: np.ndarray) -> np.ndarray:
        """Push points of the source space to the reference space (``map``'s inverse)."""
        return self.inverse().map(points)

    def __invert__(self) -> Transform:
        return self.inverse()

    def __matmul__(self, other: Transform) -> Chain:
        return Chain([self, other])

    @property
    def is_linear(self) -> bool:
        return False


class Chain(Transform):
    """Transforms in application order (first moves the input image, last reaches the reference)."""

    def __init__(self, transforms: Sequence[Transform]):
        flat: list[Transform] = []
        for t in transforms:
            flat.extend(t.transforms if isinstance(t, Chain) else [t])
        self.transforms = flat

    def map(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=float)
        for t in reversed(self.transforms):
            pts = t.map(pts)
        return pts

    def inverse_map(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=float)
        for t in self.transforms:
            pts = t.inverse_map(pts)
        return pts

    def inverse(self) -> Chain:
        return Chain([t.inverse() for t in reversed(self.transforms)])

    @property
    def is_linear(self) -> bool:
        return all(t.is_linear for t in self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Chain({self.transforms!r})"
