"""Rigid vertebrae in deformable registration, on the articulated-spine phantom (PAM50 C3-C5,
1 mm, vertebrae moved rigidly one by one; truth exact).

Unconstrained: ``step=1,type=im,algo=syn,deformation=1x1x1,iter=10,smooth=1`` (ANTs SyN, the
deformable algorithm of SCT's defaults). Constrained: the same step with ``rigidity=1`` after
``step=1,type=im,algo=polyrigid``. Measured (seeds 0 and 1 MR-like, 0 CT-like; MR seed 6, run
first in session 31; CT seed 11, the largest bone error of the fresh seeds 8-11 run first in
session 32), mean error in the exactly rigid bone of C3-C5, unconstrained ->
constrained: 1.40 -> 0.090, 1.07 -> 0.093, 1.06 -> 0.164, 0.95 -> 0.090 mm; cord 0.89 -> 0.30,
0.50 -> 0.33, 1.94 -> 0.59, 0.51 -> 0.38 mm; mean |J^T J - I| in bone 0.24 -> 0.010, 0.22 -> 0.011,
0.53 -> 0.009, 0.20 -> 0.014; CT 11: bone 1.36 -> 0.190, cord 1.49 -> 0.83 mm, 0.45 -> 0.009.
Before session 31 the SyN step after polyrigid saw a rim of zeros where polyrigid had moved
content out of the grid (``register.engine.moved_out_filled``): bone
0.12 / 0.10 / 0.17 / 0.11, cord 0.63 / 0.35 / 0.58 / 0.65 mm, MR seed 6's cord worse than
unconstrained. MR seed 6 is not a case the issue's bone target is for (unconstrained under 1 mm
in bone): it is asserted for the cord. Timings: bench/constraints.py (tests never assert them).
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


#: seed, contrast, the constrained pipeline's bone and cord error (mm) and mean |J^T J - I| in bone as
#: measured; asserted with a margin
CASES = [(0, "mr", 0.090, 0.299, 0.010), (1, "mr", 0.093, 0.330, 0.011), (0, "ct", 0.164, 0.585, 0.009),
         (6, "mr", 0.090, 0.384, 0.014), (11, "ct", 0.190, 0.833, 0.009)]


@pytest.mark.parametrize(("seed", "contrast", "bone", "cord", "rigidity"), CASES)
def test_rigid_bone_beats_unconstrained(seed, contrast, bone, cord, rigidity, pam50_dir):
    ph = make_articulated_phantom((3, 5), seed=seed, contrast=contrast, margin_mm=12.0)
    free = _scores(ph, PIPELINES["unconstrained"])
    rigid = _scores(ph, PIPELINES["constrained"])
    if seed != 6:
        assert free["bone"] >= 1.0  # the case the constraint is for: unconstrained >= 1 mm in bone
    assert rigid["bone"] <= bone + 0.02  # issue target 0.3
    assert rigid["rigid"] <= rigidity + 0.002  # issue target 0.02 (<= 0.016 before session 36)
    assert rigid["cord"] <= cord + 0.03
    assert rigid["cord"] <= free["cord"] - 0.1
