"""``analyze-lesion`` on a CURVED cord against analytic truth.

Phantom (world mm, 0.5 mm voxels, voxel centre inside = 1): the cord is a tube of radius R = 4 mm
around a circular arc of bend radius RB = 40 mm in the sagittal (y-z) plane, through the grid's
centre with tangent +z there, its centre of curvature posterior (``side=-1``) or anterior
(``side=+1``); the cord fills the grid's z range (+-18 mm, tangent up to 27 deg off the z axis).
Two lesions, given by arc angles ``theta`` about the centre of curvature (centerline arc length
``RB theta``):

- ``capsule``: the points within r = 2.5 mm of the arc for theta in [-0.3, -0.1] (hemispherical
  ends): length along the centerline RB x 0.2 + 2r = 13 mm; every section perpendicular to the cord
  between the ends is a disc of radius r: equivalent diameter 2r = 5 mm, damage ratio r^2/R^2.
- ``offset``: the torus section of radius r = 1.5 mm around the arc offset D = 1.5 mm anteriorly
  (outward of the bend for side -1, inward for +1), between the radial planes theta = 0.05 and
  0.25 (flat ends): length RB x 0.2 = 8 mm, equivalent diameter 2r = 3 mm, ratio r^2/R^2;
  midsagittal bridges (spinereg.lesion.bridges: ventral = cord's anterior edge - lesion's anterior
  edge, dorsal = lesion's posterior edge - cord's posterior edge) ventral R - D - r = 1, dorsal
  R + D - r = 4 mm.

None of these figures comes from spinereg. The centerline is fitted to the cord mask (as the
command does) or given exactly (the arc) to tell the centerline's own error from the sections'.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.cord import Centerline
from spinereg.io.image import Image
from spinereg.lesion import analyze_lesions
from test_analyze_lesion import assert_same_rows, reordered

R, RB, H = 4.0, 40.0, 0.5
SHAPE = (26, 36, 72)
CAPSULE = (-0.3, -0.1, 2.5)  # theta_a, theta_b, r
OFFSET = (0.05, 0.25, 1.5, 1.5)  # theta_a, theta_b, r, D (anterior)
TRUTH = {"capsule": (RB * 0.2 + 2 * 2.5, 5.0, 2.5**2 / R**2), "offset": (RB * 0.2, 3.0, 1.5**2 / R**2)}


def curved(side: int, off: np.ndarray) -> tuple[Image, Image, Centerline]:
    """(lesion, cord, exact centerline); ``off`` shifts the grid (sub-voxel placement)."""
    aff = np.diag([H, H, H, 1.0])
    aff[:3, 3] = -0.5 * H * (np.array(SHAPE) - 1) + off
    p = np.indices(SHAPE).reshape(3, -1).T * H + aff[:3, 3]
    cen = np.array([0.0, side * RB, 0.0])

    def arc(t):  # arc point at angle t (centerline through the origin, tangent +z at t = 0)
        t = np.asarray(t, float)
        return cen + RB * np.stack([0 * t, -side * np.cos(t), np.sin(t)], -1)

    q = p - cen
    rho = np.hypot(q[:, 1], q[:, 2])
    th = np.arctan2(q[:, 2], -side * q[:, 1])
    cord = np.hypot(q[:, 0], rho - RB) < R
    ta, tb, r = CAPSULE
    d_arc = np.where((th >= ta) & (th <= tb), np.hypot(q[:, 0], rho - RB), np.inf)
    d_end = np.minimum(np.linalg.norm(p - arc(ta), axis=1), np.linalg.norm(p - arc(tb), axis=1))
    les = np.minimum(d_arc, d_end) < r
    ta, tb, r, d = OFFSET
    les |= (np.hypot(q[:, 0], rho - (RB - side * d)) < r) & (th >= ta) & (th <= tb)
    tt = np.linspace(-0.7, 0.7, 2801)
    cl = Centerline(RB * (tt - tt[0]), arc(tt))
    return (Image(les.reshape(SHAPE).astype(np.uint8), aff), Image(cord.reshape(SHAPE).astype(np.uint8), aff), cl)


def errors(side: int, exact: bool, seeds: range = range(6)) -> dict[str, np.ndarray]:
    """Reported - truth per seed: capsule (length, diameter, ratio), offset (length, diameter,
    ratio, ventral, dorsal)."""
    out: dict[str, list] = {"capsule": [], "offset": []}
    for seed in seeds:
        les, cord, cl = curved(side, np.random.default_rng(seed).uniform(-0.25, 0.25, 3))
        rep = analyze_lesions(les, cord, centerline=cl if exact else None)
        assert rep.n_lesions == 2
        off, cap = rep.lesions  # numbered from the top: the offset lesion is superior
        for name, x in (("capsule", cap), ("offset", off)):
            assert x.inside_cord_fraction == 1.0
            L, dia, ratio = TRUTH[name]
            e = [x.length_mm - L, x.max_equivalent_diameter_mm - dia, x.max_axial_damage_ratio - ratio]
            if name == "offset":
                e += [x.ventral_bridge_mm - (R - 1.5 - 1.5), x.dorsal_bridge_mm - (R + 1.5 - 1.5)]
            out[name].append(e)
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("exact", [False, True], ids=["mask_centerline", "exact_centerline"])
def test_curved_cord_against_analytic_truth(exact):
    """6 sub-voxel placements (seed 0..5, +-0.25 mm) x both bend directions; reported - truth,
    measured over both centerlines (fitted to the mask or the exact arc: within 0.02 of each other
    except the bridge minima):

    - capsule: length -0.025..+0.461 (mean +0.26; the tip voxel's box counts whole, as on the
      straight tilted ellipsoid); diameter +0.032..+0.075; ratio +0.004..+0.019.
    - offset, flat radial ends oblique to the grid: length +0.20..+0.57 (mean +0.35 / +0.48): the
      end voxels' boxes reach past a flat face by up to half a voxel's extent along the cord each;
      diameter +0.006..+0.191 (mean +0.076 outward / +0.069 inward of the bend); ratio
      +0.001..+0.013 (mean +0.006 / +0.006). Before the sections' area was weighted by the volume
      element's stretch (``_area_weights``), the outward lesion read +0.135 and the inward +0.011
      (diameter; ratio +0.012 / 0.000): pi r^2 (RB +- D) / RB.
    - bridges, minimum over ~16 sections of a constant section: ventral -0.41..-0.02, dorsal
      -0.49..+0.01 (the minimum of voxel-quantised widths falls up to a voxel low); per interior
      section (152 sections) -0.48..+0.57, mean -0.015..+0.015.
    """
    E = {side: errors(side, exact) for side in (-1, 1)}
    cap = np.concatenate([E[s]["capsule"] for s in E])
    off = np.concatenate([E[s]["offset"] for s in E])
    assert cap[:, 0].min() > -0.06 and cap[:, 0].max() < 0.50 and abs(cap[:, 0].mean() - 0.26) < 0.05
    assert cap[:, 1].min() > 0.0 and cap[:, 1].max() < 0.085
    assert cap[:, 2].min() > 0.0 and cap[:, 2].max() < 0.021
    assert off[:, 0].min() > 0.18 and off[:, 0].max() < 0.60
    assert off[:, 1].min() > -0.02 and off[:, 1].max() < 0.21
    assert off[:, 2].min() > -0.002 and off[:, 2].max() < 0.015
    # outward and inward of the bend read alike (before the fix: 0.124 apart in diameter, 0.012 in ratio)
    assert abs(E[-1]["offset"][:, 1].mean() - E[1]["offset"][:, 1].mean()) < 0.02
    assert abs(E[-1]["offset"][:, 2].mean() - E[1]["offset"][:, 2].mean()) < 0.003
    assert off[:, 3:].min() > -0.52 and off[:, 3:].max() < 0.05


def test_curved_bridges_per_section():
    """Per section (interior sections of the offset lesion, both bends, seeds 0..5, mask
    centerline): dorsal -0.48..+0.24, ventral -0.41..+0.57 mm, means within +-0.015 mm of truth."""
    d, v = [], []
    for side in (-1, 1):
        for seed in range(6):
            les, cord, _ = curved(side, np.random.default_rng(seed).uniform(-0.25, 0.25, 3))
            sec = np.array(analyze_lesions(les, cord).lesions[0].bridge_sections)
            d += list(sec[1:-1, 1] - (R + 1.5 - 1.5))
            v += list(sec[1:-1, 2] - (R - 1.5 - 1.5))
    d, v = np.array(d), np.array(v)
    assert len(d) > 140
    assert np.abs(d).max() < 0.52 and np.abs(v).max() < 0.62
    assert abs(d.mean()) < 0.03 and abs(v.mean()) < 0.03


def test_curved_voxel_orders_give_identical_figures():
    les, cord, _ = curved(-1, np.array([0.1, -0.07, 0.13]))
    base = analyze_lesions(les, cord)
    for perm, flip in [((2, 0, 1), 0), ((1, 2, 0), 2), ((0, 1, 2), 1)]:
        rep = analyze_lesions(reordered(les, perm, flip), reordered(cord, perm, flip))
        assert_same_rows(base, rep)


if __name__ == "__main__":  # the measured figures
    for side in (-1, 1):
        for exact in (False, True):
            E = errors(side, exact)
            for name, e in E.items():
                print(side, "exact" if exact else "mask ", name, " ".join(
                    f"{e[:, i].min():+.3f}..{e[:, i].max():+.3f} (m {e[:, i].mean():+.3f})" for i in range(e.shape[1])))
