"""Inference-side corrections of the fine model's cord map (no retraining), on the working grid.

* :func:`fill_gaps` -- continuity along S-I on stacks of thin slices: a working slice where the
  model found no cord, or much less cord than its neighbours (``WEAK_FRACTION``), in a run of at
  most ``GAP_MM`` of such slices with slices with cord below and above it, gets the neighbours'
  maps as a prior (each shifted onto
  the centreline interpolated between them, weighted by distance). The cord does not stop and
  restart within a few millimetres; the image decides the outline (next step). A slice whose
  map has the *opposite* contrast to its surroundings from the cord's on most slices
  (``_reversed_slices``: the map's median intensity less its ring's, at least half the cord's
  typical contrast with the other sign) counts as weak whatever its area, and a longer run (up to
  ``LESION_GAP_MM``) is filled when at least half of its slices are such and the slices on both
  sides show the cord's contrast: an
  intramedullary lesion as bright as CSF on T2 is drawn as the "cord" of those slices, and the
  cord around it is left out. sct_testing_data's t2_fake_lesion (a real T2 image with a
  CSF-bright lesion painted into its cord, never used for training): the model drew the lesion
  alone on 8 working slices (6-14 mm2 against ~45 around, core 1750-2500 against a ring of
  480-580, where the cord on either side is darker than its ring), so the mask had a 7 mm hole
  around the lesion (94 of its 163 voxels inside the mask). A compressed cord keeps the cord's
  contrast and is not filled beyond ``GAP_MM``. Of 51 independent phantoms one changed
  (thoracolumbar 101, `tissue`: a reversed slice near the conus tip keeps the weak one beside it
  from being filled, Dice 0.9361 -> 0.9420); the real test images did not.
* :func:`refine_boundary` -- the outline from the image's own contrast: per working slice the
  cord intensity (median of the confident core) and the surrounding intensity (median of the
  ring just outside the outline: mostly CSF) give each pixel of a narrow band around the outline
  its partial-volume estimate ``(I - I_out) / (I_cord - I_out)``, clipped to 0-1. The band keeps
  the smaller of it and the model's value: the image can only *remove* cord the model drew
  beyond the intensity half-way point (the model draws the cord too wide on images from outside
  its generator: independent phantoms and real images alike), never add tissue of cord-like
  intensity beside the cord. The half-way point is what linear interpolation and resampling keep
  in place (a blurred straight edge still crosses the half-way intensity where the edge is).
  Slices without a clear contrast (``MIN_CONTRAST`` robust spreads of the core) keep the
  model's map. On coarse in-plane voxels (``ring_q``; cordseg.COARSE_RING_Q) the
  surroundings' intensity is the ring's quantile towards its far side from the cord instead of
  its median: blurred over a 2-4 mm voxel the ring holds cord too, and its median moved the
  half-way point into the cord (block-averaged t2, 3 mm R-L, mean over the block phases: 0.885
  of the cord's volume kept with the median, 0.909 with the quantile). The refined map is then closed (grey closing, ``CLOSE_MM``, never above the
  model's value): on T2*-like images the grey-matter horns that reach the cord surface are as
  bright as CSF and would otherwise be cut as 1-2 pixel notches (t2s_uncropped: 2.3 % of the
  manual GM outside the mask without the closing, 1.2 % with it, 0.7 % for the model alone;
  Dice on the 24 independent phantoms unchanged: mean 0.9462 either way, worst 0.9359 / 0.9361).
  ``BAND_MM`` (1 mm each side) was the first value tried; on the same phantoms a band reaching
  only 0.5 mm or 0 mm inside the model's outline is worse (mean 0.9435 / 0.9317, worst 0.9330 /
  0.9116), and 0.5 / 1.5 / 2 mm each side on the 7 phantoms of the tests (before the inward
  move) gave mean 0.9344 / 0.9389 / 0.9387 (1 mm: 0.9385). The surroundings' intensity is the
  ring's median; its lower quartile (the CSF side) was worse there (0.9349).
* :func:`shift_inward` -- every level of the map moved ``INWARD_MM`` inwards along its own
  in-plane gradient (``p(x) - d |grad p|``, the first-order value of ``p`` at ``x + d n``). Unlike
  a higher threshold it moves the outline by the same distance whatever the width of the soft
  transition, so resampled and oblique copies (blurrier images, wider transitions) keep the
  same mask. ``INWARD_MM`` = 0.1 is the value that maximises the *worst* Dice over 24
  independent phantoms (spinereg.phantom.independent, the 8 variants of bench/segment.py x seeds
  101-103; 0 / 0.05 / 0.1 / 0.15 / 0.2 mm: worst 0.927 / 0.933 / 0.936 / 0.934 / 0.930, mean
  0.940 / 0.944 / 0.946 / 0.948 / 0.948; measured before the closing, which moves them by at
  most 0.0002); the real test images played no part in the choice. Measured with a threshold
  instead: the phantoms prefer 0.55-0.65 too, but a threshold other than 0.5 moves the outline
  by a distance that depends on the blur, and t2's 10-degree oblique copy falls to 0.966 at 0.6.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinereg.robust import neighbour_median, robust_sd
from spinereg.segment.workgrid import WorkGrid

#: fill weak slices only in runs of at most this length (mm) between slices with cord
GAP_MM = 6.0
#: longest run (mm) filled when the model's map in it has the opposite contrast to the cord's
#: on both sides (an intramedullary lesion drawn as the cord; see the module doc)
LESION_GAP_MM = 30.0
#: ... on at least this fraction of the run's slices
REVERSED_FRACTION = 0.5
#: a slice's map counts as reversed when its contrast is at least this fraction of the cord's
#: typical one, with the opposite sign (noise near zero contrast does not count)
REVERSED_STRENGTH = 0.5
#: a slice is weak when its cord area is below this fraction of its neighbours' median
WEAK_FRACTION = 0.6
#: neighbourhood (mm, each side) for the neighbours' median area
NEIGHBOUR_MM = 8.0
#: band (mm, each side of the model's 0.5 outline) where the image's contrast sets the outline
BAND_MM = 1.0
#: ring (mm, outside the outline) whose intensity gives the surroundings
RING_MM = (0.5, 2.0)
#: confident core: the outline eroded by this (mm)
CORE_MM = 1.0
#: cord/surroundings contrast needed, in units of the core's robust spread
MIN_CONTRAST = 2.0
#: the refined outline is closed with a disk of this radius (mm): no notch narrower than ~1 mm
CLOSE_MM = 0.5
#: inward move of the whole map (mm; chosen on independent phantoms, see the module doc)
INWARD_MM = 0.1



def _disk(r_px: int) -> np.ndarray:
    y, x = np.mgrid[-r_px:r_px + 1, -r_px:r_px + 1]
    return (x * x + y * y) <= r_px * r_px + 0.5


def _areas(prob: np.ndarray) -> np.ndarray:
    return (prob > 0.5).sum(axis=(1, 2)).astype(float)


def _shift(p: np.ndarray, d: np.ndarray) -> np.ndarray:
    return ndimage.shift(p, d, order=1, mode="constant", cval=0.0, prefilter=False)


def _centre(p: np.ndarray) -> np.ndarray:
    w = p * (p > 0.5)
    s = w.sum()
    ii, jj = np.arange(p.shape[0]), np.arange(p.shape[1])
    return np.array([(w.sum(1) * ii).sum() / s, (w.sum(0) * jj).sum() / s])


def _map_contrast(prob: np.ndarray, data: np.ndarray, px: float) -> np.ndarray:
    """Per working slice: the median intensity of the map (> 0.5) less that of the ring
    ``RING_MM`` around it (``px``: the working pixel, mm; nan where the map or its ring is too
    small to say). The rings of all slices in one dilation."""
    m = prob > 0.5
    c = np.full(len(m), np.nan)
    if not m.any():
        return c
    r0, r1 = (max(1, int(round(r / px))) for r in RING_MM)
    _, ii, jj = np.nonzero(m)  # the rings within the map's in-plane box (+ r1): one dilation each
    box = (slice(None), slice(max(ii.min() - r1, 0), ii.max() + r1 + 1), slice(max(jj.min() - r1, 0), jj.max() + r1 + 1))
    m, img = m[box], data[box]
    ring = ndimage.binary_dilation(m, _disk(r1)[None]) & ~ndimage.binary_dilation(m, _disk(r0)[None])
    for k in np.flatnonzero((m.sum(axis=(1, 2)) >= 4) & (ring.sum(axis=(1, 2)) >= 8)):
        c[k] = float(np.median(img[k][m[k]]) - np.median(img[k][ring[k]]))
    return c


def _reversed_slices(prob: np.ndarray, data: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Per working slice: whether the model's map there has the opposite contrast to its
    surroundings from the cord's (the sign of most slices), by at least ``REVERSED_STRENGTH`` of
    the cord's typical contrast; and whether it shows the cord's sign."""
    c = _map_contrast(prob, data, px)
    fin = np.isfinite(c)
    rev, cordlike = np.zeros(len(c), bool), np.zeros(len(c), bool)
    if fin.sum() < 3:
        return rev, cordlike
    main = np.sign(np.median(c[fin]))
    typical = np.median(np.abs(c[fin & (np.sign(c) == main)])) if main != 0 else 0.0
    if typical > 0:
        rev = fin & (np.sign(c) == -main) & (np.abs(c) >= REVERSED_STRENGTH * typical)
        cordlike = fin & (np.sign(c) == main)
    return rev, cordlike


