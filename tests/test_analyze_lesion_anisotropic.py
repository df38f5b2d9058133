"""``analyze-lesion`` on ANISOTROPIC voxels against analytic truth (thick axial and thick sagittal
stacks, straight and tilted cords).

Phantom (world mm, voxel centre inside = 1): a cylinder cord of radius R = 4 mm along the unit
vector ``u`` (the z axis turned ``tilt`` degrees towards x) and two lesions, truth computed here:

- ``capsule``: the points within r = 2.5 mm of the cord's axis between arc lengths -12 and -4
  (hemispherical ends): length 13 mm, equivalent diameter 5 mm, damage ratio r^2 / R^2;
- ``cylinder``: radius 1.5 mm about an axis 1.5 mm anterior of the cord's, flat ends at arc lengths
  4 and 12: length 8 mm, diameter 3 mm, ratio 1.5^2 / R^2, ventral bridge 1 mm, dorsal 4 mm.

12 sub-voxel placements (seeds 0-11, +-half a voxel per axis). Measured (session 44), reported -
truth, min..max (mean):

- 0.5 x 0.5 x 3 mm, straight: length capsule -1..+2 (-0.50), cylinder -2..+1 (+0.25): the slices
  the lesion covers, each one 3 mm box; diameter -0.123..+0.046; ratio -0.010..+0.013; bridges 0
  (ventral up to +0.5, one in-plane voxel).
- 0.5 x 0.5 x 3 mm, tilted 20 deg: length +0.67..+2.81 (+0.92) and -0.99..+2.34 (+1.40): the end
  voxels' boxes count whole and reach e/2 = 1.5 mm beyond the end centres along the cord
  (documented in spinereg.lesion.analyze; two estimators from the gaps between projected voxel
  centres were tried and read 1-2.4 mm short on this grid); diameter -0.083..+0.104; bridges
  within 2e-6 mm.
- 2 x 0.5 x 0.5 mm (thick R-L), straight: length -0.5..0; diameter -0.236..+0.568 (2 mm pixels);
  ratio -0.051..+0.077.
- 2 x 0.5 x 0.5 mm, tilted 20 deg in the R-L / S-I plane: length +0.32..+0.90; diameter
  +0.128..+0.371; ratio +0.010..+0.075: the largest of many noisy sections.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import Image
from spinereg.lesion import analyze_lesions
from test_analyze_lesion import assert_same_rows, reordered

R = 4.0
TRUTH = {"capsule": (13.0, 5.0, 2.5**2 / R**2), "cylinder": (8.0, 3.0, 1.5**2 / R**2)}
SEEDS = range(12)


def phantom(zooms: tuple, tilt: float, seed: int) -> tuple[Image, Image]:
    """(lesion, cord) on a grid of ``zooms`` covering +-12 x +-12 x +-24 mm, shifted by a random
    sub-voxel offset (``seed``)."""
    z = np.asarray(zooms, float)
    shape = tuple(int(np.ceil(2 * e / h)) for e, h in zip((12.0, 12.0, 24.0), z, strict=True))
    aff = np.diag([*z, 1.0])
    aff[:3, 3] = -0.5 * z * (np.array(shape) - 1) + np.random.default_rng(seed).uniform(-0.5, 0.5, 3) * z
    p = np.indices(shape).reshape(3, -1).T * z + aff[:3, 3]
    th = np.radians(tilt)
    u, e1, e2 = np.array([np.sin(th), 0, np.cos(th)]), np.array([np.cos(th), 0, -np.sin(th)]), np.array([0, 1.0, 0])
    s, x, y = p @ u, p @ e1, p @ e2
    cord = np.hypot(x, y) < R
    capsule = np.sqrt(x**2 + y**2 + (s - np.clip(s, -12.0, -4.0)) ** 2) < 2.5
    cylinder = (np.hypot(x, y - 1.5) < 1.5) & (s >= 4.0) & (s <= 12.0)
    les = (capsule | cylinder).reshape(shape).astype(np.uint8)
    return Image(les, aff), Image(cord.reshape(shape).astype(np.uint8), aff)


def errors(zooms: tuple, tilt: float) -> dict[str, np.ndarray]:
    """Reported - truth per seed: (length, diameter, ratio[, ventral, dorsal])."""
    out: dict[str, list] = {"capsule": [], "cylinder": []}
    for seed in SEEDS:
        les, cord = phantom(zooms, tilt, seed)
        rep = analyze_lesions(les, cord)
        assert rep.n_lesions == 2
        cyl, cap = rep.lesions  # numbered from the top: the cylinder is superior
        for name, x in (("capsule", cap), ("cylinder", cyl)):
            assert x.inside_cord_fraction == 1.0
            L, d, ratio = TRUTH[name]
            e = [x.length_mm - L, x.max_equivalent_diameter_mm - d, x.max_axial_damage_ratio - ratio]
            if name == "cylinder":
                e += [x.ventral_bridge_mm - 1.0, x.dorsal_bridge_mm - 4.0]
            out[name].append(e)
    return {k: np.array(v) for k, v in out.items()}


def test_thick_axial_slices_straight_and_tilted():
    E = errors((0.5, 0.5, 3.0), 0.0)
    cap, cyl = E["capsule"], E["cylinder"]
    # straight: a length is a whole number of 3 mm slices; over the placements it is unbiased
    assert np.all(np.abs(cap[:, 0]) <= 2.0 + 1e-6) and np.all(np.abs(cyl[:, 0]) <= 2.0 + 1e-6)
    assert abs(np.concatenate([cap[:, 0], cyl[:, 0]]).mean()) < 0.3  # measured -0.125
    for e in (cap, cyl):
        assert e[:, 1].min() > -0.14 and e[:, 1].max() < 0.06  # measured -0.123..+0.046
        assert e[:, 2].min() > -0.012 and e[:, 2].max() < 0.015
    assert np.all(cyl[:, 3] >= 0) and cyl[:, 3].max() <= 0.5 + 1e-6 and np.all(cyl[:, 4] == 0)
    E = errors((0.5, 0.5, 3.0), 20.0)
    cap, cyl = E["capsule"], E["cylinder"]
    # tilted: the end boxes' reach along the cord (e / 2 = 1.5 mm per end at most)
    assert cap[:, 0].min() > 0.6 and cap[:, 0].max() < 2.9 and abs(cap[:, 0].mean() - 0.92) < 0.1
    assert cyl[:, 0].min() > -1.1 and cyl[:, 0].max() < 2.4 and abs(cyl[:, 0].mean() - 1.40) < 0.1
    for e in (cap, cyl):
        assert e[:, 1].min() > -0.1 and e[:, 1].max() < 0.12  # measured -0.083..+0.104
        assert np.abs(e[:, 2]).max() < 0.012
    assert np.abs(cyl[:, 3:]).max() < 1e-4  # measured <= 1.7e-6: A-P is a grid axis here, and the edges are parallel


def test_thick_sagittal_voxels_straight_and_tilted():
    E = errors((2.0, 0.5, 0.5), 0.0)
    cap, cyl = E["capsule"], E["cylinder"]
    assert cap[:, 0].min() >= -0.5 - 1e-6 and cap[:, 0].max() <= 1e-6 and np.abs(cyl[:, 0]).max() < 1e-6
    for e in (cap, cyl):
        assert e[:, 1].min() > -0.26 and e[:, 1].max() < 0.6  # 2 mm pixels: measured -0.236..+0.568
        assert e[:, 2].min() > -0.06 and e[:, 2].max() < 0.085
    E = errors((2.0, 0.5, 0.5), 20.0)
    cap, cyl = E["capsule"], E["cylinder"]
    assert cap[:, 0].min() > 0.3 and cap[:, 0].max() < 0.85  # measured +0.318..+0.801
    assert cyl[:, 0].min() > 0.38 and cyl[:, 0].max() < 0.95  # measured +0.404..+0.904
    for e in (cap, cyl):
        assert e[:, 1].min() > 0.1 and e[:, 1].max() < 0.4  # measured +0.128..+0.371
        assert e[:, 2].min() > 0.005 and e[:, 2].max() < 0.085  # measured +0.010..+0.075


@pytest.mark.parametrize("zooms", [(0.5, 0.5, 3.0), (2.0, 0.5, 0.5)], ids=["axial_thick", "sagittal_thick"])
def test_anisotropic_voxel_orders_give_identical_figures(zooms):
    les, cord = phantom(zooms, 20.0, 3)
    base = analyze_lesions(les, cord)
    for perm, flip in (((2, 0, 1), 0), ((1, 2, 0), 2)):
        rep = analyze_lesions(reordered(les, perm, flip), reordered(cord, perm, flip))
        assert_same_rows(base, rep)
