"""A segmentation holding its image's voxels in another axis order / with flipped axes (one of the
pair reoriented by ``sct_image -setorient RPI`` or ``fslreorient2std``, the other not) is moved
exactly onto the image's grid (:func:`spinereg.io.image.on_grid_of`) by ``label-vertebrae``,
``register-to-template`` and ``register`` and everything that re-reads it later (the folder's QC
scores, the QC pages): the same discs, outputs and scores as with the segmentation stored like the
image. Refused as "not on the same voxel grid" before session 39. A real grid difference (shifted,
other shape) is still refused, with the same message.

The reoriented copies: sct_testing_data's t2 manual segmentation (stored PSR) flipped along its
first voxel axis and its last two axes swapped (ARS), t2s's segmentation (LAS) likewise (RSA);
data and affine changed together, so every voxel keeps its world position.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io.image import load_image, on_grid_of, require_same_grid

pytestmark = pytest.mark.realdata

T2, T2_SEG, LABELS = "t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", "t2/labels.nii.gz"
T2S, T2S_SEG = "t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz"
REFUSED = "are not on the same voxel grid"


def _reoriented(src: Path, dst: Path) -> Path:
    """``src`` flipped along voxel axis 0 and with axes 1 and 2 swapped; same world positions:
    new voxel (i, j, k) is old voxel (n0 - 1 - i, k, j)."""
    n = nib.load(str(src))
    data, aff = np.asarray(n.dataobj), n.affine
    to_old = np.array([[-1, 0, 0, data.shape[0] - 1], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    _save(np.ascontiguousarray(data[::-1].transpose(0, 2, 1)), aff @ to_old, n.header, dst)
    return dst


def _save(data: np.ndarray, aff: np.ndarray, header, dst: Path) -> Path:
    out = nib.Nifti1Image(data, aff, header.copy())
    out.set_sform(aff, 1)
    out.set_qform(aff, 1)
    nib.save(out, str(dst))
    return dst


@pytest.fixture(scope="module")
def files(sct_data, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reoriented")
    seg = nib.load(str(sct_data / T2_SEG))
    data, aff = np.asarray(seg.dataobj), seg.affine
    shifted = aff.copy()
    shifted[:3, 3] += 2.0  # 2 mm off: a real grid difference
    return {"seg_ro": _reoriented(sct_data / T2_SEG, d / "t2_seg_ro.nii.gz"),
            "t2s_seg_ro": _reoriented(sct_data / T2S_SEG, d / "t2s_seg_ro.nii.gz"),
            "seg_shifted": _save(data, shifted, seg.header, d / "t2_seg_shifted.nii.gz"),
            "seg_cropped": _save(np.ascontiguousarray(data[:, :, 1:]), aff, seg.header, d / "t2_seg_cropped.nii.gz")}


def _flat(doc: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _same_numbers(a: dict, b: dict) -> None:
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        if isinstance(fa[k], float) or isinstance(fb[k], float):
            assert fa[k] == pytest.approx(fb[k], rel=1e-9, abs=1e-9, nan_ok=True), k
        else:
            assert fa[k] == fb[k], k


def _same_pngs(qc_a: Path, qc_b: Path) -> int:
    """The QC figures of two one-entry reports: the same pixels; returns how many were compared."""
    import matplotlib.image as mpimg

    (ea,), (eb,) = list((qc_a / "entries").iterdir()), list((qc_b / "entries").iterdir())
    names = sorted(p.name for p in ea.glob("*.png"))
    assert names and names == sorted(p.name for p in eb.glob("*.png"))
    for name in names:
        assert np.array_equal(mpimg.imread(ea / name), mpimg.imread(eb / name)), name
    return len(names)


def test_on_grid_of_moves_exactly_and_leaves_real_differences(sct_data, files):
    img, seg = load_image(sct_data / T2), load_image(sct_data / T2_SEG)
    ro = load_image(files["seg_ro"], what="segmentation")
    assert ro.shape != seg.shape and not ro.grid.same_as(img.grid)
    with pytest.raises(InputError, match=REFUSED):  # what every command said before
        require_same_grid(img, ro)
    moved = on_grid_of(ro, img)
    require_same_grid(img, moved)
    assert np.array_equal(moved.affine, img.affine) and np.array_equal(moved.data, seg.data)
    assert moved.path == ro.path and moved.what == "segmentation"  # errors keep naming the file given
    assert on_grid_of(seg, img) is seg  # on the grid already: itself
    for key in ("seg_shifted", "seg_cropped"):  # a real difference: unchanged, refused as before
        other = load_image(files[key])
        assert on_grid_of(other, img) is other
        with pytest.raises(InputError, match=REFUSED):
            require_same_grid(img, on_grid_of(other, img))


def test_label_vertebrae_same_discs(sct_data, files, tmp_path, capsys):
    from spinereg.vertebrae import label_vertebrae

    image = load_image(sct_data / T2)
    ref = label_vertebrae(image, load_image(sct_data / T2_SEG, what="segmentation"), "t2")
    got = label_vertebrae(image, load_image(files["seg_ro"], what="segmentation"), "t2")
    assert [d.value for d in got.discs] == [d.value for d in ref.discs] and ref.discs
    for a, b in zip(got.discs, ref.discs, strict=True):
        assert np.abs(a.point - b.point).max() <= 0.01 and abs(a.s - b.s) <= 0.01

    outs = {}
    for name, seg in (("ref", sct_data / T2_SEG), ("ro", files["seg_ro"])):
        out = tmp_path / name
        assert main(["label-vertebrae", "-i", str(sct_data / T2), "-s", str(seg), "-c", "t2", "-o", str(out),
                     "--qc", str(tmp_path / f"qc_{name}")]) == 0, capsys.readouterr().err
        outs[name] = out
    a, b = (json.loads((outs[n] / "t2_discs.json").read_text()) for n in ("ref", "ro"))
    assert [d["value"] for d in a["discs"]] == [d["value"] for d in b["discs"]]
    for da, db in zip(a["discs"], b["discs"], strict=True):
        assert np.abs(np.subtract(da["point_mm"], db["point_mm"])).max() <= 0.01
    _same_numbers({k: v for k, v in a.items() if k not in ("discs", "inputs")},
                  {k: v for k, v in b.items() if k not in ("discs", "inputs")})
    for f in ("t2_seg_labeled.nii.gz", "t2_labels-disc.nii.gz"):  # on the image's grid, as for the same-order seg
        x, y = nib.load(str(outs["ref"] / f)), nib.load(str(outs["ro"] / f))
        assert x.shape == y.shape == image.shape and np.array_equal(x.affine, y.affine), f
        assert np.array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj)), f
    assert _same_pngs(tmp_path / "qc_ref", tmp_path / "qc_ro") == 1  # the QC page re-reads the seg


def test_register_to_template_same_outputs_and_scores(sct_data, files, tmp_path, capsys):
    from spinereg.metrics.run_scores import folder_scores

    outs = {}
    for name, seg in (("ref", sct_data / T2_SEG), ("ro", files["seg_ro"])):
        out = tmp_path / name
        rc = main(["register-to-template", "-i", str(sct_data / T2), "-s", str(seg), "-l", str(sct_data / LABELS),
                   "-t", "PAM50_small", "-o", str(out), "--allow-fail", "--qc", str(tmp_path / f"qc_{name}")])
        assert rc == 0, capsys.readouterr().err
        outs[name] = out
    a, b = (json.loads((outs[n] / "metrics.json").read_text()) for n in ("ref", "ro"))
    assert a["qc"]["scores"]["hausdorff95_mm"] > 0 and "level_offset_unverified" in a["qc"]["scores"]
    _same_numbers(a, b)  # the registration's metrics and the scores made from the re-read seg
    for f in ("warp_template2anat.nii.gz", "warp_anat2template.nii.gz", "template2anat.nii.gz"):
        x, y = nib.load(str(outs["ref"] / f)), nib.load(str(outs["ro"] / f))
        assert np.array_equal(x.affine, y.affine) and np.array_equal(x.get_fdata(), y.get_fdata()), f
    # the scores again from the folder alone: the seg named in provenance.json read back onto t2's grid
    assert json.loads((outs["ro"] / "provenance.json").read_text())["inputs"]["seg"].endswith("t2_seg_ro.nii.gz")
    _same_numbers(folder_scores(outs["ref"]), folder_scores(outs["ro"]))
    assert _same_pngs(tmp_path / "qc_ref", tmp_path / "qc_ro") >= 8


def test_register_with_reoriented_segmentations(sct_data, files, tmp_path, capsys):
    from spinereg.metrics.run_scores import folder_scores
    from spinereg.register.multimodal import register_multimodal

    ref = register_multimodal(sct_data / T2, sct_data / T2S, iseg=sct_data / T2_SEG, dseg=sct_data / T2S_SEG)
    got = register_multimodal(sct_data / T2, sct_data / T2S, iseg=files["seg_ro"], dseg=files["t2s_seg_ro"])
    assert np.array_equal(got.warp_src2dest().data, ref.warp_src2dest().data)
    assert got.dseg.grid.same_as(got.dest.grid, atol=0.0)
    outs = {}
    for name, iseg, dseg in (("ref", sct_data / T2_SEG, sct_data / T2S_SEG),
                             ("ro", files["seg_ro"], files["t2s_seg_ro"])):
        out = tmp_path / name
        rc = main(["register", "-i", str(sct_data / T2), "--iseg", str(iseg), "-d", str(sct_data / T2S),
                   "--dseg", str(dseg), "-o", str(out), "--allow-fail", "--qc", str(tmp_path / f"qc_{name}")])
        assert rc == 0, capsys.readouterr().err
        outs[name] = out
    a, b = (json.loads((outs[n] / "metrics.json").read_text()) for n in ("ref", "ro"))
    assert a["qc"]["scores"]["hausdorff95_mm"] > 0
    _same_numbers(a, b)
    _same_numbers(folder_scores(outs["ref"]), folder_scores(outs["ro"]))  # the segs re-read from their files
    assert _same_pngs(tmp_path / "qc_ref", tmp_path / "qc_ro") == 4


@pytest.mark.parametrize("key", ["seg_shifted", "seg_cropped"])
def test_a_real_grid_difference_is_still_refused(sct_data, files, tmp_path, capsys, key):
    t2, seg = str(sct_data / T2), str(files[key])
    runs = {"label-vertebrae": ["label-vertebrae", "-i", t2, "-s", seg, "-o", str(tmp_path / "lab")],
            "register-to-template": ["register-to-template", "-i", t2, "-s", seg, "-l", str(sct_data / LABELS),
                                     "-t", "PAM50_small", "-o", str(tmp_path / "rt")],
            "register": ["register", "-i", str(sct_data / T2S), "-d", t2, "--dseg", seg, "-o", str(tmp_path / "reg")]}
    for name, argv in runs.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert REFUSED in err and ("shape" in err) == (key == "seg_cropped"), (name, err)


def test_topup_apply_to_in_another_axis_order(tmp_path, capsys):
    """``sdc topup --apply-to`` given the blip-up series stored with two axes swapped: corrected on
    the blip-up image's grid, as the same series stored like it (refused before session 39)."""
    from spinereg.phantom.epi import make_epi_phantom

    make_epi_phantom(n_volumes=2, seed=0).save(tmp_path)
    up = nib.load(str(tmp_path / "epi_blipup.nii.gz"))
    aff = up.affine.copy()
    aff[:3, [0, 1]] = up.affine[:3, [1, 0]]
    swapped = _save(np.ascontiguousarray(np.asarray(up.dataobj).swapaxes(0, 1)), aff, up.header,
                    tmp_path / "up_swapped.nii.gz")
    got = {}
    for name, target in (("ref", tmp_path / "epi_blipup.nii.gz"), ("swapped", swapped)):
        assert main(["sdc", "topup", "-i", str(tmp_path / "epi_blipup.nii.gz"), "--reverse",
                     str(tmp_path / "epi_blipdown.nii.gz"), "--apply-to", str(target), "-o", str(tmp_path / name)]) == 0, \
            capsys.readouterr().err
        got[name] = nib.load(str(tmp_path / name / "epi_sdc.nii.gz"))
    assert got["ref"].shape == up.shape and np.array_equal(got["ref"].affine, got["swapped"].affine)
    assert np.array_equal(got["ref"].get_fdata(), got["swapped"].get_fdata())


