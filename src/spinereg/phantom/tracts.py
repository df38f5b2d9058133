"""A white-matter tract phantom for extract-metric whose image does not follow MAP's linear model.

A cord cross-section at 0.1 mm (grey matter disc, white matter annulus in 8 sectors, CSF ring;
10 tracts with the values ``TRUTH``) is imaged the way a scanner and a registered atlas would
see it, not the way extract-metric's partial-volume model assumes:

* the true anatomy differs from the atlas: tract boundaries wobble (random Fourier modes of
  ``wobble_mm`` along the circumference) and the sectors are rotated a few degrees;
* values vary inside each tract (smooth multiplicative texture of ``heterogeneity``); a tract's
  true value is its mean over its true high-resolution region;
* the image is the high-resolution truth blurred by a Gaussian point-spread function (FWHM
  ``psf_fwhm_vox`` voxels), block-averaged to the voxel and given Gaussian noise;
* the atlas handed to the method is the *nominal* geometry's partial-volume fractions, moved by a
  misregistration of ``misregistration_mm`` and blurred by ``atlas_blur_vox`` voxels, as an
  atlas warped from a template is.

:func:`make_tract_phantom` writes the metric and an SCT-layout atlas folder (``info_label.txt``
with the white-matter, cord and MAP cluster labels) and returns the paths and the true values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: nominal tract values: 8 white-matter sectors, grey matter (8), CSF (9)
TRUTH = np.array([40.0, 55.0, 30.0, 60.0, 45.0, 35.0, 50.0, 65.0, 25.0, 10.0])


@dataclass
class TractPhantom:
    metric: Path
    atlas: Path
    truth: np.ndarray  # true mean value of each tract over its true region
    params: dict


def _labels(x: np.ndarray, y: np.ndarray, rot: float, wobble: list[tuple[float, int, float]]) -> np.ndarray:
    r = np.hypot(x, y)
    th = np.arctan2(y, x)
    dr = np.zeros_like(r)
    for amp, m, ph in wobble:
        dr += amp * np.cos(m * th + ph)
    rr = r - dr
    sector = (np.floor((th + rot + np.pi) / (2 * np.pi) * 8).astype(int)) % 8
    lab = np.full(r.shape, -1)
    lab[rr < 6.5] = 9
    lab[rr < 4.5] = sector[rr < 4.5]
    lab[rr < 1.8] = 8
    return lab


def make_tract_phantom(folder: str | Path, *, seed: int = 0, voxel_mm: float = 1.0, n_slices: int = 4,
                       noise: float = 0.5, psf_fwhm_vox: float = 1.2, misregistration_mm: float = 0.4,
                       atlas_blur_vox: float = 0.5, heterogeneity: float = 0.05, wobble_mm: float = 0.3,
                       rotation_deg: float = 4.0, hi_res_mm: float = 0.1, fov_mm: float = 16.0) -> TractPhantom:
    """Write the phantom into ``folder`` (``metric.nii.gz`` and ``atlas/``); see the module docstring."""
    out = Path(folder)
    (out / "atlas").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    f = int(round(voxel_mm / hi_res_mm))
    n_lo = int(round(fov_mm / voxel_mm))
    n_hi = n_lo * f
    metric = np.zeros((n_lo, n_lo, n_slices))
    weights = np.zeros((n_lo, n_lo, n_slices, TRUTH.size))
    sums, counts = np.zeros(TRUTH.size), np.zeros(TRUTH.size)
    rot = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    wobble = [(float(rng.uniform(0.5, 1.0) * wobble_mm), int(m), float(rng.uniform(0, 2 * np.pi))) for m in (2, 3, 5)]
    shift = rng.normal(size=2)
    shift *= misregistration_mm / np.linalg.norm(shift)
    sig_psf = psf_fwhm_vox * f / 2.355
    for k in range(n_slices):
        c = (n_hi - 1) / 2.0 + 3.0 * k
        x, y = np.meshgrid((np.arange(n_hi) - c) * hi_res_mm, (np.arange(n_hi) - c + 1.7) * hi_res_mm, indexing="ij")
        lab = _labels(x, y, rot, wobble)
        tex = ndimage.gaussian_filter(rng.standard_normal(x.shape), 0.5 / hi_res_mm)
        tex *= heterogeneity / max(float(tex.std()), 1e-9)
        val = np.where(lab >= 0, TRUTH[np.clip(lab, 0, None)] * (1 + tex), 0.0)
        for t in range(TRUTH.size):
            sel = lab == t
            sums[t] += val[sel].sum()
            counts[t] += sel.sum()
        img = ndimage.gaussian_filter(val, sig_psf, mode="constant")
        metric[:, :, k] = img.reshape(n_lo, f, n_lo, f).mean(axis=(1, 3))
        nominal = _labels(x - shift[0], y - shift[1], 0.0, [])
        for t in range(TRUTH.size):
            frac = (nominal == t).reshape(n_lo, f, n_lo, f).mean(axis=(1, 3))
            weights[:, :, k, t] = ndimage.gaussian_filter(frac, atlas_blur_vox) if atlas_blur_vox > 0 else frac
    metric += rng.normal(0.0, noise, metric.shape)
    aff = np.diag([voxel_mm, voxel_mm, 5.0, 1.0])
    lines = ["# Keyword=IndivLabels", "# ID, name, file"]
    for t in range(TRUTH.size):
        name = f"WM sector {t}" if t < 8 else ("GM" if t == 8 else "CSF")
        nib.save(nib.Nifti1Image(weights[..., t].astype(np.float32), aff), str(out / "atlas" / f"tract_{t:02d}.nii.gz"))
        lines.append(f"{t}, {name}, tract_{t:02d}.nii.gz")
    lines += ["", "# Keyword=CombinedLabels", "51, white matter, 0:7", "50, spinal cord, 0:8", "",
              "# Keyword=MAPLabels", "white matter, 0:7", "gray matter, 8", "CSF, 9"]
    (out / "atlas" / "info_label.txt").write_text("\n".join(lines) + "\n")
    path = out / "metric.nii.gz"
    nib.save(nib.Nifti1Image(metric.astype(np.float32), aff), str(path))
    params = {"seed": seed, "voxel_mm": voxel_mm, "noise": noise, "psf_fwhm_vox": psf_fwhm_vox,
              "misregistration_mm": misregistration_mm, "atlas_blur_vox": atlas_blur_vox,
              "heterogeneity": heterogeneity, "wobble_mm": wobble_mm, "rotation_deg": float(np.rad2deg(rot))}
    return TractPhantom(path, out / "atlas", sums / np.maximum(counts, 1), params)
