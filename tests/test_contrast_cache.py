"""``register.contrast.synthesize_contrast`` on a region reads each template map once per process
(the box of its non-zero voxels, :func:`_nonzero_box`): the same image as reading the files."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.grid import Grid
from spinereg.io.image import load_image
from spinereg.io.template import load_template
from spinereg.register import contrast


def _region(cord, offset, shape) -> Grid:
    aff = cord.affine.copy()
    aff[:3, 3] = aff[:3, :3] @ np.asarray(offset, float) + aff[:3, 3]
    return Grid(shape, aff)


@pytest.mark.realdata
@pytest.mark.parametrize("contrast_name", ["t2", "t1"])
def test_cached_maps_give_the_files_image(monkeypatch, contrast_name):
    tpl = load_template("PAM50")
    cord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    n = cord.shape
    regions = [_region(cord, (3, 5, 400), (n[0] - 3, n[1] - 8, 300)),  # reaches the grid's edge
               _region(cord, (10, 20, 0), (100, 90, 150)),  # the bottom slices
               _region(cord, (0, 0, n[2] - 40), (n[0], n[1], 40))]  # the top: beyond every map's box
    cached = [contrast.synthesize_contrast(tpl, contrast_name, cord, r) for r in regions]
    monkeypatch.setattr(contrast, "_region_of_map", lambda path, region: None)  # read the files
    for r, img in zip(regions, cached, strict=True):
        ref = contrast.synthesize_contrast(tpl, contrast_name, cord, r)
        assert img.shape == ref.shape == tuple(r.shape)
        assert np.array_equal(np.asarray(img.data), np.asarray(ref.data))
        assert np.array_equal(img.affine, ref.affine)
    assert float(np.ptp(np.asarray(cached[0].data))) > 0.3  # cord, CSF and bone in view


@pytest.mark.realdata
def test_a_region_off_the_grid_reads_the_file():
    tpl = load_template("PAM50")
    cord = load_image(tpl.path("cord"), ndim=3, check_finite=False)
    assert contrast._region_of_map(tpl.path("csf"), _region(cord, (-2, 0, 0), (10, 10, 10))) is None
    box = contrast._region_of_map(tpl.path("csf"), _region(cord, (60, 60, 500), (10, 10, 10)))
    assert box is not None and box.dtype == np.float32 and box.shape == (10, 10, 10)
