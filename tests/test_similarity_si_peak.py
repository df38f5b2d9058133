"""``registration_similarity(..., si_peak=False)``: the S-I peak (two extra NMI evaluations) is
computed only when asked -- only the ``register`` kind judges ``similarity_si_peak`` -- and the
other figures do not change."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinereg.io.image import load_image
from spinereg.metrics.run_scores import cord_region
from spinereg.metrics.similarity import registration_similarity


def test_si_peak_only_when_asked(data_root: Path):
    t1 = data_root / "sct_testing_data" / "t1"
    t2 = data_root / "sct_testing_data" / "t2"
    fixed = load_image(t2 / "t2.nii.gz", ndim=3)
    moving = load_image(t1 / "t1w.nii.gz", ndim=3)
    region = cord_region(load_image(t2 / "t2_seg-manual.nii.gz", ndim=3))
    asked = registration_similarity(fixed, moving, None, region)
    assert asked.si_peak is not None and np.isfinite(asked.si_peak)  # both images resolve S-I
    assert "similarity_si_peak" in asked.as_dict()
    skipped = registration_similarity(fixed, moving, None, region, si_peak=False)
    assert skipped.si_peak is None and "similarity_si_peak" not in skipped.as_dict()
    for f in ("before", "after", "shift_gain", "coverage", "n_voxels"):
        assert getattr(skipped, f) == getattr(asked, f), f
