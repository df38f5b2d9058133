"""Named registration presets, stored as JSON files in ``register/presets/``.

Each file ``<name>.json`` holds ``description``, ``source`` and ``steps`` (a list of
``{key: value}`` in the step language of :mod:`spinereg.register.steps`). ``step_defaults.json``
in the same folder is the key table, not a preset.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from spinereg.errors import InputError
from spinereg.register.steps import Step, check_steps

__all__ = ["list_presets", "load_preset", "preset_info"]

_NOT_PRESETS = {"step_defaults"}


def _folder():
    return resources.files("spinereg.register").joinpath("presets")


def list_presets() -> list[str]:
    """Names of the available presets (sorted)."""
    names = [p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".json")]
    return sorted(n for n in names if n not in _NOT_PRESETS)


@cache
def _read(name: str) -> dict[str, Any]:
    if name not in list_presets():
        raise InputError(
            f"unknown registration preset {name!r}",
            None,
            "use one of: " + ", ".join(list_presets()) + " (or a step string such as "
            "step=1,type=seg,algo=centermass)",
        )
    return json.loads(_folder().joinpath(f"{name}.json").read_text("utf-8"))


def preset_info(name: str) -> dict[str, Any]:
    """``description``, ``source`` and ``param`` (the step string) of a preset."""
    from spinereg.register.steps import format_steps

    data = _read(name)
    return {"name": name, "description": data.get("description", ""),
            "source": data.get("source", ""), "param": format_steps(load_preset(name))}


def load_preset(name: str) -> list[Step]:
    """The steps of preset ``name`` (see :func:`list_presets`)."""
    data = _read(name.strip())
    return check_steps(Step.from_mapping(s) for s in data["steps"])
