"""``spinereg analyze-lesion`` / :func:`spinereg.lesion.analyze_lesions`.

Truth from outside the method: analytic cylinder cords (straight and tilted 25 deg) with ellipsoid
lesions of known semi-axes rasterised here on a 0.5 mm grid (voxel centre inside = 1); the SCT
testing subject's fake lesion measured with numpy (voxel count, an independent polyline of the
cord's per-slice centroids); SCT's atlas warped to mt1.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.lesion import analyze_lesions, label_components

A, B, C = 1.5, 2.0, 5.0  # lesion semi-axes: across (tilt plane), A-P, along the cord (mm)
R = 4.0  # cord radius (mm)


def phantom(tilt_deg: float = 0.0, off: tuple = (0.0, 0.0, 0.0), h: float = 0.5,
            shape: tuple = (72, 32, 80), lesions: list | None = None) -> tuple[Image, Image]:
    """Cylinder cord through the origin tilted in the x-z plane, ellipsoid lesion(s) at offsets
    (across, A-P, along) from the origin in the cord's frame."""
    th = np.radians(tilt_deg)
    u = np.array([np.sin(th), 0, np.cos(th)])
    e1, e2 = np.array([np.cos(th), 0, -np.sin(th)]), np.array([0, 1.0, 0])
    aff = np.diag([h, h, h, 1.0])
    aff[:3, 3] = -0.5 * h * (np.array(shape) - 1)
    p = np.indices(shape).reshape(3, -1).T * h + aff[:3, 3]
    cord = np.linalg.norm(p - np.dot(p, u)[:, None] * u, axis=1) < R
    les = np.zeros(len(p), bool)
    for o, (a, b, c) in lesions or [(off, (A, B, C))]:
        q = p - (o[0] * e1 + o[1] * e2 + o[2] * u)
        les |= ((q @ e1) / a) ** 2 + ((q @ e2) / b) ** 2 + ((q @ u) / c) ** 2 <= 1
    return Image(les.reshape(shape).astype(np.uint8), aff), Image(cord.reshape(shape).astype(np.uint8), aff)


def reordered(img: Image, perm: tuple, flip: int) -> Image:
    """The same voxels stored in another axis order, one axis flipped (affine adjusted)."""
    data = np.flip(np.asarray(img.data), flip)
    aff = img.grid.affine.copy()
    aff[:3, 3] += aff[:3, flip] * (img.shape[flip] - 1)
    aff[:3, flip] *= -1
    aff2 = np.eye(4)
    aff2[:3, :3] = aff[:3, :3][:, list(perm)]
    aff2[:3, 3] = aff[:3, 3]
    return Image(np.ascontiguousarray(np.transpose(data, perm)), aff2)


@pytest.mark.parametrize("tilt", [0.0, 25.0])
def test_ellipsoid_in_cylinder(tilt):
    """8 sub-voxel offsets of the lesion (seed 0). Measured errors (0 / 25 deg): volume -1.3..+2.1 /
    -0.9..+1.9 %; length (truth 2 x 5 mm along the cord) -0.5..0 (mean -0.06) / +0.06..+0.51
    (mean +0.19) mm; equivalent diameter (2 sqrt(ab) = 3.464) -0.03..+0.10 / -0.08..+0.04 mm;
    damage ratio (ab / R^2 = 0.1875) -0.010..+0.005 / -0.008..+0.005. Midsagittal tissue bridges
    (truth on the plane through the axis: ventral R - d - b', dorsal R + d - b', d the A-P offset,
    b' = b sqrt(1 - (across offset / a)^2)): -0.29..+0.22 mm both tilts (0.5 mm voxels)."""
    offs = np.random.default_rng(0).uniform(-0.5, 0.5, size=(8, 3))
    err = []
    for o in offs:
        les, cord = phantom(tilt, tuple(o))
        rep = analyze_lesions(les, cord)
        assert rep.n_lesions == 1
        x = rep.lesions[0]
        assert x.inside_cord_fraction == 1.0 and not x.outside_cord
        bp = B * np.sqrt(1 - (o[0] / A) ** 2)
        err.append([x.volume_mm3 / (4 / 3 * np.pi * A * B * C) - 1, x.length_mm - 2 * C,
                    x.max_equivalent_diameter_mm - 2 * np.sqrt(A * B), x.max_axial_damage_ratio - A * B / R**2,
                    x.ventral_bridge_mm - (R - o[1] - bp), x.dorsal_bridge_mm - (R + o[1] - bp)])
    err = np.array(err)
    assert np.abs(err[:, 0]).max() < 0.023
    assert np.abs(err[:, 1]).max() < 0.55 and abs(err[:, 1].mean()) < 0.22
    assert np.abs(err[:, 2]).max() < 0.115
    assert np.abs(err[:, 3]).max() < 0.011
    assert np.abs(err[:, 4:]).max() < 0.32
    if tilt:  # the extent along z would be 2 sqrt(c^2 cos^2 + a^2 sin^2) = 9.14 mm: not what is measured
        assert err[:, 1].min() > -0.1


