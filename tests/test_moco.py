"""Slice-wise motion correction (spinereg moco) and EPI artifact scores.

Synthetic series with known in-plane translations (smooth body + CSF ring + cord + texture,
moved per volume / per multiband group), the EPI phantom (``make_epi_phantom``, multiband 2,
interleaved SliceTiming), SCT's real fMRI (tSNR in the cord before/after) and DWI (groups, bvecs),
and the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from spinereg.cli.main import main
from spinereg.epi.artifacts import Thresholds, ghosting_scores
from spinereg.epi.moco import (
    load_volume_transforms,
    motion_correct,
    slice_groups_from_multiband,
    slice_groups_from_timing,
    tsnr_in_mask,
    write_moco_outputs,
)
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image, save_image
from spinereg.transforms.apply import apply_transforms, resample

ZOOMS = (1.0, 1.0, 3.0)


def _base(shape, seed=0) -> np.ndarray:
    """Smooth body, bright CSF ring, darker cord, soft texture; the cord drifts along z."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    i, j = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    out = np.empty(shape)
    for k in range(nz):
        cx, cy = nx / 2 + 2 * np.sin(k / 4), ny / 2
        body = 300 * np.exp(-(((i - nx / 2) / (0.4 * nx)) ** 2 + ((j - ny / 2) / (0.35 * ny)) ** 2) ** 2)
        csf = 500 * np.exp(-(((i - cx) / 6) ** 2 + ((j - cy) / 5) ** 2) ** 2)
        cord = -300 * np.exp(-(((i - cx) / 3.5) ** 2 + ((j - cy) / 2.5) ** 2) ** 2)
        tex = ndimage.gaussian_filter(rng.normal(size=(nx, ny)), 2.0) * 400
        out[:, :, k] = body + csf + cord + tex * body / 300
    return out


def _series(truth: np.ndarray, shape=(48, 48, 12), noise=5.0, gain=None, seed=1) -> Image:
    """Volume t, slice k = base slice translated by truth[t, k] voxels (pull: V(p + s) = base(p))."""
    rng = np.random.default_rng(seed)
    base = _base(shape)
    nvol = truth.shape[0]
    i, j = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    out = np.empty(shape + (nvol,), np.float32)
    for t in range(nvol):
        for k in range(shape[2]):
            s = truth[t, k]
            out[:, :, k, t] = ndimage.map_coordinates(base[:, :, k], [i - s[0], j - s[1]], order=3, mode="nearest")
    if gain is not None:
        out *= gain[None, None].astype(np.float32)
    out += rng.normal(0, noise, out.shape).astype(np.float32)
    return Image(out, np.diag([*ZOOMS, 1.0]))


def _rms(est: np.ndarray, truth: np.ndarray) -> float:
    """RMS (voxels) of the error up to each slice's reference position (mean over volumes)."""
    err = (est - est.mean(0)) - (truth - truth.mean(0))
    return float(np.sqrt((err**2).sum(-1).mean()))


def _drift(nvol: int, seed: int, step: float = 0.3) -> np.ndarray:
    m = np.cumsum(np.random.default_rng(seed).normal(0, step, (nvol, 2)), axis=0)
    return m - m[0]


# -- synthetic ground truth ------------------------------------------------------------------------
def test_per_volume_translations_recovered() -> None:
    nvol, nz = 16, 12
    truth = np.repeat(_drift(nvol, 2)[:, None], nz, axis=1)
    res = motion_correct(_series(truth))
    rms = _rms(res.shifts, truth)
    print(f"per-volume translations: RMS error {rms:.4f} voxel, max truth {np.abs(truth).max():.2f}")
    assert rms < 0.006  # measured 0.0037 (motion exactly the slice-wise model's: see the rigid 3D test)
    # the motion table is in world mm (here voxel axes = RAS axes, 1 mm in-plane)
    assert np.allclose(res.shifts_mm()[..., :2], res.shifts * [1.0, 1.0])


