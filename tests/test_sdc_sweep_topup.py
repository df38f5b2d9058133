"""``spinereg sdc topup`` with inputs that used to give a result that looked fine but was not."""

from __future__ import annotations

import shutil

import pytest

from spinereg.cli.main import main
from spinereg.phantom.epi import make_epi_phantom


@pytest.fixture(scope="module")
def ph_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("epi_phantom")
    make_epi_phantom(n_volumes=2, seed=0).save(d)
    return d


def test_apply_to_of_the_opposite_phase_encoding_is_refused(ph_dir, tmp_path, capsys):
    """The blip-down series (its sidecar: j-) as --apply-to was unwarped with blip-up's shifts,
    doubling its distortion: 'max shift 28.18 voxels', exit 0."""
    for ext in (".nii.gz", ".json"):
        shutil.copy(ph_dir / f"epi_blipdown{ext}", tmp_path / f"series{ext}")
    out = tmp_path / "o"
    rc = main(["sdc", "topup", "-i", str(ph_dir / "epi_blipup.nii.gz"), "--reverse",
               str(ph_dir / "epi_blipdown.nii.gz"), "--apply-to", str(tmp_path / "series.nii.gz"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--apply-to PhaseEncodingDirection is 'j-'" in err and "series.json" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()