def assert_same_rows(base, rep) -> None:
    """The lesions of two reports (the same voxels in two axis orders) carry the same figures."""
    for a, b in zip(base.lesions, rep.lesions, strict=True):
        assert a.label == b.label and a.n_voxels == b.n_voxels
        for k in ("volume_mm3", "length_mm", "max_equivalent_diameter_mm", "max_axial_damage_ratio",
                  "dorsal_bridge_mm", "ventral_bridge_mm"):
            assert getattr(a, k) == pytest.approx(getattr(b, k), abs=1e-6), k


def test_voxel_orders_give_identical_figures():
    les, cord = phantom(25.0, lesions=[((0.5, 0, -7), (1.5, 2.0, 4.0)), ((-0.5, 0.5, 6), (2.0, 1.5, 3.0))])
    base = analyze_lesions(les, cord)
    assert base.n_lesions == 2
    assert base.lesions[0].centre_mm[2] > base.lesions[1].centre_mm[2]  # numbered from the top
    for perm, flip in [((2, 0, 1), 0), ((1, 2, 0), 2)]:
        rep = analyze_lesions(reordered(les, perm, flip), reordered(cord, perm, flip))
        assert_same_rows(base, rep)
        for a, b in zip(base.lesions, rep.lesions, strict=True):
            np.testing.assert_allclose(a.centre_mm, b.centre_mm, atol=1e-6)


def test_connectivity_as_sct():
    """18-connectivity (skimage label connectivity=2): face or edge neighbours join, a corner does not."""
    def two(d):
        m = np.zeros((12, 12, 12), bool)
        m[2:5, 2:5, 2:5] = True
        m[5 + d[0] - 1:8 + d[0] - 1, 5 + d[1] - 1:8 + d[1] - 1, 5 + d[2] - 1:8 + d[2] - 1] = True
        return label_components(m)[1]
    assert two((1, 1, 1)) == 2  # corner only
    assert two((1, 1, 0)) == 1  # shared edge
    assert two((1, 0, 0)) == 1  # shared face (overlapping extent)
    assert two((2, 2, 2)) == 2  # separated by a voxel
    les, cord = phantom(0.0, lesions=[((0, 0, -6), (1.5, 1.5, 3.0)), ((0, 0, 6), (1.5, 1.5, 3.0))])
    rep = analyze_lesions(les, cord)
    assert rep.n_lesions == 2
    assert rep.lesions[0].length_mm == pytest.approx(6.0, abs=0.01)


