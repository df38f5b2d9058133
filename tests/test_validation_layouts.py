"""Both PAM50 layouts: the mirror (no PAM50_t1/t2/t2s) and the full release (stand-ins present).

The registration, QC and warp-template code paths that use a real template image (full release)
and those that synthesise one (mirror) both run here, whatever the reference copy holds. The
registration is scored on the independent phantom with its *tissue* contrast (the stand-in
template image comes from PAM50_small_t2, which the phantom's ``average`` source would share).
Measured (test variant, tissue T2, seeds 0/1/2): 0.68/0.80/0.38 mm mean, 0.97/2.20/0.82 mm p95
with either layout (session 36; the claims were 0.76/0.89/0.44, 1.07/2.20/0.89, asserted with
+0.1 / +0.25 mm, which had let them go stale; then +0.05 / +0.1; session 41 re-measured
0.683/0.795/0.381, 0.970/2.200/0.822 on both layouts: now +0.03 / +0.08) (the S-I refinement is rejected on both: the template images correlate
negatively with the phantom's T2 vertebral pattern, bright discs; see docs/validation.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.errors import DataNotFoundError
from spinereg.io.registry import verify
from spinereg.io.template import load_template
from spinereg.phantom.independent import make_independent_subject
from spinereg.register.template import _template_intensity, register_to_template

CLAIMS = {0: (0.68, 0.97), 1: (0.80, 2.20), 2: (0.38, 0.82)}
MARGIN = (0.03, 0.08)  # mean, p95 mm; (0.05, 0.1) before session 41


def test_layouts_have_and_lack_the_intensity_templates(pam50_full, pam50_mirror):
    full, mirror = load_template(pam50_full), load_template(pam50_mirror)
    assert full.name == mirror.name == "PAM50"
    for role in ("t1", "t2", "t2s"):
        assert full.has(role) and full.path(role).is_file()
        assert not mirror.has(role)
        with pytest.raises(DataNotFoundError, match=f"'{role}' file .* is missing"):
            mirror.path(role)
    assert set(full.roles) - set(mirror.roles) == {"t1", "t2", "t2s"}
    # the registry's manifest accepts both: intensity templates are listed as unhashed
    rep_full, rep_mirror = verify("PAM50", root=pam50_full), verify("PAM50", root=pam50_mirror)
    assert rep_full.ok and rep_mirror.ok
    assert sorted(rep_full.unhashed) == ["template/PAM50_t1.nii.gz", "template/PAM50_t2.nii.gz",
                                         "template/PAM50_t2s.nii.gz"]
    assert rep_full.absent_unhashed == [] and "not in this copy" not in rep_full.summary()
    assert rep_mirror.absent_unhashed == sorted(rep_full.unhashed)
    assert rep_mirror.summary().endswith("not in this copy (unhashed, optional): PAM50_t1.nii.gz, "
                                         "PAM50_t2.nii.gz, PAM50_t2s.nii.gz")


def test_template_image_comes_from_the_file_or_the_tissue_maps(pam50_full, pam50_mirror):
    from spinereg.io.image import load_image

    full, mirror = load_template(pam50_full), load_template(pam50_mirror)
    tcord = load_image(full.path("cord"), ndim=3, check_finite=False)
    region = tcord.grid.bounding_subgrid(np.array([[0.0, -46.0, -150.0], [0.0, -46.0, -120.0]]), 10.0)
    real = _template_intensity(full, "t2", tcord, region)
    synth = _template_intensity(mirror, "t2", tcord, region)
    from spinereg.io.resample import slice_like

    assert np.array_equal(real.data, slice_like(load_image(full.path("t2"), ndim=3, check_finite=False), region))
    assert not np.allclose(real.data, synth.data)


@pytest.mark.parametrize("seed", sorted(CLAIMS))
def test_registration_with_both_layouts_at_the_claim(pam50_full, pam50_mirror, seed):
    ph = make_independent_subject("test", seed=seed, source="tissue")
    reports = []
    for root in (pam50_full, pam50_mirror):
        reg = register_to_template(ph.image, ph.seg, labels=ph.labels("body"), template=root, contrast="t2")
        err = ph.error(reg.template2anat)
        assert err["mean_mm"] <= CLAIMS[seed][0] + MARGIN[0] and err["p95_mm"] <= CLAIMS[seed][1] + MARGIN[1], err
        reports.append(reg.si_report)
    # the two layouts fed different template images to the S-I refinement
    assert reports[0]["correlation_before"] != reports[1]["correlation_before"]


def test_warp_template_writes_the_intensity_templates_when_present(pam50_full, pam50_mirror, sct_data, tmp_path):
    from spinereg.register.warp_template import warp_template
    from spinereg.transforms import AffineTransform

    dest = sct_data / "t2" / "t2.nii.gz"
    # SCT's sample warp was made with PAM50_small's older coordinates: the current PAM50 is reached
    # through the shift between them (as tests/test_warp_template.py does); without it nothing of
    # the template lands on t2 (all-zero files, refused since session 36)
    from spinereg.phantom.tissue_contrast import SMALL_TO_PAM50_MM

    shift = np.eye(4)
    shift[:3, 3] = SMALL_TO_PAM50_MM
    warps = [AffineTransform(shift), sct_data / "t2" / "warp_template2anat.nii.gz"]
    for root, present in ((pam50_full, True), (pam50_mirror, False)):
        res = warp_template(dest, warps, tmp_path / root.parent.name, template=root)
        skipped = {s.file for s in res.skipped}
        written = {w.file: w for w in res.written}
        for name in ("PAM50_t1.nii.gz", "PAM50_t2.nii.gz", "PAM50_t2s.nii.gz"):
            assert (name in written) is present and (name in skipped) is not present
        # the cord lands on t2: measured 4064 voxels with either layout (asserted > 1000 before session 41)
        assert 3950 <= written["PAM50_cord.nii.gz"].nonzero <= 4180, written["PAM50_cord.nii.gz"]
