"""Synthetic subjects with a known ground-truth mapping, for testing and benchmarking registration."""

from spinereg.phantom.template_subject import (
    TemplateDeformation,
    TemplateSubject,
    make_template_subject,
    mapping_error,
)

__all__ = ["TemplateDeformation", "TemplateSubject", "make_template_subject", "mapping_error"]
