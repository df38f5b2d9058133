"""The discs the chain places without a band of their own: C1/C2 (PAM50 disc 2) from the CSF
above a measured C2/C3 (:func:`spinereg.vertebrae.c1c2.locate_c1c2`), and the conus tip (PAM50
value 60) at the inferior end of the segmented cord."""

from __future__ import annotations

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.io.image import Image
from spinereg.vertebrae.model import CONUS, SpineModel
from spinereg.vertebrae.result import Disc

#: the image must go on this far (mm) below the end of the cord for that end to be the conus
CONUS_BELOW_MM = 5.0


def _conus(discs: list[Disc], cl: Centerline, s_first: float, margin: float) -> Disc | None:
    """The conus medullaris tip (PAM50 value 60): the inferior end of the segmented cord, when the
    image goes on at least ``CONUS_BELOW_MM`` below it and the lowest disc found is T10/T11 or
    lower (above that, a cord ending in the image is a cropped segmentation, not the conus)."""
    if not discs or s_first > -CONUS_BELOW_MM or max(d.value for d in discs) < 18:
        return None
    conf = float(1 - np.exp(-max(margin, 0.0) / 2.0))
    return Disc(CONUS, 0.0, cl.points(0.0), conf, float("nan"), 0.0)


def _c1c2_from_csf(image: Image, seg: Image, cl: Centerline, contrast: str, template: str,
                   model: SpineModel, discs: list[Disc]) -> tuple[Disc | str, float | None]:
    """C1/C2 from the CSF profile above the measured C2/C3 (:func:`spinereg.vertebrae.c1c2.locate_c1c2`)
    as a disc, or why not; and the stretch the fit ran into when it ran into an end of its search."""
    from spinereg.io.template import load_template
    from spinereg.vertebrae.c1c2 import locate_c1c2, template_csf

    c23 = [d for d in discs if d.value == 3 and not d.estimated]
    vals = list(model.disc_values)
    if not c23 or 2 not in vals or 3 not in vals:
        return "no measured C2/C3 (or no C1/C2 in the template)", None
    tpl = load_template(template)
    if not tpl.has("csf"):
        return f"template {template} has no CSF mask", None
    found, why = locate_c1c2(image, seg, cl, c23[0].s, contrast, template_csf(str(tpl.path("csf"))),
                             float(model.disc_s[vals.index(3)]), float(model.disc_s[vals.index(2)]))
    if found is None:
        return why, None
    if not found.placed:
        return why, found.k
    if found.s > cl.length:
        return f"C1/C2 from the CSF lies {found.s - cl.length:.1f} mm above the cord in view", None
    conf = float(min(c23[0].confidence, found.ncc))
    return Disc(2, found.s, cl.points(found.s), conf, float("nan"), 0.0, source="csf"), None
