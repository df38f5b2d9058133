"""Is the image upside down? The labeling's chain on the image against its S-I mirror image.

A header that states the wrong S-I direction (a conversion or reorientation error) gives an image
whose anatomy runs the wrong way up. The cord, its segmentation and the registration's
cord-to-cord mapping do not see it; the vertebral levels do: the spine is not symmetric along
S-I (the cervical and lumbar enlargements, vertebrae growing taller caudally, the dens and the
skull base above C2, the conus below the lumbar enlargement). :func:`si_reversal` compares the
chain score of the labeling (:func:`spinereg.vertebrae.label.label_vertebrae`) with the score the
same labeling gets on the image mirrored along its S-I voxel axis (:func:`flip_si`). When the
mirror fits PAM50's spine better by :data:`UPSIDE_DOWN_MARGIN` or more, the labeling says so
(:data:`UPSIDE_DOWN` in its ``ambiguous_reasons``) and the bare-image registration's QC fails
(``landmark_levels_contradicted``, :mod:`spinereg.metrics.level_check`).

Measured when the margin was set (chain score of the image minus that of its mirror; session
script, docs/labeling_bare_image.md): 24 independent phantoms (the 20 of
tests/test_label_vertebrae_phantoms.py and 'test' seeds 0-3, their true segmentations), full
phantom seeds 10-12 of both sources, sct_testing_data t2 and t1 (manual segmentations): -1.97
(t2) to +30.2; the long fields of view (cervical, thoracolumbar, full, cervicothoracic 1) +6.9 to
+30.2 but cervicothoracic 0 (48 x 80 mm in-plane) +2.86, the short ones (1 mm C2-C5 'test', thick
slices, t2's 54 mm) -1.97 to +7.9. So an upside-down image is caught where the field of view shows
enough of the spine's S-I pattern and not on short ones, which are flagged ambiguous for their
identity anyway. The margin is not calibrated on real upside-down scans: none was available.

Only judged on labelings with :data:`MIN_BANDS` or more discs placed on their bands (session 13):
on short fields of view the mirror can fit as well or better, and it did on held-out axial stacks
the right way up (``axial_thick``, 0.5 x 0.5 x 5 mm, C2-C5, 3-4 discs; seeds 0-9, true
segmentations: -8.8 on seed 8, levels right, and -5.08 on seed 5, levels wrong: both were called
upside down, and the bare job failed on a header that was right). The long fields of view the
margin was checked on (cervical, cervicothoracic, thoracolumbar, full; 5-12 discs) stay judged;
the record still gives both scores when it does not judge.
"""

from __future__ import annotations

import numpy as np

from spinereg.cord.centerline import si_axis
from spinereg.io.image import Image

#: how the finding is said in ``ambiguous_reasons`` (metrics.level_check reads it)
UPSIDE_DOWN = "the image looks upside down"
#: the mirror image's chain score must beat the image's by this much (chain score units)
UPSIDE_DOWN_MARGIN = 5.0
#: fewest discs placed on their bands for the comparison to be judged
MIN_BANDS = 5


def flip_si(image: Image) -> Image:
    """``image`` with its voxels mirrored along the voxel axis closest to world S-I, header kept:
    the anatomy the other way up in the same space."""
    data = np.asarray(image.data)
    return image.with_data(np.flip(data, axis=si_axis(image.affine)).copy())


def si_reversal(score: float, mirrored_score: float, n_bands: int = MIN_BANDS) -> tuple[dict, str | None]:
    """The check's record (both chain scores, their difference, whether it was judged) and the
    ambiguity reason when the mirror fits better by :data:`UPSIDE_DOWN_MARGIN` or more (else None).
    ``n_bands``: the labeling's discs placed on their bands; under :data:`MIN_BANDS` the scores
    are recorded, not judged."""
    margin = float(score) - float(mirrored_score)
    judged = int(n_bands) >= MIN_BANDS
    record = {"chain_score": round(float(score), 2), "mirrored_chain_score": round(float(mirrored_score), 2),
              "margin": round(margin, 2), "judged": judged,
              "upside_down": bool(judged and margin <= -UPSIDE_DOWN_MARGIN)}
    if not judged:
        record["why"] = f"{int(n_bands)} discs on their bands (< {MIN_BANDS}): too short a stretch of spine to judge"
    if not record["upside_down"]:
        return record, None
    return record, (f"{UPSIDE_DOWN}: mirrored along S-I it fits the template's spine better by {-margin:.1f} "
                    f"(>= {UPSIDE_DOWN_MARGIN:g}); check the header's orientation (the S-I direction of its "
                    "sform/qform) before trusting any level")
