"""register-to-template on the independent phantom: the figures of docs/validation.md.

For each variant and seed: make the subject (:func:`spinereg.phantom.independent.make_independent_subject`),
register it to PAM50 with two body labels (C3, C5), with and without the S-I refinement, and print
the cord mapping error (mean / p95 mm) and the worst disc-level S-I error against the truth.

Usage: ``python bench/validation_register.py [--variant full] [--seeds 0,1,2,3] [--no-ablation]``.
Not part of the test suite (the full variant takes about a minute per seed and setting).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    from spinereg.phantom.independent import make_independent_subject
    from spinereg.register.template import register_to_template

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="full")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--no-ablation", action="store_true", help="skip the run without S-I refinement")
    args = ap.parse_args(argv)
    print("| variant | seed | length | S-I refinement | mean mm | p95 mm | worst disc S-I mm | s |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        ph = make_independent_subject(args.variant, seed=seed)
        for refine in (True,) if args.no_ablation else (True, False):
            t0 = time.perf_counter()
            reg = register_to_template(ph.image, ph.seg, labels=ph.labels("body"), template="PAM50",
                                       contrast=ph.contrast, si_refine=refine)
            err, lvl = ph.error(reg.template2anat), ph.level_errors(reg.template2anat)
            print(f"| {args.variant} | {seed} | {ph.params['length_scale']:.3f} | {'on' if refine else 'off'} | "
                  f"{err['mean_mm']:.2f} | {err['p95_mm']:.2f} | {max(lvl.values()):.1f} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
