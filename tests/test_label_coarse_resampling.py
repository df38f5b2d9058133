"""sct_testing_data t2 resampled to coarse voxels (scipy, not spinereg): the levels keep their
names. Truth: t2's held-out body labels (labels.nii.gz: C3 and C5 mid-body), so the discs in view
are C2/C3, C3/C4, C4/C5 (t2_seg-manual_labeled.nii.gz numbers them one lower and is not used);
positions are compared with the native image's discs (world S-I).

Each copy averages the image over its new voxel (order-1 samples across it) and keeps the
manual segmentation where its average exceeds 0.5. Before session 51 (measured the same way):
3 mm along A-P (alone and with 3 mm R-L) was relabelled one level low by the CSF profile
(evidence 15.0 / 10.8: the thin CSF in front of and behind the cord is lost to partial volume),
and 3 mm along S-I was named T11/T12 (one disc: each 2 mm bin of the cord-width read held a strip
of one thick slice's section, 8.6 mm wide at the top for a 12 mm cord). Now the CSF does not
rename images coarser than 2.5 mm along A-P (``csf_identity.MAX_AP_VOXEL_MM``) and the width
pools its bins' moments where the grid samples the cord more coarsely than the bins.

Still wrong (asserted as such, flagged): the copy made as tests/test_identity_margin_json.py
makes it, 2 mm R-L averaged two voxels at a time with the segmentation kept where its average
is >= 0.5 (a segmentation about 1 mm wider): the chain names C3/C4-C5/C6 (margin 0.18; the disc
bands and their spacing prefer one level low on t2 at every resolution, the width's step between
discs, which holds them at native resolution, weighs less at 2 mm R-L), and the CSF's evidence
for the right names, 4.65, is under its threshold 5."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import map_coordinates, uniform_filter1d

from spinereg.io.image import load_image
from spinereg.vertebrae import label_vertebrae

pytestmark = pytest.mark.realdata

RIGHT = ["C2/C3", "C3/C4", "C4/C5"]
AXIS = {"ap": 0, "si": 1, "rl": 2}  # t2 is P, S, R


def _average(data: np.ndarray, sizes: list[float]) -> np.ndarray:
    """``data`` (1 mm voxels) averaged over voxels of ``sizes`` mm, order-1 samples across each."""
    shape = [int(np.floor((n - 1) / s)) + 1 for n, s in zip(data.shape, sizes, strict=True)]
    offs = [np.linspace(-(s - 1) / 2, (s - 1) / 2, max(1, int(round(s * 3)))) if s > 1 else [0.0] for s in sizes]
    out = np.zeros(shape, np.float32)
    for o0 in offs[0]:
        for o1 in offs[1]:
            for o2 in offs[2]:
                c = np.meshgrid(*(np.arange(m) * s + o for m, s, o in zip(shape, sizes, (o0, o1, o2), strict=True)),
                                indexing="ij")
                out += map_coordinates(data, c, order=1, mode="nearest")
    return out / (len(offs[0]) * len(offs[1]) * len(offs[2]))


def _pairwise(data: np.ndarray, axis: int, n: int) -> np.ndarray:
    """tests/test_identity_margin_json.py's way: ``n`` voxels averaged, every ``n``-th kept."""
    d = uniform_filter1d(data, n, axis=axis)
    return d[tuple(slice(None, None, n) if a == axis else slice(None) for a in range(3))]


def _label(sct_data, tmp_path, spec: str, how: str = "average"):
    t2 = sct_data / "t2"
    im, sg = nib.load(str(t2 / "t2.nii.gz")), nib.load(str(t2 / "t2_seg-manual.nii.gz"))
    img, seg = np.asarray(im.dataobj, np.float32), np.asarray(sg.dataobj, np.float32)
    sizes = [1.0, 1.0, 1.0]
    for part in spec.split("+") if spec else []:
        ax, mm = part.split("=")
        sizes[AXIS[ax]] = float(mm)
    if how == "average":
        img, seg = _average(img, sizes), _average(seg, sizes) > 0.5
    else:
        for a, s in enumerate(sizes):
            if s > 1:
                img, seg = _pairwise(img, a, int(s)), _pairwise(seg, a, int(s))
        seg = seg >= 0.5
    aff = im.affine @ np.diag(sizes + [1.0])
    nib.save(nib.Nifti1Image(img, aff), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(seg.astype(np.uint8), aff), str(tmp_path / "seg.nii.gz"))
    return label_vertebrae(load_image(tmp_path / "img.nii.gz", ndim=3), load_image(tmp_path / "seg.nii.gz", ndim=3),
                           "t2")


