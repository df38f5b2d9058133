"""Flags on a finished labeling: the discs that show a band (what :data:`MIN_BANDS` counts),
the confidence of a flagged labeling's discs, the image's S-I orientation check's record, and a
segmentation that stops short of the cord's end."""

from __future__ import annotations

from spinereg.io.image import Image
from spinereg.vertebrae.contrast import _csf_sign
from spinereg.vertebrae.cord_end import SHORT_MM, cord_below_end
from spinereg.vertebrae.model import CONUS
from spinereg.vertebrae.prepare import _Prepared
from spinereg.vertebrae.result import Disc, VertebralLabeling

#: fewest discs found, and fewest of them showing a band (evidence >= E0), for an identity that
#: comes from the chain (not ``init``) to be trusted: one or two discs fix no sequence
MIN_DISCS = 3
MIN_BANDS = 2
#: a flagged labeling's discs report this share of the confidence the chain gives them (its
#: positional and identity margins): on 1,220 discs of the independent phantoms' development set
#: (eight variants, seeds 100-129, true segmentations) the discs of flagged labelings lay within
#: 2 mm of their truth under the right name 46 times in 82 (56 %), those of unflagged ones 1,123
#: in 1,138 (98.7 %); a flag says "check the levels", and a confidence of 0.8-1 beside it did not
FLAGGED_CONFIDENCE = 0.5
#: band evidence at which a disc counts as showing a band for MIN_BANDS (dark T1 discs: 0.5-0.8)
BAND_SHOWN = 0.5


def discs_on_bands(discs: list[Disc]) -> list[Disc]:
    """The discs that show a band in the image (placed on one, evidence >= :data:`BAND_SHOWN`;
    not the conus, not an estimate): what :data:`MIN_BANDS` counts."""
    return [d for d in discs if d.value != CONUS and not d.estimated and d.evidence >= BAND_SHOWN]


def _with_flag_confidence(lab: VertebralLabeling) -> VertebralLabeling:
    """Every disc of a flagged labeling reports :data:`FLAGGED_CONFIDENCE` of the confidence its
    chain gave it (the relative weights between its discs are kept)."""
    if lab.ambiguous:
        for d in lab.discs:
            d.confidence = float(d.confidence) * FLAGGED_CONFIDENCE
        lab.report["confidence_scaled_by_flag"] = FLAGGED_CONFIDENCE
    return lab


def _with_cord_end(image: Image, lab: VertebralLabeling, prep: _Prepared) -> VertebralLabeling:
    """A segmentation that ends where the image still shows the cord below it stops short of the
    cord's end (:func:`spinereg.vertebrae.cord_end.cord_below_end`): its end is not the conus,
    and the labeling is flagged (the discs below the end are placed by the chain alone)."""
    end = cord_below_end(image, lab.centerline, _csf_sign(prep.signal))
    lab.report["cord_below_end"] = end
    if end is None or end["cord_below_end_mm"] < SHORT_MM:
        return lab
    lab.discs = [d for d in lab.discs if d.value != CONUS]
    lab.report["ambiguous_reasons"].append(
        f"the image shows the cord going on {end['cord_below_end_mm']:.0f} mm below the lower end of the segmentation: "
        "it stops short of the cord's end (no conus reported; discs below its end placed by the chain alone); "
        "check the segmentation")
    lab.ambiguous = True
    return lab


def _with_orientation(lab: VertebralLabeling,
                      orientation: tuple[dict, str | None] | None) -> VertebralLabeling:
    if orientation is not None:
        record, reason = orientation
        lab.report["orientation"] = record
        if reason is not None:
            lab.report["ambiguous_reasons"].append(reason)
            lab.ambiguous = True
    return lab
