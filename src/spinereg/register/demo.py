"""The main job: register the sample subject (SCT's ``t2``) to PAM50 and write every output."""

from __future__ import annotations

from pathlib import Path

from spinereg.io.registry import ensure_dataset
from spinereg.register.outputs import write_outputs
from spinereg.register.template import TemplateRegistration, register_to_template


def run_demo(outdir: str | Path, template: str = "PAM50", overwrite: bool = False,
             progress=None) -> TemplateRegistration:
    """Register ``sct_testing_data/t2`` (T2w, manual cord seg, C3/C5 body labels) to ``template``.

    Data come from the registry (``SPINEREG_DATA``, the cache, or a checked download).
    """
    t2 = ensure_dataset("sct_testing_data") / "t2"
    inputs = {"image": t2 / "t2.nii.gz", "seg": t2 / "t2_seg-manual.nii.gz", "labels": t2 / "labels.nii.gz"}
    reg = register_to_template(inputs["image"], inputs["seg"], labels=inputs["labels"], template=template,
                               contrast="t2", progress=progress)
    write_outputs(reg, outdir, overwrite=overwrite, inputs={**inputs, "template": template})
    return reg
