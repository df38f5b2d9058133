"""``io.image.onto_grid_of``: a segmentation on its image's grid, or refused.

One call for the pair ``on_grid_of`` + ``require_same_grid`` that register-to-template, register,
label-vertebrae and topup wrote out each: the same voxels stored in another axis order / with
flipped axes are moved exactly onto the reference's grid; a real grid difference (a 2 mm shift,
another shape) is refused with ``require_same_grid``'s one-line message naming both files. Also
``metrics.overlap.same_grid_as`` (formerly a second ``on_grid_of`` taking its arguments the other
way round). Synthetic images: no data needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import spinereg.metrics.overlap as overlap
from spinereg.errors import InputError
from spinereg.io.image import Image, on_grid_of, onto_grid_of, require_same_grid
from spinereg.metrics.distance import hausdorff
from spinereg.metrics.overlap import dice, same_grid_as

REFUSED = "are not on the same voxel grid"


def _image(tmp_path: Path) -> Image:
    """A 12 x 10 x 8 image at 0.8 x 0.9 x 2.5 mm, rotated a little and off the origin, with a
    distinct value in every voxel (so any voxel landing elsewhere is seen)."""
    shape = (12, 10, 8)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    c, s = np.cos(0.1), np.sin(0.1)
    aff = np.eye(4)
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.8, 0.9, 2.5])
    aff[:3, 3] = (-5.0, 12.0, -40.0)
    return Image(data, aff, path=tmp_path / "t2.nii.gz")


def _seg(img: Image, tmp_path: Path) -> Image:
    data = np.zeros(img.shape, np.uint8)
    data[4:8, 3:7, 1:7] = 1
    return Image(data, img.affine.copy(), path=tmp_path / "t2_seg.nii.gz")


def _reordered(img: Image, name: Path) -> Image:
    """``img`` flipped along voxel axis 0 and with axes 1 and 2 swapped, every voxel at its world
    position: new voxel (i, j, k) is old voxel (n0 - 1 - i, k, j)."""
    to_old = np.array([[-1, 0, 0, img.shape[0] - 1], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    data = np.ascontiguousarray(np.asarray(img.data)[::-1].transpose(0, 2, 1))
    return Image(data, img.affine @ to_old, path=name)


def _refusals(img: Image, tmp_path: Path) -> dict[str, Image]:
    shifted = img.affine.copy()
    shifted[:3, 3] += 2.0  # 2 mm off: a real grid difference
    return {"shifted": Image(img.data, shifted, path=tmp_path / "seg_shifted.nii.gz"),
            "cropped": Image(np.ascontiguousarray(img.data[:, :, 1:]), img.affine,
                             path=tmp_path / "seg_cropped.nii.gz")}


def test_same_grid_is_returned_as_is(tmp_path):
    img = _image(tmp_path)
    seg = _seg(img, tmp_path)
    assert onto_grid_of(seg, img) is seg
    assert onto_grid_of(img, img) is img


def test_reordered_copy_is_moved_exactly(tmp_path):
    img = _image(tmp_path)
    seg = _seg(img, tmp_path)
    for ref in (img, seg):
        ro = _reordered(ref, tmp_path / "ro.nii.gz")
        ro.what = "segmentation"
        assert ro.shape != ref.shape and not ro.grid.same_as(ref.grid)
        with pytest.raises(InputError, match=REFUSED):  # refused without the move
            require_same_grid(img, ro)
        moved = onto_grid_of(ro, img, what="image and segmentation")
        assert np.array_equal(moved.affine, img.affine)
        assert np.array_equal(moved.data, ref.data) and moved.data.dtype == ref.data.dtype
        assert moved.path == ro.path and moved.what == "segmentation"  # errors keep naming the file given
    # the same result as the pair it replaces
    ro = _reordered(seg, tmp_path / "ro.nii.gz")
    assert np.array_equal(onto_grid_of(ro, img).data, on_grid_of(ro, img).data)


@pytest.mark.parametrize("key", ["shifted", "cropped"])
@pytest.mark.parametrize("what", [None, "image and segmentation", "blip-up and blip-down images",
                                  "the blip-up image and --apply-to"])
def test_real_difference_is_refused_with_the_same_message(tmp_path, key, what):
    img = _image(tmp_path)
    other = _refusals(img, tmp_path)[key]
    kw = {} if what is None else {"what": what}
    with pytest.raises(InputError) as got:
        onto_grid_of(other, img, **kw)
    with pytest.raises(InputError) as pair:  # what the callers wrote out before
        require_same_grid(img, on_grid_of(other, img), **kw)
    line = str(got.value)
    assert line == str(pair.value)
    assert got.value.path == str(other.path)  # the file to fix
    assert line.startswith(f"{other.path}: {what or 'images'} {REFUSED} (")
    assert str(img.path) in line and "-- fix:" in line and "spinereg apply" in line and "\n" not in line
    diff = "shape (12, 10, 8) vs (12, 10, 7)" if key == "cropped" else "affines differ by up to 2 mm"
    assert diff in line


def test_reordered_and_shifted_is_refused(tmp_path):
    img = _image(tmp_path)
    ro = _reordered(_refusals(img, tmp_path)["shifted"], tmp_path / "ro_shifted.nii.gz")
    with pytest.raises(InputError, match=REFUSED) as got:
        onto_grid_of(ro, img)
    assert got.value.path == str(ro.path)


def test_metrics_same_grid_as(tmp_path):
    """The metrics' own helper: reference first; renamed from ``on_grid_of`` (the name of
    :func:`spinereg.io.image.on_grid_of`, which takes the image to move first)."""
    assert not hasattr(overlap, "on_grid_of")
    img = _image(tmp_path)
    seg = _seg(img, tmp_path)
    assert same_grid_as(seg, seg) is seg
    ro = _reordered(seg, tmp_path / "ro.nii.gz")
    moved = same_grid_as(seg, ro)
    assert np.array_equal(moved.data, seg.data) and np.array_equal(moved.affine, seg.affine)
    assert dice(seg, ro).dice == pytest.approx(1.0)
    assert hausdorff(seg, ro).hausdorff_mm == pytest.approx(0.0)
    other = _refusals(seg, tmp_path)["shifted"]
    with pytest.raises(InputError) as got:
        same_grid_as(seg, other)
    line = str(got.value)
    assert "are not on the same grid" in line and str(seg.path) in line and str(other.path) in line
    assert "spinereg apply -i" in line and "-x nn" in line
    with pytest.raises(InputError) as got_dice:
        dice(seg, other)
    assert str(got_dice.value) == line