def test_empty_outside_and_other_grid():
    les, cord = phantom(0.0)
    empty = analyze_lesions(Image(np.zeros(les.shape, np.uint8), les.grid.affine), cord)
    assert empty.n_lesions == 0 and empty.total_volume_mm3 == 0 and "empty" in empty.notes[0]
    out_les, _ = phantom(0.0, lesions=[((6.5, 0, 0), (1.0, 1.0, 2.0))])  # beside the cord
    rep = analyze_lesions(out_les, cord)
    assert rep.n_lesions == 1 and rep.lesions[0].outside_cord and rep.lesions[0].inside_cord_fraction == 0.0
    assert rep.lesions[0].max_axial_damage_ratio == 0.0 and "outside" in rep.notes[0]
    side, _ = phantom(0.0, lesions=[((2.5, 0, 0), (0.8, 0.8, 2.0))])  # in the cord, off the midsagittal plane
    x = analyze_lesions(side, cord).lesions[0]
    assert not x.outside_cord and np.isnan(x.dorsal_bridge_mm) and np.isnan(x.ventral_bridge_mm)
    # cord on a 1 mm grid: sampled onto the lesion's 0.5 mm grid through world coordinates
    _, cord1 = phantom(0.0, h=1.0, shape=(36, 16, 40))
    a, b = analyze_lesions(les, cord).lesions[0], analyze_lesions(les, cord1).lesions[0]
    assert a.volume_mm3 == b.volume_mm3 and a.length_mm == pytest.approx(b.length_mm, abs=0.01)
    assert b.max_axial_damage_ratio == pytest.approx(a.max_axial_damage_ratio, abs=0.01)
    far = Image(np.asarray(cord.data), cord.grid.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 500], [0, 0, 0, 1]]))
    with pytest.raises(InputError, match="does not overlap"):
        analyze_lesions(les, far)


def _fake_lesion(sct_data: Path) -> tuple[Path, Path]:
    return sct_data / "t2/t2_fake_lesion_lesion_seg.nii.gz", sct_data / "t2/t2_fake_lesion_sc_seg.nii.gz"


def test_sct_fake_lesion(sct_data):
    """One lesion, 163 voxels of 0.8 mm: 83.456 mm3. Length along the cord 10.789 mm vs 10.923 mm
    from an independent polyline through the cord's raw per-slice centroids (lesion voxel
    centres projected onto it, span 9.837 mm, plus 1.086 mm, a voxel's extent along the cord; the
    cord is tilted 23 deg from the S-I voxel axis). SCT's axial figures for comparison: 12 axial
    slices (9.6 mm), axial max ratio 0.284, perpendicular here 0.251."""
    les_p, seg_p = _fake_lesion(sct_data)
    les, seg = nib.load(les_p), nib.load(seg_p)
    L, Cm, aff = np.asarray(les.dataobj) > 0.5, np.asarray(seg.dataobj) > 0.5, les.affine
    rep = analyze_lesions(les_p, seg_p)
    assert rep.n_lesions == 1
    x = rep.lesions[0]
    assert x.volume_mm3 == pytest.approx(L.sum() * abs(np.linalg.det(aff[:3, :3])), rel=1e-9)
    # independent centerline: per S-I slice (voxel axis 1) centroid of the cord, a polyline
    idx = np.argwhere(Cm)
    w = idx @ aff[:3, :3].T + aff[:3, 3]
    cen = np.array([w[idx[:, 1] == k].mean(0) for k in np.unique(idx[:, 1])])
    seg_v = np.diff(cen, axis=0)
    cum = np.r_[0, np.cumsum(np.linalg.norm(seg_v, axis=1))]
    lw = np.argwhere(L) @ aff[:3, :3].T + aff[:3, 3]
    best, s, tan = np.full(len(lw), np.inf), np.zeros(len(lw)), np.zeros((len(lw), 3))
    for i, d in enumerate(seg_v):
        t = np.clip(((lw - cen[i]) @ d) / (d @ d), 0, 1)
        dist = np.linalg.norm(lw - (cen[i] + t[:, None] * d), axis=1)
        m = dist < best
        best[m], s[m], tan[m] = dist[m], cum[i] + t[m] * np.linalg.norm(d), d / np.linalg.norm(d)
    tm = tan.mean(0) / np.linalg.norm(tan.mean(0))
    truth = s.max() - s.min() + np.abs(aff[:3, :3].T @ tm).sum()
    assert x.length_mm == pytest.approx(truth, abs=0.2)  # measured 10.789 vs 10.923
    assert x.length_mm == pytest.approx(10.789, abs=0.02)
    assert x.max_axial_damage_ratio == pytest.approx(0.2506, abs=0.005)
    assert x.max_equivalent_diameter_mm == pytest.approx(4.055, abs=0.02)
    # midsagittal tissue bridges on sections perpendicular to the cord: dorsal 1.052, ventral 1.467 mm
    # (SCT's way, A-P rows of the image's middle sagittal slice, 23 deg oblique: 1.6 / 1.6 mm)
    assert x.dorsal_bridge_mm == pytest.approx(1.052, abs=0.02)
    assert x.ventral_bridge_mm == pytest.approx(1.467, abs=0.02)


