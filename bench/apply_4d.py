"""Benchmark ``spinereg apply`` on a long 4D series: wall time, peak memory, mean-over-time check.

SCT users hit 258 GiB when warping 375 volumes (the whole series in memory, several copies);
spinereg streams volume by volume. This bench builds a synthetic fMRI-like series (``--nvol``
volumes, default 375, of 64 x 64 x 20 int16, .nii.gz) with a streaming writer so that the bench
itself stays small, a chain of an affine (ANTs ``.mat``) and a smooth displacement field (ITK
warp on a 64 x 64 x 20 reference grid, rotated and shifted from the input), then runs ``spinereg
apply`` on it as a subprocess (peak RSS of that child from ``wait4``).

Check: spline/linear interpolation is linear in the intensities, so the mean over time of the
output must equal the warp of the mean input volume (``spinereg apply`` of a 3D mean). The
relative error is measured in the central, cord-like region (target <= 1 %).

Also timed: reading every volume as ``apply`` does (``load_image(lazy=True).volume(t)``) versus
through one open gzip stream -- the former reopens the .nii.gz and decompresses from the start
for each volume, so its cost grows with the square of the number of volumes.

Usage: ``python bench/apply_4d.py [--nvol N] [--interp spline|linear|nn] [--out DIR]
[--no-breakdown]``. Not part
of the test suite (``tests/test_apply_4d_memory.py`` runs a small version).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (64, 64, 20)
ZOOMS = (1.0, 1.0, 3.0)
TARGET_PEAK_MB = 1536.0
TARGET_REL_ERR = 0.01


# -- synthetic inputs --------------------------------------------------------------------------------
def input_affine() -> np.ndarray:
    aff = np.diag(list(ZOOMS) + [1.0])
    aff[:3, 3] = -(np.array(SHAPE) - 1) / 2.0 * np.array(ZOOMS)
    return aff


def reference_affine() -> np.ndarray:
    """The output grid: 64 x 64 x 20, rotated 8 degrees about S-I and shifted 1.5 mm."""
    a = np.deg2rad(8.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(ZOOMS)
    aff[:3, 3] = -rot @ ((np.array(SHAPE) - 1) / 2.0 * np.array(ZOOMS)) + [1.5, -1.0, 0.5]
    return aff


def base_volume() -> np.ndarray:
    """A cord-like bright ellipse in darker tissue, varying along S-I (float, ~100-900)."""
    i, j, k = np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")
    cx = 31.5 + 3.0 * np.sin(k / 6.0)
    cord = np.exp(-(((i - cx) / 6.0) ** 2 + ((j - 31.5) / 4.5) ** 2) ** 2)
    body = np.exp(-(((i - 31.5) / 26.0) ** 2 + ((j - 31.5) / 24.0) ** 2))
    return 100.0 + 300.0 * body + 500.0 * cord + 20.0 * np.cos(i / 5.0) * np.sin(j / 7.0)


def volume(base: np.ndarray, t: int) -> np.ndarray:
    """Volume ``t``: a slow signal drift, a small in-plane shift pattern and noise, as int16."""
    rng = np.random.default_rng(1000 + t)
    drift = 1.0 + 0.05 * np.sin(2 * np.pi * t / 40.0)
    vol = base * drift + rng.normal(0.0, 15.0, size=base.shape)
    return np.clip(np.rint(vol), -32768, 32767).astype(np.int16)


def write_series(path: Path, nvol: int) -> Path:
    """Write the synthetic series volume by volume (memory: one volume)."""
    from spinereg.io.stream import StreamingNiftiWriter

    base = base_volume()
    with StreamingNiftiWriter(path, SHAPE + (nvol,), input_affine(), np.int16, overwrite=True) as w:
        for t in range(nvol):
            w.write_volume(volume(base, t))
    return path


def write_transforms(folder: Path) -> tuple[Path, Path, Path]:
    """Reference image, affine (.mat, applied first) and displacement field (on the reference grid)."""
    import nibabel as nib

    from spinereg.io.grid import Grid
    from spinereg.transforms.affine import AffineTransform
    from spinereg.transforms.displacement import DisplacementField
    from spinereg.transforms.itk import write_affine, write_displacement

    ref_aff = reference_affine()
    ref = folder / "ref.nii.gz"
    img = nib.Nifti1Image(np.zeros(SHAPE, np.int16), ref_aff)
    img.set_sform(ref_aff, code=1)
    img.set_qform(ref_aff, code=1)
    nib.save(img, str(ref))
    affine = AffineTransform.from_params(rotation_deg=(2.0, -1.5, 3.0), translation=(1.0, -0.8, 1.2),
                                         scale=(1.02, 0.98, 1.0))
    grid = Grid(SHAPE, ref_aff)
    x = grid.world_coords()
    u = np.stack([1.8 * np.sin(x[:, 1] / 9.0) * np.cos(x[:, 2] / 20.0),
                  -1.2 * np.sin(x[:, 0] / 11.0),
                  0.8 * np.cos(x[:, 0] / 13.0 + x[:, 1] / 17.0)], axis=1)
    field = DisplacementField(grid, u.reshape(SHAPE + (3,)).astype(np.float32))
    aff_path = write_affine(affine, folder / "affine.mat", overwrite=True)
    warp_path = write_displacement(field, folder / "warp.nii.gz", overwrite=True)
    return ref, aff_path, warp_path


# -- running and checking ----------------------------------------------------------------------------
def spinereg_cmd() -> list[str]:
    exe = shutil.which("spinereg")
    return [exe] if exe else [sys.executable, "-m", "spinereg.cli.main"]


_HWM_WRAPPER = (
    "import atexit, os, runpy, sys\n"
    "def _hwm():\n"
    "    with open('/proc/self/status') as f, open(os.environ['SPINEREG_HWM_FILE'], 'w') as out:\n"
    "        out.write(next(l for l in f if l.startswith('VmHWM')).split()[1])\n"
    "atexit.register(_hwm)\n"
    "sys.argv = ['spinereg'] + sys.argv[1:]\n"
    "from spinereg.cli.main import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def run_measured(cmd: list[str], timeout: float = 1800.0) -> dict:
    """Run a spinereg command; wall seconds, its peak RSS (MB), exit code, output.

    The peak is the child's own ``VmHWM`` written at exit: ``wait4``'s ``ru_maxrss`` would also
    count the memory the parent had when it forked (the high-water mark survives ``exec``), which
    inflates it when the parent is a big test process.
    """
    args = cmd[1:] if cmd[:1] != [sys.executable] else cmd[3:]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile("r", suffix=".hwm") as hwm:
        env = {**os.environ, "SPINEREG_HWM_FILE": hwm.name}
        proc = subprocess.Popen([sys.executable, "-c", _HWM_WRAPPER, *args], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - t0
        log.seek(0)
        out = log.read().decode(errors="replace")
        text = open(hwm.name).read().strip()
    return {"wall_s": wall, "peak_mb": float(text) / 1024.0 if text else float("nan"),
            "rc": proc.returncode, "output": out}


def apply_cmd(src: Path, ref: Path, warps: list[Path], out: Path, interp: str) -> list[str]:
    return spinereg_cmd() + ["apply", "-i", str(src), "-d", str(ref), "-w", *map(str, warps),
                             "-o", str(out), "-x", interp, "--overwrite"]


def streamed_mean(path: Path) -> np.ndarray:
    """Mean over time of a 4D file, read one volume at a time.

    nibabel with ``keep_file_open=True``: one gzip stream read sequentially. (Reopening the file
    for each volume, as ``load_image(lazy=True)`` does, decompresses from the start every time:
    quadratic in the number of volumes.)
    """
    import nibabel as nib

    img = nib.load(str(path), keep_file_open=True)
    n = int(np.prod(img.shape[3:]))
    acc = np.zeros(img.shape[:3])
    for t in range(n):
        acc += np.asanyarray(img.dataobj[..., t])
    return acc / n


def central_mask(shape: tuple[int, ...]) -> np.ndarray:
    """Central in-plane disc (radius 12 voxels) away from the first/last two slices."""
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    disc = (i - (shape[0] - 1) / 2) ** 2 + (j - (shape[1] - 1) / 2) ** 2 <= 12 ** 2
    m = np.zeros(shape, bool)
    m[:, :, 2:-2] = disc[:, :, None]
    return m


def mean_check(series: Path, out: Path, ref: Path, warps: list[Path], interp: str, work: Path) -> dict:
    """Relative error between mean(apply(series)) and apply(mean(series)) in the central region."""
    import nibabel as nib

    mean_in = streamed_mean(series)
    mean_path = work / "mean_in.nii.gz"
    nib.save(nib.Nifti1Image(mean_in.astype(np.float32), input_affine()), str(mean_path))
    warped_mean = work / "mean_in_warped.nii.gz"
    res = subprocess.run(apply_cmd(mean_path, ref, warps, warped_mean, interp), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"apply of the mean failed: {res.stderr}")
    expect = np.asanyarray(nib.load(str(warped_mean)).dataobj).astype(float)
    got = streamed_mean(out)
    m = central_mask(expect.shape)
    rel = np.abs(got[m] - expect[m]) / np.abs(expect[m])
    return {"rel_err_max": float(rel.max()), "rel_err_mean": float(rel.mean()),
            "mean_value": float(expect[m].mean())}


def read_costs(series: Path) -> dict:
    """Seconds to read every volume as ``apply`` does (``load_image(lazy=True).volume(t)``, which
    reopens the .nii.gz each time) and through one open gzip stream (nibabel
    ``keep_file_open=True``)."""
    import nibabel as nib

    from spinereg.io.image import load_image

    img = load_image(series, ndim=4, lazy=True)
    t0 = time.perf_counter()
    for t in range(img.nvols):
        img.volume(t)
    reopen = time.perf_counter() - t0
    nimg = nib.load(str(series), keep_file_open=True)
    t0 = time.perf_counter()
    for t in range(img.nvols):
        np.asanyarray(nimg.dataobj[..., t])
    return {"read_reopen_s": reopen, "read_stream_s": time.perf_counter() - t0}


def bench(nvol: int, interp: str, work: Path, breakdown: bool = True) -> dict:
    t0 = time.perf_counter()
    series = write_series(work / "series.nii.gz", nvol)
    ref, aff, warp = write_transforms(work)
    build_s = time.perf_counter() - t0
    out = work / "series_warped.nii.gz"
    run = run_measured(apply_cmd(series, ref, [aff, warp], out, interp))
    if run["rc"] != 0:
        raise RuntimeError(f"spinereg apply failed (rc {run['rc']}):\n{run['output']}")
    check = mean_check(series, out, ref, [aff, warp], interp, work)
    costs = read_costs(series) if breakdown else {}
    return {"nvol": nvol, "interp": interp, "build_s": build_s,
            "input_mb": series.stat().st_size / 2**20,
            "raw_mb": float(np.prod(SHAPE)) * nvol * 2 / 2**20, **run, **check, **costs}


def table(r: dict) -> str:
    ok_mem = r["peak_mb"] < TARGET_PEAK_MB
    ok_err = r["rel_err_max"] <= TARGET_REL_ERR
    lines = [
        "| quantity | value | target |",
        "|---|---|---|",
        f"| series | {r['nvol']} x {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16 ({r['raw_mb']:.0f} MB raw, "
        f"{r['input_mb']:.0f} MB .nii.gz) | |",
        f"| chain | affine .mat + displacement field, -x {r['interp']} | |",
        f"| wall time (spinereg apply) | {r['wall_s']:.1f} s | |",
        f"| peak RSS (child) | {r['peak_mb']:.0f} MB | < {TARGET_PEAK_MB:.0f} MB {'OK' if ok_mem else 'FAIL'} |",
        f"| mean over time vs warped mean, max rel. err (central) | {100 * r['rel_err_max']:.4f} % "
        f"| <= 1 % {'OK' if ok_err else 'FAIL'} |",
        f"| same, mean rel. err | {100 * r['rel_err_mean']:.5f} % | |",
    ]
    if "read_reopen_s" in r:
        lines += [
            f"| reading all volumes as apply does (reopen .nii.gz per volume) | "
            f"{r['read_reopen_s']:.1f} s | |",
            f"| reading all volumes from one open gzip stream | {r['read_stream_s']:.2f} s | |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvol", type=int, default=375)
    ap.add_argument("--interp", default="spline", choices=["nn", "linear", "spline"])
    ap.add_argument("--out", help="keep the files in this folder (default: a temporary one)")
    ap.add_argument("--no-breakdown", action="store_true",
                    help="skip timing the volume reads on their own")
    args = ap.parse_args(argv)
    if args.out:
        work = Path(args.out)
        work.mkdir(parents=True, exist_ok=True)
        r = bench(args.nvol, args.interp, work, not args.no_breakdown)
    else:
        with tempfile.TemporaryDirectory(prefix="spinereg_apply4d_") as tmp:
            r = bench(args.nvol, args.interp, Path(tmp), not args.no_breakdown)
    print(table(r))
    ok = r["peak_mb"] < TARGET_PEAK_MB and r["rel_err_max"] <= TARGET_REL_ERR
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
