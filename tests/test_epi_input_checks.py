"""EPI inputs that ran as if they were fine: negative b-values, an anatomical image as moco's
mask, a sidecar's phase-encode direction along the slice axis, an ``sdc anat`` field far larger
than EPI distortion, and the phantom's series without its repetition time in the NIfTI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.epi.fieldmapless import MAX_PLAUSIBLE_SHIFT_VOX, implausible_shift_warning
from spinereg.epi.moco import motion_correct, read_bvals
from spinereg.epi.moco_masks import require_weights
from spinereg.epi.sidecar import epi_params
from spinereg.errors import InputError
from spinereg.io.image import Image
from spinereg.phantom.epi import make_epi_phantom


@pytest.fixture(scope="module")
def ph(tmp_path_factory) -> Path:
    """The EPI phantom (2 volumes, seed 0) written once for the module."""
    d = tmp_path_factory.mktemp("epi_checks") / "ph"
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    return d


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _series(shape: tuple[int, int, int, int] = (16, 16, 4, 3)) -> Image:
    """A small 4D series: a bright disk, the same in every volume, with noise."""
    rng = np.random.default_rng(0)
    i, j = np.indices(shape[:2])
    disk = (((i - 8) ** 2 + (j - 8) ** 2) < 25).astype(np.float32)
    data = 100 * disk[..., None, None] + rng.normal(0, 1, shape).astype(np.float32) + 10
    return Image(np.abs(data), np.diag([1.0, 1.0, 3.0, 1.0]))


# -- 1. b-values --------------------------------------------------------------------------------
def test_negative_bvalue_is_refused_naming_the_file(sct_data, tmp_path, capsys):
    """``0 750 -750 ...`` classed volume 2 as b=0 (-750 <= 50) and moco ran with it, exit 0."""
    bvals = tmp_path / "b.txt"
    bvals.write_text("0 750 -750 750 750 750 750\n")
    out = tmp_path / "o"
    rc = main(["moco", "-i", str(sct_data / "dmri" / "dmri.nii.gz"), "--bvals", str(bvals), "-o", str(out)])
    err = _one_line_error(capsys)
    assert rc == 2 and str(bvals) in err and "volume 2: -750" in err and "fix:" in err and ">= 0" in err, err
    assert not out.exists()


def test_bvalue_that_is_not_a_number_is_refused(tmp_path):
    """``nan`` parses as a float and was classed b=0 the same way."""
    p = tmp_path / "b.txt"
    p.write_text("0\n750\nnan\n")
    with pytest.raises(InputError, match=r"volume 2: nan") as exc:
        read_bvals(p, 3)
    assert exc.value.path == str(p)
    p.write_text("0 5 1000\n")  # a b=0 volume stored as b=5 is still a b-value
    assert read_bvals(p, 3).tolist() == [0.0, 5.0, 1000.0]


def test_negative_bvalues_refused_by_the_library_too():
    with pytest.raises(InputError, match="negative"):
        motion_correct(_series(), bvals=np.array([0.0, -750.0, 750.0]))


# -- 2. moco -m --------------------------------------------------------------------------------
def test_anatomical_image_as_moco_mask_is_refused(sct_data, tmp_path, capsys):
    """t2.nii.gz as -m ran (exit 0), its intensities the registration's weights."""
    t2 = sct_data / "t2" / "t2.nii.gz"
    out = tmp_path / "o"
    rc = main(["moco", "-i", str(sct_data / "dmri" / "dmri.nii.gz"), "-m", str(t2), "-o", str(out)])
    err = _one_line_error(capsys)
    assert rc == 2 and str(t2) in err and "(-m) is not a mask" in err and "fix:" in err, err
    assert not out.exists()


