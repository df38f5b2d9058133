"""sct_testing_data/t2 with its 8 most inferior mm cut off (image and segmentation, along the S-I
voxel axis, the affine's origin moved with the cut) (session 50).

Before session 50 the chain named one disc, T10/T11, at C2/C3's place (scale 1.25; flagged), and
dropped C3/C4 and C4/C5 though both lie well inside the cut field. The cord width (the term that
tells a cervical cord, 12.6-12.9 mm here, from a thoracic one, 7.6-8.3 mm) is NaN over the
partial 2 mm bins at each end of the segmented cord (``cordwidth.lr_width``): a chain of thoracic
discs at the longest scale placed its only two discs in view there (T10/T11 at 46.1 mm of 46.5,
T11/T12 at 1.6 mm, a missing band at the edge counting half) and so paid no width penalty at
all. The absolute width term now holds the end widths over the rows where the cord is segmented
(``chain_terms._hold_ends``), forgiving a log ratio of ``label.HELD_WIDTH_TOLERANCE`` (0.2) there:
the cut image is named C2/C3-C4/C5 at the uncut image's places (identity margin 0.44, flagged).
Held without that tolerance, t2 with its automatic segmentation (tests/test_demo.py) was named one
level low by the chain.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.image import Image, load_image
from spinereg.vertebrae import label_vertebrae
from spinereg.vertebrae.chain_terms import _hold_ends

pytestmark = pytest.mark.realdata

#: the uncut image's discs (world z, mm): C2/C3, C3/C4, C4/C5; the truth (labels.nii.gz) has the
#: middle of C3's body at z 24.7 and of C5's at -10.3
UNCUT_Z = {"C2/C3": 35.1, "C3/C4": 15.1, "C4/C5": -2.4}


def _cut_inferior(img: Image, mm: float) -> Image:
    """``img`` without its most inferior ``mm`` along the voxel axis closest to S-I."""
    a = img.affine
    ax = int(np.argmax(np.abs(a[2, :3])))
    n = int(round(mm / float(np.linalg.norm(a[:3, ax]))))
    size = img.shape[ax]
    lo, hi = (n, size) if a[2, ax] > 0 else (0, size - n)
    sl = [slice(None)] * 3
    sl[ax] = slice(lo, hi)
    shift = np.zeros(3)
    shift[ax] = lo
    aff = a.copy()
    aff[:3, 3] = a[:3, :3] @ shift + a[:3, 3]
    return Image(np.asarray(img.data, np.float32)[tuple(sl)], aff)


def test_hold_ends_fills_only_the_segmented_rows():
    w = np.array([np.nan, np.nan, 10.0, 11.0, 12.0, np.nan, np.nan])
    cord = np.array([False, True, True, True, True, True, False])
    out = _hold_ends(w, cord)
    assert np.isnan(out[0]) and np.isnan(out[-1])
    assert out[1] == 10.0 and out[5] == 12.0
    assert np.array_equal(out[2:5], w[2:5])
    assert np.isnan(_hold_ends(np.full(3, np.nan), np.ones(3, bool))).all()


def test_t2_cut_8mm_below_keeps_its_cervical_discs(sct_data):
    d = sct_data / "t2"
    img, seg = load_image(d / "t2.nii.gz"), load_image(d / "t2_seg-manual.nii.gz")
    lab = label_vertebrae(_cut_inferior(img, 8.0), _cut_inferior(seg, 8.0), contrast="t2")
    band = {x.name: float(x.point[2]) for x in lab.discs if x.source == "band"}
    # before: {"T10/T11": 35.2} (scale 1.25); measured after: C2/C3 35.2, C3/C4 15.2, C4/C5 -2.2
    assert set(band) == set(UNCUT_Z), band
    for name, z in UNCUT_Z.items():
        assert abs(band[name] - z) <= 1.0, (name, band[name])
    assert 0.9 <= lab.scale <= 1.1
    # the shifted levels still fit almost as well (margin 0.43): the result stays flagged
    assert lab.ambiguous
    assert lab.identity_margin < 2.0
