"""spinereg.vertebrae.c1c2: C1/C2 from the CSF profile above C2/C3. Its accuracy on independent
phantoms is asserted in test_label_vertebrae_bare.py (full phantom seeds 0 and 2: -0.32 / +0.55 mm)
and test_label_vertebrae_phantoms.py (7 phantoms with the CSF in view: 0.22-1.00 mm); here the
stretch search and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.io.template import load_template
from spinereg.vertebrae import c1c2

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def profile():
    return c1c2.template_csf(str(load_template("PAM50").path("csf")))


def test_template_profile_shows_the_csf_maximum_above_c1c2(profile):
    """PAM50's CSF area: ~150 mm2 at C2/C3 (z index 908), a maximum 3-7 mm above C1/C2 (939)."""
    tz, area = profile
    z0 = tz[0]
    at = {k: float(np.interp(z0 + 0.5 * k, tz, area)) for k in (908, 949, 964)}
    # measured 150.75 mm2 at 908, 236.0 at 949 (1.57x), 195.25 at 964
    assert abs(at[908] - 150.75) < 1.0 and at[949] > 1.5 * at[908] and at[964] < at[949], at


@pytest.mark.parametrize("k", [0.85, 1.0, 1.2])
def test_stretch_is_recovered(profile, k):
    """A profile made by stretching the template's above C2/C3 by a known factor, noise added:
    the search finds the factor within one step (measured: exactly, NCC 0.997-0.999)."""
    tz, area = profile
    t3 = tz[0] + 0.5 * 908
    s = np.arange(-5.0, 32.0, 0.5)
    rng = np.random.default_rng(0)
    a = np.interp(t3 + k * s, tz, area) * 1.7 + 40 + rng.normal(0, 5, len(s))  # any gain and offset
    found, ncc = c1c2.fit_stretch(s, a, 0.0, tz, area, t3)
    assert abs(found - k) < 1e-6 and ncc > 0.99, (found, ncc)  # measured 0 / 0.9972 (0.85), 0.9972 (1.0), 0.9989 (1.2)


def test_refusals(profile):
    class Short:
        length = 30.0

    r, why = c1c2.locate_c1c2(None, None, Short(), 20.0, "t1", profile, 0.0, 15.5)
    assert r is None and "bright CSF" in why
    r, why = c1c2.locate_c1c2(None, None, Short(), 20.0, "t2", profile, 0.0, 15.5)
    assert r is None and "10 mm of cord in view above C2/C3" in why


def test_another_templates_csf_is_refused_not_misplaced(profile):
    """An image made of MNI-Poly-AMU's own masks (CSF bright, cord grey; another template built from
    other subjects, with its own disc labels) anchored at its true C2/C3. Its CSF area has no
    maximum above C1/C2: a plateau 1-11 mm above it (~160 mm2), then one rise into the cisterna
    magna. Measured: correlation 0.71 with PAM50's profile, so the CSF locator refuses and the
    chain's estimate stays; placing C1/C2 from a profile unlike the template's would be the
    failure that fools a user."""
    from spinereg.cord.centerline import Centerline
    from spinereg.io.image import load_image
    from spinereg.io.template import load_template as lt

    mni = lt("MNI-Poly-AMU")
    csf, cord, disc = (load_image(mni.path(k)) for k in ("csf", "cord", "disc"))
    rng = np.random.default_rng(0)
    img = 0.15 + 0.85 * np.asarray(csf.data) + 0.2 * np.asarray(cord.data) + 0.02 * rng.standard_normal(csf.shape)
    cl = Centerline.from_mask(cord)
    d = np.asarray(disc.data).round().astype(int)
    s3 = float(cl.project(disc.grid.voxel_to_world(np.argwhere(d == 3)[:1].astype(float)))[0][0])
    pam = load_template("PAM50")
    dl = load_image(pam.path("disc"))
    lab = np.asarray(dl.data).round().astype(int)
    tz = {v: float(dl.grid.voxel_to_world(np.argwhere(lab == v)[:1].astype(float))[0][2]) for v in (2, 3)}
    found, why = c1c2.locate_c1c2(csf.with_data(img.astype(np.float32)), cord, cl, s3, "t2", profile, tz[3], tz[2])
    assert found is None and "unlike the template's (correlation 0.7" in why, (found, why)


def test_disc_source_is_one_field():
    """A disc's origin is one field (band, chain estimate or CSF), checked on construction, with
    the two read-only views the labeling and QC use; a labeling JSON written before the field
    existed still reads back."""
    from spinereg.qc.page_label_vertebrae import _source
    from spinereg.vertebrae.label import Disc

    d = Disc(2, 1.0, np.zeros(3), 0.9, float("nan"), 0.0, source="csf")
    assert d.from_csf and not d.estimated and d.as_dict()["source"] == "csf"
    assert Disc(3, 0.0, np.zeros(3), 0.9, 2.0, 0.0).source == "band"
    with pytest.raises(ValueError, match="disc source"):
        Disc(2, 1.0, np.zeros(3), 0.9, 1.0, 0.0, source="guess")
    assert [_source(x) for x in ({"estimated": True}, {"located_from": "csf"}, {}, {"source": "csf"})] == \
        ["estimated", "csf", "band", "csf"]
