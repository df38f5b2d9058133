"""Inference-side corrections of the cord map (spinereg.segment.refine) on synthetic maps, and the
t1 slices the model alone misses.

* gap filling: a weak slice between slices with cord takes its neighbours' map (moved onto the
  interpolated centreline); a cord that ends (the conus) is never extended; a longer run is
  filled only where the model drew something of the opposite contrast to the cord's (a lesion),
  never where it drew a thinner cord (a compression);
* outline from contrast: only removes cord the model drew beyond the intensity half-way point,
  never adds tissue of cord-like intensity beside the cord;
* inward move: the outline moves by the same distance whatever the width of the soft transition
  (the property a higher threshold lacks, which breaks oblique copies).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinereg.segment.refine import INWARD_MM, fill_gaps, refine_boundary, shift_inward
from spinereg.segment.workgrid import WorkGrid


def _wg(nz: int, n: int = 48, px: float = 0.5, dz: float = 1.0) -> WorkGrid:
    return WorkGrid(np.eye(3), np.zeros(3), px, dz, n, n, nz)


def _disk_map(nz: int, n: int = 48, r_px: float = 8.0, blur_px: float = 1.0, centre=(24.0, 24.0)) -> np.ndarray:
    i, j = np.mgrid[:n, :n]
    disk = (np.hypot(i - centre[0], j - centre[1]) <= r_px).astype(np.float32)
    sl = ndimage.gaussian_filter(disk, blur_px) if blur_px > 0 else disk
    return np.repeat(sl[None], nz, axis=0).astype(np.float32)


def test_fill_gaps_fills_missed_slices_between_cord():
    prob = _disk_map(20)
    prob[8:11] = 0.0  # three slices missed (3 mm)
    prob[14] *= 0.3  # one slice with a weak, small answer
    out, filled = fill_gaps(prob, _wg(20))
    assert filled == [8, 9, 10, 14]
    assert np.all((out[8:11] > 0.5).sum(axis=(1, 2)) >= 0.99 * (prob[0] > 0.5).sum())  # measured 193 of 193


def test_fill_gaps_never_extends_a_cord_that_ends():
    prob = _disk_map(20)
    prob[:6] = 0.0  # below the conus: no cord
    prob[6] *= 0.4  # the tapering tip
    out, filled = fill_gaps(prob, _wg(20))
    assert filled == [] and np.array_equal(out, prob)


def test_fill_gaps_leaves_long_gaps_and_thick_stacks():
    prob = _disk_map(30)
    prob[8:18] = 0.0  # 10 mm without cord: not a missed slice
    assert fill_gaps(prob, _wg(30))[1] == []
    thick = WorkGrid(np.array([[1.0, 0, 0], [0, 0.96, -0.28], [0, 0.28, 0.96]]), np.zeros(3), 0.5, 5.0, 48, 48, 20)
    gappy = _disk_map(20)
    gappy[9] = 0.0
    assert fill_gaps(gappy, thick)[1] == []


def _lesion_scene(nz: int = 40, run: slice = slice(12, 24), lesion: bool = True):
    """A dark cord (T2-like, radius 8 px, 100) in bright CSF (300), 1 mm slices; over ``run``
    (12 mm, longer than GAP_MM) the model's map is either a small disk around a lesion brighter
    than the CSF (500) in the cord's middle (``lesion``) or the cord itself at half its area, the
    image showing that thinner cord (a compression)."""
    n = 48
    i, j = np.mgrid[:n, :n]
    r = np.hypot(i - 24, j - 24)
    img = np.repeat(np.where(r <= 8, 100.0, 300.0)[None], nz, axis=0)
    prob = _disk_map(nz)
    if lesion:
        img[run] = np.where(r <= 3, 500.0, img[0])
        prob[run] = _disk_map(1, r_px=3.0)[0]
    else:
        img[run] = np.where(r <= 5.6, 100.0, 300.0)
        prob[run] = _disk_map(1, r_px=5.6)[0]
    return prob.astype(np.float32), ndimage.gaussian_filter(img, (0, 0.7, 0.7)).astype(np.float32)


def test_fill_gaps_fills_a_lesion_drawn_as_the_cord_not_a_compression():
    """A 12 mm run where the model drew only a lesion (brighter than its surroundings, where the
    cord on both sides is darker than its own) is filled from the neighbours; a 12 mm run of a
    cord compressed to half its area (same contrast as the cord) is not; without the image, or
    beyond LESION_GAP_MM, neither is."""
    from spinereg.segment.refine import LESION_GAP_MM

    prob, img = _lesion_scene(lesion=True)
    out, filled = fill_gaps(prob, _wg(40), img)
    assert filled == list(range(12, 24))
    assert np.all((out[12:24] > 0.5).sum(axis=(1, 2)) >= 0.99 * (prob[0] > 0.5).sum())  # measured 193 of 193
    # no image: the 6 mm rule alone; only the run's two end slices are weak against their
    # neighbourhood (inside the run the neighbours' median is the run's own small disks)
    assert fill_gaps(prob, _wg(40))[1] == [12, 23]
    cprob, cimg = _lesion_scene(lesion=False)
    out, filled = fill_gaps(cprob, _wg(40), cimg)
    assert filled == [] and np.array_equal(out, cprob)
    long_run = int(LESION_GAP_MM) + 4
    prob, img = _lesion_scene(nz=long_run + 20, run=slice(10, 10 + long_run), lesion=True)
    assert fill_gaps(prob, _wg(long_run + 20), img)[1] == []


def _crossing(profile: np.ndarray) -> float:
    """Sub-pixel index where a decreasing profile first falls below 0.5."""
    k = int(np.argmax(profile < 0.5))
    return k - 1 + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k])


def test_outline_from_contrast_only_removes():
    """A dark cord (T2-like, radius 8 px) inside bright CSF, with cord-like tissue touching it on
    one side: the model's outline, drawn 0.75 mm too wide, is pulled back to the true edge where
    CSF borders the cord and kept where the cord-like tissue does (no contrast to go by)."""
    n, nz = 48, 4
    i, j = np.mgrid[:n, :n]
    r = np.hypot(i - 24, j - 24)
    img = np.where(r <= 8, 100.0, 300.0)
    img[(i > 30) & (np.abs(j - 24) < 4)] = 100.0  # cord-like tissue touching the cord
    img = np.repeat(ndimage.gaussian_filter(img, 0.7)[None], nz, axis=0).astype(np.float32)
    model = _disk_map(nz, r_px=9.5)
    out, n_ref = refine_boundary(model, img, np.ones_like(img, bool), _wg(nz))
    assert n_ref == nz
    assert np.all(out <= model + 1e-6)
    for k in range(nz):
        assert abs(_crossing(out[k, 24::-1, 24]) - 8.0) < 0.12  # CSF side: the true edge (measured 8.096)
        assert abs(_crossing(out[k, 24:, 24]) - _crossing(model[k, 24:, 24])) < 1e-4  # tissue side (measured 0)
    # without contrast (a flat image) nothing changes
    flat, n_flat = refine_boundary(model, np.full_like(img, 100.0), np.ones_like(img, bool), _wg(nz))
    assert n_flat == 0 and np.array_equal(flat, model)


def test_inward_move_does_not_depend_on_the_transition_width():
    """The 0.5 outline of a disk moves INWARD_MM inwards for a sharp and for a blurred map; a
    threshold of 0.6 instead moves them by different distances."""
    wg = _wg(1, n=96, px=0.5)
    moved, thr = [], []
    for blur in (0.8, 2.0):
        p = _disk_map(1, n=96, r_px=16.0, blur_px=blur, centre=(48.0, 48.0))
        before = _crossing(p[0, 48:, 48])
        moved.append((before - _crossing(shift_inward(p, wg)[0, 48:, 48])) * wg.px)
        thr.append((before - _crossing(p[0, 48:, 48] + 0.1)) * wg.px)
    assert np.allclose(moved, INWARD_MM, atol=0.02), moved
    assert abs(thr[1] - thr[0]) > 0.115, thr  # measured 0.127 mm
