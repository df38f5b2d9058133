"""Reference endplates of sct_testing_data/t2, measured without the registration (issue 15, item 5).

This is the truth the spine measures through the registration are scored against. It shares no
code with spinereg (only numpy), uses no registration, no template and no body labels, and was
fixed (windows, columns, walls below) by reading the image before the method was run on it.

Procedure (manual-style, one reader, the classic 6-point morphometry done on profiles):

1. **Slab.** The mid-sagittal slab: voxel planes k = 24-26 (t2 is 1 mm isotropic, axes i -> P,
   j -> S, k -> R; the cord's left-right centre is k = 25 at every level), averaged (3 mm slab, as
   a reader would use a mid-sagittal slice of that thickness).
2. **Columns.** Ten vertical columns i = 11 ... 20 (1 mm apart) through the vertebral bodies. The
   bodies' anterior and posterior walls were read on antero-posterior profiles of the slab at
   mid-body (marrow ~120-150 between dark cortical lines): C3 7.5 / 21.0, C4 8.5 / 21.5, C5 9.5 /
   22.0 (voxel i, +-0.5).
3. **Endplates.** Each endplate was identified by eye on magnified renderings of the slab (the
   T2-bright disc, the dark cortical line) and on the column profiles, and given a window of
   three voxels (j) for its cortical line (``WINDOWS``). On every column: the dark line is the
   minimum in the window, the disc the maximum of the three voxels beyond it on the disc side,
   and the endplate (the disc-bone boundary, the surface body heights are measured to) the point
   where the profile crosses halfway between the two (linear between voxels). The traced points
   were checked on the renderings (they follow the disc's edge, including the anterior lips of
   C3 and C4's inferior endplates). C5's inferior endplate has no disc inside the image (the
   field of view ends 1-2 mm below its cortical line) and C2's inferior endplate and C6 are
   outside it: heights are C3 and C4 only; tilts C3 superior to C5 superior.
4. **Heights** at the anterior, middle and posterior columns (3/4, 1/2 and 1/4 of the depth from
   the posterior wall, between the walls of step 2), along the body's axis (bisector of the two
   endplate lines' normals), between the two traced endplates (linear between columns).
5. **Tilts** of each endplate: least-squares line through its traced points over the central 60 %
   of the body's depth (0.2-0.8 from the posterior wall), angle of its superior-pointing normal
   from +S, towards posterior positive (spinereg.metrics.spine's convention); segmental angles
   = inferior endplate of the upper body minus superior endplate of the lower.

Repeatability of the reference (the same procedure on the single mid-sagittal slice k = 25 and on
a 5 mm slab k = 23-27 instead of the 3 mm slab) is given by :func:`reference` with ``slab=`` and
reported beside the figures.
"""

from __future__ import annotations

import numpy as np

SLAB = (24, 27)  # voxel planes k (end excluded)
COLUMNS = tuple(range(11, 21))
#: endplate -> (window of its dark cortical line in j, side of the disc: +1 above, -1 below)
WINDOWS = {(3, "superior"): ((49, 51), 1), (3, "inferior"): ((35, 37), -1),
           (4, "superior"): ((30, 32), 1), (4, "inferior"): ((17, 19), -1),
           (5, "superior"): ((12, 14), 1)}
#: anterior / posterior wall (voxel i) read on the slab
WALLS = {3: (7.5, 21.0), 4: (8.5, 21.5), 5: (9.5, 22.0)}
FRACTIONS = {"anterior": 0.75, "middle": 0.5, "posterior": 0.25}


def trace(profile: np.ndarray, window: tuple[int, int], side: int, reach: int = 3) -> float:
    """Disc-bone boundary (j, voxels) on one column profile (see the module doc, step 3)."""
    js = np.arange(window[0], window[1] + 1)
    jd = int(js[np.argmin(profile[js])])
    beyond = [jd + side * k for k in range(1, reach + 1) if 0 <= jd + side * k < len(profile)]
    jp = int(beyond[int(np.argmax(profile[beyond]))])
    half = 0.5 * (profile[jd] + profile[jp])
    j = jd
    while j != jp and profile[j + side] < half:
        j += side
    if j == jp:
        return float(jp)
    a, b = profile[j], profile[j + side]
    return float(j + side * (half - a) / (b - a))


def traces(data: np.ndarray, slab: tuple[int, int] = SLAB) -> dict[tuple[int, str], np.ndarray]:
    """Traced endplates: (level, side) -> array of (i, j) voxel points, one per column."""
    sl = np.asarray(data, float)[:, :, slab[0]:slab[1]].mean(2)
    return {key: np.array([(i, trace(sl[i], w, s)) for i in COLUMNS]) for key, (w, s) in WINDOWS.items()}


def _line(points: np.ndarray, lo: float, hi: float) -> np.ndarray:
    m = (points[:, 0] >= lo) & (points[:, 0] <= hi)
    slope, _ = np.polyfit(points[m, 0], points[m, 1], 1)
    return np.array([-slope, 1.0]) / np.hypot(slope, 1.0)  # superior-pointing normal in (i, j)


def _tilt(normal: np.ndarray) -> float:
    # i -> posterior, j -> superior (1 mm voxels): posterior component = normal[0]
    return float(np.degrees(np.arctan2(normal[0], normal[1])))


def _along(points: np.ndarray, x: float, c: float, u: np.ndarray) -> float:
    """Parameter t where the line (x, c) + t u meets the traced endplate."""
    t = 0.0
    for _ in range(50):
        t = (np.interp(x + t * u[0], points[:, 0], points[:, 1]) - c) / u[1]
    return t


def reference(data: np.ndarray, slab: tuple[int, int] = SLAB) -> dict:
    """Reference heights (mm) per body and column, tilts (deg) per endplate, segmental angles."""
    return from_traces(traces(data, slab), WALLS, (3, 4))


def from_traces(tr: dict[tuple[int, str], np.ndarray], walls: dict, levels: tuple[int, ...]) -> dict:
    """Steps 4-5 on traced endplates: tilts of every traced endplate, heights of ``levels``
    between the ``walls`` (level -> anterior, posterior voxel i), segmental angles C3-C4, C4-C5."""
    tilts, normals = {}, {}
    for (lev, side), pts in tr.items():
        ant, post = walls[lev]
        depth = post - ant
        normals[(lev, side)] = _line(pts, post - 0.8 * depth, post - 0.2 * depth)
        tilts[(lev, side)] = _tilt(normals[(lev, side)])
    heights = {}
    for lev in levels:
        ant, post = walls[lev]
        sup, inf = tr[(lev, "superior")], tr[(lev, "inferior")]
        u = normals[(lev, "superior")] + normals[(lev, "inferior")]
        u /= np.linalg.norm(u)
        h = {}
        for name, f in FRACTIONS.items():
            x = post - f * (post - ant)
            c = 0.5 * (np.interp(x, *sup.T) + np.interp(x, *inf.T))
            h[name] = _along(sup, x, c, u) - _along(inf, x, c, u)
        heights[lev] = h
    segmental = {"C3-C4": tilts[(3, "inferior")] - tilts[(4, "superior")],
                 "C4-C5": tilts[(4, "inferior")] - tilts[(5, "superior")]}
    return {"heights": heights, "tilts": tilts, "segmental": segmental, "traces": tr}
