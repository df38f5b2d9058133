"""Registration: the step language (``-param``), presets and slice-wise algorithms."""

from spinereg.register.presets import list_presets, load_preset, preset_info
from spinereg.register.slicewise import ALGORITHMS, get_algorithm, register_algorithm
from spinereg.register.steps import Step, format_steps, merge_steps, parse_param, parse_step

__all__ = [
    "ALGORITHMS",
    "Step",
    "format_steps",
    "get_algorithm",
    "list_presets",
    "load_preset",
    "merge_steps",
    "parse_param",
    "parse_step",
    "preset_info",
    "register_algorithm",
]
