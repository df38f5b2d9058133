"""SCT's registration step language (``-param``) as data.

``step=1,type=seg,algo=centermassrot:step=2,type=seg,algo=bsplinesyn,metric=MeanSquares,iter=3``
is a list of steps separated by ``:``, each a list of ``key=value`` separated by ``,``. This
module parses such strings into frozen :class:`Step` objects with typed fields and SCT's
defaults, and formats them back. The table of keys, value kinds, defaults and allowed values is
data (``presets/step_defaults.json``), not code.

>>> steps = parse_param("step=1,type=seg,algo=centermass:step=2,type=seg,algo=bsplinesyn,iter=3")
>>> steps[1].iter, steps[1].metric
(3, 'MeanSquares')
>>> format_steps(steps)
'step=1,type=seg,algo=centermass:step=2,type=seg,algo=bsplinesyn,iter=3'

SCT semantics kept here: ``type`` is required for steps >= 1 (step 0 is the label step and
defaults to ``type=label``); steps are numbered consecutively (from 0 or 1); a user ``-param``
replaces the default steps >= 1 but keeps the default label step 0 (:func:`merge_steps`).
Choice values are matched case-insensitively and stored in SCT's spelling (``meansquares`` ->
``MeanSquares``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from spinereg.errors import InputError

__all__ = [
    "KEYS",
    "Step",
    "format_steps",
    "key_spec",
    "merge_steps",
    "parse_param",
    "parse_step",
]


@cache
def _table() -> dict[str, dict[str, Any]]:
    text = resources.files("spinereg.register").joinpath("presets/step_defaults.json").read_text("utf-8")
    return json.loads(text)["keys"]


#: Keys of the step language, in the order they are written by :meth:`Step.to_string`.
KEYS: tuple[str, ...] = tuple(_table())


def key_spec(key: str) -> dict[str, Any]:
    """The table entry of ``key``: ``kind``, ``default``, ``allowed``/``min``/``pattern``, ``help``."""
    try:
        return dict(_table()[key])
    except KeyError:
        raise _unknown_key(key) from None


def _default(key: str) -> Any:
    return _table()[key]["default"]


@dataclass(frozen=True)
class Step:
    """One registration step. Field names are SCT's keys; defaults are SCT's.

    ``explicit`` records which keys the user wrote (not part of equality); :func:`merge_steps`
    uses it to update a default step 0 with only the keys the user gave.
    """

    step: int
    type: str | None = None
    algo: str = _default("algo")
    metric: str = _default("metric")
    iter: int = _default("iter")
    shrink: int = _default("shrink")
    smooth: float = _default("smooth")
    gradStep: float = _default("gradStep")  # SCT's key name
    deformation: str = _default("deformation")
    slicewise: int = _default("slicewise")
    poly: int = _default("poly")
    smoothWarpXY: float = _default("smoothWarpXY")  # SCT's key name
    pca_eigenratio_th: float = _default("pca_eigenratio_th")
    rot_method: str = _default("rot_method")
    laplacian: float = _default("laplacian")
    dof: str = _default("dof")
    rigidity: float = _default("rigidity")  # spinereg extension
    sigma: str = _default("sigma")  # spinereg extension (algo=tps)
    pad: int = _default("pad")  # SCT's -z of sct_register_multimodal, as a step key
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        values = {k: getattr(self, k) for k in KEYS}
        if values["step"] is None:
            raise InputError("registration step without 'step=N'", None,
                             "start each step with step=N (N = 0, 1, 2...)")
        values["step"] = _coerce("step", values["step"])
        if values["type"] is None and values["step"] == 0:
            values["type"] = "label"
        for key in KEYS:
            if key == "type" and values[key] is None:
                raise InputError(
                    f"registration step {values['step']}: missing key 'type'",
                    None,
                    f"add type=<{'|'.join(key_spec('type')['allowed'])}> to step {values['step']}",
                )
            object.__setattr__(self, key, _coerce(key, values[key]))
        object.__setattr__(self, "explicit", frozenset(self.explicit))

    # -- construction / formatting ------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Step:
        """A step from ``{key: value}`` (strings or typed values); unknown keys are errors."""
        for key in values:
            if key not in KEYS:
                raise _unknown_key(key)
        if "step" not in values:
            raise InputError(
                "registration step without 'step=N'", None, "start each step with step=N (N = 0, 1, 2...)"
            )
        return cls(**dict(values), explicit=frozenset(values))

    def replace(self, **changes: Any) -> Step:
        """A copy with some keys changed (validated as in parsing)."""
        for key in changes:
            if key not in KEYS:
                raise _unknown_key(key)
        return dataclasses.replace(self, **changes, explicit=self.explicit | frozenset(changes))

    def as_dict(self) -> dict[str, Any]:
        """All keys with their (typed) values."""
        return {k: getattr(self, k) for k in KEYS}

    def to_string(self, full: bool = False) -> str:
        """``step=N,type=...,algo=...`` then every key that differs from SCT's default.

        ``full=True`` writes every key. ``parse_step(s.to_string()) == s`` for every step.
        """
        parts = []
        for key in KEYS:
            value = getattr(self, key)
            if full or key in ("step", "type", "algo") or value != _default(key):
                parts.append(f"{key}={_format_value(value)}")
        return ",".join(parts)

    def __str__(self) -> str:
        return self.to_string()


# -- parsing ------------------------------------------------------------------------------------
def parse_step(text: str) -> Step:
    """Parse one step ``key=value,key=value,...``."""
    values: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise InputError(
                f"registration parameter {item!r} is not key=value (in step {text!r})",
                None,
                "write steps as step=1,type=seg,algo=centermass (keys: " + ", ".join(KEYS) + ")",
            )
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in KEYS:
            raise _unknown_key(key)
        if key in values:
            raise InputError(f"key {key!r} given twice in registration step {text!r}", None,
                             "give each key once per step")
        values[key] = value
    return Step.from_mapping(values)


def parse_param(param: str | Sequence[Step]) -> list[Step]:
    """Steps from a ``-param`` string, a preset name (see ``list_presets()``) or a list of steps.

    The result is sorted by step number and checked: numbers are consecutive, starting at 0 or 1.
    """
    if not isinstance(param, str):
        return check_steps(list(param))
    text = param.strip()
    if text and "=" not in text:
        from spinereg.register.presets import load_preset

        return load_preset(text)
    if not text:
        raise InputError("empty registration parameter string", None,
                         "give steps such as step=1,type=seg,algo=centermass or a preset name")
    steps = [parse_step(chunk) for chunk in text.split(":") if chunk.strip()]
    return check_steps(steps)


def check_steps(steps: Iterable[Step]) -> list[Step]:
    """Sort steps by number and check they are consecutive, from 0 or 1, without duplicates."""
    out = sorted(steps, key=lambda s: s.step)
    numbers = [s.step for s in out]
    if not numbers:
        raise InputError("no registration step given", None, "give at least step=1,type=...")
    if len(set(numbers)) != len(numbers):
        dup = sorted({n for n in numbers if numbers.count(n) > 1})
        raise InputError(f"registration step number(s) {dup} given more than once", None,
                         "number the steps 1, 2, 3... (0 for the label step)")
    expected = list(range(numbers[0], numbers[0] + len(numbers)))
    if numbers[0] not in (0, 1) or numbers != expected:
        raise InputError(
            f"registration steps must be numbered consecutively from 0 or 1, got {numbers}",
            None,
            "number the steps 1, 2, 3... (0 for the label step)",
        )
    return out


def format_steps(steps: Sequence[Step], full: bool = False) -> str:
    """The ``-param`` string of ``steps`` (``parse_param(format_steps(s)) == s``)."""
    return ":".join(s.to_string(full=full) for s in steps)


def merge_steps(base: Sequence[Step], user: Sequence[Step]) -> list[Step]:
    """SCT's rule for a user ``-param`` on top of a default: user steps >= 1 replace the default
    steps >= 1 entirely; the default step 0 (label step) is kept, updated by the keys the user
    wrote in a step 0 of their own (if any)."""
    base0 = [s for s in base if s.step == 0]
    user0 = [s for s in user if s.step == 0]
    out: list[Step] = []
    if base0 and user0:
        changes = {k: getattr(user0[0], k) for k in user0[0].explicit if k != "step"}
        out.append(base0[0].replace(**changes) if changes else base0[0])
    elif base0 or user0:
        out.append((user0 or base0)[0])
    out.extend(s for s in user if s.step >= 1)
    if not any(s.step >= 1 for s in user):
        out.extend(s for s in base if s.step >= 1)
    return check_steps(out)


# -- values ------------------------------------------------------------------------------------
def _unknown_key(key: str) -> InputError:
    return InputError(
        f"unknown registration key {key!r}",
        None,
        "use one of: " + ", ".join(KEYS),
    )


def _bad_value(key: str, value: Any, spec: Mapping[str, Any], why: str = "") -> InputError:
    if "allowed" in spec:
        allowed = "allowed values: " + ", ".join(str(a) for a in spec["allowed"])
    elif spec["kind"] == "int":
        allowed = f"an integer >= {spec.get('min', 0)}"
    else:
        allowed = f"a number >= {spec.get('min', 0)}"
    return InputError(f"bad value {value!r} for registration key {key!r}{why}", None,
                      f"{key}: {allowed}")


def _coerce(key: str, value: Any) -> Any:
    spec = _table()[key]
    kind = spec["kind"]
    if value is None:
        if spec["default"] is None:
            return None
        raise _bad_value(key, value, spec)
    if kind == "choice":
        by_lower = {str(a).lower(): a for a in spec["allowed"]}
        canon = by_lower.get(str(value).strip().lower())
        if canon is None:
            raise _bad_value(key, value, spec)
        return canon
    if kind == "pattern":
        text = str(value).strip()
        if not re.fullmatch(spec["pattern"], text):
            raise _bad_value(key, value, spec)
        return text
    if kind in ("int", "float"):
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise _bad_value(key, value, spec) from None
        if not math.isfinite(num):  # smooth=nan / gradStep=inf reached antsRegistration ("failed (exit
            # 1) ... check the inputs overlap"); iter=nan was an internal error, before session 37
            raise _bad_value(key, value, spec, " (not a finite number)")
        if kind == "int":
            if num != int(num):
                raise _bad_value(key, value, spec, " (not an integer)")
            num = int(num)
        if "min" in spec and num < spec["min"]:
            raise _bad_value(key, value, spec, f" (below {spec['min']})")
        if "allowed" in spec and num not in spec["allowed"]:
            raise _bad_value(key, value, spec)
        return num
    raise ValueError(f"step_defaults.json: unknown kind {kind!r} for key {key!r}")  # table bug


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value == int(value) else repr(value)
    return str(value)
