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


@pytest.mark.realdata
def test_one_disc_next_to_the_conus_in_noise_is_refused(sct_data, tmp_path, capsys):
    """Noise smoothed by 5 voxels on t2's grid (seed 11): the segmentation keeps a 33 mm "cord" at
    the lower edge and the labeling finds one band past its top, named L1/L2, where PAM50's cord
    ends at its conus: the whole segmented cord maps below it. Before session 19 the job stopped
    inside a registration step: "no slice holds both the fixed and the moving segmentation --
    fix: check that the segmentations overlap in z (after the previous steps)"."""
    from scipy import ndimage

    from spinereg.io.image import load_image

    img = load_image(sct_data / "t2" / "t2.nii.gz")
    a = np.asarray(img.data, float)
    n = ndimage.gaussian_filter(np.random.default_rng(11).normal(size=a.shape), 5.0)
    noise = save_image(img.with_data(((n - n.mean()) / n.std() * a.std() + a.mean()).astype(np.float32)),
                       tmp_path / "noise.nii.gz")
    out = tmp_path / "o"
    rc = main(["register-to-template", "-i", str(noise), "-c", "t2", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(noise) in err and "L1/L2" in err and "below the lower end of PAM50's cord" in err, err
    assert not out.exists()
