"""A cord mask resampled with spline interpolation (ANTs' BSpline, scipy order 3) rings a little
beyond 0..1 at its edges. It was refused as "not a mask ... (an intensity image?)", which sends
the user looking for the wrong mistake; now the message names the ringing and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.io.image import Image, save_image
from spinereg.io.sanity import require_mask, require_segmentation


def _cord(shape=(40, 40, 30)) -> np.ndarray:
    ii, jj = np.mgrid[:shape[0], :shape[1]]
    disk = ((ii - 20) ** 2 + (jj - 20) ** 2 <= 16).astype(float)
    return np.repeat(disk[:, :, None], shape[2], axis=2)


def test_spline_ringing_is_named():
    rung = ndimage.shift(_cord(), (0.4, 0.3, 0.0), order=3)  # -0.27..1.36, as a B-spline resampling leaves it
    assert rung.min() < -0.05 and rung.max() > 1.05
    img = Image(rung.astype(np.float32), np.diag([0.5, 0.5, 1.0, 1.0]))
    for check in (require_segmentation, require_mask):
        with pytest.raises(InputError, match=r"rings beyond 0\.\.1.*spline interpolation") as e:
            check(img)
        assert "-x linear" in str(e.value)
    # an intensity image is still called one
    noisy = np.random.default_rng(0).normal(100, 20, (40, 40, 30)).astype(np.float32)
    with pytest.raises(InputError, match="intensity image"):
        require_segmentation(Image(noisy, np.eye(4)))
    # within 0..1 it is a soft mask, accepted
    require_segmentation(Image(np.clip(rung, 0, 1).astype(np.float32), np.eye(4)))


def test_cli_one_line(tmp_path, capsys):
    rung = ndimage.shift(_cord(), (0.4, 0.3, 0.0), order=3).astype(np.float32)
    p = save_image(Image(rung, np.diag([0.5, 0.5, 1.0, 1.0])), tmp_path / "seg_spline.nii.gz")
    assert main(["csa", "-s", str(p), "-o", str(tmp_path / "csa.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rings beyond 0..1" in err[0] and "seg_spline.nii.gz" in err[0], err
    assert not (tmp_path / "csa.csv").exists()
