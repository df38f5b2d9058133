"""``spinereg sdc topup`` given two images that are not a blip-up/blip-down pair, without sidecars.

A same-PE partner of another contrast (SCT's dmri b0 and a b=750 volume) was 'corrected' by a
7.68-voxel field (99th percentile in the subject), exit 0, no word. Distortion along PE with
Jacobian modulation only moves signal along each PE line, so a real pair holds the same line
sums; ``epi.topup.line_sum_mismatch`` measures how far they differ (in <name>_sdc.json
``pair_check``) and a mismatch over 0.035 is warned of. Truth: pairs built outside the method
(the EPI phantom's analytic blips, partners painted with another contrast through the phantom's
analytic field, real images moved by a known field)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import spinereg.phantom.epi as epi_phantom
from spinereg.cli.main import main
from spinereg.epi.distortion import pe_axis
from spinereg.epi.topup import MAX_LINE_SUM_MISMATCH, line_sum_mismatch
from spinereg.phantom.epi import make_epi_phantom

DWI_LIKE = (0.15, 0.08, 0.30, 0.05, 0.12, 0.60)  # CSF dark, cord bright: a b ~ 750 contrast


def _same_pe_partner(ph, contrast: str, seed: int) -> np.ndarray:
    """The phantom painted with ``contrast`` and distorted with blip-up's own PE (analytic field:
    find r with r + vsm(r) = y, intensity over the Jacobian), Rician noise as the phantom's."""
    g = ph.epi.grid
    axis, sign = pe_axis(ph.pe)
    pe_vec = g.affine[:3, axis]
    y = g.world_coords()
    r = y.copy()

    def vsm(p):
        return ph.field_at(p) * ph.readout_s * sign

    for _ in range(30):
        r = y - vsm(r)[:, None] * pe_vec
    dv = (vsm(r + 0.01 * pe_vec) - vsm(r - 0.01 * pe_vec)) / 0.02
    v = (ph.signal_at(r, contrast) / np.clip(1 + dv, 0.05, None)).reshape(g.shape)
    rng = np.random.default_rng(100 + seed)
    return np.sqrt((v + rng.normal(0, 0.01, v.shape)) ** 2 + rng.normal(0, 0.01, v.shape) ** 2)


@pytest.mark.parametrize("seed", range(5))
def test_phantom_pairs_and_same_pe_partners_are_told_apart(seed, monkeypatch):
    """Seeds 0-4 measured: right pairs 0.0024, same-PE partners T2*w 0.052, T2w 0.048,
    diffusion-like 0.050."""
    monkeypatch.setitem(epi_phantom.CONTRASTS, "dwi", DWI_LIKE)
    ph = make_epi_phantom(n_volumes=2, seed=seed)
    axis = pe_axis(ph.pe)[0]
    up = np.asarray(ph.blip_up.data, float)
    right = line_sum_mismatch(up, np.asarray(ph.blip_down.data, float), axis)
    assert right == pytest.approx(0.0024, abs=0.001)
    for contrast, measured in (("t2s", 0.052), ("t2w", 0.048), ("dwi", 0.050)):
        got = line_sum_mismatch(up, _same_pe_partner(ph, contrast, seed), axis)
        assert got == pytest.approx(measured, abs=0.004), (contrast, got)
        assert got > MAX_LINE_SUM_MISMATCH


