"""spinereg register (subject to subject) on sct_testing_data: t2 -> t2s / t1w / mt1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io import load_image
from spinereg.metrics import dice
from spinereg.register.multimodal import register_multimodal
from spinereg.transforms import apply_transforms, read_displacement

TARGETS = {
    "t2s": ("t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz"),
    "t1w": ("t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz"),
    "mt1": ("mt/mt1.nii.gz", "mt/mt1_seg.nii.gz"),  # 5 slices of 17 mm
}
#: cord Dice (slices both hold) of the default steps against the destination's manual segmentation,
#: measured: the image-driven default (multimodal_spinereg_imseg) is not fitted to that
#: segmentation alone (the segmentation-only preset scores 0.971 / 0.954 / 0.971 against it, but
#: leaves 1.05-2.25 mm on known deformations of t2 where this leaves 0.16-0.27,
#: tests/test_register_robustness.py). Asserted with a 0.01 margin.
DICE_CLAIM = {"t2s": 0.969, "t1w": 0.946, "mt1": 0.964}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_t2_to_target_with_segs(sct_data, tmp_path, name):
    dest, dseg = TARGETS[name]
    out = tmp_path / name
    rc = main(["register", "-i", str(sct_data / "t2/t2.nii.gz"), "--iseg", str(sct_data / "t2/t2_seg-manual.nii.gz"),
               "-d", str(sct_data / dest), "--dseg", str(sct_data / dseg), "-o", str(out), "--allow-fail"])
    assert rc == 0  # accuracy is asserted below; the verdict's calibration is tested elsewhere
    d = dest.split("/")[1].replace(".nii.gz", "")
    for f in ("t2_reg.nii.gz", f"{d}_reg.nii.gz", f"warp_t22{d}.nii.gz", f"warp_{d}2t2.nii.gz", "metrics.json",
              "provenance.json"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["cord_dice_dest_zb"] >= DICE_CLAIM[name] - 0.01, m
    assert m["jacobian_src2dest"]["pct_folding"] == 0.0
    # independent check with the written warp
    seg = load_image(sct_data / "t2/t2_seg-manual.nii.gz")
    target = load_image(sct_data / dseg)
    w = apply_transforms(seg, target.grid, [read_displacement(out / f"warp_t22{d}.nii.gz")], "linear")
    got = dice(w.with_data((w.data > 0.5).astype(np.uint8)), target.with_data((target.data > 0.5).astype(np.uint8)),
               zb=True).dice
    assert abs(got - m["cord_dice_dest_zb"]) < 1e-3


def test_identity_is_header_resampling(sct_data, tmp_path):
    reg = register_multimodal(sct_data / "t2/t2.nii.gz", sct_data / "mt/mt1.nii.gz", identity=True)
    f = reg.warp_src2dest()
    assert np.abs(f.data).max() == 0.0


def test_init_warp_joins_chain(sct_data):
    # SCT's own t2->mt1 warp as the initial link: our steps refine it; Dice must not drop
    reg = register_multimodal(sct_data / "t2/t2.nii.gz", sct_data / "mt/mt1.nii.gz",
                              iseg=sct_data / "t2/t2_seg-manual.nii.gz", dseg=sct_data / "mt/mt1_seg.nii.gz",
                              init_warp=sct_data / "mt/warp_t22mt1.nii.gz")
    assert len(reg.src2dest.transforms) == 1 + len(reg.step_transforms)
    seg = load_image(sct_data / "t2/t2_seg-manual.nii.gz")
    dseg = load_image(sct_data / "mt/mt1_seg.nii.gz")
    w = apply_transforms(seg, dseg.grid, [reg.warp_src2dest()], "linear")
    assert dice(w.with_data((w.data > 0.5).astype(np.uint8)), dseg, zb=True).dice >= 0.967  # measured 0.9733


def test_seg_steps_need_segs(sct_data):
    with pytest.raises(InputError, match="segmentation"):
        register_multimodal(sct_data / "t2/t2.nii.gz", sct_data / "mt/mt1.nii.gz",
                            param="step=1,type=seg,algo=centermass")


def test_dropout_slices_are_excluded_from_the_epi_metric():
    from spinereg.register.multimodal import exclude_dropout_slices

    rng = np.random.default_rng(0)
    img = 100 + rng.normal(0, 1, (20, 20, 6))
    img[:, :, 4] *= 0.3  # z-shim failure: signal dropout in slice 4
    mask = np.zeros((20, 20, 6), np.float32)
    mask[8:12, 8:12, :] = 1
    out, bad = exclude_dropout_slices(img, mask)
    assert bad == [4] and out[:, :, 4].sum() == 0 and out[:, :, 3].sum() == 16


def test_cli_4d_source_outputs_named_after_it_and_said_to_be_the_mean(sct_data, tmp_path, capsys):
    """A 4D -i is registered through its mean volume. Before session 37 the outputs were named
    after no file (src_reg.nii.gz, warp_src2t2.nii.gz) and nothing said that the moved image was
    the mean, not the series; now they take the file's name and a warning says what they are."""
    import nibabel as nib

    t2 = nib.load(str(sct_data / "t2/t2.nii.gz"))
    d = np.asanyarray(t2.dataobj).astype(np.float32)
    series = tmp_path / "t2_4d.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([d, d], -1), t2.affine), str(series))
    out = tmp_path / "o"
    rc = main(["register", "-i", str(series), "-d", str(sct_data / "t2/t2.nii.gz"), "--identity", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["t2_4d_reg.nii.gz", "t2_reg.nii.gz",
                                                            "warp_t22t2_4d.nii.gz", "warp_t2_4d2t2.nii.gz"]
    assert "t2_4d.nii.gz is 4D (2 volumes): registered through its mean volume" in err, err
    assert "t2_4d_reg.nii.gz is that mean moved" in err
    assert load_image(out / "t2_4d_reg.nii.gz").ndim == 3


def test_cords_far_apart_keep_the_offset_when_the_image_term_is_dropped(sct_data, tmp_path, capsys):
    """The batch tests' synthetic sub-01 ses-01 (sct_testing_data's t2 and t2s moved by known
    transforms, tests/bids_synth.py): T2w onto T2starw with both segmentations, cords ~11 mm apart
    by the headers. The image term (started from the cords' mean in-plane offset) did not raise the
    local correlation and was dropped whole, offset included, leaving the stiff in-plane seg step
    to close 11 mm: cord Dice 0.24, centerline RMS 8.3 mm (FAIL), before session 37; the chain
    composed through it (template cord on T2starw: Dice 0.19). Now the offset is kept: PASS (warn on cord_dice_src 0.919 since session 50), Dice
    0.94, Hausdorff95 0.5 mm (the seg step fits the segmentations, so the Dice is partly fitted;
    the failure it replaces is not), and the chain's composed Dice 0.80."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bids_synth import write_session

    write_session(sct_data, tmp_path / "bids", "01", "01", np.random.default_rng(0), contrasts=("T2w", "T2starw"))
    anat = tmp_path / "bids" / "sub-01" / "ses-01" / "anat"
    lab = tmp_path / "bids" / "derivatives" / "labels" / "sub-01" / "ses-01" / "anat"
    p = "sub-01_ses-01"
    assert main(["register", "-i", str(anat / f"{p}_T2w.nii.gz"), "--iseg", str(lab / f"{p}_T2w_seg-manual.nii.gz"),
                 "-d", str(anat / f"{p}_T2starw.nii.gz"), "--dseg", str(lab / f"{p}_T2starw_seg-manual.nii.gz"),
                 "-o", str(tmp_path / "r"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # session 50 (the image term leaves out what T2w does not cover, T2starw reaching 30 mm above
    # it): centerline RMS 0.448 -> 0.117 mm, cord Dice 0.940 -> 0.928, cord_dice_src 0.934 -> 0.919,
    # which warns (< 0.92); PASS before
    s = out["qc"]["scores"]
    assert out["qc"]["verdict"] in ("pass", "warn") and all("cord_dice_src" in r for r in out["qc"]["reasons"]), out["qc"]
    assert s["cord_dice"] == pytest.approx(0.928, abs=0.01) and s["cord_dice_src"] == pytest.approx(0.919, abs=0.01)
    assert s["centerline_rms_mm"] == pytest.approx(0.117, abs=0.05)
    assert s["hausdorff95_mm"] <= 0.5
    rec = json.loads((tmp_path / "r" / "provenance.json").read_text())["step_records"][0]["report"]
    # session 50: with T2w's missing field of view left out of the image term, the local correlation
    # rises (0.114 -> 0.123) and the image term is kept whole; before, it did not rise (0.106 ->
    # 0.105) and only the cords' mean offset (-24.0, 10.2 voxels) was kept ("cord offset only",
    # a branch this case no longer reaches)
    assert rec["used"] is True and rec["local_cc_after"] > rec["local_cc_before"], rec
    assert rec["seg_dice_after"] == pytest.approx(0.4645, abs=0.02) and rec["seg_dice_before"] < 0.01
