"""ITK text transform files that are not one affine are refused by name (transforms.itk).

Before session 39 only the first ``Parameters:`` line of a ``.txt`` was read, whatever the file held:
a composite of two affines (``#Transform 1``, ``#Transform 2``) was its first transform alone, and a
``ScaleTransform`` (3 parameters) was read as a translation; ``apply`` wrote the result, exit 0.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import folder_listing
from spinereg.cli.main import main
from spinereg.errors import InputError
from spinereg.transforms.itk import read_affine

HEAD = "#Insight Transform File V1.0\n"


def _one(k: int, kind: str, params: str, fixed: str = "0 0 0") -> str:
    return f"#Transform {k}\nTransform: {kind}\nParameters: {params}\nFixedParameters: {fixed}\n"


IDENT = "1 0 0 0 1 0 0 0 1"
COMPOSITE = (HEAD + "#Transform 0\nTransform: CompositeTransform_double_3_3\n"
             + _one(1, "AffineTransform_double_3_3", IDENT + " 0 0 0")
             + _one(2, "AffineTransform_double_3_3", IDENT + " 10 0 0"))
SCALE = HEAD + _one(0, "ScaleTransform_double_3_3", "2 2 2")


@pytest.mark.parametrize("text, words", [(COMPOSITE, ("composite of 2", "application order")),
                                         (SCALE, ("ScaleTransform_double_3_3", "not read"))],
                         ids=["composite", "scale"])
def test_refused_by_kind(tmp_path, capsys, text, words):
    f = tmp_path / "t.txt"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        read_affine(f)
    assert all(w in str(e.value) for w in words), str(e.value)
    img = write_image(tmp_path / "img.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["apply", "-i", str(img), "-d", str(img), "-w", str(f), "-o", str(out / "x.nii.gz")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "t.txt" in err, err
    assert folder_listing(out) == set()


@pytest.mark.parametrize("text", [
    HEAD + _one(0, "AffineTransform_double_3_3", IDENT + " 1 2 3"),
    HEAD + _one(0, "AffineTransform_float_3_3", IDENT + " 1 2 3"),
    HEAD + _one(0, "MatrixOffsetTransformBase_double_3_3", IDENT + " 1 2 3"),
    HEAD + "#Transform 0\nTransform: CompositeTransform_double_3_3\n"
    + _one(1, "AffineTransform_double_3_3", IDENT + " 1 2 3"),
    HEAD + _one(0, "TranslationTransform_double_3_3", "1 2 3", ""),
], ids=["affine", "affine_float", "matrix_offset", "composite_of_one", "translation"])
def test_single_affines_still_read(tmp_path, text):
    f = tmp_path / "t.txt"
    f.write_text(text)
    m = read_affine(f).matrix
    assert np.allclose(m[:3, :3], np.eye(3)) and np.allclose(m[:3, 3], [-1, -2, 3])  # LPS -> RAS


def write_image(path):
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((12, 12, 12)).astype(np.float32), np.eye(4)), str(path))
    return path


def test_fsl_flirt_matrix_named(tmp_path):
    """An FSL FLIRT .mat (4x4 text) read as an ANTs .mat: 'not a readable ITK affine (IndexError)'
    before session 39; now named, with the c3d_affine_tool conversion as the fix."""
    f = tmp_path / "flirt.mat"
    f.write_text("1 0 0 2\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(InputError) as e:
        read_affine(f)
    assert "FSL FLIRT matrix" in str(e.value) and "-fsl2ras -oitk" in str(e.value)
    g = tmp_path / "junk.mat"
    g.write_text("not a matrix\n")
    with pytest.raises(InputError, match="not a readable ITK affine"):
        read_affine(g)