def test_real_b0_and_diffusion_weighted_volume_are_warned_of(sct_data, tmp_path, capsys):
    """SCT dmri: the b0 and the first b=750 volume (same PE, no sidecars) were 'corrected' with
    'max shift ...' and a 7.68-voxel field in the subject, exit 0, no word. Measured mismatch
    0.1694 (b=750 volumes 1-6: 0.17-0.18)."""
    d = sct_data / "dmri"
    out = tmp_path / "o"
    rc = main(["sdc", "topup", "-i", str(d / "dmri_T0000.nii.gz"), "--reverse", str(d / "dmri_T0001.nii.gz"),
               "--pe", "j", "--readout-time", "0.03", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "do not hold the same signal along the phase-encode lines" in err, err
    check = json.loads((out / "epi_sdc.json").read_text())["pair_check"]
    assert check["line_sum_mismatch"] == pytest.approx(0.1694, abs=0.005)


def test_phantom_pair_stays_unwarned(tmp_path, capsys):
    """The EPI phantom's own blip-up/blip-down pair (seed 0, no sidecars given): no warning,
    mismatch 0.0024 in the JSON."""
    ph = make_epi_phantom(n_volumes=1, seed=0)
    for name, img in (("up", ph.blip_up), ("down", ph.blip_down)):
        nib.save(nib.Nifti1Image(np.asarray(img.data, np.float32), img.affine), str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "o"
    rc = main(["sdc", "topup", "-i", str(tmp_path / "up.nii.gz"), "--reverse", str(tmp_path / "down.nii.gz"),
               "--pe", "j", "--readout-time", "0.03", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "warning" not in err.lower(), err
    check = json.loads((out / "epi_sdc.json").read_text())["pair_check"]
    assert check["line_sum_mismatch"] == pytest.approx(0.0024, abs=0.001)


def _splat(u: np.ndarray, vsm: np.ndarray, axis: int) -> np.ndarray:
    """``u`` distorted by ``vsm`` along ``axis``: each voxel cut in 8 pieces along PE, each piece
    added where it lands (signal moved along the line, as the acquisition does)."""
    up = 8
    zoom = [up if a == axis else 1 for a in range(3)]
    from scipy import ndimage

    fine = ndimage.zoom(u, zoom, order=1) / up
    idx = np.indices(fine.shape)
    pos = (idx[axis] + 0.5) / up - 0.5 + ndimage.zoom(vsm, zoom, order=1)
    coords = [idx[a] if a != axis else np.clip(np.round(pos).astype(int), 0, u.shape[axis] - 1) for a in range(3)]
    out = np.zeros_like(u)
    np.add.at(out, tuple(coords), fine)
    return out


@pytest.mark.parametrize(("name", "measured"), [("dmri", 0.0247), ("fmri", 0.0123)])
def test_real_images_moved_both_ways_stay_under_the_limit(sct_data, name, measured):
    """No real reverse-PE pair in the data: real images (dmri b0; fmri volume 0) distorted both
    ways by a known 3-voxel bump along j, each with its own noise (dmri: the corner's SD, 55.6;
    fmri: the SD of volume 0 - volume 1 over sqrt 2, 59.9), stay under 0.035 (0.025, 0.012)."""
    if name == "dmri":
        u = nib.load(str(sct_data / "dmri" / "dmri_T0000.nii.gz")).get_fdata()
        sigma = float(np.std(u[:3, :3]))
    else:
        f = nib.load(str(sct_data / "fmri" / "fmri.nii.gz")).get_fdata()
        u = f[..., 0]
        sigma = float(np.std(f[..., 0] - f[..., 1]) / np.sqrt(2))
    xx, yy = np.meshgrid(np.arange(u.shape[0]), np.arange(u.shape[1]), indexing="ij")
    bump = 3.0 * np.exp(-((xx - u.shape[0] / 2) ** 2 + (yy - u.shape[1] / 2) ** 2) / (2 * (u.shape[0] / 5) ** 2))
    vsm = np.repeat(bump[..., None], u.shape[2], 2)
    rng = np.random.default_rng(0)
    d1 = np.abs(_splat(u, vsm, 1) + rng.normal(0, sigma, u.shape))
    d2 = np.abs(_splat(u, -vsm, 1) + rng.normal(0, sigma, u.shape))
    got = line_sum_mismatch(d1, d2, 1)
    assert got == pytest.approx(measured, abs=0.004)
    assert got < MAX_LINE_SUM_MISMATCH
