"""What a vertebral labeling returns (:func:`spinereg.vertebrae.label.label_vertebrae`): one
:class:`Disc` per intervertebral disc found (PAM50_label_disc values, arc length along the cord
centerline, world point, confidence, where its position comes from) and the
:class:`VertebralLabeling` that holds them with the centerline, the identity's margin, the
ambiguity flag and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from spinereg.vertebrae.names import level_name, margin_value

if TYPE_CHECKING:
    from spinereg.cord.centerline import Centerline
    from spinereg.vertebrae.evidence import Evidence


#: where a disc's position can come from (:attr:`Disc.source`)
DISC_SOURCES = ("band", "estimated", "csf")


@dataclass
class Disc:
    """One intervertebral disc: PAM50 value, arc length on the centerline (mm), world point on
    the centerline at the disc's height (RAS mm), confidence in [0, 1], band evidence, tilt."""

    value: int
    s: float
    point: np.ndarray
    confidence: float
    evidence: float
    #: the band tilt (of evidence.TILTS_DEG, -20..+20 by 5) whose response was strongest at the
    #: disc's row: a detector setting, not an endplate angle (``spine-metrics`` measures those).
    #: On dark discs it is the range's edge, +-20, on 264 of 347 discs of the T1-like phantoms
    #: (session 30), whatever the disc's own tilt
    tilt_deg: float
    #: where the position comes from: ``"band"`` (a disc band on the image), ``"estimated"`` (the
    #: chain's spacing, no band: C1/C2, see UNSEEN) or ``"csf"`` (C1/C2 from the CSF profile above
    #: C2/C3, :mod:`spinereg.vertebrae.c1c2`); see :data:`DISC_SOURCES`
    source: str = "band"

    def __post_init__(self) -> None:
        if self.source not in DISC_SOURCES:
            raise ValueError(f"disc source {self.source!r} not one of {DISC_SOURCES}")

    @property
    def estimated(self) -> bool:
        """Placed by the chain's spacing, with nothing on the image marking it."""
        return self.source == "estimated"

    @property
    def from_csf(self) -> bool:
        """C1/C2 located from the CSF profile above C2/C3."""
        return self.source == "csf"

    @property
    def name(self) -> str:
        return disc_name(self.value)

    def as_dict(self) -> dict:
        return {"value": int(self.value), "name": self.name, "s_mm": round(float(self.s), 2),
                "point_mm": [round(float(c), 2) for c in self.point],
                "confidence": round(float(self.confidence), 3), "evidence": round(float(self.evidence), 2) if np.isfinite(self.evidence) else None,
                "tilt_deg": float(self.tilt_deg), "source": self.source,
                **({"estimated": True} if self.estimated else {})}


def disc_name(value: int) -> str:
    """``3`` -> ``"C2/C3"``; ``60`` -> ``"conus"``."""
    if value == 60:
        return "conus"
    if value == 1:
        return "PMJ"
    return f"{level_name(value - 1)}/{level_name(value)}"


@dataclass
class VertebralLabeling:
    """Result of :func:`~spinereg.vertebrae.label.label_vertebrae` (discs top to bottom)."""

    discs: list[Disc]
    centerline: Centerline
    scale: float
    identity_margin: float
    ambiguous: bool
    polarity: int
    #: what named the levels: ``"chain"`` (the image), ``"init"`` (a pinned disc, -initz) or
    #: ``"csf"`` (the CSF around the cord renamed a flagged chain,
    #: :func:`spinereg.vertebrae.label._with_csf_identity`)
    identity_source: str
    gaps: list[str] = field(default_factory=list)
    evidence: Evidence | None = None
    report: dict = field(default_factory=dict)

    @property
    def measured(self) -> list[Disc]:
        """The discs found on the image (conus included), without the estimated C1/C2."""
        return [d for d in self.discs if not d.estimated]

    @property
    def pmj(self) -> dict | None:
        """The pontomedullary junction when in view (``point_mm``, ``s``, ``value`` 50 as SCT's
        ``sct_detect_pmj``; :mod:`spinereg.vertebrae.pmj`), else None."""
        return self.report.get("pmj")

    @property
    def values(self) -> np.ndarray:
        """Values of the measured discs (see :attr:`measured`)."""
        return np.array([d.value for d in self.measured], int)

    @property
    def points(self) -> np.ndarray:
        """World points of the measured discs (see :attr:`measured`)."""
        return np.array([d.point for d in self.measured], float).reshape(-1, 3)

    def level_at(self, s: np.ndarray) -> np.ndarray:
        """Vertebral level (PAM50_levels values) at arc lengths ``s``: the level between the disc
        above and the disc below (level ``v`` lies under disc ``v`` and above disc ``v + 1``)."""
        s = np.asarray(s, float)
        ds = np.array([d.s for d in self.discs if d.value != 60])
        vs = np.array([d.value for d in self.discs if d.value != 60])
        if len(ds) == 0:
            return np.zeros(s.shape, int)
        order = np.argsort(-ds)  # top (largest s) first
        ds, vs = ds[order], vs[order]
        # number of discs above each point
        above = np.searchsorted(-ds, -s, side="right")
        first = vs[0] - 1  # level above the top disc
        return np.where(above == 0, first, vs[np.clip(above - 1, 0, len(vs) - 1)]).astype(int)

    def as_dict(self) -> dict:
        return {"discs": [d.as_dict() for d in self.discs], "scale_to_template": round(self.scale, 4),
                "identity_margin": margin_value(self.identity_margin), "ambiguous": bool(self.ambiguous),
                "identity_source": self.identity_source, "disc_polarity": "bright" if self.polarity > 0 else "dark",
                "gaps": list(self.gaps), **self.report}
