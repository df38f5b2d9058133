"""The QC report's page API: what one run shows, as panels grouped by stage.

A *page* is the detail view of one report entry (one command run on one subject). It is made
of :class:`Panel` objects, each belonging to a *stage* (the report shows one section per stage,
in the order of :data:`STAGES`; unknown stages come after, in order of appearance).

Adding a page for a new kind of run (e.g. ``segment`` or ``label-vertebrae``)::

    # src/spinereg/qc/page_segment.py   (module name: page_ + kind with '-' -> '_')
    from spinereg.qc.pages import Panel, page

    @page("segment")
    def render(run_dir, prov, outdir):
        # draw pictures into outdir (spinereg.qc.figures: axial_mosaic, sagittal_view, ...)
        return [Panel("segmentation", "Cord segmentation", "toggle",
                      {"before": "axial_image.png", "after": "axial_seg.png"},
                      caption="red: cord segmentation", labels={"before": "image", "after": "with seg"})]

then ``spinereg.qc.add_to_report(run_dir, qc_root, kind="segment")`` (or ``spinereg qc RUN_DIR``)
renders it: the module is imported on first use. A renderer gets the run folder, its
provenance.json (or metrics.json for runs without one) and an empty folder for its pictures, and
returns the panels; file names are relative to that folder. Panel kinds: ``toggle`` (files
``before``/``after``, swapped with the before/after button, the ``t`` key or the animation),
``single`` (file ``image``), ``anim`` (an animated GIF in ``image``, or ``before``/``after``).
``note`` is shown beside the picture (e.g. "the template image is synthesised"); ``note_after``
only while the "after" picture is shown.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spinereg.errors import InputError

#: stage sections in display order
STAGES = ("segmentation", "labels", "registration: subject space", "registration: template space", "motion",
          "measures")

Renderer = Callable[[Path, dict, Path], list["Panel"]]
_PAGES: dict[str, Renderer] = {}


@dataclass
class Panel:
    """One picture (or before/after pair) of a page."""

    stage: str
    title: str
    kind: str  # toggle | single | anim
    files: dict[str, str]
    caption: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    note: str = ""
    note_after: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("toggle", "single", "anim"):
            raise ValueError(f"panel kind {self.kind!r}: use toggle, single or anim")
        if self.kind == "toggle" and not {"before", "after"} <= set(self.files):
            raise ValueError("a toggle panel needs files 'before' and 'after'")
        if self.kind == "single" and "image" not in self.files:
            raise ValueError("a single panel needs file 'image'")

    def as_dict(self) -> dict:
        return {"stage": self.stage, "title": self.title, "kind": self.kind, "files": dict(self.files),
                "caption": self.caption, "labels": dict(self.labels), "note": self.note,
                "note_after": self.note_after}


def page(kind: str) -> Callable[[Renderer], Renderer]:
    """Decorator registering the renderer of runs of ``kind`` (see module doc)."""

    def deco(fn: Renderer) -> Renderer:
        _PAGES[kind] = fn
        return fn

    return deco


def renderer(kind: str) -> Renderer:
    """The renderer of ``kind``, importing ``spinereg.qc.page_<kind>`` when needed."""
    if kind not in _PAGES:
        from spinereg.qc import page_registration  # noqa: F401 - the built-in pages
        mod = f"spinereg.qc.page_{kind.replace('-', '_')}"
        if kind not in _PAGES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    raise
    if kind not in _PAGES:
        raise InputError(f"no QC page for runs of '{kind}'", None,
                         f"QC covers: {', '.join(kinds())} (pass the kind if provenance.json lacks it)")
    return _PAGES[kind]


def kinds() -> list[str]:
    """Kinds with a page (the built-in ones and those imported so far)."""
    from spinereg.qc import (  # noqa: F401
        page_label_vertebrae,
        page_moco,
        page_registration,
        page_segment,
        page_spine_metrics,
    )

    return sorted(_PAGES)


def render_run(kind: str, run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    """The panels of a run of ``kind``, pictures written into ``outdir``."""
    return renderer(kind)(Path(run_dir), prov, Path(outdir))
