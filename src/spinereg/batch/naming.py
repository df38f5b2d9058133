"""Output names of the batch: BIDS-derivatives names for the files, SCT's names as aliases.

Every output image and transform gets a BIDS-derivatives name in the unit's datatype folder
(``OUT/sub-X[/ses-Y]/anat/``). The step's SCT-style run folder (``OUT/sub-X[/ses-Y]/sct/<contrast>_<step>/``)
keeps SCT's names as relative symbolic links to those files, beside the step's metrics.json and
provenance.json, so that ``spinereg qc``, ``qc-scores`` and SCT scripts read it as a run folder.

| SCT name (alias) | BIDS-derivatives name |
|---|---|
| ``warp_anat2template`` | ``<prefix>_from-<C>_to-<TPL>_mode-image_xfm.nii.gz`` |
| ``warp_template2anat`` | ``<prefix>_from-<TPL>_to-<C>_mode-image_xfm.nii.gz`` |
| ``anat2template`` | ``<prefix>_space-<TPL>_<C>.nii.gz`` |
| ``template2anat`` | ``<prefix>_desc-<TPL>_<C>.nii.gz`` (the template image on the subject's grid) |
| ``warp_<stem>2template`` (chain) | ``<prefix>_from-<C>_to-<TPL>_mode-image_xfm.nii.gz`` |
| ``warp_template2<stem>`` (chain) | ``<prefix>_from-<TPL>_to-<C>_mode-image_xfm.nii.gz`` |

``<prefix>``: the image's entities (``sub-01_ses-01``, plus ``acq-``/``run-``... when present;
for MTS the MT-on image's). ``<C>``: the BIDS suffix (``T2w``, ``T2starw``, ``MTS``...).
``<TPL>``: the template name without its non-alphanumeric characters (``PAM50``, ``PAM50small``).
The ``from``/``to`` direction is fMRIPrep's: ``from-T2w_to-PAM50`` moves a T2w image into PAM50
(SCT's ``warp_anat2template``: it lives on the template's grid and pulls the subject's points).
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def template_label(name: str) -> str:
    """BIDS label of a template (``PAM50_small`` -> ``PAM50small``)."""
    return re.sub(r"[^A-Za-z0-9]", "", Path(str(name)).name) or "template"


def template_names(prefix: str, contrast: str, tpl: str) -> dict[str, str]:
    """SCT name -> BIDS name of a register-to-template run."""
    return {
        "warp_anat2template.nii.gz": f"{prefix}_from-{contrast}_to-{tpl}_mode-image_xfm.nii.gz",
        "warp_template2anat.nii.gz": f"{prefix}_from-{tpl}_to-{contrast}_mode-image_xfm.nii.gz",
        "anat2template.nii.gz": f"{prefix}_space-{tpl}_{contrast}.nii.gz",
        "template2anat.nii.gz": f"{prefix}_desc-{tpl}_{contrast}.nii.gz",
    }


def chain_names(prefix: str, stem: str, contrast: str, tpl: str) -> dict[str, str]:
    """SCT name -> BIDS name of a chain's target warps."""
    return {
        f"warp_{stem}2template.nii.gz": f"{prefix}_from-{contrast}_to-{tpl}_mode-image_xfm.nii.gz",
        f"warp_template2{stem}.nii.gz": f"{prefix}_from-{tpl}_to-{contrast}_mode-image_xfm.nii.gz",
    }


def image_prefix(entities: tuple[tuple[str, str], ...], drop: tuple[str, ...] = ()) -> str:
    return "_".join(f"{k}-{v}" for k, v in entities if k not in drop)


def move_with_alias(run_dir: Path, names: dict[str, str], target_dir: Path) -> dict[str, Path]:
    """Move ``run_dir/<sct name>`` to ``target_dir/<bids name>`` and leave a relative symbolic
    link under the SCT name. Returns the BIDS paths by SCT name (only files that exist)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for sct, bids in names.items():
        src = run_dir / sct
        if not src.is_file() or src.is_symlink():
            continue
        dst = target_dir / bids
        os.replace(src, dst)
        os.symlink(os.path.relpath(dst, run_dir), src)
        out[sct] = dst
    return out
