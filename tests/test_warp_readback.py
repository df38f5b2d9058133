"""A warp this process wrote is read back from memory while its file is unchanged: the same
field as a read from disk (values as stored, NaN as 0; the header's float32 affine)."""

from __future__ import annotations

import os

import numpy as np

from spinereg.io.grid import Grid
from spinereg.transforms import itk
from spinereg.transforms.displacement import DisplacementField


def test_read_back_equals_disk(tmp_path, rng):
    aff = np.array([[-0.8, 0.01, 0, 12.345678901], [0, 0.8, 0.02, -33.3333333], [0, 0, 0.8, 101.10101],
                    [0, 0, 0, 1]])
    data = rng.normal(size=(12, 14, 10, 3)).astype(np.float32)
    data[3, 4, 5] = np.nan
    field = DisplacementField(Grid((12, 14, 10), aff), data)
    p = itk.write_displacement(field, tmp_path / "w.nii.gz")
    mem = itk.read_displacement(p)
    itk._WRITTEN.clear()
    disk = itk.read_displacement(p)
    np.testing.assert_array_equal(mem.data, disk.data)
    np.testing.assert_array_equal(mem.grid.affine, disk.grid.affine)
    pts = rng.uniform(-8, 8, (500, 3)) + aff[:3, 3]
    np.testing.assert_array_equal(mem.map(pts), disk.map(pts))
    # the file changed (or the field is gone): read from disk
    itk.write_displacement(DisplacementField(field.grid, data * 2), p, overwrite=True)
    os.utime(p, ns=(1, 1))
    # the undefined voxel stays undefined (SCT's marker in the file; written as 0 before session 49)
    np.testing.assert_array_equal(itk.read_displacement(p).data, data * 2)
