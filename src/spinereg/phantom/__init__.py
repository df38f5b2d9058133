"""Synthetic subjects with a known ground-truth mapping, for testing and benchmarking registration.

:func:`make_independent_subject` (:mod:`spinereg.phantom.independent`) shares no code path with
the solver; :func:`make_template_subject` is the older phantom (its deformation and contrast are
close to the solver's own models).
"""

from spinereg.phantom.independent import IndependentSubject, make_independent_subject
from spinereg.phantom.template_subject import (
    TemplateDeformation,
    TemplateSubject,
    make_template_subject,
    mapping_error,
)

__all__ = ["IndependentSubject", "TemplateDeformation", "TemplateSubject", "make_independent_subject",
           "make_template_subject", "mapping_error"]
