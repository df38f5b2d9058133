"""``sdc topup`` (reverse PE) over the whole subject, not only the cord.

Before session 42 the solver's fine levels ran away where the subject ends along PE: the field
climbed at slopes over 1 into the background (blip-down's Jacobian ``1 - s'`` through zero) and
dragged 1-2 % of the subject with it, 2-10 voxels deep. EPI phantom seeds 0-4, shift error against
the analytic ``vsm_true`` in the subject (the undistorted EPI above 20 % of its 99th percentile),
99th percentile: 1.37/4.87/0.44/4.56/3.45 voxels (max 17-25; the estimated field's 99th percentile
6.2 on seed 1 against a true 1.8) while the in-cord RMS met its claim. The model's Jacobians now
take slopes up to ``topup.MAX_SHIFT_SLOPE`` (0.7): 0.32/0.40/0.36/0.32/0.83 (max 0.65-2.1), in-cord
RMS equal or lower; held out (seeds 5-9, run once): 1.67/0.32/7.77/5.45/0.79 -> 0.41/0.30/0.54/0.38/
0.33.

Seed 4 stayed 0.83 (max 2.1): in its end slices 14-19 blip-up's subject reaches the image border
(the end row holds 0.11-0.27 of the image's 99th percentile: signal shifted out of the field of
view), and the model sampled beyond the FOV as the edge row's value; the field there was 1-2 voxels
off, 20 voxels deep (slices 14-19 p99 0.76-1.28). Those samples are now left out of the cost
(``topup.fov_cut_ends``) and the finest level takes 30 iterations: seeds 0-4 p99 0.282/0.315/0.318/
0.283/0.328 (max 0.59-0.71), held out 5-9 0.338/0.267/0.491/0.338/0.289. Asserted on seeds 1, 3 and
4 at the figure plus about 7 %, and on real images whose subject fills the FOV along PE, cropped,
moved both ways by a known field that carries signal out of the cropped FOV."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from spinereg.epi.topup import correct_reverse_pe
from spinereg.phantom.epi import make_epi_phantom

#: seed: (99th percentile, median of the subject-wide shift error, voxels; true 99th percentile of |shift|)
MEASURED = {1: (0.315, 0.0533, 1.83), 3: (0.283, 0.0397, 1.80), 4: (0.328, 0.0498, 1.83)}


@pytest.mark.parametrize("seed", sorted(MEASURED))
def test_field_is_right_over_the_whole_subject(seed):
    p99_claim, median_claim, true_p99 = MEASURED[seed]
    ph = make_epi_phantom(n_volumes=2, seed=seed)
    res = correct_reverse_pe(ph.blip_up, ph.blip_down, pe="j", readout_s=0.03)
    u = ph.epi_undistorted.data
    subject = u > 0.2 * np.percentile(u, 99)
    err = np.abs(res.vsm.data - ph.vsm_true)[subject]
    # was 4.87 (seed 1), 4.56 (seed 3), 3.45 then 0.83 (seed 4, the image border)
    assert np.percentile(err, 99) <= p99_claim * 1.07, np.percentile(err, 99)
    assert np.median(err) <= median_claim * 1.1, np.median(err)
    # the field's own spread in the subject is the truth's (was 6.2 / 6.0 voxels against 1.8)
    assert np.percentile(np.abs(res.vsm.data[subject]), 99) == pytest.approx(true_p99, abs=0.15)
    assert np.percentile(np.abs(ph.vsm_true[subject]), 99) == pytest.approx(true_p99, abs=0.01)


def _splat_cut(u: np.ndarray, vsm: np.ndarray, axis: int) -> np.ndarray:
    """``u`` distorted by ``vsm`` along ``axis``: each voxel cut in 8 pieces along PE, each piece
    added where it lands, pieces landing outside the field of view lost (as the acquisition)."""
    up = 8
    zoom = [up if a == axis else 1 for a in range(3)]
    fine = ndimage.zoom(u, zoom, order=1) / up
    idx = np.indices(fine.shape)
    pos = np.round((idx[axis] + 0.5) / up - 0.5 + ndimage.zoom(vsm, zoom, order=1)).astype(int)
    keep = (pos >= 0) & (pos < u.shape[axis])
    coords = tuple(idx[a][keep] if a != axis else pos[keep] for a in range(3))
    out = np.zeros_like(u)
    np.add.at(out, coords, fine[keep])
    return out


@pytest.mark.parametrize(("name", "crop", "p99", "rms"), [("dmri", 8, 1.458, 0.363), ("fmri", 12, 2.744, 0.570)])
def test_subject_cut_by_the_fov_along_pe(sct_data, tmp_path, name, crop, p99, rms):
    """SCT dmri b0 (40x42x5) and fmri volume 0 (68x68x6) fill their FOV along j; a 3-voxel Gaussian
    bump (sigma a fifth of the readout width) centred near the top end moves them both ways (signal
    leaving the grid lost), with their own noise (dmri: the corner's SD; fmri: SD of volume 0 -
    volume 1 over sqrt 2), and the top ``crop`` rows are cut off (the FOV's edge: the end row holds
    0.60-1.42 of the 99th percentile, true shift there up to 2.7-2.9 voxels). Shift error in the
    subject (the cropped image above 20 % of its 99th percentile), 99th percentile / RMS: dmri
    2.262 / 0.807 (max 16.6) -> 1.458 / 0.363 (max 3.1), fmri 4.259 / 0.854 (max 7.6) -> 2.744 / 0.570
    (max 4.0)."""
    if name == "dmri":
        img = nib.load(str(sct_data / "dmri" / "dmri_T0000.nii.gz"))
        u = img.get_fdata()
        sigma = float(np.std(u[:3, :3]))
        centre = 0.7
    else:
        img = nib.load(str(sct_data / "fmri" / "fmri.nii.gz"))
        f = img.get_fdata()
        u = f[..., 0]
        sigma = float(np.std(f[..., 0] - f[..., 1]) / np.sqrt(2))
        centre = 0.75
    nx, ny = u.shape[:2]
    xx, yy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    bump = 3.0 * np.exp(-((xx - nx / 2) ** 2 + (yy - centre * ny) ** 2) / (2 * (nx / 5) ** 2))
    vsm = np.repeat(bump[..., None], u.shape[2], 2)
    rng = np.random.default_rng(0)
    d1 = np.abs(_splat_cut(u, vsm, 1) + rng.normal(0, sigma, u.shape))
    d2 = np.abs(_splat_cut(u, -vsm, 1) + rng.normal(0, sigma, u.shape))
    keep = slice(0, ny - crop)
    u, vsm, d1, d2 = u[:, keep], vsm[:, keep], d1[:, keep], d2[:, keep]
    assert d1[:, -1].max() > 0.5 * np.percentile(d1, 99)  # the subject reaches the FOV's edge
    paths = []
    for tag, d in (("up", d1), ("down", d2)):
        paths.append(tmp_path / f"{tag}.nii.gz")
        nib.save(nib.Nifti1Image(d.astype(np.float32), img.affine), str(paths[-1]))
    res = correct_reverse_pe(paths[0], paths[1], pe="j", readout_s=0.03)
    subject = u > 0.2 * np.percentile(u, 99)
    err = np.abs(res.vsm.data - vsm)[subject]
    assert np.percentile(err, 99) <= p99 * 1.07, np.percentile(err, 99)
    assert np.sqrt(np.mean(err ** 2)) <= rms * 1.07, np.sqrt(np.mean(err ** 2))
