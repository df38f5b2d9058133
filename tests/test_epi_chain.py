"""EPI phantom through the full chain: field-map SDC -> EPI -> T2*w -> T2w -> PAM50 vs the truth.

Measured (seed 0, 2 cores; phantom ~3-8 s, chain ~4 s): inside the true cord of the distorted EPI
the composed template mapping (SDC + chain) is 0.77 mm mean / 1.20 mm p95 from the truth; without
the SDC link 1.04 / 1.88 mm (same chain) and 1.12 / 1.92 mm (EPI link re-registered on the
distorted EPI). Per link (cord): SDC 0.00 mm (exact field), EPI -> T2*w 0.40, T2*w -> T2w 0.81,
T2w -> template 0.48 (mean; session 32: 0.40, 1.00, 0.49); the T2*w -> T2w link and the anatomical
registration dominate.

The chain runs with its defaults: the T2*w has a cord segmentation, so the landmarks carried
into it (as world points, never snapped to its 5 mm slices) drive a direct template registration
of the T2*w, and the EPI link (slicereg in a mask derived from the T2*w segmentation) composes
onto it. Measured with the defaults: seed 0 0.64 / 1.11 mm, seed 1 0.96 / 1.68, seed 2 0.44 / 1.15
(mean / p95). Snapping the carried labels to slice centres, as an earlier version did, left
1.07 mm; ``LINK`` (a rigid MI image link) is kept for the per-link analysis.

Those figures use the exact field on the EPI grid and the older template_subject T2w phantom
(whose contrast is close to the solver's). With the independent T2w subject
(``make_epi_chain_phantom(subject="independent")``: its own deformation family, the real T2
average) and a measured-like field map (:func:`spinereg.phantom.epi_realism.degrade_fieldmap`:
2.5 x 2.5 x 4 mm, subject 1.9 mm / 2.2 degrees away, 6 Hz noise, 2 mm smoothing), seeds 0/1/2:
0.81/0.94/0.47 mm mean, 1.14/1.34/0.87 mm p95; with the exact field 0.61/0.84/0.23 and
0.92/1.18/0.43 (``INDEPENDENT_CLAIMS``; re-measured in session 36: first measured 0.79/0.93/0.47,
1.12/1.33/0.87 and 0.58/0.83/0.23, 0.90/1.15/0.44, and asserted with +0.08 / +0.15 mm, which hid
seed 0's drift of +0.02-0.03 mm; now +0.03 / +0.05); the T2w -> template link alone 0.41/0.48/0.31 mm. With
the old T2w phantom and the measured-like field map: 0.82/1.13/0.65, 1.26/1.88/1.53.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from spinereg.epi.distortion import invert_shift, pe_axis
from spinereg.epi.fieldmap import correct_fieldmap
from spinereg.phantom.epi_chain import make_epi_chain_phantom
from spinereg.phantom.template_subject import mapping_error
from spinereg.register.chain import register_chain
from spinereg.register.multimodal import register_multimodal
from spinereg.transforms.base import Chain, Transform
from spinereg.transforms.displacement import DisplacementField

LINK = "step=1,type=im,algo=rigid,metric=MI"


@pytest.fixture(scope="module")
def phantom(data_root):
    return make_epi_chain_phantom(seed=0)


@pytest.fixture(scope="module")
def chained(phantom):
    sdc = correct_fieldmap(phantom.epi, phantom.fieldmap_hz, pe=phantom.pe, readout_s=phantom.readout_s)
    res = register_chain([sdc.corrected, phantom.t2s, phantom.t2w], [None, phantom.t2s_seg, phantom.t2w_seg],
                         labels=phantom.labels, template="PAM50")
    return sdc, res


def _errors(estimate: Transform, truth: DisplacementField, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask > 0)
    x = truth.grid.voxel_to_world(idx.astype(float))
    return np.linalg.norm(estimate.map(x) - (x + truth.data[tuple(idx.T)]), axis=1)


def _distorted2undistorted(vsm: np.ndarray, grid, pe: str) -> DisplacementField:
    """Pull on the EPI grid: distorted EPI points -> undistorted points (the SDC field's inverse,
    solved along PE exactly like the phantom's forward model)."""
    axis, _ = pe_axis(pe)
    w = invert_shift(np.asarray(vsm, float), axis)
    return DisplacementField(grid, (w[..., None] * grid.affine[:3, axis]).astype(np.float32))


def test_phantom_truth_is_consistent(phantom):
    p = phantom
    assert p.epi.shape == (64, 64, 10) and np.allclose(p.epi.grid.zooms, (1, 1, 5))
    assert p.t2s.shape == (128, 128, 10) and np.allclose(p.t2s.grid.zooms, (0.5, 0.5, 5))
    assert "".join(p.epi.grid.axcodes) == "LAS" and p.pe == "j" and p.readout_s == 0.03
    for key in ("PhaseEncodingDirection", "TotalReadoutTime", "EchoTime", "SliceTiming",
                "MultibandAccelerationFactor"):
        assert key in p.sidecar
    # ~2 voxels at most, > 1 voxel inside the cord, no fold-over
    assert 2.0 <= p.params["max_abs_vsm_vox"] <= 2.2
    assert p.params["max_abs_vsm_cord_vox"] > 1.4 and p.params["min_jacobian"] > 0.7
    assert p.t2s_seg.data.sum() > 2000 and p.epi_cord.data.sum() > 500
    # the stored truth is the analytic composition EPI -> T2*w -> T2w -> template
    g = p.epi.grid
    idx = np.argwhere(p.epi_undistorted_cord.data > 0)
    x = g.voxel_to_world(idx.astype(float))
    exact = p.t2w_to_template(p.t2s_to_t2w.map(p.epi_to_t2s.map(x)))
    assert np.abs(p.true_template2epi_undistorted.map(x) - exact).max() < 1e-4  # measured 2.0e-5 (float32 field)
    # ... and for the distorted voxels it goes through the undistorted point along PE
    xd = g.voxel_to_world(np.argwhere(p.epi_cord.data > 0).astype(float))
    und = _distorted2undistorted(p.vsm, g, p.pe).map(xd)
    exact_d = p.t2w_to_template(p.t2s_to_t2w.map(p.epi_to_t2s.map(und)))
    assert np.abs(p.true_template2epi.map(xd) - exact_d).max() < 1e-4  # measured 2.1e-5
    # the rigid offsets are the requested ~1 mm / 1 deg (translation part at the cord)
    for t in (p.t2s_to_t2w, p.epi_to_t2s):
        assert 0.7 < np.linalg.norm(t.map(x) - x, axis=1).mean() < 1.6


def test_fieldmap_correction_restores_the_epi(phantom, chained):
    sdc, _ = chained
    cord = phantom.epi_undistorted_cord.data > 0
    ref = phantom.epi_undistorted.data[cord]
    after = np.abs(sdc.corrected.data[cord] - ref).mean() / ref.mean()
    before = np.abs(phantom.epi.data[cord] - ref).mean() / ref.mean()
    # noise (3 % of CSF) stays; the distortion error goes
    assert after < 0.046 and before > after + 0.04, (before, after)  # measured 0.0433 / 0.125


def test_epi_through_the_chain_within_1mm(phantom, chained):
    """The issue's target: EPI -> T2*w -> T2w -> template within 1 mm of the truth in the cord."""
    p = phantom
    sdc, res = chained
    assert res.modes == ["composed", "direct", "anatomical"]
    g = p.epi.grid
    cord = p.epi_cord.data
    # SDC link (pull on the EPI grid: undistorted -> distorted) inverted along PE, then the chain
    undistort = _distorted2undistorted(sdc.vsm.data, g, sdc.pe)
    full = Chain([res.template2image(0), undistort])
    err = _errors(full, p.true_template2epi, cord)
    mean, p95 = float(err.mean()), float(np.percentile(err, 95))
    print(f"EPI -> template (with SDC): mean {mean:.2f} mm, p95 {p95:.2f} mm, n={err.size}")
    assert mean <= 0.64 + 0.03 and p95 <= 1.12 + 0.06  # measured 0.64 / 1.12 (+0.08 / +0.15 before session 36)

    # the distortion correction matters: the same chain without the SDC link ...
    no_sdc = _errors(res.template2image(0), p.true_template2epi, cord)
    # ... and a chain whose EPI link is registered on the distorted EPI
    reg = register_multimodal(p.t2s, p.epi, param=LINK)
    no_sdc_reg = _errors(Chain([res.template2image(1), reg.src2dest]), p.true_template2epi, cord)
    print(f"without SDC: mean {no_sdc.mean():.2f} / p95 {np.percentile(no_sdc, 95):.2f} mm (same chain), "
          f"{no_sdc_reg.mean():.2f} / {np.percentile(no_sdc_reg, 95):.2f} mm (re-registered)")
    for e in (no_sdc, no_sdc_reg):
        assert e.mean() > mean + 0.2 and np.percentile(e, 95) > p95 + 0.5


def test_per_link_errors(phantom, chained):
    """Where the error comes from (cord voxels of each link's own image)."""
    p = phantom
    sdc, res = chained
    g = p.epi.grid
    xd = g.voxel_to_world(np.argwhere(p.epi_cord.data > 0).astype(float))
    true_und = _distorted2undistorted(p.vsm, g, p.pe).map(xd)
    est_und = _distorted2undistorted(sdc.vsm.data, g, sdc.pe).map(xd)
    e_sdc = np.linalg.norm(est_und - true_und, axis=1)
    e_dist = np.linalg.norm(xd - true_und, axis=1)
    xe = g.voxel_to_world(np.argwhere(p.epi_undistorted_cord.data > 0).astype(float))
    e_epi = np.linalg.norm(res.links[0].to_next.map(xe) - p.epi_to_t2s.map(xe), axis=1)
    gs = p.t2s.grid
    xs = gs.voxel_to_world(np.argwhere(p.t2s_seg.data > 0).astype(float))
    e_t2s = np.linalg.norm(res.links[1].to_next.map(xs) - p.t2s_to_t2w.map(xs), axis=1)
    e_anat = mapping_error(res.anat.template2anat, p.subject.true_subject2template, p.t2w_seg)
    print(f"per link (mean mm): distortion {e_dist.mean():.2f} (p95 {np.percentile(e_dist, 95):.2f}), "
          f"SDC residual {e_sdc.mean():.3f}, EPI->T2*w {e_epi.mean():.2f}, T2*w->T2w {e_t2s.mean():.2f}, "
          f"T2w->template {e_anat['mean_mm']:.2f}")
    assert e_sdc.max() < 1e-5  # the field is known exactly (measured 2.4e-7 mm)
    assert e_dist.mean() > 0.5 and np.percentile(e_dist, 95) > 1.2
    # the segmentation link T2*w -> T2w cannot see S-I offsets (1.0 mm here); with its own
    # segmentation the T2*w is registered to the template directly, so that link is not on the path
    # measured (session 32) 0.40 / 1.00 / 0.49 mm; again 0.402 / 1.000 / 0.492 (session 37)
    assert e_epi.mean() < 0.43 and e_t2s.mean() < 1.06 and e_anat["mean_mm"] < 0.52


#: (seed, field map) -> (mean, p95) mm with the independent T2w subject (module docstring)
INDEPENDENT_CLAIMS = {(0, "measured"): (0.81, 1.14), (1, "measured"): (0.94, 1.34), (2, "measured"): (0.47, 0.87),
                      (0, "exact"): (0.61, 0.92)}  # exact field, seeds 1, 2 (session 36): 0.84/1.18, 0.23/0.43


@functools.lru_cache(maxsize=1)
def _independent_phantom(seed: int):
    """Seed 0's phantom serves its two cases (exact and measured field map, run one after the other);
    the cases only read it."""
    return make_epi_chain_phantom(seed=seed, subject="independent")


@pytest.mark.slow
@pytest.mark.parametrize("seed,kind", sorted(INDEPENDENT_CLAIMS))
def test_chain_on_the_independent_subject_at_the_claim(data_root, seed, kind):
    from spinereg.phantom.epi_realism import degrade_fieldmap

    p = _independent_phantom(seed)
    fm = p.fieldmap_hz
    if kind == "measured":
        fm, _ = degrade_fieldmap(p.fieldmap_hz, seed=seed, body=np.ones(p.fieldmap_hz.shape, bool))
    sdc = correct_fieldmap(p.epi, fm, pe=p.pe, readout_s=p.readout_s)
    res = register_chain([sdc.corrected, p.t2s, p.t2w], [None, p.t2s_seg, p.t2w_seg], labels=p.labels,
                         template="PAM50")
    full = Chain([res.template2image(0), _distorted2undistorted(sdc.vsm.data, p.epi.grid, sdc.pe)])
    err = _errors(full, p.true_template2epi, p.epi_cord.data)
    mean_c, p95_c = INDEPENDENT_CLAIMS[(seed, kind)]
    assert err.mean() <= mean_c + 0.03 and np.percentile(err, 95) <= p95_c + 0.05
