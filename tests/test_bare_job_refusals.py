"""register-to-template without landmarks labels the discs itself; an image that samples S-I too
coarsely for that (thick axial slices) is refused from its header, before any work, with the fix.
Before this check (session 12) sct_testing_data's mt1 (17 mm slices) went through: its discs were
named T2/T3 and T3/T4 on a cervical image, and the job ended warn, not fail."""

from __future__ import annotations

import numpy as np
import pytest

from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io.image import Image, save_image
from spinereg.pipelines.registration import require_labelable
from spinereg.vertebrae.label import MAX_SI_SPACING_MM


def _image(tmp_path, affine: np.ndarray):
    return save_image(Image(np.zeros((8, 8, 8), np.float32), affine), tmp_path / "img.nii.gz", overwrite=True)


def test_si_extent_of_a_voxel_decides(tmp_path):
    ok = np.diag([0.5, 0.5, MAX_SI_SPACING_MM, 1.0])
    require_labelable(_image(tmp_path, ok))
    thick = np.diag([0.5, 0.5, 7.5, 1.0])
    with pytest.raises(InputError, match="samples S-I every 7.5 mm"):
        require_labelable(_image(tmp_path, thick))
    # thick slices tilted 40 degrees about L-R: 7.5 x cos(40) + 0.5 x sin(40) = 6.07 mm along S-I
    c, s = np.cos(np.radians(40)), np.sin(np.radians(40))
    tilted = np.eye(4)
    tilted[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([0.5, 0.5, 7.5])
    with pytest.raises(InputError, match="every 6.1 mm"):
        require_labelable(_image(tmp_path, tilted))
    # a sagittal stack of thick slices samples S-I finely: labelled as usual
    sagittal = np.array([[0, 0, 3.0, 0], [0.8, 0, 0, 0], [0, 0.8, 0, 0], [0, 0, 0, 1]])
    require_labelable(_image(tmp_path, sagittal))


@pytest.mark.realdata
def test_mt1_from_the_bare_image_is_refused(sct_data, tmp_path, capsys):
    out = tmp_path / "reg"
    rc = main(["register-to-template", "-i", str(sct_data / "mt" / "mt1.nii.gz"), "-c", "t2", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "mt1.nii.gz" in err and "17.0 mm" in err and "-l" in err, err


@pytest.mark.realdata
def test_discs_beyond_the_segmented_cord_are_refused_in_the_images_terms(sct_data, tmp_path, capsys):
    """Noise smoothed by 5 voxels on t2's grid (seed 5): the segmentation keeps a 20 mm "cord" at
    the field's lower edge and the labeling places T9/T10 18 mm beyond it on the continued
    centerline. Before session 17 the registration's check of given labels stopped the job naming
    a temporary label file and "check that labels and segmentation belong to the same image";
    now the job says what happened to the image, exit 2, one line, no output folder."""
    from scipy import ndimage

    from spinereg.io.image import load_image

    img = load_image(sct_data / "t2" / "t2.nii.gz")
    a = np.asarray(img.data, float)
    n = ndimage.gaussian_filter(np.random.default_rng(5).normal(size=a.shape), 5.0)
    noise = save_image(img.with_data(((n - n.mean()) / n.std() * a.std() + a.mean()).astype(np.float32)),
                       tmp_path / "noise.nii.gz")
    out = tmp_path / "o"
    rc = main(["register-to-template", "-i", str(noise), "-c", "t2", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(noise) in err and "beyond the segmented cord" in err and "spinereg-autolabel" not in err
    assert not out.exists()


def test_cord_mapped_beyond_the_template_cord_is_refused():
    """The landmarks must place at least half of the segmented cord between the ends of the
    template's cord (register.template.MIN_CORD_ON_TEMPLATE), else the job stops in the user's
    terms (which landmarks, which end). A cylinder z 0-99 mm stands for the template's cord."""
    from spinereg.cord.landmarks import Landmarks
    from spinereg.register.template import _require_cord_on_template_cord

    tcord = Image(np.zeros((10, 10, 100), np.uint8), np.eye(4))
    tcord.data[4:6, 4:6, :] = 1
    img = Image(np.zeros((4, 4, 4), np.float32), np.eye(4), path="sub.nii.gz")
    lm = Landmarks("disc", np.array([21]), np.zeros((1, 3)), "labels")
    pts = np.column_stack([np.zeros(40), np.zeros(40), np.linspace(-30.0, 9.0, 40)])  # 10 of 40 on the cord
    with pytest.raises(InputError, match=r"disc L1/L2\) place 75 % of the segmented cord below the lower end"):
        _require_cord_on_template_cord(pts, tcord, lm, img, "PAM50")
    with pytest.raises(InputError, match="above the upper end"):
        _require_cord_on_template_cord(pts + [0, 0, 120.0], tcord, lm, img, "PAM50")
    _require_cord_on_template_cord(pts + [0, 0, 20.0], tcord, lm, img, "PAM50")  # 30 of 40 on it


def _smoothed_noise_on(img, seed: int, path):
    from scipy import ndimage

    a = np.asarray(img.data, float)
    n = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=a.shape), 5.0)
    return save_image(img.with_data(((n - n.mean()) / n.std() * a.std() + a.mean()).astype(np.float32)), path)


@pytest.mark.realdata
@pytest.mark.parametrize(("seed", "shown"), [(0, "one (T11/T12)"), (3, "none")])
def test_one_band_in_noise_is_refused(sct_data, tmp_path, capsys, seed, shown):
    """Noise smoothed by 5 voxels in t2's place, seeds 0 and 3: the segmentation keeps a
    16-20 mm "cord" touching one edge of the field, and the labeling finds at most one disc band.
    Before session 19 the job went on: seed 0 ended warn (exit 0, a noise image registered to
    "T11/T12"), seed 3 fail (exit 3, outputs written). Now the job needs two discs showing a band
    (spinereg.vertebrae.label.MIN_BANDS) or a pinned disc: exit 2, one line, no output folder.
    Every labeling phantom and real image measured shows two or more (axial_thick seed 8, 'test'
    seeds 0 and 3: two; t2 three; t1 four)."""
    from spinereg.io.image import load_image

    noise = _smoothed_noise_on(load_image(sct_data / "t2" / "t2.nii.gz"), seed, tmp_path / "noise.nii.gz")
    out = tmp_path / "o"
    rc = main(["register-to-template", "-i", str(noise), "-c", "t2", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(noise) in err and f"{shown} shows a band" in err and "-initz" in err, err
    assert not out.exists()


def test_a_pinned_disc_stands_in_for_the_second_band():
    """``_require_bands``: two discs on their bands pass; one passes only with a pinned disc."""
    from types import SimpleNamespace

    from spinereg.pipelines.registration import _require_bands

    def disc(name, evidence, estimated=False, value=5):
        return SimpleNamespace(name=name, evidence=evidence, estimated=estimated, value=value)

    two = SimpleNamespace(discs=[disc("C3/C4", 0.9), disc("C4/C5", 0.6)])
    _require_bands(two, "img.nii.gz", pinned=False)
    one = SimpleNamespace(discs=[disc("C1/C2", 1.0, estimated=True, value=2), disc("C3/C4", 0.9),
                                 disc("C4/C5", 0.3), disc("conus", 1.0, value=60)])
    with pytest.raises(InputError, match=r"one \(C3/C4\) shows a band .*\(it needs 2\)"):
        _require_bands(one, "img.nii.gz", pinned=False)
    _require_bands(one, "img.nii.gz", pinned=True)


@pytest.mark.realdata
def test_a_lumbar_disc_given_to_a_cervical_cord_is_refused(sct_data, tmp_path, capsys):
    """t2 given one disc label, L1/L2 (value 21), at its C3 body label's point: PAM50's cord ends
    at L1/L2, and the landmark maps the whole segmented cord below it. Before session 19 the job
    stopped inside a registration step: "no slice holds both the fixed and the moving
    segmentation -- fix: check that the segmentations overlap in z (after the previous steps)"."""
    import nibabel as nib

    t2 = sct_data / "t2"
    img = nib.load(str(t2 / "labels.nii.gz"))
    d = np.asanyarray(img.dataobj)
    ld = np.where(d == 3, 21, 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(ld, img.affine), str(tmp_path / "l1l2.nii.gz"))
    out = tmp_path / "o"
    rc = main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
               "--ldisc", str(tmp_path / "l1l2.nii.gz"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "(disc L1/L2) place 100 % of the segmented cord below the lower end of PAM50's cord" in err, err
    assert not out.exists()