def test_atlas_shares_mt1(sct_data, pam50_dir):
    """A lesion made of SCT's warped left lateral corticospinal tract (atlas 04 > 0.5 within the
    cord) on mt1: 88.4 % of its atlas volume in tract 04, 97.6 % in white matter, levels 4 and 5
    from label/template/PAM50_levels; 82.2 % of tract 04 lesioned."""
    d = sct_data / "mt"
    seg = nib.load(d / "mt1_seg.nii.gz")
    a4 = np.asarray(nib.load(d / "label/atlas/PAM50_atlas_04.nii.gz").dataobj, float)
    les = (a4 > 0.5) & (np.asarray(seg.dataobj) > 0.5)
    rep = analyze_lesions(Image(les.astype(np.uint8), seg.affine), d / "mt1_seg.nii.gz", atlas_folder=d / "label")
    x = rep.lesions[0]
    share = x.tract_share_pct
    assert share["04 WM left lateral corticospinal tract"] == pytest.approx(88.41, abs=0.5)
    assert share["05 WM right lateral corticospinal tract"] < 0.5
    assert share["white matter"] == pytest.approx(97.62, abs=0.5)
    assert x.levels == (4, 5)
    assert rep.tract_lesioned_pct["04 WM left lateral corticospinal tract"] == pytest.approx(82.18, abs=0.5)
    # the unwarped PAM50 atlas is refused (it covers 12 % of this cord)
    les_p, seg_p = _fake_lesion(sct_data)
    with pytest.raises(InputError, match="not on this subject"):
        analyze_lesions(les_p, seg_p, atlas_folder=pam50_dir)


def test_cli(tmp_path, sct_data):
    from spinereg.cli.main import main

    les_p, seg_p = _fake_lesion(sct_data)
    out = tmp_path / "o"
    assert main(["analyze-lesion", "-m", str(les_p), "-s", str(seg_p), "-o", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["t2_fake_lesion_lesion_seg_analysis.csv", "t2_fake_lesion_lesion_seg_analysis.json",
                     "t2_fake_lesion_lesion_seg_bridges.csv", "t2_fake_lesion_lesion_seg_label.nii.gz"]
    lines = (out / names[0]).read_text().splitlines()
    assert lines[0].startswith("label,volume [mm3],length [mm],max_equivalent_diameter [mm],max_axial_damage_ratio []")
    assert len(lines) == 2 and lines[1].startswith("1,83.4561,10.78")
    lab = nib.load(out / names[3])
    assert set(np.unique(np.asarray(lab.dataobj))) == {0, 1}
    np.testing.assert_allclose(lab.affine, nib.load(les_p).affine)
    # again without --overwrite: refused, nothing changed
    assert main(["analyze-lesion", "-m", str(les_p), "-s", str(seg_p), "-o", str(out)]) == 2
    # bad input: a 4D image as cord, a missing file: exit 2, nothing written
    bad = tmp_path / "bad"
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), four)
    assert main(["analyze-lesion", "-m", str(les_p), "-s", str(four), "-o", str(bad)]) == 2
    assert main(["analyze-lesion", "-m", str(tmp_path / "nope.nii.gz"), "-s", str(seg_p), "-o", str(bad)]) == 2
    assert not bad.exists()
    # an empty lesion mask is no error: a header-only CSV, 0 lesions and a note in the JSON
    empty = tmp_path / "empty_lesion.nii.gz"
    ref = nib.load(les_p)
    nib.save(nib.Nifti1Image(np.zeros(ref.shape, np.uint8), ref.affine), empty)
    assert main(["analyze-lesion", "-m", str(empty), "-s", str(seg_p), "-o", str(tmp_path / "e")]) == 0
    assert len((tmp_path / "e/empty_lesion_analysis.csv").read_text().splitlines()) == 1
    assert (tmp_path / "e/empty_lesion_bridges.csv").read_text() == "label,s [mm],dorsal_bridge [mm],ventral_bridge [mm]\n"
    doc = json.loads((tmp_path / "e/empty_lesion_analysis.json").read_text())
    assert doc["totals"]["n_lesions"] == 0 and "empty" in doc["totals"]["notes"][0]
