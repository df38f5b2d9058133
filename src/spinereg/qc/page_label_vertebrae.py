"""QC report page of ``label-vertebrae``: the cord-frame sagittal view with every disc, its level
name and confidence, and the labeling's warnings (ambiguous identity, gaps, coarse sampling)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.qc.pages import Panel, page

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.image import Image
    from spinereg.vertebrae.result import VertebralLabeling


def _source(d: dict) -> str:
    """A disc's :attr:`~spinereg.vertebrae.result.Disc.source` from its JSON (before "source" was
    written: "estimated": true, or "located_from": "csf")."""
    if "source" in d:
        return str(d["source"])
    return "estimated" if d.get("estimated") else "csf" if d.get("located_from") == "csf" else "band"


#: keys of the labeling JSON that are fields of VertebralLabeling (or of the written file), not its report
_LABELING_FIELDS = ("discs", "scale_to_template", "identity_margin", "ambiguous", "identity_source", "disc_polarity",
                    "gaps", "inputs", "label_file")


def labeling_from_json(doc: dict, seg_path: str, image: Image | None = None) -> VertebralLabeling:
    """A :class:`~spinereg.vertebrae.result.VertebralLabeling` rebuilt from its JSON and the
    segmentation (for the centerline; on ``image``'s grid when given and it holds the image's
    voxels in another axis order, as label-vertebrae used it)."""
    from spinereg.cord.centerline import Centerline
    from spinereg.io.image import load_image, on_grid_of
    from spinereg.vertebrae.names import margin_from_value
    from spinereg.vertebrae.result import Disc, VertebralLabeling

    seg = load_image(seg_path, ndim=3, what="segmentation")
    cl = Centerline.from_mask(seg if image is None else on_grid_of(seg, image))
    discs = [Disc(int(d["value"]), float(d["s_mm"]), np.asarray(d["point_mm"], float), float(d["confidence"]),
                  float("nan") if d.get("evidence") is None else float(d["evidence"]), float(d.get("tilt_deg", 0.0)),
                  _source(d))
             for d in doc.get("discs", [])]
    # every report key the labeling wrote (init_check, confidence_scaled_by_flag, ...): only
    # warning / ambiguous_reasons / pmj were kept before session 49, so the page's note lost the
    # pinned-disc warning that the verdict's reasons gave (t2 -initfile: "the pinned disc (C2/C3)
    # names the levels 1 level(s) higher ..." in the reasons, only the gap in the note) and the
    # "(the disc confidences are halved for it)" of a flagged labeling
    report = {k: v for k, v in doc.items() if k not in _LABELING_FIELDS}
    return VertebralLabeling(discs, cl, float(doc.get("scale_to_template", 1.0)), margin_from_value(doc.get("identity_margin", 0.0)),
                             bool(doc.get("ambiguous", False)), 1 if doc.get("disc_polarity") == "bright" else -1,
                             str(doc.get("identity_source", "")), list(doc.get("gaps", [])), None, report)


def _tag(source: str) -> str:
    from spinereg.qc.labeling import source_tag

    return source_tag(source)


@page("label-vertebrae")
def render(run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    from spinereg.io.image import load_image
    from spinereg.qc.labeling import labeling_figure, warnings_of

    inputs = prov.get("inputs") or {}
    doc = json.loads(Path(prov["labeling_json"]).read_text())
    image = load_image(inputs["image"], ndim=3)
    lab = labeling_from_json(doc, inputs["seg"], image)
    (Path(outdir) / "labeling.png").write_bytes(labeling_figure(image, lab, width_in=6.0))
    # a disc placed without a band says so in the caption as in the figure (t1w's C1/C2 "0.47, estimated"
    # in the picture was "C1/C2 0.47" in the caption, as if measured, before session 49)
    names = ", ".join(f"{d.name} {d.confidence:.2f}" + ("" if d.source == "band" else f" ({_tag(d.source)})")
                      for d in lab.discs) or "no disc found"
    if lab.pmj is not None:
        names = f"PMJ (dotted; the pons {lab.pmj['pons_step_mm']:.0f} mm ahead of the medulla), " + names
    return [Panel("labels", "Vertebral labeling (discs and levels along the cord)", "single",
                  {"image": "labeling.png"}, caption=f"disc (confidence): {names}; level names between discs",
                  note="; ".join(warnings_of(lab)))]
