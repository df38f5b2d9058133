"""A cord runs through the field of view (spinereg.segment.cordseg, FREE_END_MM /
FREE_ENDS_MAX_COVERAGE): a "cord" that ends inside the image at both ends is refused.

Noise smoothed by 5 voxels holds tube-like blobs that passed every earlier check of the
segmentation (cross-section, probability, S-I coverage >= 25 %); on t2's and t1's grids, seeds
0-11, 14 of 24 were segmented, 8 of them clear of both edges of the field (10-39 mm of image
beyond each end; session 17). Those 8 are refused now. The other 6 touch one edge, as a cord
ending at its conus or under the brainstem does, and are kept (their labelings are flagged:
one or two discs, no sequence). Every real image of sct_testing_data and every phantom variant
(seeds 0-2) reaches both edges; the thoracolumbar phantom's conus ends 16-30 mm above the lower
edge, the upper end at the edge."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.errors import InputError
from spinereg.io.image import Image, load_image
from spinereg.segment import segment
from spinereg.segment.components import CordComponents, image_beyond_ends
from spinereg.segment.cordseg import TOP_INSIDE_WARN_MM


def _components(slices: np.ndarray, nz: int, centre: tuple[float, float] = (5.0, 5.0)) -> CordComponents:
    keep = np.zeros((nz, 10, 10), bool)
    keep[slices, 4:7, 4:7] = True
    c = np.full((nz, 2), np.nan)
    c[slices] = centre
    return CordComponents(keep, 1, 1, 1.0, slices, c, keep.sum(axis=(1, 2)).astype(float))


def test_image_beyond_ends_is_read_at_the_cords_centre():
    inside = np.ones((30, 10, 10), bool)
    assert image_beyond_ends(_components(np.arange(0, 30), 30), inside, 2.0) == (0.0, 0.0)
    assert image_beyond_ends(_components(np.arange(5, 20), 30), inside, 2.0) == (10.0, 20.0)
    # an oblique field: the image stops 4 slices above the cord at its centre, further at a corner
    inside[24:, 5, 5] = False
    assert image_beyond_ends(_components(np.arange(5, 20), 30), inside, 2.0) == (10.0, 8.0)


def _smoothed_noise(img: Image, seed: int, sigma: float = 5.0) -> Image:
    a = np.asarray(img.data, float)
    n = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=a.shape), sigma)
    return img.with_data(((n - n.mean()) / n.std() * a.std() + a.mean()).astype(np.float32))


@pytest.mark.realdata
def test_noise_blobs_clear_of_both_edges_are_refused(sct_data):
    refused_for_ends, kept, warned = 0, [], 0
    for name in ("t2/t2.nii.gz", "t1/t1w.nii.gz"):
        img = load_image(sct_data / name)
        for seed in range(12):
            try:
                r = segment(_smoothed_noise(img, seed), name[:2])
            except InputError as e:
                refused_for_ends += "at both ends" in str(e)
                continue
            kept.append(r.info["image_beyond_ends_mm"])
            warned += bool(r.info.get("warnings"))
    assert refused_for_ends == 8, refused_for_ends  # t2 seeds 4, 9; t1 0, 2, 3, 4, 6, 9 (>= 8 before session 36)
    assert len(kept) == 6 and all(min(k) == 0.0 for k in kept), kept  # the 6 kept touch an edge of the field
    # 5 of them end 23-52 mm below the top of the image: kept with a warning (session 19); the
    # sixth ends 35 mm above the lower edge, as a conus may
    assert warned == sum(k[1] > TOP_INSIDE_WARN_MM for k in kept) == 5, kept


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["t2/t2.nii.gz", "t1/t1w.nii.gz", "mt/mt1.nii.gz", "t2s/t2s.nii.gz"])
def test_real_cords_reach_both_edges(sct_data, name):
    r = segment(sct_data / name, "auto")
    assert r.info["image_beyond_ends_mm"] == [0.0, 0.0] and "warnings" not in r.info


@pytest.mark.realdata
def test_the_cli_warns_of_a_cord_ending_below_the_top(sct_data, tmp_path, capsys):
    """Noise smoothed by 5 voxels in t2's place, seed 0: a "cord" at the lower edge ending 39 mm
    below the top of the image is written, with a warning on stderr (exit 0: the conus aside, a
    cord may also end inside the field under a brainstem)."""
    from spinereg.cli.main import main
    from spinereg.io.image import save_image

    noise = save_image(_smoothed_noise(load_image(sct_data / "t2" / "t2.nii.gz"), 0), tmp_path / "noise.nii.gz")
    assert main(["segment", "-i", str(noise), "-o", str(tmp_path / "seg.nii.gz")]) == 0
    err = capsys.readouterr().err
    assert "warning: the segmented cord ends 39 mm below the top of the image" in err, err


@pytest.mark.realdata
@pytest.mark.slow
def test_a_conus_inside_the_field_is_kept(pam50_dir):
    from spinereg.phantom.independent import make_independent_subject

    ph = make_independent_subject("thoracolumbar", seed=0)
    info = segment(ph.image, "t2").info
    below, above = info["image_beyond_ends_mm"]
    assert above == 0.0 and 16.0 <= below <= 18.0, (below, above)  # measured 17 mm below the conus
    assert "warnings" not in info  # a conus inside the field is anatomy: no warning


def test_automatic_segmentations_pass_their_warnings_on():
    from spinereg.pipelines.autoseg import AutoSegmentations

    auto = AutoSegmentations()
    auto.records = {"a_seg.nii.gz": {"image": "/x/a.nii.gz", "warnings": ["ends 39 mm below the top"]},
                    "b_seg.nii.gz": {"image": "/x/b.nii.gz"}}
    assert auto.warnings() == ["automatic segmentation of a.nii.gz: ends 39 mm below the top"]


@pytest.mark.realdata
@pytest.mark.slow
def test_register_with_an_automatic_segmentation_says_its_warning(sct_data, tmp_path, capsys):
    """``register --iseg auto`` on the seed-0 noise image: the segmentation's warning reaches
    stderr (before session 19 it was in provenance.json only); the verdict fails on its own."""
    from spinereg.cli.main import main
    from spinereg.io.image import save_image

    t2 = sct_data / "t2" / "t2.nii.gz"
    noise = save_image(_smoothed_noise(load_image(t2), 0), tmp_path / "noise.nii.gz")
    rc = main(["register", "-i", str(noise), "-d", str(t2), "--iseg", "auto", "--dseg",
               str(sct_data / "t2" / "t2_seg-manual.nii.gz"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "warning: automatic segmentation of noise.nii.gz: the segmented cord ends 39 mm below" in err, err
    assert rc in (0, 3)


@pytest.mark.realdata
def test_the_qc_page_shows_the_warning(sct_data, tmp_path, capsys):
    """segment --qc on the seed-0 noise image: the segmentation page's note carries the warning."""
    import json

    from spinereg.cli.main import main
    from spinereg.io.image import save_image

    noise = save_image(_smoothed_noise(load_image(sct_data / "t2" / "t2.nii.gz"), 0), tmp_path / "noise.nii.gz")
    assert main(["segment", "-i", str(noise), "--qc", str(tmp_path / "qc")]) == 0
    capsys.readouterr()
    entries = json.loads((tmp_path / "qc" / "entries.json").read_text())["entries"]
    notes = [p.get("note", "") for p in entries[0]["panels"]]
    assert any("warning: the segmented cord ends 39 mm below the top of the image" in n for n in notes), notes


def test_chain_says_its_automatic_segmentations_warnings(tmp_path, monkeypatch, capsys):
    """``chain`` passes the job's warnings (its automatic segmentations') to stderr as register and
    register-to-template do; the job is stubbed: the wiring is what is tested."""
    import spinereg.pipelines.registration as jobs
    from spinereg.cli.main import main
    from spinereg.pipelines.registration import JobResult

    said = ["automatic segmentation of a.nii.gz: the segmented cord ends 39 mm below the top of the image"]
    monkeypatch.setattr(jobs, "chain_job", lambda *a, **k: JobResult(tmp_path, {}, {}, extra={"warnings": said}))
    main(["chain", "-i", "a.nii.gz", "b.nii.gz", "--seg", "auto", "auto", "-l", "l.nii.gz", "-o", str(tmp_path / "o")])
    assert f"spinereg chain: warning: {said[0]}" in capsys.readouterr().err
