"""A field map's units: what its sidecar or the user states, else a check of its values.

BIDS field maps (``*_fieldmap.nii.gz``) state ``"Units"`` in their sidecar: ``Hz``, ``rad/s``
or ``T``. FSL's ``fsl_prepare_fieldmap`` writes rad/s, and a phase difference in radians can be
passed as a field map by mistake. Taken as Hz, the first shifts the EPI 2 pi times too far; the
second corrects almost nothing. Neither would show in the output. So when the units are stated
(``units=`` or the sidecar), the map is converted; when they are not, it is taken as Hz only if
its values look like Hz:

* the 99th percentile of ``|value|`` is at most ``MAX_PLAUSIBLE_HZ``. A dual-echo map covers
  +-1 / (2 dTE), about +-200 Hz at dTE 2.46 ms; unwrapped spinal fields at 3 T reach a few
  hundred Hz. The same field in rad/s is 6.3 times larger;
* its values are not all within +-pi with the top percent at the edge (a phase difference in
  radians);
* it is not zero everywhere, and takes both signs (a magnitude or anatomical image is >= 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinereg.epi.sidecar import read_sidecar
from spinereg.errors import InputError
from spinereg.io.image import Image

#: stated units -> factor to Hz (T: the proton's gyromagnetic ratio over 2 pi)
TO_HZ = {"hz": 1.0, "rad/s": 1.0 / (2.0 * np.pi), "t": 42.577478518e6}
#: a map whose units are not stated is refused as Hz above this 99th percentile of |value|
MAX_PLAUSIBLE_HZ = 700.0
#: a map in stated units is refused above this 99th percentile of |value| once in Hz (10x the above)
STATED_MAX_HZ = 10 * MAX_PLAUSIBLE_HZ
#: ... and as a phase difference when every value is within +-pi and this percentile reaches 2.5
PHASE_PERCENTILE = 99.0


def _stated(units: str | None, path: str | Path | None) -> tuple[str | None, str]:
    if units:
        return units, "given"
    if path is not None:
        meta = read_sidecar(None, path)
        if meta.get("Units"):
            return str(meta["Units"]), "sidecar"
    return None, "assumed"


def fieldmap_in_hz(fm: Image, units: str | None = None) -> tuple[Image, dict]:
    """``fm`` in Hz, and a record of how its units were known (``units``: Hz, rad/s or T;
    default the sidecar's ``"Units"``, else Hz after the checks of the module doc)."""
    stated, how = _stated(units, fm.path)
    if stated is not None:
        key = stated.strip().lower().replace(" ", "").replace("rad.s-1", "rad/s").replace("rads-1", "rad/s")
        if key in ("rad", "radian", "radians"):  # BIDS phasediff sidecars say "rad"
            raise InputError(f"the field map's units are {stated!r} ({how}): a phase difference", fm.path,
                             "pass it with --phasediff (echo times from its sidecar or --echo-times)")
        if key not in TO_HZ:
            raise InputError(f"unknown field map units {stated!r} ({how})", fm.path,
                             "use Hz, rad/s or T (BIDS \"Units\")")
        factor = TO_HZ[key]
        data = np.asarray(fm.data, np.float64) * factor
        # stated units were taken on trust: an all-zero map ("Units": "Hz") corrected nothing and a
        # map in Hz said to be in T shifted by 9e7 voxels, each exit 0
        vals = np.abs(data[np.isfinite(data) & (data != 0)])
        if vals.size == 0:
            raise InputError("the field map is zero everywhere: it would correct nothing", fm.path,
                             "give the measured field map")
        p99 = float(np.percentile(vals, PHASE_PERCENTILE))
        if p99 > STATED_MAX_HZ:
            raise InputError(f"the field map in {stated} ({how}) reaches {p99:.3g} Hz (99th percentile of |value|), "
                             f"beyond any spinal field (< {STATED_MAX_HZ:.0f} Hz): its units are not {stated}?",
                             fm.path, "state its real units (--fieldmap-units Hz, rad/s or T)")
        return fm.with_data(data.astype(np.float32)), {"units": stated, "units_from": how, "to_hz": factor}
    data = np.asarray(fm.data, np.float64)
    vals = np.abs(data[np.isfinite(data) & (data != 0)])
    if vals.size == 0:
        raise InputError("the field map is zero everywhere: it would correct nothing", fm.path,
                         "give the measured field map (Hz)")
    p99 = float(np.percentile(vals, PHASE_PERCENTILE))
    if float(np.nanmin(data)) >= 0.0:  # the phantom's t2w.nii.gz (0..1) as --fieldmap: "max shift
        # 0.03 voxels", an EPI left as it was, exit 0, before session 37
        raise InputError(f"the field map has no negative value (0 to {float(vals.max()):.3g}): an off-resonance "
                         "field in Hz takes both signs; a magnitude or anatomical image?", fm.path,
                         "give the field map in Hz (or state --fieldmap-units / its sidecar's \"Units\")")
    if p99 > MAX_PLAUSIBLE_HZ:
        raise InputError(f"the field map reaches {p99:.0f} (99th percentile of |value|), beyond a spinal field "
                         f"in Hz (< {MAX_PLAUSIBLE_HZ:.0f}): in rad/s (FSL's fsl_prepare_fieldmap), or scanner "
                         "units?", fm.path,
                         "state its units (--fieldmap-units rad/s, Hz or T, or \"Units\" in its sidecar), or "
                         "pass a phase difference with --phasediff")
    if vals.max() <= np.pi + 1e-3 and p99 >= 2.5:
        raise InputError(f"every value of the field map lies within +-pi, the top percent at {p99:.2f}: a phase "
                         "difference in radians?", fm.path,
                         "pass it with --phasediff and --echo-times, or state --fieldmap-units Hz")
    return fm, {"units": "Hz", "units_from": "assumed (values checked)", "to_hz": 1.0,
                "abs_p99_hz": round(p99, 1)}
