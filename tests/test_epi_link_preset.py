"""The default link when only the anatomical image has a segmentation (T2w onto an EPI or DWI
mean, a chain's EPI link): ``multimodal_epi`` (slice-wise translation by correlation), and since
session 49 ``multimodal_dwi`` (the same by mutual information) when the destination's file name
marks it diffusion-weighted.

Scored against what the link is not given, on sct_testing_data: mean in-plane distance (mm)
between the slice centres of t2's manual segmentation carried onto the target and a reference.

| target, reference | headers | correlation | mutual information |
|---|---|---|---|
| DWI mean, SCT's OptiC centerline (shipped with the data) | 2.82 | 5.37 | **1.37** |
| fMRI mean, its own automatic segmentation | 1.98 | 1.05 | 0.70 |

A DWI mean shows the cord bright in dark CSF; correlation moved t2's cord 5.4 mm off the DWI's
centerline, further than the headers, before session 49. On fMRI the references disagree: the
mean's own segmentation prefers mutual information, but the ANTs rigid reference of
tests/test_chain.py::test_epi_chain_with_derived_mask prefers correlation (Dice 0.967 against
0.941), and on the EPI chain phantom (T2*w-like EPI, seeds 0-7, both subjects, exact field map)
the EPI -> T2*w link's cord error is 0.00-0.02 mm lower with correlation (0.17-0.94 mm; session
script), seed 0's measured-field chain 0.81 / 1.14 mm against 0.84 / 1.22 with mutual information.
So correlation stays the EPI default and only diffusion-weighted names change. One real subject:
the DWI figures are asserted with 0.05 mm.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.io import load_image
from spinereg.register.multimodal import default_preset, register_multimodal
from spinereg.transforms import apply_transforms

CC = "step=1,type=im,algo=slicereg,metric=CC"


def _centres(mask: np.ndarray, zooms, nmin: int) -> dict[int, np.ndarray]:
    return {k: np.array(ndimage.center_of_mass(mask[:, :, k])) * np.asarray(zooms[:2])
            for k in range(mask.shape[2]) if mask[:, :, k].sum() >= nmin}


def _distance(sct_data, target, ref: np.ndarray, **kw) -> tuple[float, list[str]]:
    t2seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    reg = register_multimodal(sct_data / "t2" / "t2.nii.gz", target, iseg=t2seg, **kw)
    carried = apply_transforms(t2seg, reg.dest.grid, [reg.src2dest], "linear").data > 0.5
    z = reg.dest.grid.zooms
    a, b = _centres(carried, z, 4), _centres(ref, z, 1)
    common = sorted(set(a) & set(b))
    assert len(common) >= 3
    return float(np.mean([np.linalg.norm(a[k] - b[k]) for k in common])), [str(s) for s in reg.steps]


@pytest.mark.realdata
def test_default_link_finds_the_dwi_cord(sct_data):
    dwi = sct_data / "dmri" / "dwi_mean.nii.gz"
    optic = load_image(sct_data / "dmri" / "dwi_mean_centerline-optic.nii.gz").data > 0
    default, steps = _distance(sct_data, dwi, optic)
    assert len(steps) == 1 and "metric=MI" in steps[0] and "slicereg" in steps[0], steps
    assert default <= 1.37 + 0.05, default  # measured 1.367
    headers, _ = _distance(sct_data, dwi, optic, identity=True)
    correlation, _ = _distance(sct_data, dwi, optic, param=CC)  # the default before session 49
    assert headers == pytest.approx(2.82, abs=0.05) and correlation >= 5.37 - 0.05, (headers, correlation)


@pytest.mark.realdata
def test_dwi_link_with_its_own_segmentation(sct_data):
    """With the DWI mean's automatic segmentation (``register --dseg auto``, ``chain --seg auto``) the
    link is the segmentation preset's: 0.42 mm from OptiC, where the automatic segmentation itself
    lies 0.44 mm from it (slice centres), against 1.37 mm for the image-only default."""
    from spinereg.segment import segment

    dwi = load_image(sct_data / "dmri" / "dwi_mean.nii.gz")
    optic = load_image(sct_data / "dmri" / "dwi_mean_centerline-optic.nii.gz").data > 0
    own = segment(dwi).seg
    d, steps = _distance(sct_data, dwi, optic, dseg=own)
    assert "imseg" in steps[0] and d <= 0.42 + 0.05, (d, steps)  # measured 0.42


def test_default_preset_by_destination():
    assert default_preset(True, False, "sub-01_dwi.nii.gz") == "multimodal_dwi"
    assert default_preset(True, False, "/data/dmri/dmri_mean.nii.gz") == "multimodal_dwi"
    assert default_preset(True, False, "sub-01_bold.nii.gz") == "multimodal_epi"
    assert default_preset(True, False, None) == "multimodal_epi"
    assert default_preset(True, True, "sub-01_dwi.nii.gz") == "multimodal_spinereg_imseg"
    assert default_preset(False, False, "sub-01_dwi.nii.gz") == "multimodal_spinereg_im"
