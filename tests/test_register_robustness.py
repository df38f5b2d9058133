"""spinereg register on known smooth deformations of real images (issue 10, item 3).

The deformation (Gaussian bumps of 15-20 mm, 5 mm peak over the field of view, plus a 3-5 degree
rotation about the cord; in-plane on thick slices) and the scoring come from
bench/register_robustness.py: numpy/scipy only, no spinereg code, the truth written as an ITK
field; the recovered map is scored by ANTs pulling images of the source's world coordinates, so
the residual is measured outside spinereg. Figures (bench, same pair, plain ANTs SyN beside):

* t2 (1 mm), seeds 0/1/2, with both segmentations (the default, multimodal_spinereg_imseg): cord
  residual mean 0.18 / 0.23 / 0.14 mm, p95 0.38 / 0.37 / 0.28, S-I residual 0.09 / 0.17 / 0.03 of a
  true S-I motion 0.98 / 2.21 / 1.08 mm (session 35: the registration works with t2's axes turned to
  R/A/S, so a flipped t2 gives the same result; before: 0.17 / 0.23 / 0.15, p95 0.35 / 0.37 / 0.29,
  S-I 0.08 / 0.17 / 0.04; before session 31's engine fill, docs/constraints.md: 0.20 /
  0.27 / 0.16, p95 0.45 / 0.60 / 0.34); plain ANTs SyN (not deterministic) 0.39-0.41 /
  0.47-0.53 / 0.25-0.30, p95 1.20-1.22 / 0.76-0.84 / 0.65-0.72; segmentations only
  (multimodal_spinereg_seg, the default before) 1.05 / 2.25 / 1.14 mm: no S-I;
* t1 (1 mm) seeds 0/1/2 with segmentations 0.15 / 0.12 / 0.14 mm (before the fill 0.15 / 0.14 / 0.17; SyN 0.30 / 0.47 / 0.27);
  mt1 (17 mm slices) 0.14 / 0.09 / 0.12 (SyN 1.5-2.0);
* the same t2, image-only (default preset): 0.14 / 0.22 / 0.10 mm, p95 0.31 / 0.46 / 0.16 (before
  session 35: 0.14 / 0.21 / 0.12, p95 0.30 / 0.44 / 0.20);
* t2s (0.5 x 0.5 x 7.5 mm, in-plane field) seeds 0/1/2: 0.09 / 0.12 / 0.08 mm with segmentations
  (segmentations only 0.17 / 0.14 / 0.18; image-only 0.04 / 0.05 / 0.06), SyN (3D on 7.5 mm slices) 1.0-2.4.
SyN re-measured with ANTsPy 0.6.3 once the bench's output prefix no longer let ANTsPy take the
case's own files (truth, images) for SyN's transforms (it scored SyN 16-23 mm, so the comparison
below could not fail): t2 seeds 0/1 0.42 / 0.59 mm, p95 1.21 / 0.98; t1 seed 0 0.30.
Seed 0 of t2, t1, t2s and mt1 with segmentations, t2's image-only seed 0 and t2's worst seed (1) are
asserted here (SyN run beside those on 1 mm images; t1 and mt1 since session 36), the rest in the
bench.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bench_module import load_bench
from spinereg.register.multimodal import register_multimodal


def _bench():
    return load_bench("register_robustness")


#: (case, seed, preset kind) -> (cord mean mm, p95 mm, S-I residual mm) measured with the bench
CLAIMS = {
    ("t2", 0, "seg"): (0.183, 0.376, 0.089),
    ("t2", 1, "seg"): (0.233, 0.372, 0.172),
    ("t2s", 0, "seg"): (0.092, 0.187, 0.001),
    ("t1", 0, "seg"): (0.147, 0.295, 0.043),
    ("mt1", 0, "seg"): (0.143, 0.241, 0.008),
    ("t2", 0, "im"): (0.143, 0.313, 0.094),
}
#: (mean, p95, S-I) mm; (0.05, 0.15, 0.05) before session 36, loose for t2s (0.09 -> 0.14 mm), then
#: (0.03, 0.06, 0.03); re-measured: every figure equal to its CLAIMS entry to 0.001 mm
MARGIN = (0.02, 0.03, 0.02)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """``get(name, seed)``: the bench's case, its coordinate images and (on first use) plain ANTs
    SyN's score on the same pair, built once for the module (t2 seed 0 serves three tests, its
    SyN two); the tests only read them."""
    rb = _bench()
    made: dict = {}

    def get(name: str, seed: int) -> dict:
        if (name, seed) not in made:
            out = tmp_path_factory.mktemp(f"{name}_{seed}")
            case = rb.make_case(name, seed, out)
            made[(name, seed)] = {"case": case, "coords": rb.coordinate_images(case), "out": out}
        return made[(name, seed)]

    def syn(name: str, seed: int) -> dict:
        entry = get(name, seed)
        if "syn" not in entry:
            tf, _ = rb.run_ants(entry["case"], entry["out"])
            entry["syn"] = rb.score(entry["case"], entry["coords"], tf)
        return entry["syn"]

    return rb, get, syn


def _score(rb, entry, reg) -> dict:
    """Cord error of spinereg's destination -> source map (the written warp read back by ANTs)."""
    from spinereg.transforms.itk import write_displacement

    case = entry["case"]
    path = entry["out"] / "warp_test.nii.gz"
    write_displacement(reg.warp_src2dest(), path, overwrite=True)
    return rb.score(case, entry["coords"], [str(path)])


