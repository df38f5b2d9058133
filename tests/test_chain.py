"""Chains through intermediate references: template -> t2 -> X covers X's whole field of view."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.io import Image, load_image
from spinereg.metrics import dice
from spinereg.register.ants_steps import ants_step
from spinereg.register.chain import order_images, register_chain
from spinereg.transforms import apply_transforms, apply_transforms_file
from spinereg.transforms.displacement import DisplacementField

T2 = ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz")


def _bin(img: Image, data=None) -> Image:
    return img.with_data(((img.data if data is None else data) > 0.5).astype(np.uint8))


def _inside_si(img: Image, ref: Image) -> np.ndarray:
    """Voxels of ``img`` within the world S-I extent of ``ref``'s field of view."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in ref.shape[:3]], indexing="ij")).reshape(3, -1).T
    z = ref.grid.voxel_to_world(corners.astype(float))[:, 2]
    ijk = np.indices(img.shape[:3]).reshape(3, -1).T.astype(float)
    zi = img.grid.voxel_to_world(ijk)[:, 2].reshape(img.shape[:3])
    return (zi >= z.min()) & (zi <= z.max())


@pytest.mark.parametrize("name,dest,dseg,direct_claim,composed_claim,inside_claim", [
    ("t2s", "t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz", 0.981, 0.899, 0.958),
    ("t1w", "t1/t1w.nii.gz", "t1/t1w_seg-manual.nii.gz", 0.957, 0.938, 0.955),
    ("mt1", "mt/mt1.nii.gz", "mt/mt1_seg.nii.gz", 0.984, 0.941, 0.975),  # 0.986 / 0.977 before session 37
])
def test_template_to_target_whole_fov(sct_data, name, dest, dseg, direct_claim, composed_claim, inside_claim):
    """SCT's -initwarp route reaches whole-FOV Dice 0.61 (t2s), 0.80 (t1w), 0.56 (mt1); the issue asks
    0.90/0.90/0.85. With the full PAM50: the direct template registration of X (landmarks carried
    through the chain, fitted to X's own segmentation, so the Dice against that segmentation is
    not independent) 0.981/0.957/0.986; the composition template -> t2 -> X, which does not use
    X's segmentation for the template step, 0.899/0.938/0.941 over X's whole field of view and
    0.958/0.955/0.977 within t2's S-I extent (beyond it, 30 mm of t2s and 17-34 mm of mt1/t1w,
    both warps are extrapolated). The link t2 -> X is the default with segmentations
    (multimodal_spinereg_imseg: image-driven, then stiffer segmentation demons); the
    segmentation-only preset, fitted to X's segmentation alone, scores 0.905/0.941/0.942 and
    0.957/0.957/0.986 inside against that same segmentation, but leaves 1.05-2.25 mm on known
    deformations of t2 where the default leaves 0.16-0.27 (tests/test_register_robustness.py).
    Asserted at the measured figure minus 0.005 (0.015 whole and 0.01 inside before session 37, when
    mt1 measured 0.9836 direct and 0.975 inside, under the 0.986 / 0.977 above)."""
    res = register_chain([sct_data / dest, sct_data / T2[0]], [sct_data / dseg, sct_data / T2[1]],
                         labels=sct_data / "t2/labels.nii.gz", template="PAM50")
    assert res.modes == ["direct", "anatomical"]
    seg = load_image(sct_data / dseg)
    tcord = load_image(res.anat.template.path("cord"), check_finite=False)
    w = apply_transforms(tcord, seg.grid, [res.warp_template2image(0)], "linear")
    assert dice(_bin(w), _bin(seg)).dice >= direct_claim - 0.005
    comp = DisplacementField.from_transform(res.composed_template2image(0), seg.grid)
    c = apply_transforms(tcord, seg.grid, [comp], "linear")
    assert dice(_bin(c), _bin(seg)).dice >= composed_claim - 0.005
    inside = _inside_si(seg, load_image(sct_data / T2[0]))
    a, b = (np.asarray(c.data) > 0.5) & inside, (np.asarray(seg.data) > 0.5) & inside
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= inside_claim - 0.005


