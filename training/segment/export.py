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


#: generator version each synthetic set was made with (``--set-version NAME=V``; default: the current)
SET_VERSIONS: dict[str, int] = {}


def _set_info(name: str) -> dict:
    """``fine_s1_n24000.npz`` -> mode, seed, count, generator version."""
    stem = name.removesuffix(".npz")
    mode, s, n = stem.split("_")
    px, size = MODES[mode]
    return {"file": name, "mode": mode, "seed": int(s[1:]), "count": int(n[1:]), "px_mm": px, "size": size,
            "generator_version": SET_VERSIONS.get(name, GENERATOR_VERSION),
            "command": f"python training/segment/make_data.py --mode {mode} --count {n[1:]} --seed {s[1:]} --out DIR"}


def _run_info(run: Path) -> dict:
    """A run's record; several (comma-separated) training or validation sets and a fine-tuning
    start (``init``: the run it started from, recorded in full as ``fine_tuned_from``)."""
    info = json.loads((run / "run.json").read_text())
    tr, va = info["train_set"].split(","), info["val_set"].split(",")
    info["train_set"] = _set_info(tr[0]) if len(tr) == 1 else [_set_info(t) for t in tr]
    info["val_set"] = _set_info(va[0]) if len(va) == 1 else [_set_info(v) for v in va]
    init = ""
    if info.get("init"):
        parent = run.parent / Path(info["init"]).parent
        init = f" --init {Path(info['init']).parent.name.upper()}/{Path(info['init']).name}"
        info["fine_tuned_from"] = {k: v for k, v in _run_info(parent).items() if k != "history"}
    info["command"] = (f"python training/segment/train.py --mode {info['mode']} "
                       f"--train {','.join('DIR/' + t for t in tr)} --val {','.join('DIR/' + v for v in va)} "
                       f"--seed {info['seed']} --steps {info['steps']} "
                       f"--batch {info['batch']} --crop {info['crop']} --lr {info['lr']} "
                       f"--channels {','.join(map(str, info['channels']))} --threads 1{init} --out RUN")
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fine", required=True)
    ap.add_argument("--locate", required=True)
    ap.add_argument("--extra-fine", nargs="*", default=[])
    ap.add_argument("--note", default="")
    ap.add_argument("--set-version", action="append", default=[], help="NAME.npz=V: a set made by generator V")
    a = ap.parse_args()
    for sv in a.set_version:
        name, v = sv.split("=")
        SET_VERSIONS[name] = int(v)
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
        sets = lambda s: s["seed"] if isinstance(s, dict) else sorted({x["seed"] for x in s})  # noqa: E731
        entries[role] = {"file": dst.name, "px_mm": MODES[info["mode"]][0], "multiple": 8,
                         "training": {"seeds": {"training": info["seed"], "train_set": sets(info["train_set"]),
                                                "val_set": sets(info["val_set"])},
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
