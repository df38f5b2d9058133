"""Reference endplates of sct_testing_data/t1 (the same subject as t2), measured without the
registration (issue 15, item 5): heights of C3, C4 and C5, which t2's field of view cannot give
for C5.

The procedure is t2's (``spine_reference_t2``: its ``trace``, line fit, tilt convention and
height construction are reused), with what this image needs read from it (session 10,
2026-12-01). Unlike t2, it was written after the method's output on t1 had been seen once (the
method's heights printed while its disc polarity was being fixed); nothing below was chosen from
those figures: the walls and the disc edges are read off the image by the rules given here.

1. **Slab.** t1 is 1 mm isotropic, RAS (voxel x -> R, y -> A, z -> S, axis-aligned). The cord's
   left-right centre is x = 22.5-24.3 over the image (manual mask); the slab x = 22-24 (3 mm) is
   averaged and turned into t2's layout: i = 75 - y (i -> posterior), j = z (-> superior).
2. **Walls.** On antero-posterior profiles of the slab averaged over seven rows at mid-body
   (C3 j = 42-48, C4 23-29, C5 6-12), where the profile crosses halfway from the dark body
   (~80-110) to the brighter tissue in front of and behind it: C3 13.5 / 28.5, C4 14.5 / 28.5, C5
   16.0 / 29.5 (anterior / posterior, voxel i, +-0.5).
3. **Endplates.** On this image the bodies are dark and the discs bright (3.5 times the marrow),
   with no separate cortical line. The discs were read on every column i = 17-27 as the runs of
   the slab above 300 (the disc signal is 400-600, the bodies' below 200): ``DISC_EDGES`` gives
   each disc's last row towards the body. The body's window on a column is the three rows next
   to that edge, and t2's ``trace`` finds the endplate there: the darkest row in the window, the
   brightest of the three rows beyond it on the disc side, and the halfway crossing between them.
   C5/C6 is not brighter than 300 on columns 17-18 (the field of view ends at j = 0), so C5's
   inferior endplate is traced on columns 19-27 only. Those columns cover the 0.2-0.8 of C5's
   depth (i 19.1-26.9) that tilts use and its anterior column (i 19.4).
4. **Heights and tilts** as t2's (step 4-5 of ``spine_reference_t2``): heights at 3/4, 1/2 and 1/4
   of the depth from the posterior wall along the bisector of the two endplate normals; tilts
   from a line over 0.2-0.8 of the depth.
"""

from __future__ import annotations

import numpy as np

from spine_reference_t2 import FRACTIONS, from_traces, trace  # noqa: F401 (FRACTIONS: the columns, for callers)

SLAB = (22, 25)  # voxel planes x (end excluded)
COLUMNS = tuple(range(17, 28))
WALLS = {3: (13.5, 28.5), 4: (14.5, 28.5), 5: (16.0, 29.5)}
#: per endplate: the disc's last row (j) towards the body on each column (runs of the slab above
#: 300), and the side of the disc (+1 above the endplate, -1 below)
_C = COLUMNS
DISC_EDGES = {
    (3, "superior"): (dict(zip(_C, (52, 52, 53, 53, 53, 53, 53, 53, 53, 54, 54), strict=True)), 1),
    (3, "inferior"): (dict(zip(_C, (35, 36, 36, 37, 37, 37, 37, 37, 37, 37, 37), strict=True)), -1),
    (4, "superior"): (dict(zip(_C, (32, 33, 33, 33, 33, 33, 33, 34, 34, 34, 34), strict=True)), 1),
    (4, "inferior"): (dict(zip(_C, (16, 17, 18, 18, 19, 19, 19, 19, 19, 19, 19), strict=True)), -1),
    (5, "superior"): (dict(zip(_C, (14, 15, 15, 15, 15, 15, 15, 16, 16, 16, 17), strict=True)), 1),
    (5, "inferior"): (dict(zip(_C[2:], (1, 1, 2, 2, 2, 3, 3, 3, 3), strict=True)), -1),
}
LEVELS = (3, 4, 5)


def slab(data: np.ndarray, planes: tuple[int, int] = SLAB) -> np.ndarray:
    """The mid-sagittal slab in t2's layout: ``sl[i, j]``, i -> posterior, j -> superior."""
    a = np.asarray(data, float)
    return a[planes[0]:planes[1]].mean(0)[::-1]


def traces(data: np.ndarray, planes: tuple[int, int] = SLAB) -> dict[tuple[int, str], np.ndarray]:
    """Traced endplates: (level, side) -> array of (i, j) voxel points, one per traced column."""
    sl = slab(data, planes)
    out = {}
    for key, (edges, side) in DISC_EDGES.items():
        pts = []
        for i, e in edges.items():
            window = (e + 1, e + 3) if side < 0 else (e - 3, e - 1)
            pts.append((i, trace(sl[i], window, side)))
        out[key] = np.array(pts, float)
    return out


def reference(data: np.ndarray, planes: tuple[int, int] = SLAB) -> dict:
    """Reference heights (mm) per body and column, tilts (deg) per endplate, segmental angles."""
    return from_traces(traces(data, planes), WALLS, LEVELS)
