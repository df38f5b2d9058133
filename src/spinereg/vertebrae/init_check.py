"""A pinned disc (``init``: SCT's ``-initz`` / ``-initlabel``, parsed by
:mod:`spinereg.vertebrae.init`) against the image: its place on the cord, the image-alone reading
of it (``init_check``, warned of when it names another level), and the refusal of a pin that
leaves no disc in the field of view."""

from __future__ import annotations

import numpy as np

from spinereg.cord.centerline import Centerline
from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.vertebrae.identity_check import POSITION_HOLD_MM, level_shift
from spinereg.vertebrae.model import CONUS
from spinereg.vertebrae.names import margin_text, margin_value
from spinereg.vertebrae.result import VertebralLabeling, disc_name


def _init_position(init: tuple[np.ndarray, int], cl: Centerline) -> tuple[int, float]:
    """``init`` = (world point (3,), disc value) -> (value, arc length)."""
    point, value = init
    s, dist = cl.project(np.asarray(point, float)[None])
    return int(value), float(s[0])


def _refuse_empty_pin(image: Image, init: tuple, free: VertebralLabeling | None) -> None:
    """A pinned disc that leaves no disc in the field of view is a wrong pin, not a result:
    ``-initz 2,3`` on t2 (C2/C3 pinned at its inferior end, every other disc then below the image)
    wrote an all-zero labelling and exited 3 before session 40; now refused before any output,
    with what the image alone reads."""
    value = int(init[1])
    seen = [d.name for d in free.measured] if free is not None else []
    reads = (f"; the image alone reads {seen[0]} to {seen[-1]}" if len(seen) > 1
             else f"; the image alone reads {seen[0]}" if seen else "")
    raise InputError(f"the pinned disc ({disc_name(value)}) leaves no disc in the field of view{reads}", image.name,
                     "check -initz / -initlabel (slices counted from the inferior end, as SCT's RPI: "
                     "-initz Z,3 puts C2/C3 at slice Z), or leave the pin out")


def _check_init(pinned: VertebralLabeling, free: VertebralLabeling, init: tuple[np.ndarray, int]) -> None:
    """Record in ``pinned.report["init_check"]`` what the image alone (the same call without
    ``init``) names the pinned disc: the level of its disc nearest the pin (within
    POSITION_HOLD_MM; else the median over the discs both place, :func:`level_shift`), and a
    warning when that is another level. A pinned disc is trusted, as SCT does, but a wrong
    ``-initz`` (an init file made for another image, a slice counted from the other end) would
    otherwise pass unremarked, under an identity margin that only measures the pin. Near the pin,
    not over all discs: a chain held to a wrong pin stretches over a few discs and gives the rest
    their image names back."""
    value, s0 = _init_position(init, pinned.centerline)
    near = min((d for d in free.measured if d.value != CONUS), key=lambda d: abs(d.s - s0), default=None)
    if near is not None and abs(near.s - s0) <= POSITION_HOLD_MM:
        shift = int(near.value - value)
    else:
        shift = level_shift(pinned, free)
    names = [d.name for d in free.measured]
    record = {"image_discs": names, "image_identity_margin": margin_value(free.identity_margin),
              "image_ambiguous": bool(free.ambiguous), "level_shift": shift,
              "image_name_at_pin": None if near is None or abs(near.s - s0) > POSITION_HOLD_MM else near.name}
    if shift:
        how = "ambiguously" if free.ambiguous else "unambiguously"
        record["warning"] = (
            f"the pinned disc ({disc_name(value)}) names the levels {abs(shift)} level(s) "
            f"{'higher' if shift > 0 else 'lower'} than the image alone reads them ({how}: "
            f"{' to '.join(names[:1] + names[-1:])}, identity margin {margin_text(free.identity_margin)}): "
            "check -initz / -initlabel")
    pinned.report["init_check"] = record