def fill_gaps(prob: np.ndarray, wg: WorkGrid, data: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Prior for weak slices between slices with cord (thin stacks only); the filled slice
    indices. ``prob`` holds the kept cord only; ``data`` (the image on the working grid, as
    ``prob``) lets runs up to ``LESION_GAP_MM`` be filled where the model drew a lesion."""
    if (wg.aligned and wg.thick) or prob.shape[0] < 3:  # not on an oblique stack's own thick slices
        return prob, []
    area = _areas(prob)
    nb = max(1, int(round(NEIGHBOUR_MM / wg.dz)))
    gap = max(1, int(round(GAP_MM / wg.dz)))
    ref = np.nan_to_num(neighbour_median(area, nb))
    good = (area > 0) & (area >= WEAK_FRACTION * ref)
    rev, cordlike = _reversed_slices(prob, data, wg.px) if data is not None else (np.zeros_like(good), good)
    good &= ~rev
    out = prob.copy()
    filled = []
    gk = np.flatnonzero(good)
    for k in np.flatnonzero(~good):
        below, above = gk[gk < k], gk[gk > k]
        if not below.size or not above.size:
            continue
        a, b = int(below[-1]), int(above[0])
        if b - a - 1 > gap:  # longer than GAP_MM: filled only where the model drew a lesion as the cord
            if (b - a - 1) * wg.dz > LESION_GAP_MM or not (cordlike[a] and cordlike[b]) \
                    or rev[a + 1:b].mean() < REVERSED_FRACTION:
                continue
        ca, cb = _centre(prob[a]), _centre(prob[b])
        w = (k - a) / (b - a)
        c = (1 - w) * ca + w * cb
        prior = (1 - w) * _shift(prob[a], c - ca) + w * _shift(prob[b], c - cb)
        out[k] = np.maximum(prob[k], prior)
        filled.append(int(k))
    return out.astype(np.float32), filled


def refine_boundary(prob: np.ndarray, data: np.ndarray, inside: np.ndarray, wg: WorkGrid,
                    ring_q: float | None = None) -> tuple[np.ndarray, int]:
    """The band around the outline takes the partial volume from the image's contrast; the
    number of slices refined."""
    band_px = max(1, int(round(BAND_MM / wg.px)))
    close = _disk(max(1, int(round(CLOSE_MM / wg.px))))
    core_px = max(1, int(round(CORE_MM / wg.px)))
    r0, r1 = (max(1, int(round(r / wg.px))) for r in RING_MM)
    out = prob.copy()
    n = 0
    for k in np.flatnonzero((prob > 0.5).any(axis=(1, 2))):
        m = prob[k] > 0.5
        core = ndimage.binary_erosion(m, _disk(core_px))
        if core.sum() < 4:
            continue
        ring = ndimage.binary_dilation(m, _disk(r1)) & ~ndimage.binary_dilation(m, _disk(r0)) & inside[k]
        if ring.sum() < 8:
            continue
        img = data[k]
        vin = img[core]
        mu_in = float(np.median(vin))
        spread = robust_sd(vin, centre=mu_in) + 1e-6
        vr = img[ring]
        mu_out = float(np.median(vr))
        if ring_q is not None:  # the surroundings' value from the ring's far side from the cord
            q = ring_q if mu_out > mu_in else 1.0 - ring_q
            mu_out = float(np.quantile(vr, q))
        c = mu_in - mu_out
        if abs(c) < MIN_CONTRAST * spread:
            continue
        f = np.clip((img - mu_out) / c, 0.0, 1.0)
        band = ndimage.binary_dilation(m, _disk(band_px)) & ~ndimage.binary_erosion(m, _disk(band_px)) & inside[k]
        new = np.where(band, np.minimum(f, prob[k]), prob[k])
        # notches narrower than CLOSE_MM are not CSF: grey-matter horns reaching the surface
        out[k] = np.minimum(np.maximum(new, ndimage.grey_closing(new, footprint=close)), prob[k])
        n += 1
    return out.astype(np.float32), n


def shift_inward(prob: np.ndarray, wg: WorkGrid, mm: float = INWARD_MM) -> np.ndarray:
    """Every level of ``prob`` moved ``mm`` inwards along its in-plane gradient (first order)."""
    if mm <= 0:
        return prob
    gi, gj = np.gradient(prob, axis=(1, 2))
    return np.clip(prob - (mm / wg.px) * np.hypot(gi, gj), 0.0, 1.0).astype(np.float32)
