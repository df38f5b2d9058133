"""ANTs-backed steps (3D and slicewise=1 2D variants) and SCT's default preset through our engine."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import rotation
from spinereg.io import Grid, Image
from spinereg.pipelines.template_outputs import write_outputs
from spinereg.register.ants_steps import ants_step
from spinereg.register.steps import parse_step
from spinereg.register.template import register_to_template
from spinereg.transforms import apply_transforms


def _ellipses(shift_per_slice):
    g = Grid((40, 40, 6), np.diag([-0.8, 0.8, 5.0, 1.0]))
    x, y, z = np.meshgrid(np.arange(40), np.arange(40), np.arange(6), indexing="ij")
    fixed = ((((x - 20) / 6) ** 2 + ((y - 20) / 4) ** 2) < 1).astype(np.float32)
    sh = np.asarray(shift_per_slice)[None, None, :]
    moving = ((((x - 20 - sh) / 6) ** 2 + ((y - 19) / 4) ** 2) < 1).astype(np.float32)
    return g, fixed, moving


def _dice(a, b):
    return 2 * np.logical_and(a > 0.5, b > 0.5).sum() / ((a > 0.5).sum() + (b > 0.5).sum())


@pytest.mark.parametrize("param,bound", [
    # one 3D transform cannot follow shifts that change from slice to slice (start: 0.75);
    # bounds: the measured Dice less ~10 % of its distance to 1
    ("step=1,type=seg,algo=translation,iter=50", 0.905),  # measured 0.915
    ("step=1,type=seg,algo=rigid,iter=50", 0.84),  # measured 0.854
    ("step=1,type=seg,algo=affine,iter=50", 0.925),  # measured 0.934
    ("step=1,type=seg,algo=syn,iter=20", 0.80),  # measured 0.812
    ("step=1,type=seg,algo=bsplinesyn,iter=20", 0.85),  # measured 0.866
    ("step=1,type=seg,algo=translation,slicewise=1,iter=50", 0.995),  # measured 1.0
    ("step=1,type=seg,algo=syn,slicewise=1,iter=20", 0.985),  # measured 0.993
])
def test_ants_steps_improve_overlap(param, bound):
    g, fixed, moving = _ellipses([1, 2, 3, 2, 1, 0])
    t = ants_step(fixed, moving, g, parse_step(param))
    out = apply_transforms(Image(moving, g.affine), g, [t], "linear").data
    assert _dice(moving, fixed) < 0.8
    assert _dice(out, fixed) >= bound


def test_sct_default_preset_on_t2(sct_data, tmp_path):
    """SCT's default steps (centermassrot pcahog + ANTs bsplinesyn) through our engine."""
    t2 = sct_data / "t2"
    reg = register_to_template(t2 / "t2.nii.gz", t2 / "t2_seg-manual.nii.gz", labels=t2 / "labels.nii.gz",
                               template="PAM50_small", param="template_default")
    write_outputs(reg, tmp_path)
    assert reg.metrics["cord_dice_subject_space"] >= 0.965  # measured 0.9687


def _world_pair() -> tuple[Grid, np.ndarray, np.ndarray]:
    """A textured ellipsoid and the same turned 6 deg about S-I and shifted 1.2 mm, both sampled
    from functions of world coordinates on an LAS grid (any voxel order samples the same values)."""
    g = Grid((36, 32, 8), np.diag([-0.8, 0.8, 3.0, 1.0]))
    x = g.voxel_to_world(np.argwhere(np.ones(g.shape, bool)).astype(float))
    c = g.center_world()

    def f(p: np.ndarray) -> np.ndarray:
        d = p - c
        blob = np.exp(-((d[:, 0] / 9.0) ** 2 + (d[:, 1] / 6.0) ** 2 + (d[:, 2] / 14.0) ** 2))
        return (blob * (1.0 + 0.3 * np.sin(d[:, 0] / 2.5) * np.cos(d[:, 1] / 3.0))).astype(np.float32)

    moved = (x - c) @ rotation((0.0, 0.0, 6.0)).T + c + [1.2, -0.6, 0.0]
    return g, f(x).reshape(g.shape), f(moved).reshape(g.shape)


FLIP_PARAMS = ["step=1,type=im,algo=rigid,metric=MI,iter=20",
               "step=1,type=im,algo=affine,metric=MeanSquares,iter=20",
               "step=1,type=im,algo=rigid,slicewise=1,iter=20",
               "step=1,type=im,algo=syn,iter=5"]


def flip_differences(param: str) -> dict[str, float]:
    """Largest point difference (mm) between the step on the LAS pair and on the same pair with
    voxel axes reordered / flipped to LPS, RAS and RPS; ``repeat`` is the same LAS run again."""
    from spinereg.io import reorient

    g, fixed, moving = _world_pair()
    step = parse_step(param)
    base = ants_step(fixed, moving, g, step)
    inner = np.argwhere(np.ones(g.shape, bool))[::7].astype(float)
    pts = g.voxel_to_world(inner)
    moved = base.map(pts)
    out = {"moved": float(np.abs(moved - pts).max()),
           "repeat": float(np.abs(ants_step(fixed, moving, g, step).map(pts) - moved).max())}
    for code in ("LPS", "RAS", "RPS"):
        f, m = reorient(Image(fixed, g.affine), code), reorient(Image(moving, g.affine), code)
        out[code] = float(np.abs(ants_step(f.data, m.data, f.grid, step).map(pts) - moved).max())
    return out


@pytest.mark.parametrize("param", FLIP_PARAMS)
def test_ants_steps_do_not_depend_on_voxel_flips(param):
    """The same images with voxel axes flipped (same world) give the same transform. ANTs works
    from the grid's first voxel: before session 35 the first flip that differed moved points by
    0.097 (rigid, MI), 0.011 (affine), 0.23 (2D rigid per slice) and 0.008 mm (SyN) here, and a
    rigid field-map alignment by 0.13 mm (test_sdc.py); each step now runs with every axis
    pointing to R, A or S.

    Run with one ITK thread (a fresh process: ITK reads the count once): with two, ANTs' MI sums
    in a varying order and the same call twice differs by up to 3.4e-4 mm here (session 44; CI
    once failed the former bound 3e-4 on a flip that was this noise). With one thread every flip
    gives exactly the same transform."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    code = (f"import json, sys; sys.path[:0] = [{str(here)!r}, {str(here.parent / 'src')!r}]; "
            f"from test_ants_steps import flip_differences; print(json.dumps(flip_differences({param!r})))")
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    d = json.loads(run.stdout.strip().splitlines()[-1])
    assert d["moved"] > 0.3  # the step moved something
    assert d["repeat"] == 0.0
    for code_ in ("LPS", "RAS", "RPS"):
        assert d[code_] == 0.0, (code_, d)  # measured 0 for all four steps and three orders
