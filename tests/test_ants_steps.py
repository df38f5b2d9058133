"""ANTs-backed steps (3D and slicewise=1 2D variants) and SCT's default preset through our engine."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io import Grid, Image
from spinereg.pipelines.template_outputs import write_outputs
from spinereg.register.ants_steps import ants_step
from spinereg.register.steps import parse_step
from spinereg.register.template import register_to_template
from spinereg.transforms import apply_transforms


def _ellipses(shift_per_slice):
    g = Grid((40, 40, 6), np.diag([-0.8, 0.8, 5.0, 1.0]))
    x, y, z = np.meshgrid(np.arange(40), np.arange(40), np.arange(6), indexing="ij")
    fixed = ((((x - 20) / 6) ** 2 + ((y - 20) / 4) ** 2) < 1).astype(np.float32)
    sh = np.asarray(shift_per_slice)[None, None, :]
    moving = ((((x - 20 - sh) / 6) ** 2 + ((y - 19) / 4) ** 2) < 1).astype(np.float32)
    return g, fixed, moving


def _dice(a, b):
    return 2 * np.logical_and(a > 0.5, b > 0.5).sum() / ((a > 0.5).sum() + (b > 0.5).sum())


@pytest.mark.parametrize("param,bound", [
    # one 3D transform cannot follow shifts that change from slice to slice (start: 0.75)
    ("step=1,type=seg,algo=translation,iter=50", 0.82),
    ("step=1,type=seg,algo=rigid,iter=50", 0.82),
    ("step=1,type=seg,algo=affine,iter=50", 0.82),
    ("step=1,type=seg,algo=syn,iter=20", 0.80),
    ("step=1,type=seg,algo=bsplinesyn,iter=20", 0.80),
    ("step=1,type=seg,algo=translation,slicewise=1,iter=50", 0.98),
    ("step=1,type=seg,algo=syn,slicewise=1,iter=20", 0.97),
])
def test_ants_steps_improve_overlap(param, bound):
    g, fixed, moving = _ellipses([1, 2, 3, 2, 1, 0])
    t = ants_step(fixed, moving, g, parse_step(param))
    out = apply_transforms(Image(moving, g.affine), g, [t], "linear").data
    assert _dice(moving, fixed) < 0.8
    assert _dice(out, fixed) >= bound


def test_sct_default_preset_on_t2(sct_data, tmp_path):
    """SCT's default steps (centermassrot pcahog + ANTs bsplinesyn) through our engine."""
    t2 = sct_data / "t2"
    reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz",
                               template="PAM50_small", param="template_default")
    write_outputs(reg, tmp_path)
    assert reg.metrics["cord_dice_subject_space"] >= 0.95