@pytest.mark.parametrize("name,seed,kind", sorted(CLAIMS))
def test_known_deformation_at_the_claim(sct_data, cases, name, seed, kind):
    rb, get, syn = cases
    entry = get(name, seed)
    case = entry["case"]
    p = case["paths"]
    segs = {"iseg": p["src_seg"], "dseg": p["dest_seg"]} if kind == "seg" else {}
    reg = register_multimodal(p["src"], p["dest"], **segs)  # the default steps
    if kind == "seg":  # the default uses the images, and it did
        assert reg.records[0]["report"]["type"] == "imseg" and reg.records[0]["report"]["used"], reg.records[0]
    s = _score(rb, entry, reg)
    claim = CLAIMS[(name, seed, kind)]
    assert s["mean"] <= claim[0] + MARGIN[0], s
    assert s["p95"] <= claim[1] + MARGIN[1], s
    assert s["si_err"] <= claim[2] + MARGIN[2], s
    if not case["params"]["thick"]:
        # S-I motion is recovered: measured 7.8-9.7 % of it left on t2, 2.5 % on t1
        assert s["si_true"] > 0.5 and s["si_err"] < 0.11 * s["si_true"], s
    if not case["params"]["thick"]:  # no worse than plain ANTs SyN on the same pair; <= 0.3 mm on t2
        assert s["mean"] <= syn(name, seed)["mean"], (s, syn(name, seed))
        assert s["mean"] <= 0.3, s
    if kind == "im":
        rep = reg.records[-1]["report"]
        assert rep["used"] and rep["similarity_after"] > rep["similarity_before"], rep


def test_image_only_on_a_noise_image_returns_the_initial_transform(sct_data, cases, tmp_path):
    """No shared structure: the step says it could not and the result is the initial transform."""
    _, get, _ = cases
    p = get("t2", 0)["case"]["paths"]
    img = nib.load(str(p["dest"]))
    rng = np.random.default_rng(0)
    noise = rng.normal(size=img.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, img.affine), str(tmp_path / "noise.nii.gz"))
    reg = register_multimodal(p["src"], tmp_path / "noise.nii.gz")
    rep = reg.records[-1]["report"]
    assert rep["used"] is False and "reason" in rep, rep
    assert np.abs(reg.warp_src2dest().data).max() == 0.0
