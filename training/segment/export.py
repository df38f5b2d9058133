"""Ship trained runs into the package: ONNX files, models.json and the provenance JSON.

    python training/segment/export.py --fine RUN_DIR --locate RUN_DIR [--extra-fine RUN_DIR ...]

Copies ``RUN_DIR/model.onnx`` to ``src/spinereg/segment/models/cord_{fine,locate}.onnx`` and
writes ``models.json`` (what the package reads) and ``cord_models.provenance.json`` (what the
models were trained on: generator, its version and git commit, the template files with their
sha256, the synthetic sets and seeds, the training runs; no real subject image). ``--extra-fine``
records other training seeds of the same recipe (the spread over seeds) without shipping them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODELS = REPO / "src" / "spinereg" / "segment" / "models"
sys.path.insert(0, str(HERE))
from make_data import MODES  # noqa: E402
from synth import GENERATOR_VERSION, TEMPLATE_FILES  # noqa: E402


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _set_info(name: str) -> dict:
    """``fine_s1_n24000.npz`` -> mode, seed, count."""
    stem = name.removesuffix(".npz")
    mode, s, n = stem.split("_")
    px, size = MODES[mode]
    return {"file": name, "mode": mode, "seed": int(s[1:]), "count": int(n[1:]), "px_mm": px, "size": size,
            "command": f"python training/segment/make_data.py --mode {mode} --count {n[1:]} --seed {s[1:]} --out DIR"}


def _run_info(run: Path) -> dict:
    info = json.loads((run / "run.json").read_text())
    info["train_set"] = _set_info(info["train_set"])
    info["val_set"] = _set_info(info["val_set"])
    info["command"] = (f"python training/segment/train.py --mode {info['mode']} --train DIR/{info['train_set']['file']} "
                       f"--val DIR/{info['val_set']['file']} --seed {info['seed']} --steps {info['steps']} "
                       f"--batch {info['batch']} --crop {info['crop']} --lr {info['lr']} "
                       f"--channels {','.join(map(str, info['channels']))} --threads 1 --out RUN")
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fine", required=True)
    ap.add_argument("--locate", required=True)
    ap.add_argument("--extra-fine", nargs="*", default=[])
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    root = Path(os.environ.get("SPINEREG_DATA", "/work/shared/data"))
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    runs = {"fine": Path(a.fine), "locate": Path(a.locate)}
    entries, prov_runs = {}, {}
    for role, run in runs.items():
        info = _run_info(run)
        dst = MODELS / f"cord_{role}.onnx"
        shutil.copyfile(run / "model.onnx", dst)
        prov_runs[role] = {k: v for k, v in info.items() if k != "history"} | {"val_history": info["history"],
                                                                                 "onnx_sha256": sha256(dst)}
        entries[role] = {"file": dst.name, "px_mm": MODES[info["mode"]][0], "multiple": 8,
                         "training": {"seeds": {"training": info["seed"], "train_set": info["train_set"]["seed"],
                                                "val_set": info["val_set"]["seed"]},
                                      "data": "synthetic slices from the PAM50 and MNI-Poly-AMU tissue maps only",
                                      "best_val_dice": round(info["best_val_dice"], 4),
                                      "provenance": "cord_models.provenance.json"}}
    prov = {
        "what": "spinereg cord segmentation models (2D U-Nets on axial slices), trained on synthetic data only",
        "training_images": {"real_subject_images": [],
                            "note": "no image of any subject (sct_testing_data or other) was used for training or "
                                    "model selection; selection = best Dice on a synthetic validation set"},
        "code_sha256": {f"training/segment/{f}": sha256(HERE / f) for f in ("synth.py", "make_data.py", "net.py",
                                                                            "train.py")},
        "generator": {"module": "training/segment/synth.py", "version": GENERATOR_VERSION,
                      "git_head_at_export": commit,
                      "template_files": {rel: sha256(root / rel) for files in TEMPLATE_FILES.values()
                                         for rel in files.values()}},
        "runs": prov_runs,
        "other_seeds_same_recipe": [{k: v for k, v in _run_info(Path(r)).items() if k != "history"}
                                    for r in a.extra_fine],
        "note": a.note,
    }
    (MODELS / "models.json").write_text(json.dumps({"models": entries}, indent=1) + "\n")
    (MODELS / "cord_models.provenance.json").write_text(json.dumps(prov, indent=1) + "\n")
    print(json.dumps(entries, indent=1))


if __name__ == "__main__":
    main()
