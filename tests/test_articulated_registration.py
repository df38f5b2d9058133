"""Rigid vertebrae in deformable registration, on the articulated-spine phantom (PAM50 C3-C5,
1 mm, vertebrae moved rigidly one by one; truth exact).

Unconstrained: ``step=1,type=im,algo=syn,deformation=1x1x1,iter=10,smooth=1`` (ANTs SyN, the
deformable algorithm of SCT's defaults). Constrained: the same step with ``rigidity=1`` after
``step=1,type=im,algo=polyrigid``. Measured (seeds 0 and 1 MR-like, 0 CT-like), mean error in the
exactly rigid bone of C3-C5, unconstrained -> constrained: 1.40 -> 0.12, 1.07 -> 0.10, 1.06 ->
0.17 mm; cord 0.89 -> 0.63, 0.50 -> 0.35, 1.94 -> 0.58 mm; mean |J^T J - I| in bone 0.24 ->
0.010, 0.22 -> 0.011, 0.53 -> 0.009. Timings: bench/constraints.py (tests never assert them).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.phantom.articulated import make_articulated_phantom
from spinereg.register.engine import run_steps
from spinereg.register.rigidity import rigidity_map
from spinereg.register.steps import parse_param
from spinereg.transforms.base import Chain
from spinereg.transforms.displacement import DisplacementField

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

DEFORM = "type=im,algo=syn,deformation=1x1x1,iter=10,smooth=1"
PIPELINES = {"unconstrained": f"step=1,{DEFORM}",
             "constrained": f"step=1,type=im,algo=polyrigid:step=2,{DEFORM},rigidity=1"}


def _scores(ph, param: str) -> dict[str, float]:
    lab = np.asarray(ph.vertebrae.data)
    bone = np.isin(lab, [3, 4, 5]) & (np.asarray(ph.rigid.data) > 0)
    cord = np.asarray(ph.cord.data) > 0
    res = run_steps(parse_param(param), ph.grid, {"im": np.asarray(ph.template.data, np.float32), "vertebrae": lab},
                    {"im": ph.subject}, [])
    est = DisplacementField.from_transform(Chain(res.transforms), ph.grid)
    truth = ph.truth_anat2template.data
    return {"bone": float(np.linalg.norm(est.data[bone] - truth[bone], axis=1).mean()),
            "cord": float(np.linalg.norm(est.data[cord] - truth[cord], axis=1).mean()),
            "rigid": float(np.nanmean(rigidity_map(est)[bone]))}


@pytest.mark.parametrize(("seed", "contrast"), [(0, "mr"), (1, "mr"), (0, "ct")])
def test_rigid_bone_beats_unconstrained(seed, contrast, pam50_dir):
    ph = make_articulated_phantom((3, 5), seed=seed, contrast=contrast, margin_mm=12.0)
    free = _scores(ph, PIPELINES["unconstrained"])
    rigid = _scores(ph, PIPELINES["constrained"])
    assert free["bone"] >= 1.0  # the case the constraint is for: unconstrained >= 1 mm in bone
    assert rigid["bone"] <= 0.2  # issue target 0.3
    assert rigid["rigid"] <= 0.015  # issue target 0.02
    assert rigid["cord"] <= free["cord"]