def test_moco_mask_values():
    """Masks and weight maps pass: binary 0/1 and 0/255, a soft cord mask, and a Gaussian weight
    map within 0..1 that is non-zero nearly everywhere (``sct_create_mask -f gaussian``). An
    intensity image is refused, by the CLI's check and by :func:`motion_correct`."""
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    i, j, _ = np.indices((16, 16, 4))
    r2 = (i - 8.0) ** 2 + (j - 8.0) ** 2
    disk = (r2 < 25).astype(np.uint8)
    for data in (disk, 255 * disk, 0.4 * disk.astype(np.float32), np.exp(-r2 / (2 * 6.0 ** 2))):
        require_weights(Image(data, aff))
    anatomy = Image((200 + 800 * np.exp(-r2 / 40.0)).astype(np.float32), aff)
    with pytest.raises(InputError, match=r"\(-m\) is not a mask"):
        require_weights(anatomy)
    with pytest.raises(InputError, match="not a mask"):
        motion_correct(_series(), mask=anatomy)


# -- 3. PhaseEncodingDirection k ---------------------------------------------------------------
def _fieldmap_on(path: Path, out: Path) -> Path:
    """A smooth field map in Hz (both signs, up to 25 Hz) on the grid of ``path``."""
    ref = nib.load(str(path))
    i, j, _ = np.indices(ref.shape[:3])
    c = np.array(ref.shape[:2]) / 2
    fm = 40 * np.exp(-((i - c[0]) ** 2 + (j - c[1]) ** 2) / (2 * 15.0 ** 2)) - 15
    nib.save(nib.Nifti1Image(fm.astype(np.float32), ref.affine), str(out))
    return out


@pytest.mark.parametrize("pe", ["k", "k-"])
def test_sidecar_phase_encoding_along_slices_is_refused_by_sdc_fieldmap(sct_data, tmp_path, capsys, pe):
    """A sidecar's "k" was applied along the slice axis by sdc fieldmap, exit 0 (--pe offers
    only i/j)."""
    fmri = sct_data / "fmri" / "fmri.nii.gz"
    fm = _fieldmap_on(fmri, tmp_path / "fm.nii.gz")
    side = tmp_path / "pek.json"
    side.write_text(json.dumps({"PhaseEncodingDirection": pe, "TotalReadoutTime": 0.03}))
    out = tmp_path / "o"
    argv = ["sdc", "fieldmap", "-i", str(fmri), "--fieldmap", str(fm), "--json", str(side)]
    rc = main([*argv, "-o", str(out)])
    err = _one_line_error(capsys)
    assert rc == 2 and str(side) in err and "slice axis" in err and "--pe i" in err, err
    assert not out.exists()
    assert main([*argv, "--pe", "j", "-o", str(out)]) == 0  # the in-plane direction given: it runs
    capsys.readouterr()


def test_sidecar_phase_encoding_along_slices_names_the_json_in_topup_and_anat(ph, tmp_path, capsys):
    """sdc topup / anat refused it already, but naming the EPI, not the JSON that said it."""
    side = tmp_path / "pek.json"
    side.write_text(json.dumps({"PhaseEncodingDirection": "k", "TotalReadoutTime": 0.03}))
    runs = {"topup": ["-i", str(ph / "epi_blipup.nii.gz"), "--reverse", str(ph / "epi_blipdown.nii.gz")],
            "anat": ["-i", str(ph / "epi.nii.gz"), "-d", str(ph / "t2s.nii.gz")]}
    for method, argv in runs.items():
        out = tmp_path / method
        rc = main(["sdc", method, *argv, "--json", str(side), "-o", str(out)])
        err = _one_line_error(capsys)
        assert rc == 2 and err.startswith(f"spinereg sdc: error: {side}:") and "slice axis" in err, err
        assert not out.exists()


