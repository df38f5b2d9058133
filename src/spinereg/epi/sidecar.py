"""BIDS JSON sidecars of EPI and field-map images: reading, checking, atomic writing."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from spinereg.epi.distortion import PE_CODES
from spinereg.errors import InputError
from spinereg.io.image import atomic_write


def sidecar_path(image_path: str | Path) -> Path:
    """``sub.nii.gz`` -> ``sub.json`` (BIDS sidecar next to the image)."""
    p = Path(image_path)
    name = p.name
    for suf in (".nii.gz", ".nii"):
        if name.endswith(suf):
            return p.with_name(name[: -len(suf)] + ".json")
    return p.with_suffix(".json")


def read_sidecar(path: str | Path | None, image_path: str | Path | None = None) -> dict:
    """Sidecar ``path`` (or the one next to ``image_path`` if it exists; else ``{}``)."""
    if path is None:
        if image_path is None:
            return {}
        p = sidecar_path(image_path)
        if not p.exists():
            return {}
    else:
        p = Path(path)
        if not p.exists():
            raise InputError("JSON sidecar not found", p, "check the path (BIDS: same name as the image, .json)")
    try:
        meta = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON sidecar ({type(exc).__name__}: {exc})", p,
                         "fix the JSON syntax (e.g. `python -m json.tool FILE`)") from exc
    if not isinstance(meta, dict):
        raise InputError("JSON sidecar is not an object", p, "give a BIDS sidecar ({\"Key\": value, ...})")
    meta["_path"] = str(p)
    return meta


def write_sidecar(path: str | Path, meta: dict, overwrite: bool = False) -> Path:
    """Write ``meta`` (keys starting with ``_`` dropped) as an indented JSON file, atomically."""
    clean = {k: v for k, v in meta.items() if not str(k).startswith("_")}
    text = json.dumps(clean, indent=2) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite)


def _number(value: object) -> float | None:
    """``value`` as Python's ``float()`` reads it, or None where it cannot; an integer beyond a
    float's range (a 400-digit JSON number) is +-infinity (it was an internal OverflowError)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def stated_readout(meta: dict, *, in_range: bool = True) -> float | None:
    """The total readout time (seconds) that the sidecar ``meta`` states as ``TotalReadoutTime``,
    else None: the one parser of that key (:func:`epi_params`, its warning of a --readout-time
    that differs, topup's readout ratios).

    The value is read as Python's ``float()`` reads it: a JSON number, or a numeric string
    (``"0.03"`` and ``" 3e-2 "`` give 0.03, ``"nan"``/``"inf"`` give those), JSON ``true``/``false``
    1.0/0.0, an integer too large for a float +-infinity. A missing key, ``null``, a string that is no number, a list or an object: None.

    ``in_range`` (default): None unless ``0 < t < 1`` -- a stated 0, a negative, NaN, infinity or
    a value in milliseconds (30) states no usable readout time; (0, 1) s is the range
    :func:`epi_params` accepts. ``in_range=False``: whatever number ``float()`` makes of it (0,
    negatives, 30, NaN, infinity kept), for a caller that judges the value itself
    (:func:`epi_params` refuses it naming the sidecar; a --readout-time that differs from it is
    warned of).

    Never derived from ``EffectiveEchoSpacing`` or any other key: a sidecar that gives only the
    echo spacing states no readout time here (give ``--readout-time``)."""
    t = _number(meta.get("TotalReadoutTime"))
    if in_range and t is not None and not (0 < t < 1):
        return None
    return t


@dataclass(frozen=True)
class EPIParams:
    """What distortion correction needs from an EPI: PE direction and total readout time (s)."""

    pe: str
    readout_s: float
    #: what an argument overrode in the sidecar (--pe j- where it says ``j``), or None: said as a
    #: warning by each correction
    conflict: str | None = None


def _refuse_slice_axis(pe: str, sidecar: str | None) -> None:
    """Refuse a phase-encode direction along the slice axis (``k``/``k-``). Every correction works
    slice by slice in the (i, j) plane (the field is smoothed in-plane, the shift is along one
    in-plane axis), and the CLI's --pe offers only i/j; a sidecar's ``"k"`` was applied along the
    slice axis all the same by ``sdc fieldmap`` (exit 0), and refused by ``sdc topup``/``anat``
    naming the EPI rather than the JSON that said it. ``sidecar``: the JSON the direction came
    from (None when it was an argument)."""
    if not pe.startswith("k"):
        return
    if sidecar is not None:
        raise InputError(f"PhaseEncodingDirection {pe!r} is along the slice axis (the third voxel axis): "
                         "distortion correction along the slice axis is not supported", sidecar,
                         "give the in-plane phase-encode direction with --pe i, i-, j or j- (or correct "
                         "PhaseEncodingDirection in the JSON)")
    raise InputError(f"phase-encode direction {pe!r} is along the slice axis: distortion correction along the "
                     "slice axis is not supported", None, "give the in-plane phase-encode direction: i, i-, j or j-")


