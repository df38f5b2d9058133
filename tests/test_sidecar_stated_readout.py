"""``stated_readout``: the one parser of a sidecar's ``TotalReadoutTime`` (no images, no data).

Before session 52 three lenient parsers read the key each their own way (topup's blip-up readout
and readout ratio, the --readout-time override warning) beside ``epi_params``' strict one; they
now all call ``spinereg.epi.sidecar.stated_readout``. The values below are what each caller gave
before the change (recorded on the same inputs first): a value ``float()`` reads (a number, a
numeric string) counts; anything outside (0, 1) s is none for topup, refused by ``epi_params``,
and still compared by the override warning. The heavy known-field checks stay in
tests/test_topup_readout_ratio.py and tests/test_sdc_arg_overrides.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spinereg.epi.sidecar import epi_params, stated_readout
from spinereg.epi.topup import _readout_ratio, _sidecar_readout
from spinereg.errors import InputError

MISSING = object()
#: sidecar value: (stated_readout, in_range=False, topup's ratio over a 0.04 s blip-up)
CASES = {
    "missing": (MISSING, None, None, 1.0),
    "null": (None, None, None, 1.0),
    "number": (0.03, 0.03, 0.03, 0.75),
    "same as blip-up": (0.04, 0.04, 0.04, 1.0),
    "numeric string": ("0.03", 0.03, 0.03, 0.75),
    "padded exponent string": (" 3e-2 ", 0.03, 0.03, 0.75),
    "non-number string": ("abc", None, None, 1.0),
    "empty string": ("", None, None, 1.0),
    "list": ([0.03], None, None, 1.0),
    "zero": (0, None, 0.0, 1.0),
    "negative": (-0.03, None, -0.03, 1.0),
    "milliseconds": (30, None, 30.0, 1.0),
    "one second": (1.0, None, 1.0, 1.0),
    "infinity": (math.inf, None, math.inf, 1.0),
    "infinity string": ("inf", None, math.inf, 1.0),
}


def _meta(value: object) -> dict:
    meta = {"PhaseEncodingDirection": "j", "_path": "/data/epi.json"}
    if value is not MISSING:
        meta["TotalReadoutTime"] = value
    return meta


@pytest.mark.parametrize("case", sorted(CASES))
def test_stated_readout_and_topup(case):
    value, in_range, any_number, ratio = CASES[case]
    meta = _meta(value)
    assert stated_readout(meta) == in_range
    assert stated_readout(meta, in_range=False) == any_number
    assert _sidecar_readout(meta, 0.04) == (0.04 if in_range is None else in_range)
    assert _readout_ratio(meta, 0.04) == pytest.approx(ratio)


@pytest.mark.parametrize("value", [math.nan, "nan"])
def test_nan(value):
    meta = _meta(value)
    assert stated_readout(meta) is None
    assert math.isnan(stated_readout(meta, in_range=False))
    assert _sidecar_readout(meta, 0.04) == 0.04 and _readout_ratio(meta, 0.04) == 1.0
    # a stated NaN differs from any given time: warned of (no warning before session 52, while inf,
    # 0, negatives and 30 were)
    note = epi_params(meta, None, 0.04).conflict
    assert note is not None and "--readout-time 0.04 where the sidecar's TotalReadoutTime is nan" in note
    assert "/data/epi.json" in note
    with pytest.raises(InputError, match=r"total readout time nan s is out of range \(0, 1\) \(TotalReadoutTime\)"):
        epi_params(meta)


@pytest.mark.parametrize(("case", "shown"), [("number", "0.03"), ("numeric string", "0.03"),
                                             ("negative", "-0.03"), ("milliseconds", "30"),
                                             ("infinity", "inf"), ("infinity string", "inf")])
def test_override_warning_on_a_stated_number(case, shown):
    note = epi_params(_meta(CASES[case][0]), None, 0.04).conflict
    assert note is not None and f"--readout-time 0.04 where the sidecar's TotalReadoutTime is {shown}" in note
    assert "/data/epi.json" in note


@pytest.mark.parametrize("case", ["missing", "null", "same as blip-up", "non-number string", "list"])
def test_no_override_warning_without_a_differing_number(case):
    assert epi_params(_meta(CASES[case][0]), None, 0.04).conflict is None


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "no readout time (TotalReadoutTime missing from the sidecar)"),
    ("null", "no readout time (TotalReadoutTime missing from the sidecar)"),
    ("non-number string", "TotalReadoutTime is not a number ('abc')"),
    ("list", "TotalReadoutTime is not a number ([0.03])"),
    ("zero", "total readout time 0.0 s is out of range (0, 1) (TotalReadoutTime)"),
    ("negative", "total readout time -0.03 s is out of range (0, 1) (TotalReadoutTime)"),
    ("milliseconds", "total readout time 30.0 s is out of range (0, 1) (TotalReadoutTime)"),
    ("infinity", "total readout time inf s is out of range (0, 1) (TotalReadoutTime)"),
])
def test_epi_params_refuses_naming_the_sidecar(case, message):
    with pytest.raises(InputError) as err:
        epi_params(_meta(CASES[case][0]))
    assert message in str(err.value) and "/data/epi.json" in str(err.value)


def test_epi_params_reads_a_numeric_string():
    assert epi_params(_meta("0.03")).readout_s == 0.03
    assert epi_params(_meta("0.03")).conflict is None


def test_a_stated_zero_is_warned_of_not_an_internal_error():
    """Sidecar ``TotalReadoutTime`` 0 with any --readout-time was an internal ZeroDivisionError
    (``sdc fieldmap``: "internal error (ZeroDivisionError: float division by zero)") before session 52."""
    for value in (0, 0.0, False):
        note = epi_params(_meta(value), None, 0.04).conflict
        assert note is not None and "--readout-time 0.04 where the sidecar's TotalReadoutTime is 0" in note


def test_an_integer_too_large_for_a_float_is_infinite():
    """A 400-digit JSON integer was an internal OverflowError in every reader before session 52."""
    meta = _meta(10**400)
    assert stated_readout(meta) is None and stated_readout(meta, in_range=False) == math.inf
    assert stated_readout(_meta(-(10**400)), in_range=False) == -math.inf
    assert _sidecar_readout(meta, 0.04) == 0.04 and _readout_ratio(meta, 0.04) == 1.0
    assert "TotalReadoutTime is inf" in epi_params(meta, None, 0.04).conflict
    with pytest.raises(InputError, match=r"total readout time inf s is out of range"):
        epi_params(meta)


def test_cli_stated_zero_with_readout_argument(tmp_path, capsys):
    import json

    import nibabel as nib
    import numpy as np

    from spinereg.cli.main import main

    epi = np.random.default_rng(0).random((20, 20, 4)).astype(np.float32) + 1
    nib.save(nib.Nifti1Image(epi, np.eye(4)), str(tmp_path / "epi.nii.gz"))
    field = np.broadcast_to(np.linspace(-5, 5, 20)[None, :, None], (20, 20, 4)).astype(np.float32)  # Hz
    nib.save(nib.Nifti1Image(field, np.eye(4)), str(tmp_path / "fm.nii.gz"))
    (tmp_path / "epi.json").write_text(json.dumps({"PhaseEncodingDirection": "j", "TotalReadoutTime": 0}))
    rc = main(["sdc", "fieldmap", "-i", str(tmp_path / "epi.nii.gz"), "--fieldmap", str(tmp_path / "fm.nii.gz"),
               "-o", str(tmp_path / "out"), "--readout-time", "0.03"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "--readout-time 0.03 where the sidecar's TotalReadoutTime is 0" in err and "epi.json" in err


def _small_epi_and_anat(d: Path) -> None:
    """A 24x24x4 blob (noise seed 0) as the anatomy, and as the EPI shifted one voxel along j."""
    import nibabel as nib
    import numpy as np

    i, j = np.indices((24, 24))
    rng = np.random.default_rng(0)
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    for name, cj in (("t2s", 12), ("epi", 13)):
        blob = 100.0 * np.exp(-((i - 12) ** 2 + (j - cj) ** 2) / 20.0)[..., None] * np.ones(4) + 10
        data = (blob + rng.normal(0, 1, blob.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, aff), str(d / f"{name}.nii.gz"))


def test_cli_anat_null_readout_runs_like_a_missing_one(tmp_path, capsys):
    """``sdc anat`` with a sidecar ``"TotalReadoutTime": null`` was refused ("no readout time
    (TotalReadoutTime missing from the sidecar)", exit 2) before session 52, where the key absent
    runs without the field in Hz. Now null is absent; a stated non-number or 30 is still refused
    naming the sidecar, and null with --readout-time makes the field in Hz."""
    import json

    from spinereg.cli.main import main

    _small_epi_and_anat(tmp_path)
    side = tmp_path / "epi.json"
    argv = ["sdc", "anat", "-i", str(tmp_path / "epi.nii.gz"), "-d", str(tmp_path / "t2s.nii.gz")]
    side.write_text(json.dumps({"PhaseEncodingDirection": "j", "TotalReadoutTime": None}))
    rc = main([*argv, "-o", str(tmp_path / "null")])
    err = capsys.readouterr().err
    assert rc == 0 and "field map output holds zeros" in err and "missing" not in err, err
    res = json.loads((tmp_path / "null" / "epi_sdc.json").read_text())
    assert res["TotalReadoutTime"] is None and res["field_hz"] is False
    rc = main([*argv, "--readout-time", "0.03", "-o", str(tmp_path / "given")])
    err = capsys.readouterr().err
    assert rc == 0 and "holds zeros" not in err and "warning" not in err, err
    assert json.loads((tmp_path / "given" / "epi_sdc.json").read_text())["field_hz"] is True
    for value, message in (("abc", "TotalReadoutTime is not a number ('abc')"),
                           (30, "total readout time 30.0 s is out of range (0, 1) (TotalReadoutTime)")):
        side.write_text(json.dumps({"PhaseEncodingDirection": "j", "TotalReadoutTime": value}))
        out = tmp_path / f"bad{value}"
        rc = main([*argv, "-o", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and message in err and str(side) in err, err
        assert not out.exists()


def test_cli_fieldmap_null_readout_is_missing(tmp_path, capsys):
    """``sdc fieldmap`` needs the time: a null one is refused as missing, naming the sidecar."""
    import json

    import nibabel as nib
    import numpy as np

    from spinereg.cli.main import main

    _small_epi_and_anat(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 4), np.float32), np.diag([1.0, 1.0, 3.0, 1.0])),
             str(tmp_path / "fm.nii.gz"))
    side = tmp_path / "epi.json"
    side.write_text(json.dumps({"PhaseEncodingDirection": "j", "TotalReadoutTime": None}))
    out = tmp_path / "o"
    rc = main(["sdc", "fieldmap", "-i", str(tmp_path / "epi.nii.gz"), "--fieldmap", str(tmp_path / "fm.nii.gz"),
               "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "TotalReadoutTime missing from the sidecar" in err and str(side) in err, err
    assert "--readout-time" in err and not out.exists()
