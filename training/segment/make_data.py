"""Generate a synthetic training/validation set for the cord models (deterministic per seed).

    python training/segment/make_data.py --mode fine --count 24000 --seed 1 --out DIR

Writes ``DIR/<mode>_s<seed>_n<count>.npz`` (``image`` float16, ``target`` uint8 = fraction x 255)
in chunks of 500 samples, each chunk from its own ``numpy.random.default_rng([seed, chunk])``, so
the set does not depend on the number of worker processes.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth import Templates, make_sample  # noqa: E402

CHUNK = 500
MODES = {"fine": (0.5, 80), "locate": (2.0, 64)}
_TPL = None


def _chunk(args):
    mode, seed, c, count = args
    global _TPL
    if _TPL is None:
        _TPL = Templates()
    px, n = MODES[mode]
    rng = np.random.default_rng([seed, c])
    k = min(CHUNK, count - c * CHUNK)
    img = np.zeros((k, n, n), np.float16)
    tgt = np.zeros((k, n, n), np.uint8)
    for i in range(k):
        a, b = make_sample(rng, _TPL, px, n, mode)
        img[i] = a
        tgt[i] = np.clip(np.rint(b * 255), 0, 255)
    return c, img, tgt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=sorted(MODES), required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{a.mode}_s{a.seed}_n{a.count}.npz"
    nchunks = (a.count + CHUNK - 1) // CHUNK
    t0 = time.time()
    res = {}
    jobs = [(a.mode, a.seed, c, a.count) for c in range(nchunks)]
    if a.workers > 1:
        with ProcessPoolExecutor(a.workers) as ex:
            for c, img, tgt in ex.map(_chunk, jobs):
                res[c] = (img, tgt)
                print(f"chunk {c + 1}/{nchunks} {time.time() - t0:.0f}s", flush=True)
    else:
        for j in jobs:
            c, img, tgt = _chunk(j)
            res[c] = (img, tgt)
            print(f"chunk {c + 1}/{nchunks} {time.time() - t0:.0f}s", flush=True)
    img = np.concatenate([res[c][0] for c in range(nchunks)])
    tgt = np.concatenate([res[c][1] for c in range(nchunks)])
    np.savez(path, image=img, target=tgt)
    print(f"wrote {path} {img.shape} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
