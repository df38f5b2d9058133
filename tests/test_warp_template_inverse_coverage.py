"""warp-template judges the coverage of an inverted field (``inv:W``) as of a forward one.

``inv:W`` is defined (registered) at the points ``W`` maps its own grid to; elsewhere its inverse is
the identity that ``W`` is continued with beyond its grid and the template is placed unregistered.
Before session 41 only forward fields were judged: ``inv:`` of a warp_anat2template cut to its
upper half wrote PAM50_small onto t2 with no word.

Truth: the voxels of t2 reached by ``W``'s grid pushed forward through ``W`` (its nodes read from
the file, trilinear with numpy/scipy on a 3x supersampled grid), a computation that does not use
the inverse.
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from spinereg.io.grid import Grid
from spinereg.io.image import read_grid
from spinereg.register.warp_template import warp_template
from spinereg.transforms.displacement import DisplacementField
from spinereg.transforms.itk import read_displacement, write_displacement


@pytest.fixture(scope="module")
def anat2template(sct_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A warp_anat2template on PAM50_small's grid around t2 (the inverse of SCT's
    warp_template2anat, continued past t2's grid by its edge values as ANTs' fields are, so that
    its inverse covers all of t2), whole and cut to its upper half."""
    out = tmp_path_factory.mktemp("inv_cov")
    fwd = read_displacement(sct_data / "t2" / "warp_template2anat.nii.gz")
    u = fwd.data
    bad = ~np.all(np.isfinite(u), axis=-1)
    u = u[tuple(ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True))]
    p = 8
    u = np.pad(u, ((p, p), (p, p), (p, p), (0, 0)), mode="edge")
    big = DisplacementField(fwd.grid.box((-p, -p, -p), np.array(fwd.grid.shape) + p), u)
    small = read_grid(sct_data / "template" / "template" / "PAM50_small_t2.nii.gz")
    sub = small.bounding_subgrid(fwd.map(fwd.grid.world_coords()), margin_mm=4.0)
    w = big.inverse(sub)  # the input of the test, not its truth
    whole = write_displacement(w, out / "warp_anat2template.nii.gz")
    nz = w.grid.shape[2]
    half = DisplacementField(w.grid.box((0, 0, nz // 2), w.grid.shape), w.data[:, :, nz // 2:].copy())
    cut = write_displacement(half, out / "warp_anat2template_upper.nii.gz")
    return {"whole": whole, "cut": cut, "out": out}


def _pushed_share(warp: Path, dest: Path, s: int = 3) -> float:
    """Share of ``dest``'s voxel centres that ``warp``'s grid (to half a voxel past its outer
    nodes) reaches under ``x + u(x)``: the file's own nodes (LPS -> RAS), trilinear on a grid ``s``
    times finer, pushed forward; a centre is reached when a pushed sample lies within half the
    fine grid's voxel diagonal of it."""
    img = nib.load(str(warp))
    u = np.asarray(img.dataobj, dtype=np.float64)[:, :, :, 0, :] * np.array([-1.0, -1.0, 1.0])
    axes = [(np.arange(n * s) + 0.5) / s - 0.5 for n in u.shape[:3]]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    disp = np.stack([ndimage.map_coordinates(u[..., d], ijk.T, order=1, mode="nearest") for d in range(3)], -1)
    world = ijk @ img.affine[:3, :3].T + img.affine[:3, 3] + disp
    r = 0.5 * float(np.linalg.norm(np.sqrt((img.affine[:3, :3] ** 2).sum(0)) / s))
    d = nib.load(str(dest))
    c = np.stack(np.meshgrid(*[np.arange(n) for n in d.shape[:3]], indexing="ij"), -1).reshape(-1, 3)
    dist, _ = cKDTree(world).query(c @ d.affine[:3, :3].T + d.affine[:3, 3], distance_upper_bound=2 * r)
    return float((dist <= r).mean())


def _share_in(notes: list[str]) -> float:
    m = [re.search(r"covers (\d+) % of the destination", n) for n in notes]
    found = [float(x.group(1)) for x in m if x]
    assert len(found) == 1, notes
    return found[0]


def test_inverse_of_a_cut_warp_is_warned_with_its_share(sct_data, anat2template, caplog):
    t2 = sct_data / "t2" / "t2.nii.gz"
    truth = 100 * _pushed_share(anat2template["cut"], t2)
    with caplog.at_level("WARNING"):
        res = warp_template(t2, [f"inv:{anat2template['cut']}"], anat2template["out"] / "cut",
                            template="PAM50_small")
    share = _share_in(res.notes)  # measured 55 %, hand 54.8 % (t2's voxels: 54.8 %)
    assert abs(share - truth) <= 2.0, (share, truth)
    assert "inv:" in res.notes[0] and "its inverse is the identity" in res.notes[0]
    assert "not registered" in caplog.text


def test_inverse_of_the_whole_warp_says_nothing(sct_data, anat2template, caplog):
    t2 = sct_data / "t2" / "t2.nii.gz"
    assert _pushed_share(anat2template["whole"], t2) > 0.99  # hand: 99.7 %
    with caplog.at_level("WARNING"):
        res = warp_template(t2, [f"inv:{anat2template['whole']}"], anat2template["out"] / "whole",
                            template="PAM50_small")
    assert not res.notes, res.notes


def test_a_short_inverse_after_a_full_forward_warp_is_named(sct_data, tmp_path):
    """[warp_template2anat, inv:Z], Z a zero field on t2's lower half (a t2 -> t2 correction):
    the full forward warp came first and stopped the check before session 41."""
    t2 = sct_data / "t2" / "t2.nii.gz"
    g = read_grid(t2)
    axis = int(np.argmax(np.abs(g.affine[2, :3])))  # t2 is PSR: the S-I axis is voxel axis 1
    n = g.shape[axis]
    hi = list(g.shape)
    hi[axis] = n // 2
    z = write_displacement(DisplacementField.zeros(Grid(tuple(hi), g.affine)), tmp_path / "z.nii.gz")
    truth = 100 * (n // 2) / n  # its inverse is defined on its own grid: the first n // 2 slices
    res = warp_template(t2, [sct_data / "t2" / "warp_template2anat.nii.gz", f"inv:{z}"], tmp_path / "o",
                        template="PAM50_small")
    share = _share_in(res.notes)
    assert abs(share - truth) <= 2.0, (share, truth)
    assert f"inv:{z}" in res.notes[0]