def epi_params(meta: dict, pe: str | None = None, readout_s: float | None = None,
               image: str | Path | None = None) -> EPIParams:
    """PE direction and readout time from arguments, else from the sidecar ``meta``.

    The sidecar's ``TotalReadoutTime`` is read by :func:`stated_readout` and refused (naming the
    sidecar) when missing, not a number or outside (0, 1) s; it is *not* derived from
    ``EffectiveEchoSpacing`` and the matrix size along PE: give it explicitly. A direction
    along the slice axis (``k``, ``k-``) is refused, naming the sidecar when it came from there.
    """
    where = meta.get("_path") or (str(image) if image else None)
    from_meta = pe is None
    if pe is None:
        pe = meta.get("PhaseEncodingDirection")
        if pe is None:
            raise InputError("no phase-encode direction (PhaseEncodingDirection missing from the sidecar)",
                             where, "pass --pe j (or j-, i, i-) or add PhaseEncodingDirection to the JSON")
    if str(pe).strip().lower() not in PE_CODES:  # a sidecar's "y" was refused without naming the sidecar
        raise InputError(f"unknown phase-encode direction {pe!r}" + (" (PhaseEncodingDirection)" if from_meta else ""),
                         where if from_meta else None, "use a BIDS PhaseEncodingDirection: i, i-, j or j-"
                         + (" (or pass --pe)" if from_meta else ""))
    _refuse_slice_axis(str(pe).strip().lower(), where if from_meta else None)
    readout_given = readout_s is not None
    if readout_given:
        readout = _number(readout_s)
    else:
        readout_s = meta.get("TotalReadoutTime")
        if readout_s is None:
            raise InputError("no readout time (TotalReadoutTime missing from the sidecar)", where,
                             "pass --readout-time SECONDS (e.g. 0.03) or add TotalReadoutTime to the JSON")
        readout = stated_readout(meta, in_range=False)
    if readout is None:
        raise InputError(f"TotalReadoutTime is not a number ({readout_s!r})", where,
                         "give the total readout time in seconds (e.g. 0.03)")
    if not (0 < readout < 1):  # --readout-time nan was blamed on the EPI's sidecar
        raise InputError(f"total readout time {readout} s is out of range (0, 1)"
                         + (" (--readout-time)" if readout_given else " (TotalReadoutTime)"),
                         None if readout_given else where, "give it in seconds (e.g. 0.03, not 30)")
    pe = str(pe).strip().lower()
    return EPIParams(pe, readout, _overridden(meta, pe, readout, not from_meta, readout_given, where))


def _overridden(meta: dict, pe: str, readout: float, pe_given: bool, readout_given: bool,
                where: str | None) -> str | None:
    """An argument that contradicts the sidecar: --pe j- where PhaseEncodingDirection is ``j`` was
    used silently, and a field map then doubled the distortion instead of removing it (SCT dmri b0
    moved by known 80 Hz fields, 0.04 s, seeds 0-2: correlation with the truth 0.51-0.77 uncorrected,
    0.98-0.99 with the sidecar's direction, 0.32-0.61 with the reversed --pe, exit 0, no word, before
    session 51; tests/test_sdc_arg_overrides.py). The
    argument still wins (a sidecar can be stale after a reorientation); the run warns."""
    said = []
    spe = meta.get("PhaseEncodingDirection")
    if pe_given and spe is not None and str(spe).strip().lower() != pe:
        said.append(f"--pe {pe} where the sidecar's PhaseEncodingDirection is {spe!r}")
    st = stated_readout(meta, in_range=False)  # any number: a stated 30 (ms) is warned of too
    # a stated 0 was an internal ZeroDivisionError (with any --readout-time), a stated NaN compared
    # as equal (no warning): both differ from any given time
    if readout_given and st is not None and (st == 0 or math.isnan(st) or abs(readout / st - 1) > 0.01):
        said.append(f"--readout-time {readout:g} where the sidecar's TotalReadoutTime is {st:g}")
    if not said:
        return None
    return (" and ".join(said) + f" ({where}): the arguments were used; if the sidecar is right, drop them "
            "(with a field map a reversed phase-encode direction doubles the distortion instead of removing it, "
            "a wrong readout time scales it)")
