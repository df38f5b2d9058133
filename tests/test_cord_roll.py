"""spinereg.cord.roll: the turn of the cord's cross-section about its centerline, from a
segmentation; Centerline.rolled; and how far the labeling's slab follows it
(spinereg.vertebrae.label._slab_turn). Synthetic masks, no data."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.cord.centerline import Centerline
from spinereg.cord.roll import cross_section_roll
from spinereg.io.image import Image


def elliptic_cord(turn_deg: float, lr_mm: float = 6.5, ap_mm: float = 4.0, bend_mm: float = 6.0) -> Image:
    """A cord of elliptical cross-section (semi-axes ``lr_mm`` x ``ap_mm``) on a 0.5 mm grid,
    bending forward by ``bend_mm`` over its 80 mm, its long axis turned by ``turn_deg`` from world
    right toward anterior."""
    x, y, z = np.meshgrid(np.arange(-12, 12, 0.5), np.arange(-16, 16, 0.5), np.arange(0, 80, 0.5), indexing="ij")
    yc = bend_mm * np.sin(np.pi * z / 80.0)
    t = np.radians(turn_deg)
    u = np.cos(t) * x + np.sin(t) * (y - yc)  # along the long axis
    v = -np.sin(t) * x + np.cos(t) * (y - yc)
    data = ((u / lr_mm) ** 2 + (v / ap_mm) ** 2 <= 1.0).astype(np.float32)
    aff = np.diag([0.5, 0.5, 0.5, 1.0])
    aff[:3, 3] = (-12.0, -16.0, 0.0)
    return Image(data, aff)


@pytest.mark.parametrize("turn", [-30.0, -12.0, 0.0, 7.0, 25.0, 40.0])
def test_roll_of_an_elliptic_cord(turn):
    """Within 1.6 deg straight (a 13 x 8 mm ellipse drawn in 0.5 mm voxels: its moments alone
    are 1.6 deg off at -30), 2.1 deg bent forward (the ellipse is drawn in axial planes, the
    cross-section is cut across the tangent)."""
    for bend, tol in ((0.0, 1.6), (6.0, 2.1)):
        seg = elliptic_cord(turn, bend_mm=bend)
        r = cross_section_roll(seg, Centerline.from_mask(seg))
        assert abs(r.angle_deg - turn) < tol, (bend, r)
        # (l1 - l2) / (l1 + l2) of a 6.5 x 4 mm ellipse: 0.451; measured 0.433-0.470 over the 12 cases
        assert abs(r.elongation - 0.451) < 0.03 and r.pieces >= 15, r


def test_round_cord_has_no_elongation():
    seg = elliptic_cord(20.0, lr_mm=5.0, ap_mm=5.0)
    assert cross_section_roll(seg, Centerline.from_mask(seg)).elongation < 0.01  # measured 0.005


def test_rolled_frame_turns_about_the_tangent():
    seg = elliptic_cord(0.0)
    cl = Centerline.from_mask(seg)
    s = np.linspace(0.0, cl.length, 7)
    f0, f1 = cl.frame(s), cl.rolled(30.0).frame(s)
    np.testing.assert_allclose(f1[..., 2], f0[..., 2], atol=1e-12)  # same tangent
    c, si = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    np.testing.assert_allclose(f1[..., 0], c * f0[..., 0] + si * f0[..., 1], atol=1e-9)
    np.testing.assert_allclose(np.einsum("nij,nik->njk", f1, f1), np.broadcast_to(np.eye(3), f1.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(f1), 1.0, atol=1e-9)
    # the rolled cord's cross-section measured in the rolled frame has no roll left
    seg = elliptic_cord(30.0, bend_mm=0.0)
    cl = Centerline.from_mask(seg)
    before = cross_section_roll(seg, cl).angle_deg
    assert cross_section_roll(seg, cl.rolled(30.0)).angle_deg == pytest.approx(before - 30.0, abs=1e-6)


def test_slab_follows_turns_beyond_the_tolerance():
    from spinereg.vertebrae.label import MAX_ROLL_DEG, ROLL_TOLERANCE_DEG, _slab_turn

    assert ROLL_TOLERANCE_DEG == 5.0 and MAX_ROLL_DEG == 45.0
    assert _slab_turn(0.0) == _slab_turn(4.9) == _slab_turn(-5.0) == 0.0
    assert _slab_turn(20.0) == pytest.approx(15.0) and _slab_turn(-30.0) == pytest.approx(-25.0)
    assert _slab_turn(50.0) == 0.0  # the long axis could as well be A-P: nothing turned


def test_a_rolled_centerline_has_its_own_signature():
    """Caches keyed by the signature (cord.straighten) store frame-dependent fields."""
    cl = Centerline.from_mask(elliptic_cord(0.0))
    assert cl.signature() == Centerline.from_mask(elliptic_cord(0.0)).signature()
    assert cl.rolled(10.0).signature() != cl.signature()