def test_chain_with_a_reoriented_segmentation(sct_data, files, tmp_path, capsys):
    """``chain`` too: t2s -> t2 with t2s's segmentation in another axis order gives the same metrics,
    verdict and QC page as with the segmentation stored like t2s (refused before session 39)."""
    outs = {}
    for name, seg in (("ref", sct_data / T2S_SEG), ("ro", files["t2s_seg_ro"])):
        out = tmp_path / name
        qc = ["--qc", str(tmp_path / f"qc_{name}")] if name == "ro" else []  # the job's own QC, and `spinereg qc`
        rc = main(["chain", "-i", str(sct_data / T2S), str(sct_data / T2), "--seg", str(seg), str(sct_data / T2_SEG),
                   "-l", str(sct_data / LABELS), "-t", "PAM50_small", "-o", str(out), "--allow-fail", *qc])
        assert rc == 0, capsys.readouterr().err
        if not qc:
            assert main(["qc", str(out), "--root", str(tmp_path / f"qc_{name}")]) == 0, capsys.readouterr().err
        outs[name] = out
    a, b = (json.loads((outs[n] / "metrics.json").read_text()) for n in ("ref", "ro"))
    assert a["qc"]["scores"]["composed_cord_dice"] > 0.8
    _same_numbers(a, b)
    assert _same_pngs(tmp_path / "qc_ref", tmp_path / "qc_ro") >= 1