def test_slice_axis_given_as_argument_is_refused():
    """Through the library (no --pe choices there) the same refusal, without a file to name."""
    with pytest.raises(InputError, match="slice axis") as exc:
        epi_params({"_path": "epi.json"}, pe="k", readout_s=0.03)
    assert exc.value.path is None
    assert epi_params({"PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.03}).pe == "j-"


# -- 4. sdc anat: an implausible field --------------------------------------------------------
def test_sdc_anat_warns_of_an_implausible_field(ph, sct_data, tmp_path, capsys):
    """The phantom's EPI against SCT's t2 (another subject) was 'corrected' by 8.3 voxels (99th
    percentile in the subject), exit 0, no word; against its own T2*w 2.7. The estimate is kept
    and written; a warning names the figure and what to check, and the JSON records it."""
    t2 = sct_data / "t2" / "t2.nii.gz"
    out = tmp_path / "wrong"
    assert main(["sdc", "anat", "-i", str(ph / "epi.nii.gz"), "-d", str(t2), "-o", str(out)]) == 0
    cap = capsys.readouterr()
    warn = [ln for ln in cap.err.splitlines() if "implausibly large" in ln]
    assert len(warn) == 1 and warn[0].startswith("spinereg sdc: warning:"), cap.err
    info = json.loads((out / "epi_sdc.json").read_text())
    p99 = info["object_p99_shift_vox"]
    assert p99 > 7  # measured 8.32
    assert f"{p99:.2f} voxels" in warn[0] and str(t2) in warn[0] and "same subject" in warn[0]
    assert "readout time" in warn[0] and f"{p99 / 0.03:.0f} Hz" in warn[0], warn[0]
    assert info["plausibility_check"] == {"object_p99_shift_vox": p99, "max_plausible_shift_vox": 5.0,
                                          "implausible": True}
    assert "implausibly large" in info["warning"] and (out / "epi_sdc.nii.gz").exists()
    out = tmp_path / "right"
    assert main(["sdc", "anat", "-i", str(ph / "epi.nii.gz"), "-d", str(ph / "t2s.nii.gz"), "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""
    info = json.loads((out / "epi_sdc.json").read_text())
    assert info["object_p99_shift_vox"] < 4 and info["plausibility_check"]["implausible"] is False  # 2.67


def test_implausible_shift_warning_bound():
    assert implausible_shift_warning(MAX_PLAUSIBLE_SHIFT_VOX, "t2.nii.gz", 0.03) is None
    assert implausible_shift_warning(float("nan"), "t2.nii.gz", 0.03) is None
    w = implausible_shift_warning(6.0, "t2.nii.gz", None)
    assert w is not None and "6.00 voxels" in w and "Hz" not in w  # no readout time: no field in Hz


def test_sdc_anat_help_states_the_bound():
    """The CLI's description says the bound without importing the solver at startup."""
    from spinereg.cli import sdc

    text = Path(sdc.__file__).read_text()
    assert f"exceeds {MAX_PLAUSIBLE_SHIFT_VOX:g} voxels" in text


# -- 5. the phantom's repetition time ----------------------------------------------------------
def test_phantom_series_carries_its_repetition_time(tmp_path, capsys):
    """epi.nii.gz said pixdim[4] 1.0 and units unknown while epi.json said RepetitionTime 2.0."""
    out = tmp_path / "ph"
    assert main(["phantom", "-o", str(out), "--shape", "24", "24", "4", "--volumes", "2"]) == 0
    capsys.readouterr()
    hdr = nib.load(str(out / "epi.nii.gz")).header
    tr = json.loads((out / "epi.json").read_text())["RepetitionTime"]
    assert float(hdr["pixdim"][4]) == pytest.approx(tr) and tr == 2.0
    assert hdr.get_zooms() == pytest.approx((1.0, 1.0, 5.0, 2.0))
    assert hdr.get_xyzt_units() == ("mm", "sec")
    for name in ("epi_blipup", "t2w", "t2s_seg", "fieldmap_hz", "truth/vsm"):
        assert nib.load(str(out / f"{name}.nii.gz")).header.get_xyzt_units() == ("mm", "sec"), name


def test_segment_bvals_refuse_negative(tmp_path):
    """segment --bvals reads its own file (the b=0 / DWI split of a series): the same check."""
    from spinereg.errors import InputError
    from spinereg.segment.inputs import read_bvals

    p = tmp_path / "bvals.txt"
    p.write_text("0 750 -750 750\n")
    with pytest.raises(InputError, match=r"volume 2: -750"):
        read_bvals(p, 4)
    p.write_text("0 750 750 750\n")
    assert list(read_bvals(p, 4)) == [0, 750, 750, 750]