def test_multiband_groups_no_zigzag() -> None:
    """MB 2, rigid motion per volume (truth equal on every slice) plus a per-group breathing term;
    odd slices get another gain and noise each volume (spin history). Adjacent slices whose truth
    is equal must not differ (no even/odd zig-zag), and the RMS error stays < 0.1 voxel."""
    nvol, nz = 14, 12
    groups = slice_groups_from_multiband(nz, 2)
    assert groups.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    rng = np.random.default_rng(5)
    truth = np.repeat(_drift(nvol, 3)[:, None], nz, axis=1)
    gain = np.ones((nz, nvol))
    gain[1::2] = rng.uniform(0.8, 1.0, (nz // 2, nvol))
    img = _series(truth, noise=25.0, gain=gain, seed=7)
    res = motion_correct(img, multiband=2)
    rms = _rms(res.shifts, truth)
    adjacent = np.abs(np.diff(res.shifts, axis=1)).max()
    per_slice = motion_correct(img, slice_groups=np.arange(nz), regularise="none")
    zig_slice = np.abs(np.diff(per_slice.shifts, axis=1)).max()
    print(f"MB2 rigid: RMS {rms:.4f} voxel, max adjacent-slice difference {adjacent:.4f} voxel "
          f"(independent per-slice estimates: {zig_slice:.4f}, RMS {_rms(per_slice.shifts, truth):.4f})")
    assert rms < 0.02  # measured 0.0153
    assert adjacent < 0.07  # measured 0.0545 (independent per-slice estimates: 0.098)
    # slices excited together carry identical estimates
    assert np.array_equal(res.shifts[:, :6], res.shifts[:, 6:])

    # per-group motion: group g moves by the volume drift + breathing (period 4 s, TR 2 s) at its
    # acquisition time (groups acquired in sequence over the TR)
    t_group = np.arange(6) / 6.0 * 2.0
    breath = 0.8 * np.sin(2 * np.pi * (np.arange(nvol)[:, None] * 2.0 + t_group[None, :]) / 4.0 + 0.3)
    truth_g = truth.copy()
    truth_g[..., 1] += breath[:, groups]
    timing = t_group[groups].tolist()
    res_g = motion_correct(_series(truth_g, noise=10.0, seed=8), slice_timing=timing)
    rms_g = _rms(res_g.shifts, truth_g)
    same = np.abs(res_g.shifts[:, :6] - res_g.shifts[:, 6:]).max()
    print(f"MB2 per-group motion: RMS {rms_g:.4f} voxel, same-group difference {same:.2e}")
    assert rms_g < 0.01 and same < 0.1  # measured 0.0069, 0


def test_epi_phantom_multiband2() -> None:
    from spinereg.phantom.epi import make_epi_phantom

    ph = make_epi_phantom(n_volumes=10, multiband=2, seed=3)
    nz = ph.epi.shape[2]
    res = motion_correct(ph.epi, slice_timing=ph.slice_timing)
    assert res.slice_groups.tolist() == slice_groups_from_timing(ph.slice_timing, nz).tolist()
    vox = ph.epi.grid.zooms[:2]
    est = res.shifts_mm()[..., :2] / vox
    truth = ph.motion / vox
    rms = _rms(est, truth)
    err = (est - est.mean(0)) - (truth - truth.mean(0))
    zig = np.abs(err[:, 1:-1] - 0.5 * (err[:, :-2] + err[:, 2:])).max()
    same = np.abs(est[:, : nz // 2] - est[:, nz // 2:]).max()
    baseline = motion_correct(ph.epi, slice_groups=np.arange(nz) % (nz // 2))  # z order, no timing
    print(f"phantom MB2: RMS {rms:.4f} voxel, even/odd error component {zig:.4f}, same-group {same:.2e}; "
          f"regularised in slice order instead of acquisition order: RMS {_rms(baseline.shifts_mm()[..., :2] / vox, truth):.4f}")
    assert rms < 0.006  # measured 0.0034
    assert zig < 0.015  # measured 0.0093
    assert same < 0.1
    assert res.info["regularisation_order"] == "slice timing"


def test_volume_transforms_match_written_series(tmp_path: Path) -> None:
    nvol, nz = 6, 8
    truth = np.repeat(_drift(nvol, 4)[:, None], nz, axis=1)
    img = _series(truth, shape=(32, 32, nz))
    path = save_image(img, tmp_path / "bold.nii.gz")
    res = motion_correct(path)
    files = write_moco_outputs(res, path, tmp_path / "out")
    written = load_image(files["series"]).data
    applied = apply_transforms(load_image(path, lazy=True), res.grid, None, "spline",
                               per_volume=res.volume_transforms()).data
    assert np.abs(written - applied).max() < 1e-3 * np.abs(written).max()
    again = load_volume_transforms(files["params_json"])
    x = res.grid.world_coords()[::97]
    for t in (0, nvol - 1):
        assert np.allclose(again[t].map(x), res.volume_transforms()[t].map(x), atol=1e-4)
    rows = (tmp_path / "out" / "moco_params.csv").read_text().splitlines()
    assert rows[0] == "volume,slice,group,tx_mm,ty_mm,tz_mm" and len(rows) == 1 + nvol * nz


# -- artifact scores ----------------------------------------------------------------------------------
def test_artifacts_flag_and_exclude() -> None:
    nvol, nz = 14, 10
    truth = np.repeat(_drift(nvol, 6, 0.1)[:, None], nz, axis=1)
    truth[9] += [2.0, 0.0]  # a jerk: FD outlier (volumes 9 and 10)
    img = _series(truth, shape=(40, 40, nz))
    data = img.data
    data[:, :, 4, 5] *= 0.3  # signal dropout in one slice of one volume
    mask = np.zeros((40, 40, nz))
    mask[14:26, 14:26] = 1.0
    res = motion_correct(img, mask=mask, thresholds=Thresholds(fd_mm=1.0))
    sc = res.scores
    print(f"dropout[5,4]={sc.dropout[5, 4]:.3f}, fd={np.round(sc.fd_mm, 2).tolist()}")
    assert sc.dropout[5, 4] < 0.5 and sc.slice_flags[5, 4]
    assert np.sort(np.delete(sc.dropout.ravel(), 5 * nz + 4)).min() > 0.85
    assert sc.fd_mm[9] > 1.5 and sc.fd_mm[10] > 1.5
    assert res.excluded[9] and res.excluded[10] and not res.excluded[[0, 3, 12]].any()
    rec = sc.per_volume()
    assert "dropout" in rec[5]["reasons"] and rec[5]["flagged_slices"] == [4]
    assert "motion_fd" in rec[9]["reasons"]
    # the flagged slice takes the regularised value: motion still recovered
    assert _rms(res.shifts, truth) < 0.1


def test_ghosting_score() -> None:
    vol = np.zeros((40, 40, 3))
    vol[14:26, 12:28] = 100.0
    ghosted = vol.copy()
    ghosted[:, :, 1] += 0.12 * np.roll(vol[:, :, 1], 20, axis=1)
    g0 = ghosting_scores(vol, 1)
    g1 = ghosting_scores(ghosted, 1)
    print(f"ghosting clean {g0.round(3).tolist()}, ghosted {g1.round(3).tolist()}")
    assert g0.max() < 0.01 and abs(g1[1] - 0.12) < 0.02 and g1[[0, 2]].max() < 0.01


def test_groups_from_metadata() -> None:
    assert slice_groups_from_timing([0, 1, 0.5, 0, 1, 0.5], 6).tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(InputError):
        slice_groups_from_multiband(10, 3)
    with pytest.raises(InputError):
        slice_groups_from_timing([0, 1], 3)


# -- real data ----------------------------------------------------------------------------------------
def _cord_region(sct_data: Path, grid) -> np.ndarray:
    """t2 manual cord segmentation resampled onto the fMRI grid by header, dilated 2 voxels in-plane."""
    seg = load_image(sct_data / "t2" / "t2_seg-manual.nii.gz")
    m = resample(seg, grid, "linear").data > 0.25
    st = np.zeros((3, 3, 3), bool)
    st[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(m, st, iterations=2)


def test_fmri_tsnr_rises(sct_data: Path, tmp_path: Path) -> None:
    path = sct_data / "fmri" / "fmri.nii.gz"
    img = load_image(path, lazy=True)
    cord = _cord_region(sct_data, img.grid)
    assert cord.sum() > 100
    res = motion_correct(img, mask=cord.astype(float))
    write_moco_outputs(res, img, tmp_path / "moco", cord_mask=cord)
    before, after = tsnr_in_mask(res.tsnr_before, cord), tsnr_in_mask(res.tsnr_after, cord)
    print(f"fmri cord tSNR before {before:.3f} after {after:.3f} (+{100 * (after / before - 1):.1f} %), "
          f"max shift {np.abs(res.shifts_mm()).max():.3f} mm, estimate {res.info['seconds_estimate']} s")
    # measured 9.04 -> 9.94 (+10 %)
    assert after > 1.08 * before
    metrics = json.loads((tmp_path / "moco" / "metrics.json").read_text())
    assert metrics["summary"]["tsnr_after"] == pytest.approx(after, abs=1e-3)
    assert len(metrics["per_volume"]) == 30


def test_dmri_groups_cli(sct_data: Path, tmp_path: Path) -> None:
    d = sct_data / "dmri"
    out = tmp_path / "dmri_moco"
    args = ["moco", "-i", str(d / "dmri.nii.gz"), "--bvals", str(d / "bvals.txt"), "--bvecs", str(d / "bvecs.txt"),
            "-g", "3", "-o", str(out)]
    assert main(args) == 0
    names = {"dmri_moco.nii.gz", "dmri_moco_mean.nii.gz", "dmri_tsnr_before.nii.gz", "dmri_tsnr_after.nii.gz",
             "moco_params.csv", "moco_params.json", "metrics.json", "provenance.json"}
    assert {p.name for p in out.iterdir()} == names
    assert load_image(out / "dmri_moco.nii.gz").shape == (40, 42, 5, 7)
    params = json.loads((out / "moco_params.json").read_text())
    assert params["classes"] == [0, 1, 1, 1, 1, 1, 1]
    assert params["volume_units"] == [0, 1, 1, 1, 2, 2, 2]  # b=0 alone, b>0 in groups of 3
    shifts = np.array(params["shift_vox"])
    assert np.array_equal(shifts[1], shifts[2]) and np.array_equal(shifts[4], shifts[6])
    assert np.abs(shifts[0]).max() == 0.0  # the single b=0 volume is the reference
    assert np.abs(shifts[1:]).max() < 0.15  # b>0 groups against their mean: small motion (measured < 0.1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["schema"] == "spinereg.moco.metrics/1"
    assert [r["class"] for r in metrics["per_volume"]] == ["b0"] + ["dwi"] * 6
    # again without --overwrite: exit 2, nothing changed; bvecs only (b=0 from the zero vector)
    before = (out / "metrics.json").read_bytes()
    assert main(args) == 2
    assert (out / "metrics.json").read_bytes() == before
    assert main(["moco", "-i", str(d / "dmri.nii.gz"), "--bvecs", str(d / "bvecs.txt"), "-g", "2",
                 "-o", str(out), "--overwrite"]) == 0


def test_cli_errors(sct_data: Path, tmp_path: Path, capsys) -> None:
    d = sct_data / "dmri"
    bad = tmp_path / "bvals.txt"
    bad.write_text("0 750 750\n")
    out = tmp_path / "o"
    assert main(["moco", "-i", str(d / "dmri.nii.gz"), "--bvals", str(bad), "-o", str(out)]) == 2
    assert "3 b-values for 7 volumes" in capsys.readouterr().err
    assert main(["moco", "-i", str(d / "dmri.nii.gz"), "--param", "reg=spline,foo=2", "-o", str(out)]) == 2
    assert main(["moco", "-i", str(d / "dmri.nii.gz"), "--multiband", "2", "-o", str(out)]) == 2  # 5 slices
    assert main(["moco", "-i", str(sct_data / "t2" / "t2.nii.gz"), "-o", str(out)]) == 2  # 3D
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "not divisible" in err
    assert not out.exists() or not any(out.iterdir())


def test_at_most_half_of_the_volumes_leave_the_reference():
    from spinereg.epi.moco import _cap_exclusions

    flags = np.array([1, 1, 1, 1, 0, 0], bool)
    fd = np.array([0.6, 0.9, 0.7, 0.8, 0.1, 0.2])
    assert _cap_exclusions(flags, fd).tolist() == [False, True, True, True, False, False]
    assert _cap_exclusions(np.array([1, 0, 0, 0], bool), np.zeros(4)).tolist() == [True, False, False, False]


#: rigid 3D motion with slice timing (rigid_motion_series, 8 volumes): RMS error (voxels) of the
#: slice-wise estimates against the in-plane displacement of each slice's cord centre, per seed,
#: and doing nothing. Through-plane motion (up to 0.7-1.4 mm) and rotation are outside the
#: slice-wise translation model; the old figure (0.004 voxel) was measured on motion that was
#: exactly the model's.
RIGID_CLAIMS = {0: (0.066, 0.575), 1: (0.083, 0.617), 2: (0.058, 0.489)}


@pytest.mark.slow
@pytest.mark.parametrize("seed", sorted(RIGID_CLAIMS))
def test_rigid_3d_motion_with_slice_timing_at_the_claim(seed) -> None:
    from spinereg.phantom.epi import make_epi_phantom
    from spinereg.phantom.epi_realism import rigid_motion_series

    ph = make_epi_phantom(n_volumes=2, seed=seed)
    ms = rigid_motion_series(ph, n_volumes=8, seed=seed)
    assert ms.params["max_through_plane_mm"] > 0.5  # not the model's motion
    res = motion_correct(ms.epi, slice_timing=ms.slice_timing)
    vox = ph.epi.grid.zooms[:2]
    est, truth = res.shifts_mm()[..., :2] / vox, ms.displacement_mm / vox
    claim, nothing = RIGID_CLAIMS[seed]
    assert _rms(est, truth) <= claim + 0.005  # measured 0.0660 / 0.0834 / 0.0583 (session 36; +0.015 before)
    assert _rms(np.zeros_like(truth), truth) == pytest.approx(nothing, abs=0.01)


def _fmri_with(sct_data: Path, tmp_path: Path, name: str, edit) -> Path:
    """SCT's fmri as float32 with ``edit(data)`` applied, saved under ``name``."""
    import nibabel as nib

    src = nib.load(str(sct_data / "fmri" / "fmri.nii.gz"))
    data = np.asarray(src.dataobj, np.float32).copy()
    edit(data)
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, src.affine), str(path))
    return path


def test_no_signal_volume_warned_and_left_out(sct_data: Path, tmp_path: Path, capsys) -> None:
    """An all-NaN volume and a zero-filled volume are handled alike: one warning naming the file
    and the volume, left out of the reference, the mean and tSNR (tSNR as without them: the zero
    volume used to halve it, 6.63 -> 3.81), written as read; NaN in part of a volume is refused."""
    ref = motion_correct(load_image(sct_data / "fmri" / "fmri.nii.gz", lazy=True))
    assert ref.warnings == [] and not ref.no_signal.any()

    def nan5(d):
        d[..., 5] = np.nan

    def zero7(d):
        d[..., 7] = 0

    outs = {}
    for name, edit, vol, kind in (("nanvol.nii.gz", nan5, 5, "all NaN/Inf"), ("zerovol.nii.gz", zero7, 7, "constant")):
        path = _fmri_with(sct_data, tmp_path, name, edit)
        out = tmp_path / name.split(".")[0]
        assert main(["moco", "-i", str(path), "-o", str(out)]) == 0
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if "warning" in ln]
        assert len(lines) == 1 and str(path) in lines[0] and f"volume(s) {vol} " in lines[0] and kind in lines[0], err
        m = json.loads((out / "metrics.json").read_text())
        assert m["summary"]["no_signal_volumes"] == [vol]
        assert m["per_volume"][vol]["no_signal"] and m["per_volume"][vol]["excluded_from_reference"]
        assert m["summary"]["tsnr_before"] > 6.0  # measured 6.64 / 6.63, the clean series 6.63
        written = load_image(out / f"{name.split('.')[0]}_moco.nii.gz", check_finite=False).data
        assert np.isnan(written[..., 5]).all() if vol == 5 else not written[..., 7].any()
        assert np.isfinite(load_image(out / f"{name.split('.')[0]}_moco_mean.nii.gz").data).all()
        outs[name] = m["summary"]["tsnr_before"]
    assert outs["nanvol.nii.gz"] == pytest.approx(outs["zerovol.nii.gz"], rel=0.01)

    def nan_part(d):
        d[10:20, 10:20, 2, 5] = np.nan

    path = _fmri_with(sct_data, tmp_path, "nanpart.nii.gz", nan_part)
    assert main(["moco", "-i", str(path), "-o", str(tmp_path / "part")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "100 NaN/Inf voxels (volume 5)" in err and "Traceback" not in err
    path = _fmri_with(sct_data, tmp_path, "allnan.nii.gz", lambda d: d.fill(np.nan))
    assert main(["moco", "-i", str(path), "-o", str(tmp_path / "allnan")]) == 2
    assert "every volume" in capsys.readouterr().err


def test_verdict_noise_and_empty_series_fail(tmp_path: Path, capsys) -> None:
    """A pure-noise series (most volumes flagged, no structure) and a constant one fail moco's
    verdict (exit 3, one line on stderr naming the score; --allow-fail: 0); the qc block is in
    metrics.json. Measured: noise image_structure 0.03 (SCT's fmri 0.48), 93 % of volumes flagged."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    aff = np.diag([*ZOOMS, 1.0])
    noise = tmp_path / "noise.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(500, 100, (40, 40, 6, 12)).astype(np.float32), aff), str(noise))
    const = tmp_path / "const.nii.gz"
    nib.save(nib.Nifti1Image(np.full((40, 40, 6, 12), 100, np.float32), aff), str(const))
    for path, score in ((noise, "image_structure"), (const, "image_empty")):
        out = tmp_path / path.name.split(".")[0]
        assert main(["moco", "-i", str(path), "-o", str(out)]) == 3
        cap = capsys.readouterr()
        assert cap.out.startswith("moco: FAIL") and score in cap.out
        err = cap.err.strip().splitlines()
        assert len(err) == 1 and "QC verdict fail" in err[0] and score in err[0], cap.err
        qc = json.loads((out / "metrics.json").read_text())["qc"]
        assert qc["verdict"] == "fail" and any(r.startswith(f"fail: {score}") for r in qc["reasons"]), qc
        assert main(["moco", "-i", str(path), "-o", str(out), "--overwrite", "--allow-fail"]) == 0
        capsys.readouterr()
    assert json.loads((tmp_path / "noise" / "metrics.json").read_text())["qc"]["scores"]["image_structure"] < 0.1


def test_verdict_real_series_pass(sct_data: Path, tmp_path: Path, capsys) -> None:
    """SCT's fmri and dmri pass moco's verdict (measured: image_structure 0.477 / 0.633, no volume
    flagged), with the summary line and --json."""
    d = sct_data / "dmri"
    for name, argv, structure in (
            ("fmri", ["-i", str(sct_data / "fmri" / "fmri.nii.gz")], 0.477),
            ("dmri", ["-i", str(d / "dmri.nii.gz"), "--bvecs", str(d / "bvecs.txt"), "-g", "2"], 0.633)):
        out = tmp_path / name
        assert main(["moco", *argv, "-o", str(out)]) == 0
        cap = capsys.readouterr()
        assert cap.out.startswith("moco: PASS") and "outputs:" in cap.out and cap.err == ""
        qc = json.loads((out / "metrics.json").read_text())["qc"]
        assert qc["verdict"] == "pass" and qc["reasons"] == []
        assert qc["scores"]["image_structure"] == pytest.approx(structure, abs=0.01)
        assert qc["scores"]["pct_outlier_volumes"] == 0.0
    assert main(["moco", "-i", str(sct_data / "fmri" / "fmri.nii.gz"), "-o", str(tmp_path / "j"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["qc"]["verdict"] == "pass" and data["tsnr_after"] > data["tsnr_before"]


def test_soft_mask_under_half_still_gives_the_tsnr_region(sct_data: Path, tmp_path: Path) -> None:
    """A soft ``-m`` mask whose weights stay under 0.5 (here the cord region at 0.4) is the same
    region as the binary mask for the tSNR summary: before, the region was the mask > 0.5, empty,
    and metrics.json said tsnr_before / tsnr_after 0.0 over the 'cord mask' (exit 0). A region
    with no voxel is reported as not measured (None), never as 0."""
    import nibabel as nib

    from spinereg.epi.moco import moco_metrics

    path = sct_data / "fmri" / "fmri.nii.gz"
    img = load_image(path, lazy=True)
    cord = _cord_region(sct_data, img.grid).astype(np.float32)
    summaries = {}
    for name, scale in (("binary", 1.0), ("soft", 0.4)):
        m = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(cord * scale, img.affine), str(m))
        out = tmp_path / name
        assert main(["moco", "-i", str(path), "-m", str(m), "-o", str(out)]) == 0
        summaries[name] = json.loads((out / "metrics.json").read_text())["summary"]
    assert summaries["binary"]["tsnr_before"] > 5.0  # measured 9.0
    for k in ("tsnr_before", "tsnr_after"):
        assert summaries["soft"][k] == pytest.approx(summaries["binary"][k], rel=1e-3)
    res = motion_correct(img, regularise="none", iterations=1)
    res.tsnr_before = res.tsnr_after = np.ones(img.grid.shape, np.float32)
    doc = moco_metrics(res, np.zeros(img.grid.shape))
    assert doc["summary"]["tsnr_before"] is None and "not measured" in doc["summary"]["tsnr_region"]


def test_mask_leaving_slices_out_is_warned_of(sct_data: Path, tmp_path: Path, capsys) -> None:
    """A mask that leaves slices of the series without (enough) voxels -- t2's cord segmentation
    given to the dmri series: it covers slices 1-3 of 0-4 -- leaves those slices unregistered,
    their motion the z fit's through the others: one warning naming the file and the slices.
    Before, nothing was said (exit 0, fd_mm_max 2.67 against 0.33 without the mask). A mask with
    too few voxels in every slice (nothing would be registered: the output would be the input)
    is refused, exit 2. A mask covering every slice: no warning."""
    import nibabel as nib

    d = sct_data / "dmri"
    base = ["moco", "-i", str(d / "dmri.nii.gz"), "--bvals", str(d / "bvals.txt"), "--allow-fail"]
    t2seg = sct_data / "t2" / "t2_seg-manual.nii.gz"
    assert main([*base, "-m", str(t2seg), "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "warning" in ln and "covers 3 of 5 slices" in ln]
    assert len(lines) == 1 and str(t2seg) in lines[0] and "slice(s) 0, 4 " in lines[0], err
    summary = json.loads((tmp_path / "a" / "metrics.json").read_text())["summary"]
    assert any("covers 3 of 5 slices" in w for w in summary["warnings"])
    src = nib.load(str(d / "dmri.nii.gz"))
    box = np.zeros(src.shape[:3], np.uint8)
    box[12:30, 10:28, :] = 1
    nib.save(nib.Nifti1Image(box, src.affine), str(tmp_path / "box.nii.gz"))
    assert main([*base, "-m", str(tmp_path / "box.nii.gz"), "-o", str(tmp_path / "b")]) == 0
    assert "covers" not in capsys.readouterr().err
    tiny = np.zeros(src.shape[:3], np.uint8)
    tiny[20:22, 18:20, :] = 1
    nib.save(nib.Nifti1Image(tiny, src.affine), str(tmp_path / "tiny.nii.gz"))
    assert main([*base, "-m", str(tmp_path / "tiny.nii.gz"), "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tiny.nii.gz" in err and "every slice" in err and "fix:" in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_tight_mask_is_warned_of(sct_data: Path, tmp_path: Path, capsys) -> None:
    """A mask about the cord's own size (the dmri series' own cord segmentation, 30-77 mm2 per
    slice) let the slice-wise registration run away: 86 % outlier volumes, verdict fail, and only
    'pct_outlier_volumes 85.71 > 20' said. Now a warning says the mask is tight (and the run's
    outlier share), with the fix; a disk of 9.5 mm radius about the cord (282 mm2) passes and gets none."""
    import nibabel as nib
    from scipy import ndimage

    from spinereg.segment import segment

    d = sct_data / "dmri"
    seg = segment(str(d / "dwi_mean.nii.gz")).seg
    cord = np.asarray(seg.data) > 0.5
    nib.save(nib.Nifti1Image(cord.astype(np.uint8), seg.affine), str(tmp_path / "cord.nii.gz"))
    zoom = float(seg.grid.zooms[0])
    disk = np.zeros_like(cord)
    ii, jj = np.mgrid[:cord.shape[0], :cord.shape[1]]
    for k in range(cord.shape[2]):
        if cord[:, :, k].any():
            c = ndimage.center_of_mass(cord[:, :, k])
            disk[:, :, k] = ((ii - c[0]) ** 2 + (jj - c[1]) ** 2) * zoom ** 2 <= 9.5 ** 2
    nib.save(nib.Nifti1Image(disk.astype(np.uint8), seg.affine), str(tmp_path / "disk.nii.gz"))
    base = ["moco", "-i", str(d / "dmri.nii.gz"), "--bvals", str(d / "bvals.txt"), "--allow-fail"]
    assert main([*base, "-m", str(tmp_path / "cord.nii.gz"), "-o", str(tmp_path / "tight")]) == 0
    err = capsys.readouterr().err
    assert "the mask is about the cord's own size" in err and "sct_create_mask" in err, err
    assert "86 % outlier volumes; the mask" in err, err
    summary = json.loads((tmp_path / "tight" / "metrics.json").read_text())["summary"]
    assert any("cord's own size" in w for w in summary["warnings"])
    assert summary["pct_outlier_volumes"] > 50  # measured 85.7: the run the warning explains
    assert main([*base, "-m", str(tmp_path / "disk.nii.gz"), "-o", str(tmp_path / "disk")]) == 0
    assert "cord's own size" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "disk" / "metrics.json").read_text())["summary"]
    assert summary["pct_outlier_volumes"] == 0  # measured 0


def test_tight_mask_that_works_is_not_warned_of(sct_data: Path, tmp_path: Path, capsys) -> None:
    """fmri with its own cord segmentation as mask (71-102 mm2 per slice, under the 150 mm2 bound)
    passes: 0 % outlier volumes, tSNR 11.0 -> 11.5. It was warned of as tight all the same
    (session 39's bound rests on one dmri series); the warning now waits for the run's outliers
    (> 5 %, the verdict's warn bound)."""
    import nibabel as nib

    from spinereg.segment import segment

    im = nib.load(str(sct_data / "fmri" / "fmri.nii.gz"))
    nib.save(nib.Nifti1Image(np.asanyarray(im.dataobj).mean(-1).astype(np.float32), im.affine),
             str(tmp_path / "mean.nii.gz"))
    seg = segment(str(tmp_path / "mean.nii.gz")).seg
    cord = (np.asarray(seg.data) > 0.5).astype(np.uint8)
    area = np.median(cord.sum((0, 1))[cord.sum((0, 1)) > 0]) * float(np.prod(seg.grid.zooms[:2]))
    assert area < 150, area  # measured 87 mm2: a mask the size bound calls tight
    nib.save(nib.Nifti1Image(cord, seg.affine), str(tmp_path / "cord.nii.gz"))
    assert main(["moco", "-i", str(sct_data / "fmri" / "fmri.nii.gz"), "-m", str(tmp_path / "cord.nii.gz"),
                 "-o", str(tmp_path / "o")]) == 0
    assert "cord's own size" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "metrics.json").read_text())["summary"]
    assert summary["pct_outlier_volumes"] == 0 and summary["tsnr_after"] > summary["tsnr_before"]
