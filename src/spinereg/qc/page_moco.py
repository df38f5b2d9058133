"""QC page of a motion correction (``moco``): the series before and after, animated and as frames."""

from __future__ import annotations

from pathlib import Path

from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.qc.figures import frame_strip, moco_frames, save_gif
from spinereg.qc.page_registration import _input, _load
from spinereg.qc.pages import Panel, page


def _moco_output(run_dir: Path, prov: dict, src: Image) -> Path:
    out = prov.get("outputs", {}).get("moco") if isinstance(prov.get("outputs"), dict) else None
    if out:
        p = Path(out)
        return p if p.is_absolute() else run_dir / p
    from spinereg.io.image import file_stem as stem

    cand = run_dir / f"{stem(src, 'image')}_moco.nii.gz"
    if cand.exists():
        return cand
    found = sorted(run_dir.glob("*_moco.nii*"))
    if not found:
        raise InputError("no motion-corrected series (*_moco.nii.gz) in the run folder", run_dir,
                         "give the folder written by the motion correction")
    return found[0]


@page("moco")
def render_moco(run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    src = _load(_input(prov, "image") or _input(prov, "input"), "4D series", prov=prov)
    moco = _load(_moco_output(run_dir, prov, src), "motion-corrected series")
    if src.ndim != 4 or moco.ndim != 4:
        raise InputError("motion correction QC needs 4D series", src.path, "give the 4D input and output")
    fb, fa = moco_frames(src), moco_frames(moco)
    save_gif(fb, outdir / "moco_before.gif")
    save_gif(fa, outdir / "moco_after.gif")
    frame_strip(fb, outdir / "moco_strip_before.png")
    frame_strip(fa, outdir / "moco_strip_after.png")
    names = {"before": "input series", "after": "motion corrected"}
    return [Panel("motion", "Motion (animated)", "toggle", {"before": "moco_before.gif", "after": "moco_after.gif"},
                  "mid-sagittal | mid-axial, volumes in time: the corrected series should stand still", names),
            Panel("motion", "Frames", "toggle", {"before": "moco_strip_before.png", "after": "moco_strip_after.png"},
                  "volumes evenly spaced in time, left to right, top to bottom", names)]
