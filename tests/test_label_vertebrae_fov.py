"""Vertebral labeling on fields of view that start below C2 (held out): the independent phantom's
variants with their level range moved, so that the top of the image is mid-cervical or thoracic
(the issue's small fields of view that do not show C2), a thoracic-only stack, a longer
thoracolumbar one, and a 3 mm sagittal C2-T2 (the image's top 8 mm above the first level's
mid-body, 35 mm on T6-L1: C1/C2 is in view only on C2-T2 73 and 74). True segmentations, the contrast given as a
user would (-c). Seeds 70-75 (42 subjects), first run in session 21 with the method as it stood
(commit d16b939); nothing was changed after.

What they gave:
* level identity right on 40 of 42 (95.2 %); the two wrong, C4-T6 70 (one level off) and C2-T2
  3 mm sagittal 71 (C2/C3 not found, the discs below one level off), both flagged;
* disc MAE <= 2 mm on every right one (max 1.83, mean 0.64; C2-T2 sagittal 70, flagged: C2/C3 and
  C3/C4 5 mm high where the 3 mm sagittal slices of the T2 average show no band, both reported as
  gaps); one other disc over 2.5 mm (T6-L1 74, T4/T5 2.64 mm, unflagged);
* conus tip (T6-L1) within 0.3 mm (max 0.29).
Since session 23 (the CSF around the cord read on flagged labelings, vertebrae.csf_identity,
developed on other seeds): C4-T6 70 is relabelled one level higher (evidence 21.2), right (MAE
0.36 mm, flagged): 41 of 42.
A second module (tests/test_label_vertebrae_fov_b.py) runs seeds 73-75 on another worker.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.phantom.independent import make_independent_subject
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.evaluate import compare_to_truth

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

#: name: (variant of phantom_variants.json, its overrides); the level range is the image's
FOVS = {
    "C3-T4": ("cervicothoracic", {"levels": ["C3", "T4"], "source": "tissue"}),
    "C4-T6": ("cervicothoracic", {"levels": ["C4", "T6"]}),
    "T2-T10": ("cervicothoracic", {"levels": ["T2", "T10"], "source": "tissue"}),
    "C2-T2 sagittal 3 mm": ("sagittal_thick", {"levels": ["C2", "T2"]}),
    "T6-L1": ("thoracolumbar", {"levels": ["T6", "L1"]}),
    "C3-T3 T1": ("iso1mm_t1", {"levels": ["C3", "T3"]}),
    "C5-T8": ("cervicothoracic", {"levels": ["C5", "T8"], "source": "tissue"}),
}
SEEDS = range(70, 73)
SEEDS_B = range(73, 76)


def run_fovs(seeds: range) -> list[dict]:
    """Label every field of view of :data:`FOVS` for ``seeds`` and score it against the truth."""
    rows = []
    for name, (variant, overrides) in FOVS.items():
        for seed in seeds:
            ph = make_independent_subject(variant, seed=seed, **overrides)
            lab = label_vertebrae(ph.image, ph.seg, contrast="t1" if ph.contrast == "t1" else "t2")
            r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
            r.update(case=f"{name}/{seed}", ambiguous=bool(lab.ambiguous), gaps=list(lab.gaps),
                     first=lab.discs[0].name if lab.discs else None)
            print(r["case"], r["identity_ok"], r["ambiguous"], round(r["mae_mm"], 2), round(r["max_mm"], 2))
            rows.append(r)
    return rows


@pytest.fixture(scope="module")
def results() -> list[dict]:
    return run_fovs(SEEDS)


def test_identity(results):
    assert len(results) == 21
    wrong = sorted(r["case"] for r in results if not r["identity_ok"])
    assert wrong == ["C2-T2 sagittal 3 mm/71"], wrong  # C4-T6/70 too before session 23's CSF rule
    assert all(r["ambiguous"] for r in results if not r["identity_ok"])


def test_positions(results):
    right = [r for r in results if r["identity_ok"]]
    mae = np.array([r["mae_mm"] for r in right])
    # measured 1.83, 0.600 (0.577 before session 43's vote-free positions, 0.605 before session 25)
    assert mae.max() <= 1.9 and mae.mean() <= 0.62, (mae.max(), mae.mean())
    far = sorted(r["case"] for r in right if r["max_mm"] > 2.5)
    # C2-T2 70: C2/C3, C3/C4 5.1 / 4.8 mm high, no band: gaps, flagged; T6-L1 70: one disc 2.98 mm
    # off (MAE 0.88, unflagged) since session 43's vote-free positions, under 2.5 before
    assert far == ["C2-T2 sagittal 3 mm/70", "T6-L1/70"], far
    c70 = next(r for r in right if r["case"] == "C2-T2 sagittal 3 mm/70")
    assert c70["ambiguous"] and {"C2/C3", "C3/C4"} <= set(c70["gaps"]), c70
    tl = [r for r in results if r["case"].startswith("T6-L1")]
    assert all(abs(r["errors"][60]) <= 0.2 for r in tl), [r["errors"].get(60) for r in tl]  # measured -0.11 / 0.08 / 0.18


def test_thoracic_only_field_is_flagged():
    """Fresh seeds 160-165 (session 39, run once before any change): T2-T10 162 (length scale 0.87)
    was named one level low (T3/T4-T10/T11 for T2/T3-T9/T10, MAE 22.9 mm) with identity margin
    3.58, unflagged; right ones had 0.8-10.9 (seeds 160-195), so no margin separates them. Discs
    T1/T2-T11/T12 alone name the levels by their spacing: such a labeling is flagged (pin one disc)."""
    variant, overrides = FOVS["T2-T10"]
    for seed, right in ((162, False), (164, True)):
        ph = make_independent_subject(variant, seed=seed, **overrides)
        lab = label_vertebrae(ph.image, ph.seg, contrast="t2")
        r = compare_to_truth(lab, {int(k): np.asarray(p) for k, p in ph.disc_points.items()})
        assert r["identity_ok"] is right and lab.ambiguous, (seed, r["mae_mm"])
        assert any(x.startswith("thoracic discs only") for x in lab.report["ambiguous_reasons"])
    # a field that shows a lumbar disc and the conus is not flagged for it (T6-L1 70: unflagged)
    variant, overrides = FOVS["T6-L1"]
    ph = make_independent_subject(variant, seed=70, **overrides)
    lab = label_vertebrae(ph.image, ph.seg, contrast="t2")
    assert not any(x.startswith("thoracic discs only") for x in lab.report["ambiguous_reasons"])