@pytest.fixture(scope="module")
def native(sct_data, tmp_path_factory) -> dict[str, float]:
    lab = _label(sct_data, tmp_path_factory.mktemp("native"), "")
    assert [d.name for d in lab.measured] == RIGHT
    return {d.name: float(d.point[2]) for d in lab.measured}


# spec, what named the levels, identity margin, largest |S-I error| (mm) against the native discs
# (measured session 51); the CSF's evidence and shift where it preferred other names
CASES = [
    ("ap=1.5", "chain", 1.68, 0.53), ("ap=2", "chain", 4.03, 2.01), ("ap=2.5", "csf", 4.37, 2.00),
    ("ap=3", "chain", 0.95, 2.06),
    ("rl=1.5", "chain", 0.95, 2.00), ("rl=2", "chain", 0.72, 0.48), ("rl=2.5", "chain", 0.43, 0.50),
    ("rl=3", "csf", 4.90, 0.01),
    ("ap=1.5+rl=1.5", "chain", 1.15, 1.52), ("ap=2+rl=2", "chain", 4.07, 1.50),
    ("ap=2.5+rl=2.5", "csf", 5.24, 1.48), ("ap=3+rl=3", "chain", 0.43, 2.62),
    ("si=1.5", "chain", 2.55, 1.99), ("si=2", "chain", 1.88, 1.98), ("si=2.5", "chain", 1.82, 0.96),
    ("si=3", "chain", 2.19, 0.97),
]


@pytest.mark.parametrize(("spec", "source", "margin", "max_err"), CASES)
def test_coarse_copy_keeps_the_names(sct_data, tmp_path, native, spec, source, margin, max_err):
    lab = _label(sct_data, tmp_path, spec)
    names = [d.name for d in lab.measured]
    assert names == RIGHT, (spec, names, lab.report.get("csf_identity"))
    assert lab.identity_source == source, (spec, lab.report.get("csf_identity"))
    assert lab.identity_margin == pytest.approx(margin, abs=0.1), spec
    err = max(abs(float(d.point[2]) - native[d.name]) for d in lab.measured)
    assert err == pytest.approx(max_err, abs=0.3), (spec, err)


def test_three_mm_ap_is_not_renamed_by_the_csf(sct_data, tmp_path):
    """The copy tests/test_identity_margin_json.py used (3 mm A-P, three voxels averaged): the CSF
    prefers one level lower (evidence 13.1) and is recorded, not applied; the chain's right names
    stay (margin 1.16), flagged, with the reason."""
    lab = _label(sct_data, tmp_path, "ap=3", how="pairwise")
    rec = lab.report["csf_identity"]
    assert [d.name for d in lab.measured] == RIGHT and lab.identity_source == "chain" and lab.ambiguous
    assert rec["shift"] == 1 and rec["evidence"] == pytest.approx(13.09, abs=0.3)
    assert rec["not_applied"].startswith("voxels 3.0 mm along A-P"), rec
    assert lab.identity_margin == pytest.approx(1.16, abs=0.1)
    assert any("was not read: voxels 3.0 mm along A-P" in r for r in lab.report["ambiguous_reasons"])


def test_two_mm_rl_pairwise_is_still_one_level_low(sct_data, tmp_path):
    """Not fixed (module doc): 2 mm R-L, two voxels averaged, segmentation kept at >= 0.5."""
    lab = _label(sct_data, tmp_path, "rl=2", how="pairwise")
    rec = lab.report["csf_identity"]
    assert [d.name for d in lab.measured] == ["C3/C4", "C4/C5", "C5/C6"] and lab.ambiguous
    assert lab.identity_margin == pytest.approx(0.18, abs=0.1)
    assert rec["shift"] == -1 and rec["evidence"] == pytest.approx(4.65, abs=0.2), rec


def test_three_mm_si_width_is_the_native_width(sct_data, tmp_path):
    """The cord width read on the 3 mm S-I copy (pooled moments) lies within 0.25 mm of the
    native image's over the cord (measured 0.1 mm; 3.5 mm at the top before session 51)."""
    from spinereg.cord.centerline import Centerline
    from spinereg.vertebrae.cordwidth import lr_width

    def widths(spec: str, d) -> np.ndarray:
        _label(sct_data, d, spec)
        seg = load_image(d / "seg.nii.gz", ndim=3)
        cl = Centerline.from_mask(seg)
        z = np.arange(-12.0, 30.0, 3.0)
        s = np.arange(0.0, cl.length, 0.5)
        return np.interp(z, cl.points(s)[:, 2], lr_width(seg, cl, s))

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    nat, coarse = widths("", tmp_path / "a"), widths("si=3", tmp_path / "b")
    assert np.all(np.isfinite(nat)) and np.all(np.isfinite(coarse))
    assert np.max(np.abs(coarse - nat)) <= 0.25, np.round(coarse - nat, 2)
