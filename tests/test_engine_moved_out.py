"""Moving images pulled between steps: voxels the earlier steps moved out of the moving image
take their nearest covered value, not 0 (``register.engine.moved_out_filled``); voxels it never
covered stay 0. A rim of zeros is an edge the fixed image does not have: on the articulated
phantom it made the SyN step after polyrigid worse in the cord than SyN alone (MR seed 6:
0.65 vs 0.51 mm; 0.38 since, tests/test_articulated_registration.py) and a demons step after
polyrigid diverge (checked here)."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.grid import Grid
from spinereg.io.image import Image
from spinereg.register.engine import moved_out_filled, run_steps
from spinereg.register.steps import parse_param
from spinereg.transforms.affine import AffineTransform


def _grid(shape=(20, 22, 24), zooms=(1.0, 1.0, 2.0)) -> Grid:
    aff = np.diag([*zooms, 1.0])
    return Grid(shape, aff)


def test_fill_takes_the_nearest_covered_value_and_leaves_the_rest_zero():
    g = _grid()
    data = np.arange(np.prod(g.shape), dtype=np.float32).reshape(g.shape)
    covered = np.ones(g.shape, bool)
    covered[:, :, 20:] = False  # never covered: a smaller field of view
    pulled = data.copy()
    pulled[:3] = np.nan  # moved out by a step
    pulled[:, :, 20:] = np.nan
    out = moved_out_filled(pulled, covered, g)
    assert np.isfinite(out).all() and out.dtype == np.float32
    np.testing.assert_array_equal(out[:3, :, :20], np.broadcast_to(data[3:4, :, :20], (3, 22, 20)))
    assert (out[:, :, 20:] == 0).all()
    np.testing.assert_array_equal(out[3:, :, :20], data[3:, :, :20])
    # nothing outside: returned as it is
    assert moved_out_filled(data, covered, g) is data


def test_nearest_is_measured_in_mm():
    g = _grid((9, 3, 9), (1.0, 1.0, 3.0))
    pulled = np.full(g.shape, np.nan, np.float32)
    pulled[4, 1, 0] = 1.0  # 4 mm along x from the corner voxel (0, 1, 0)
    pulled[0, 1, 2] = 2.0  # 6 mm along z from it
    out = moved_out_filled(pulled, np.ones(g.shape, bool), g)
    assert out[0, 1, 0] == 1.0


@pytest.mark.realdata
def test_demons_after_polyrigid_is_kept_on_the_phantom(pam50_dir):
    """Before the fill, the demons step after polyrigid (MR seed 6) lowered the local correlation
    0.69 -> 0.12 and was dropped (cord 0.84 mm, polyrigid's); now it is kept and lowers the cord
    error (measured 0.19 mm)."""
    from spinereg.phantom.articulated import make_articulated_phantom
    from spinereg.transforms.base import Chain
    from spinereg.transforms.displacement import DisplacementField

    ph = make_articulated_phantom((3, 5), seed=6, contrast="mr", margin_mm=12.0)
    lab = np.asarray(ph.vertebrae.data)
    res = run_steps(parse_param("step=1,type=im,algo=polyrigid:step=2,type=im,algo=demons,metric=MeanSquares"),
                    ph.grid, {"im": np.asarray(ph.template.data, np.float32), "vertebrae": lab}, {"im": ph.subject}, [])
    assert res.records[1].report.get("used", True) is not False, res.records[1].report
    est = DisplacementField.from_transform(Chain(res.transforms), ph.grid)
    cord = np.asarray(ph.cord.data) > 0
    err = np.linalg.norm(est.data[cord] - ph.truth_anat2template.data[cord], axis=1).mean()
    assert err <= 0.215, err  # measured 0.194 mm (seed 6); claim 0.19


def test_a_shift_out_of_the_grid_leaves_no_zero_rim_for_the_next_step(monkeypatch):
    """Step 1 shifts the content 3 mm; step 2 sees the moving image without a zero rim."""
    import spinereg.register.engine as engine

    g = _grid((16, 16, 16), (1.0, 1.0, 1.0))
    x = np.indices(g.shape).astype(np.float32)
    img = 1.0 + 0.1 * x[0] + 0.05 * x[2]
    seen = []

    def fake(fixed, moving, fixed_grid, moving_grid, step, fixed_mask=None, **kw):
        seen.append(moving.copy())
        m = np.eye(4)
        m[0, 3] = 3.0
        return AffineTransform(m)

    real = engine.algorithm
    monkeypatch.setattr(engine, "algorithm", lambda name: fake if name == "translation" else real(name))
    run_steps(parse_param("step=1,type=im,algo=translation:step=2,type=im,algo=translation"), g,
              {"im": img}, {"im": Image(img, g.affine)}, [])
    assert len(seen) == 2 and (seen[0] > 0).all()
    assert (seen[1] > 0).all(), "zero rim after the shift"
