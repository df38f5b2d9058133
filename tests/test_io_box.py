"""`io.box.mask_box`: the box of an array's non-zero voxels, equal to the index-list cut it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.box import box_slices, mask_box, pad_voxels
from spinereg.io.grid import Grid


def _reference(mask: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    return np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, mask.shape)


@pytest.mark.parametrize("seed", range(6))
def test_equal_to_the_index_list_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 30, 3))
    mask = rng.random(shape) > rng.choice([0.5, 0.99, 0.999])
    if not mask.any():
        mask[tuple(rng.integers(0, s) for s in shape)] = True
    for pad in (0, 2, np.array([0, 3, 40])):
        lo, hi = mask_box(mask, pad)
        rlo, rhi = _reference(mask, np.broadcast_to(pad, 3))
        np.testing.assert_array_equal(lo, rlo)
        np.testing.assert_array_equal(hi, rhi)
        assert mask[box_slices(lo, hi)].sum() == mask.sum()  # every voxel inside the box


def test_values_empty_and_other_dimensions() -> None:
    a = np.zeros((4, 5, 6), np.float32)
    assert mask_box(a) is None
    a[1, 2, 3] = np.nan  # NaN is not zero: inside, as `data != 0` read it
    a[2, 4, 5] = -1.0
    lo, hi = mask_box(a)
    assert lo.tolist() == [1, 2, 3] and hi.tolist() == [3, 5, 6]
    lo, hi = mask_box(np.array([0, 0, 1, 1, 0]), 1)
    assert lo.tolist() == [1] and hi.tolist() == [5]
    lo, hi = mask_box(np.eye(4, dtype=bool)[1:3, :])
    assert lo.tolist() == [0, 1] and hi.tolist() == [2, 3]
    with pytest.raises(ValueError):
        mask_box(np.array(True))


def test_pad_voxels_and_sub_grid() -> None:
    assert pad_voxels(5.0, [0.8, 1.0, 3.0]).tolist() == [7, 5, 2]
    # the voxel sizes of a turned header carry rounding: 25 mm is still 25 voxels of ~1 mm
    assert pad_voxels(25.0, [1.0 - 2e-16, 1.0 - 1e-15, 1.0]).tolist() == [25, 25, 25]
    assert pad_voxels(25.0, [0.99, 1.0 + 1e-6, 1.0]).tolist() == [26, 25, 25]
    assert pad_voxels(5.0, [0.8, 1.0, 3.0], 1).tolist() == [8, 6, 3]
    aff = np.array([[0, 0, -0.8, 10], [1.0, 0, 0, -5], [0, 2.0, 0, 3], [0, 0, 0, 1]])
    grid = Grid((20, 30, 40), aff)
    sub = grid.box([2, 3, 4], [12, 13, 24])
    assert sub.shape == (10, 10, 20)
    ijk = np.array([[0.0, 0, 0], [9, 9, 19], [1.5, 2, 3]])
    np.testing.assert_allclose(sub.voxel_to_world(ijk), grid.voxel_to_world(ijk + [2, 3, 4]))