def test_chain_cli_three_images(sct_data, tmp_path):
    out = tmp_path / "chain"
    rc = main(["chain", "-i", str(sct_data / "mt/mt1.nii.gz"), str(sct_data / "t2s/t2s.nii.gz"),
               str(sct_data / T2[0]), "--seg", str(sct_data / "mt/mt1_seg.nii.gz"),
               str(sct_data / "t2s/t2s_seg.nii.gz"), str(sct_data / T2[1]), "-l", str(sct_data / "t2/labels.nii.gz"),
               "-t", "PAM50_small", "-o", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    # PAM50_small (1x1x2 mm), direct registrations (fitted to these segmentations): measured 0.979 /
    # 0.978 (session 38; the bounds were 0.90 / 0.85 before)
    assert m["mt1"]["cord_dice_whole"] == pytest.approx(0.979, abs=0.005)  # measured 0.9787
    assert m["t2s"]["cord_dice_whole"] == pytest.approx(0.978, abs=0.005)  # measured 0.9784
    # direct registrations are reported beside the composition through the chain, named as such
    for name in ("mt1", "t2s"):
        assert m[name]["mode"] == "direct" and m[name]["direct_fitted_to_this_seg"] is True
        assert set(m[name]["composed"]) == {"cord_dice_whole", "cord_dice_zb", "cord_dice_in_anat_fov"}
        assert m[name]["composed"]["cord_dice_whole"] < m[name]["composed"]["cord_dice_in_anat_fov"]
    # through the links alone, over the part the chain covers (mt1 -> t2s -> t2: every later image's
    # field of view; counting mt1's slices beyond t2s's made it 0.788 before session 38's fix)
    # session 51: 0.9657 -> 0.949, the mt1 (17 mm slices) link's segmentation force now acts only where
    # the segmentations disagree and where mt1 has data (0.957 with the first rule alone). A Dice
    # against the segmentation the link is given, so partly fitted; on known fields of mt1 onto 1 mm
    # the cord error fell, S-I 0.31/0.54/0.36 -> 0.18/0.47/0.37 mm, in-plane 0.24/0.27/0.27 ->
    # 0.21/0.24/0.23, seeds 0/1/2 (a session script; tests/test_register_thick_slice_segs.py asserts t2s)
    assert m["mt1"]["composed"]["cord_dice_in_anat_fov"] == pytest.approx(0.949, abs=0.005)  # 0.9604 before session 50's link fix
    assert m["t2s"]["composed"]["cord_dice_in_anat_fov"] == pytest.approx(0.967, abs=0.005)  # measured 0.9665
    assert m["mt1"]["cord_outside_anat_fov"] == pytest.approx(0.577, abs=0.02)
    assert m["t2s"]["cord_outside_anat_fov"] == pytest.approx(0.409, abs=0.02)
    assert "composed" not in m["t2"]
    # the anatomical image is labelled first; its discs join the given labels when the levels agree
    auto = m["t2"]["landmarks"]["used"]["automatic"]
    assert auto["used"] or auto["reason"], auto
    assert m["t2"]["landmarks"]["used"]["given"]["kind"] == "body"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command_line"].startswith("spinereg chain -i ") and prov["started_utc"].endswith("Z")
    assert prov["input_files"]["images"][0]["sha256"] == hashlib.sha256((sct_data / "mt/mt1.nii.gz").read_bytes()).hexdigest()
    assert [r["path"] for r in prov["input_files"]["segs"]][-1] == str((sct_data / T2[1]).resolve())
    assert "registration" in prov["timings_s"] and prov["chain_timings_s"]
    assert len(prov["links"]) == 2 and prov["template_warp_modes"] == ["direct", "direct", "anatomical"]
    for f in ("warp_template2mt1.nii.gz", "warp_mt12template.nii.gz", "warp_template2t2.nii.gz"):
        assert (out / f).is_file()


def test_order_rule(sct_data):
    got = order_images("sub-01_bold.nii.gz", "sub-01_T2w.nii.gz",
                       ["sub-01_T1w.nii.gz", "sub-01_T2star.nii.gz", "sub-01_dwi.nii.gz"])
    assert got == ["sub-01_bold.nii.gz", "sub-01_T2star.nii.gz", "sub-01_T2w.nii.gz"]
    assert order_images("a_T2star.nii.gz", "a_T2w.nii.gz", ["a_bold.nii.gz"]) == ["a_T2star.nii.gz", "a_T2w.nii.gz"]


def test_given_link_warps(sct_data, tmp_path):
    """Existing warps (here written by `spinereg register`) plug in as a link."""
    out = tmp_path / "link"
    assert main(["register", "-i", str(sct_data / T2[0]), "--iseg", str(sct_data / T2[1]), "-d",
                 str(sct_data / "mt/mt1.nii.gz"), "--dseg", str(sct_data / "mt/mt1_seg.nii.gz"), "-o", str(out),
                 "--allow-fail"]) == 0  # the warps are what this test needs, whatever the verdict
    res = register_chain([sct_data / "mt/mt1.nii.gz", sct_data / T2[0]], [None, sct_data / T2[1]],
                         labels=sct_data / "t2/labels.nii.gz", template="PAM50_small",
                         given={0: (str(out / "warp_mt12t2.nii.gz"), str(out / "warp_t22mt1.nii.gz"))})
    assert res.links[0].kind == "given" and res.modes[0] == "composed"
    seg = load_image(sct_data / "mt/mt1_seg.nii.gz")
    tcord = load_image(res.anat.template.path("cord"), check_finite=False)
    a = _bin(apply_transforms(tcord, seg.grid, [res.warp_template2image(0)], "linear"))
    reg = register_chain([sct_data / "mt/mt1.nii.gz", sct_data / T2[0]], [seg, sct_data / T2[1]],
                         labels=sct_data / "t2/labels.nii.gz", template="PAM50_small", direct=False)
    b = _bin(apply_transforms(tcord, seg.grid, [reg.warp_template2image(0)], "linear"))
    # written-then-read warps compose exactly like the in-process registration
    assert dice(a, b).dice >= 0.995  # measured 1.0


def _epi_mean(sct_data) -> Image:
    f = load_image(sct_data / "fmri/fmri.nii.gz", lazy=True)
    return Image(np.stack([f.volume(t).astype(np.float32) for t in range(f.nvols)], -1).mean(-1), f.affine)


def test_epi_chain_with_derived_mask(sct_data, tmp_path):
    """fmri (4D EPI, no segmentation): template -> fmri mean through t2, image steps in a cord mask
    derived from the chain.

    Reference segmentation (documented derivation): the manual T2 segmentation carried onto the
    EPI mean by an independent ANTs rigid registration (Mattes MI, 200 iterations) of the T2
    image, evaluated on the EPI slices the T2 covers. Header-only placement reaches 0.68 against
    it; the chain reaches 0.96 (measured on this data)."""
    res = register_chain([sct_data / "fmri/fmri.nii.gz", sct_data / T2[0]], [None, sct_data / T2[1]],
                         labels=sct_data / "t2/labels.nii.gz", template="PAM50_small")
    link = res.links[0].registration
    assert [s.algo for s in link.steps] == ["slicereg"] and link.steps[0].type == "im"
    mean = _epi_mean(sct_data)
    t2, seg = load_image(sct_data / T2[0]), load_image(sct_data / T2[1])
    rigid = ants_step(mean.data, apply_transforms(t2, mean.grid, [], "linear").data, mean.grid,
                      {"algo": "rigid", "metric": "MI", "iter": 200, "shrink": 1, "smooth": 0, "gradStep": 0.1})
    ref = _bin(mean, apply_transforms(seg, mean.grid, [rigid], "linear").data)
    tcord = load_image(res.anat.template.path("cord"), check_finite=False)
    ours = _bin(mean, apply_transforms(tcord, mean.grid, [res.warp_template2image(0)], "linear").data)
    header = _bin(mean, apply_transforms(seg, mean.grid, [], "linear").data)
    d_ours, d_header = dice(ours, ref, zb=True).dice, dice(header, ref, zb=True).dice
    assert d_ours >= 0.961 and d_ours > d_header + 0.1, (d_ours, d_header)  # measured 0.967 / 0.680
    # 4D: the series moved to the template (streamed, one interpolation per volume) has the mean
    # of the moved mean volume (linear interpolation commutes with the temporal mean)
    fwd = res.warp_image2template(0)
    out = apply_transforms_file(sct_data / "fmri/fmri.nii.gz", fwd.grid, [fwd], tmp_path / "fmri2tpl.nii.gz",
                                interp="linear")
    series = load_image(out, lazy=True)
    mean_of_moved = np.mean([series.volume(t) for t in range(series.nvols)], axis=0)
    moved_mean = apply_transforms(mean, fwd.grid, [fwd], "linear").data
    roi = moved_mean > 0.2 * moved_mean.max()
    rel = np.abs(mean_of_moved[roi] - moved_mean[roi]).mean() / moved_mean[roi].mean()
    assert rel < 1e-5  # measured 1.9e-7


def test_chain_cli_inputs_it_cannot_run_as_asked(sct_data, tmp_path, capsys):
    """Before session 37: 'none' as the anatomical image's --seg was an internal error (TypeError);
    t2s.nii.gz given as t2s's --seg, --link-warp 5 on a chain of two and the same image twice ran
    to exit 0 (an intensity image as a cord; the link warp ignored; one image's warps overwritten
    by the other's)."""
    t2, t2s = sct_data / "t2", sct_data / "t2s"
    base = ["-l", str(t2 / "labels.nii.gz")]
    warp = str(t2 / "warp_template2anat.nii.gz")
    cases = [
        (["-i", str(t2s / "t2s.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2s / "t2s_seg.nii.gz"), "none"],
         "needs a cord segmentation"),
        (["-i", str(t2s / "t2s.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2s / "t2s.nii.gz"),
          str(t2 / "t2_seg-manual.nii.gz")], "is not a mask"),
        (["-i", str(t2s / "t2s.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2s / "t2s_seg.nii.gz"),
          str(t2 / "t2_seg-manual.nii.gz"), "--link-warp", "5", warp, warp], "has links 0..0"),
        (["-i", str(t2 / "t2.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2 / "t2_seg-manual.nii.gz"),
          str(t2 / "t2_seg-manual.nii.gz")], "would overwrite each other"),
    ]
    for k, (argv, words) in enumerate(cases):
        out = tmp_path / f"o{k}"
        rc = main(["chain", *argv, *base, "-o", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and words in err and "internal error" not in err and len(err.splitlines()) == 1, err
        assert not out.exists() or not any(out.iterdir())


def test_chain_verdict(sct_data, tmp_path, capsys):
    """The chain gets a verdict (kind "chain"): the smallest cord Dice and the images' structure.
    Before session 37 every chain printed "NOT SCORED" and exited 0, a noise image as its target
    too. t2s -> t2 -> PAM50: PASS (Dice 0.977, structure 0.632); noise -> t2: FAIL on
    image_structure (0.025), exit 3."""
    import nibabel as nib

    t2, t2s = sct_data / "t2", sct_data / "t2s"
    rng = np.random.default_rng(0)
    ref = nib.load(str(t2s / "t2s.nii.gz"))
    noise = tmp_path / "noise.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(500, 100, ref.shape).astype(np.float32), ref.affine), str(noise))
    base = ["-l", str(t2 / "labels.nii.gz")]
    good = ["chain", "-i", str(t2s / "t2s.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2s / "t2s_seg.nii.gz"),
            str(t2 / "t2_seg-manual.nii.gz"), *base, "-o", str(tmp_path / "good")]
    assert main(good) == 0
    assert capsys.readouterr().out.startswith("chain: PASS")
    qc = json.loads((tmp_path / "good" / "metrics.json").read_text())["qc"]
    assert qc["scores"]["cord_dice"] == pytest.approx(0.977, abs=0.005)
    assert qc["scores"]["image_structure"] == pytest.approx(0.632, abs=0.01)
    bad = ["chain", "-i", str(noise), str(t2 / "t2.nii.gz"), "--seg", "none", str(t2 / "t2_seg-manual.nii.gz"),
           *base, "-o", str(tmp_path / "bad")]
    assert main(bad) == 3
    out = capsys.readouterr().out
    assert out.startswith("chain: FAIL") and "image_structure" in out
    qc = json.loads((tmp_path / "bad" / "metrics.json").read_text())["qc"]
    assert qc["verdict"] == "fail" and qc["scores"]["image_structure"] < 0.05


def test_composed_target_beyond_the_anatomy_warns(sct_data, tmp_path, capsys):
    """A composed template warp beyond the anatomical image's field of view is an extrapolation
    (the anatomical warp is the identity outside its grid). t2s reaches 30 mm above t2: through
    the chain alone (--no-direct) its cord Dice is 0.899 over every slice and 0.958 over the part
    t2 covers (as test_template_to_target_whole_fov measures); 41 % of its cord lies outside t2's
    field of view. Before session 38 the verdict said only "cord Dice 0.899"; now metrics.json
    gives both Dice figures and the fraction, and the verdict warns on the fraction. The same
    t2s cut to the slices t2 covers: nothing outside, no such warning (Dice 0.962)."""
    import nibabel as nib

    t2, t2s = sct_data / "t2", sct_data / "t2s"
    base = ["--seg", None, str(t2 / "t2_seg-manual.nii.gz"), "-l", str(t2 / "labels.nii.gz"), "--no-direct",
            "--allow-fail"]

    def run(img, seg, out):
        args = ["chain", "-i", str(img), str(t2 / "t2.nii.gz"), *base, "-o", str(tmp_path / out)]
        args[args.index("--seg") + 1] = str(seg)
        assert main(args) == 0
        cap = capsys.readouterr()
        assert ("give its cord segmentation (or 'auto') in --seg" in cap.err) == (out == "whole")  # the fix
        return json.loads((tmp_path / out / "metrics.json").read_text()), cap.out

    m, out = run(t2s / "t2s.nii.gz", t2s / "t2s_seg.nii.gz", "whole")
    assert m["t2s"]["mode"] == "composed"
    assert m["t2s"]["cord_outside_anat_fov"] == pytest.approx(0.409, abs=0.02)
    assert m["t2s"]["cord_dice_whole"] == pytest.approx(0.899, abs=0.005)  # measured 0.8987
    assert m["t2s"]["cord_dice_in_anat_fov"] == pytest.approx(0.958, abs=0.005)  # measured 0.9585
    assert m["qc"]["scores"]["cord_outside_anat_fov"] == m["t2s"]["cord_outside_anat_fov"]
    assert "warn: cord_outside_anat_fov" in out
    assert any(n.startswith("t2s: 41% of its cord lies outside the field of view of the images its template warp goes through")
               for n in m["qc"]["notes"]), m["qc"]["notes"]
    # the slices of t2s inside t2's S-I extent
    keep = np.flatnonzero(_inside_si(load_image(t2s / "t2s.nii.gz"), load_image(t2 / "t2.nii.gz")).all(axis=(0, 1)))
    assert 3 <= len(keep) < 9
    for name in ("t2s", "t2s_seg"):
        img = nib.load(str(t2s / f"{name}.nii.gz"))
        nib.save(img.slicer[:, :, keep[0]:keep[-1] + 1], str(tmp_path / f"cut_{name}.nii.gz"))
    m, out = run(tmp_path / "cut_t2s.nii.gz", tmp_path / "cut_t2s_seg.nii.gz", "cut")
    assert m["cut_t2s"]["cord_outside_anat_fov"] < 0.02
    assert m["cut_t2s"]["cord_dice_in_anat_fov"] == pytest.approx(0.962, abs=0.005)  # measured 0.9623
    assert out.startswith("chain: PASS") and "warn: cord_outside_anat_fov" not in out
    # the QC page says so beside the template drawn on the image (session 38)
    for run_dir, said in (("whole", True), ("cut", False)):
        assert main(["qc", str(tmp_path / run_dir), "--root", str(tmp_path / f"qc_{run_dir}")]) == 0
        html = (tmp_path / f"qc_{run_dir}" / "index.html").read_text()
        assert ("41% of this image's cord lies outside the fields of view" in html) == said, run_dir


def test_composed_warp_through_a_direct_intermediate_counts_its_field_of_view(sct_data, tmp_path):
    """fmri (6 slices of 16.8 mm, -31..60 mm) has no segmentation: its warp is composed, through t2
    alone (t2: -19..35 mm) or through t2s, which has its own template registration (t2s: 3..63 mm)
    and where the written warp stops. The fraction outside is that of the images the warp goes
    through: 0.431 through t2, 0.313 through t2s (session 38; 0.638 when every later image's field
    of view was required)."""
    fmri, t2s = sct_data / "fmri/fmri.nii.gz", sct_data / "t2s"
    tail = [str(sct_data / T2[0]), "--seg", "none"]
    lab = ["-l", str(sct_data / "t2/labels.nii.gz")]
    assert main(["chain", "-i", str(fmri), *tail, str(sct_data / T2[1]), *lab, "-o", str(tmp_path / "a")]) == 0
    assert main(["chain", "-i", str(fmri), str(t2s / "t2s.nii.gz"), *tail, str(t2s / "t2s_seg.nii.gz"),
                 str(sct_data / T2[1]), *lab, "-o", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["fmri"]["mode"] == b["fmri"]["mode"] == "composed" and b["t2s"]["mode"] == "direct"
    assert a["fmri"]["cord_outside_anat_fov"] == pytest.approx(0.431, abs=0.02)
    assert b["fmri"]["cord_outside_anat_fov"] == pytest.approx(0.313, abs=0.02)


def test_broken_link_fails_the_chain(sct_data, tmp_path, capsys):
    """A link that does not align its images (here given as warps: the identity, while t2s and t2
    of sct_testing_data lie apart in world space) left the direct registration of the target,
    fitted to the target's own segmentation, at cord Dice 0.981, and the chain PASSED; the landmarks
    it carried into the target came through that link. The composition through the link, over the
    part it covers, sees it: 0.507 -> FAIL (composed_cord_dice < 0.7); registered link 0.958 -> pass
    (session 38; links shifted 3-6 mm or on the synthetic cohort's sub-01/sub-05: 0.00-0.32)."""
    from spinereg.transforms.itk import write_displacement

    t2, t2s = sct_data / "t2", sct_data / "t2s"
    ident = {}
    for key, ref in (("k2n", t2 / "t2.nii.gz"), ("n2k", t2s / "t2s.nii.gz")):
        g = load_image(ref, lazy=True).grid
        ident[key] = write_displacement(DisplacementField(g, np.zeros((*g.shape[:3], 3), np.float32)),
                                        tmp_path / f"identity_{key}.nii.gz", True)
    base = ["chain", "-i", str(t2s / "t2s.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2s / "t2s_seg.nii.gz"),
            str(t2 / "t2_seg-manual.nii.gz"), "-l", str(t2 / "labels.nii.gz")]
    assert main([*base, "--link-warp", "0", str(ident["k2n"]), str(ident["n2k"]), "-o", str(tmp_path / "broken")]) == 3
    qc = json.loads((tmp_path / "broken" / "metrics.json").read_text())["qc"]
    assert qc["verdict"] == "fail" and qc["scores"]["cord_dice"] == pytest.approx(0.981, abs=0.01)
    assert qc["scores"]["composed_cord_dice"] == pytest.approx(0.507, abs=0.02)
    assert "fail: composed_cord_dice" in capsys.readouterr().out
    assert main([*base, "-o", str(tmp_path / "registered")]) == 0
    qc = json.loads((tmp_path / "registered" / "metrics.json").read_text())["qc"]
    assert qc["verdict"] == "pass" and qc["scores"]["composed_cord_dice"] == pytest.approx(0.958, abs=0.01)


def test_outside_note_follows_the_threshold():
    from spinereg.metrics.run_scores import OUTSIDE_NOTE_ABOVE
    from spinereg.metrics.verdict import load_thresholds

    th = load_thresholds()
    chain = th.get("chain") or th["kinds"]["chain"]
    assert chain["cord_outside_anat_fov"]["warn_above"] == OUTSIDE_NOTE_ABOVE


def test_qc_page_note_uses_the_verdicts_bound(tmp_path):
    """The chain QC page's coverage note and the verdict's share OUTSIDE_NOTE_ABOVE (the page used
    5 %, the verdict 10 %)."""
    from spinereg.metrics.run_scores import OUTSIDE_NOTE_ABOVE
    from spinereg.qc.page_registration import _coverage_note

    for frac, shown in ((OUTSIDE_NOTE_ABOVE - 0.01, False), (OUTSIDE_NOTE_ABOVE + 0.01, True), (0.07, False)):
        (tmp_path / "metrics.json").write_text(json.dumps({"t2s": {"mode": "composed", "cord_outside_anat_fov": frac}}))
        assert bool(_coverage_note(tmp_path, "t2s")) is shown, frac
    (tmp_path / "metrics.json").write_text(json.dumps({"t2s": {"mode": "direct", "cord_outside_anat_fov": 0.5}}))
    assert _coverage_note(tmp_path, "t2s") == ""


def test_chain_dice_scores_judged_without_the_input_images(tmp_path):
    """The chain's Dice scores come from its metrics (``chain_metric_scores``), also when a chain
    folder is judged again after its input images moved (``spinereg qc``): no image scores then,
    the Dice scores and the outside-fraction note kept."""
    from spinereg.metrics.verdict import score_output_folder

    (tmp_path / "provenance.json").write_text(json.dumps({"command": "chain", "inputs": {
        "images": [str(tmp_path / "gone_t2s.nii.gz"), str(tmp_path / "gone_t2.nii.gz")]}}))
    metrics = {"t2s": {"mode": "composed", "cord_dice_zb": 0.93, "cord_outside_anat_fov": 0.4},
               "t2": {"mode": "direct", "cord_dice_zb": 0.97, "composed": {"cord_dice_in_anat_fov": 0.5}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    v = score_output_folder(tmp_path)
    assert v.scores["cord_dice"] == 0.93 and v.scores["composed_cord_dice"] == 0.5
    assert v.scores["cord_outside_anat_fov"] == 0.4 and "image_structure" not in v.scores
    assert v.verdict == "fail" and any(n.startswith("t2s: 40% of its cord lies outside") for n in v.notes)


def test_chain_qc_option(sct_data, tmp_path, capsys):
    """``chain --qc QCROOT`` adds the run to the QC report in the outputs' transaction, as
    register-to-template / register do (chain had no --qc before session 39: `spinereg qc` after);
    a QC root that is a file is refused before the work, nothing written."""
    t2s, t2 = sct_data / "t2s", sct_data / "t2"
    base = ["chain", "-i", str(t2s / "t2s.nii.gz"), str(t2 / "t2.nii.gz"), "--seg", str(t2s / "t2s_seg.nii.gz"),
            str(t2 / "t2_seg-manual.nii.gz"), "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small"]
    (tmp_path / "afile").write_text("x")
    assert main([*base, "-o", str(tmp_path / "refused"), "--qc", str(tmp_path / "afile")]) == 2
    assert not (tmp_path / "refused").exists()
    capsys.readouterr()
    out, qc = tmp_path / "out", tmp_path / "qc"
    assert main([*base, "-o", str(out), "--qc", str(qc), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["qc_report"] == str(qc.resolve() / "index.html")
    (entry,) = list((qc / "entries").iterdir())
    assert list(entry.glob("*.png")) and (qc / "index.html").is_file()
    rec = json.loads((qc / "entries.json").read_text())["entries"][0]
    assert rec["command"] == "chain" and rec["run_dir"] == str(out.resolve())
