"""Benchmark the EPI steps: time and peak memory per step, with accuracy where a truth exists.

Rows:

* ``phantom``: :func:`spinereg.phantom.epi.make_epi_phantom` (64 x 64 x 20, 1 x 1 x 5 mm, 30 volumes,
  30 ms readout, +-70 Hz), multiband 1 and 2.
* ``moco phantom MB1/MB2``: :func:`spinereg.epi.moco.motion_correct` with the phantom's
  SliceTiming; error = RMS of the recovered in-plane translations against ``phantom.motion``
  (voxels, up to each slice's reference position). Target <= 0.1 voxel, <= 10 s for 30 volumes.
* ``moco fmri``: SCT's ``fmri/fmri.nii.gz`` (68 x 68 x 6, 30 volumes) with the cord region (t2
  manual segmentation resampled onto the fMRI by header, dilated 2 voxels) as mask, including
  writing every output; tSNR in that region before -> after.
* ``moco dmri -g 3``: SCT's ``dmri`` (7 volumes, b=0 + 6 b>0, groups of 3), outputs written.
* ``fieldmap SDC`` / ``reverse-PE SDC``: the other EPI modules (:mod:`spinereg.epi.fieldmap`,
  :mod:`spinereg.epi.topup`) on the phantom, when present ("not available" otherwise). Targets
  2 s and 30 s.

Time is wall-clock of the library call; memory is the process's peak resident set during the
step (sampled every 5 ms from /proc, so it includes what earlier steps left allocated, e.g. the
phantoms, about 150 MB).
Usage: ``python bench/epi.py [--volumes N]``. Needs ``SPINEREG_DATA`` (sct_testing_data).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(fn):
    """(result, seconds, peak resident MB during the step) of ``fn()``; RSS sampled every 5 ms."""
    peak = [_rss_mb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        dt = time.perf_counter() - t0
        stop.set()
        th.join()
    return out, dt, max(peak[0], _rss_mb())


def _rms_vox(res, truth_mm: np.ndarray, zooms: np.ndarray) -> float:
    est = res.shifts_mm()[..., :2] / zooms[:2]
    tru = truth_mm / zooms[:2]
    err = (est - est.mean(0)) - (tru - tru.mean(0))
    return float(np.sqrt((err**2).sum(-1).mean()))


def _cord_region(sct: Path, grid) -> np.ndarray:
    from scipy import ndimage

    from spinereg.io.image import load_image
    from spinereg.transforms.apply import resample

    seg = load_image(sct / "t2" / "t2_seg-manual.nii.gz")
    m = resample(seg, grid, "linear").data > 0.25
    st = np.zeros((3, 3, 3), bool)
    st[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(m, st, iterations=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=30)
    args = ap.parse_args()
    from spinereg.epi.moco import motion_correct, tsnr_in_mask, write_moco_outputs
    from spinereg.io.image import load_image
    from spinereg.phantom.epi import make_epi_phantom

    root = Path(os.environ.get("SPINEREG_DATA", "../shared/data")) / "sct_testing_data"
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name: str, dt: float | None, mb: float | None, result: str, target: str = "") -> None:
        rows.append((name, "-" if dt is None else f"{dt:.2f}", "-" if mb is None else f"{mb:.0f}", result, target))
        print(f"  {name}: done", flush=True)

    phantoms = {}
    for mb in (1, 2):
        ph, dt, mem = measure(lambda mb=mb: make_epi_phantom(n_volumes=args.volumes, multiband=mb, seed=1))
        phantoms[mb] = ph
        row(f"phantom MB{mb} ({args.volumes} vol)", dt, mem, f"{ph.epi.shape}")
    for mb, ph in phantoms.items():
        res, dt, mem = measure(lambda ph=ph: motion_correct(ph.epi, slice_timing=ph.slice_timing))
        rms = _rms_vox(res, ph.motion, ph.epi.grid.zooms)
        row(f"moco phantom MB{mb}", dt, mem, f"RMS {rms:.4f} vox, {int(res.excluded.sum())} vol excluded",
            "<= 10 s, <= 0.1 vox")

    with tempfile.TemporaryDirectory() as tmp:
        fmri = load_image(root / "fmri" / "fmri.nii.gz", lazy=True)
        cord = _cord_region(root, fmri.grid)

        def run_fmri():
            r = motion_correct(fmri, mask=cord.astype(float))
            write_moco_outputs(r, fmri, Path(tmp) / "fmri", cord_mask=cord)
            return r

        res, dt, mem = measure(run_fmri)
        before, after = tsnr_in_mask(res.tsnr_before, cord), tsnr_in_mask(res.tsnr_after, cord)
        row(f"moco fmri ({fmri.nvols} vol) + outputs", dt, mem,
            f"cord tSNR {before:.2f} -> {after:.2f} (+{100 * (after / before - 1):.1f} %)", "<= 10 s, tSNR up")

        def run_dmri():
            from spinereg.epi.moco import read_bvals

            d = load_image(root / "dmri" / "dmri.nii.gz", lazy=True)
            r = motion_correct(d, group=3, bvals=read_bvals(root / "dmri" / "bvals.txt", d.nvols))
            write_moco_outputs(r, d, Path(tmp) / "dmri")
            return r

        res, dt, mem = measure(run_dmri)
        row("moco dmri -g 3 + outputs", dt, mem, f"max shift {np.abs(res.shifts_mm()).max():.3f} mm")

    ph = phantoms[1]
    seg = ph.epi_seg.data > 0
    try:
        from spinereg.epi.fieldmap import correct_fieldmap
    except ImportError as exc:
        row("fieldmap SDC", None, None, f"not available ({exc})", "<= 2 s")
    else:
        try:
            res, dt, mem = measure(lambda: correct_fieldmap(ph.blip_up, ph.fieldmap_hz, pe=ph.pe,
                                                            readout_s=ph.readout_s))
            err = res.vsm.data - ph.vsm_true
            row("fieldmap SDC (phantom)", dt, mem,
                f"VSM error in cord {np.sqrt((err[seg] ** 2).mean()):.3f} vox RMS", "<= 2 s, <= 0.2 vox")
        except Exception as exc:  # the other module's API may still change
            row("fieldmap SDC (phantom)", None, None, f"failed: {type(exc).__name__}: {exc}", "<= 2 s")
    try:
        from spinereg.epi.topup import correct_reverse_pe
    except ImportError as exc:
        row("reverse-PE SDC", None, None, f"not available ({exc})", "<= 30 s")
    else:
        try:
            res, dt, mem = measure(lambda: correct_reverse_pe(ph.blip_up, ph.blip_down, pe=ph.pe,
                                                              readout_s=ph.readout_s))
            err = res.vsm.data - ph.vsm_true
            ferr = res.field_hz.data - ph.field_true_hz.data
            row("reverse-PE SDC (phantom)", dt, mem,
                f"VSM error in cord {np.sqrt((err[seg] ** 2).mean()):.3f} vox, field {np.sqrt((ferr[seg] ** 2).mean()):.2f} Hz RMS",
                "<= 30 s, <= 0.3 vox, <= 5 Hz")
        except Exception as exc:
            row("reverse-PE SDC (phantom)", None, None, f"failed: {type(exc).__name__}: {exc}", "<= 30 s")

    head = ("step", "time s", "peak MB", "result", "target")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(5)]
    print()
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    print(f"\nprocess peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"CPU cores visible {os.cpu_count()}")


if __name__ == "__main__":
    main()
