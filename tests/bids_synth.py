"""A synthetic BIDS dataset for the batch tests and bench: sct_testing_data images moved by known
fields (numpy/scipy only, independent of spinereg's transforms).

Each good subject-session gets T2w (t2, 1 mm iso), T2starw (t2s) and MTS (mt1 = MT on, mt0 = MT
off), their cord segmentations under ``derivatives/labels`` (spine-generic names:
``<stem>_seg-manual``) and the T2w's vertebral body labels (``<stem>_labels-manual``). Every image
of a subject-session is pulled through one known world transform ``phi`` (a rotation about the
image centre, a translation and a smooth sinusoidal displacement); thick-slice images (t2s 7.5 mm,
MT 17 mm) are moved in-plane only. Point labels are pushed with the inverse of ``phi`` (fixed
point). ``truth.json`` (outside the BIDS folder) holds each transform's parameters.

Broken subjects: ``sub-corrupt`` (its T2w is a truncated gzip file) and ``sub-notwo`` (no T2w:
the contrast every chain goes through is missing).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

#: contrast -> (sct_testing_data image, its segmentation, BIDS name after the entities, in-plane only)
SOURCES = {
    "T2w": ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", "T2w", False),
    "T2starw": ("t2s/t2s.nii.gz", "t2s/t2s_seg.nii.gz", "T2starw", True),
    "MTon": ("mt/mt1.nii.gz", "mt/mt1_seg.nii.gz", "flip-1_mt-on_MTS", True),
    "MToff": ("mt/mt0.nii.gz", None, "flip-1_mt-off_MTS", True),
}
SIDECARS = {
    "T2w": {"MagneticFieldStrength": 3, "RepetitionTime": 1.5, "EchoTime": 0.12},
    "T2starw": {"MagneticFieldStrength": 3, "RepetitionTime": 0.6, "EchoTime": 0.014},
    "MTon": {"MagneticFieldStrength": 3, "MTState": True, "FlipAngle": 9},
    "MToff": {"MagneticFieldStrength": 3, "MTState": False, "FlipAngle": 9},
}


def _params(rng: np.random.Generator, inplane: bool) -> dict:
    """One known transform: rotation (deg), translation (mm), smooth field amplitude (mm) and phases."""
    rot = [0.0, 0.0, float(rng.uniform(-5, 5))] if inplane else [float(v) for v in rng.uniform(-2.5, 2.5, 3)]
    trans = [float(v) for v in rng.uniform(-2.5, 2.5, 3)]
    if inplane:
        trans[2] = 0.0
    return {"rotation_deg": rot, "translation_mm": trans,
            "field_mm": float(rng.uniform(0.4, 1.2)), "field_phase": [float(v) for v in rng.uniform(0, 2 * np.pi, 3)],
            "field_wavelength_mm": float(rng.uniform(60, 90)), "inplane": inplane}


def _rotation(deg) -> np.ndarray:
    a, b, c = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _phi(p: dict, centre: np.ndarray):
    """``phi(y)``: world points of the moved image -> world points of the source image (pull)."""
    r = _rotation(p["rotation_deg"])
    t = np.asarray(p["translation_mm"])
    amp, ph, lam = p["field_mm"], np.asarray(p["field_phase"]), p["field_wavelength_mm"]

    def field(y: np.ndarray) -> np.ndarray:
        u = np.stack([amp * np.sin(2 * np.pi * y[:, 2] / lam + ph[0]),
                      amp * np.sin(2 * np.pi * y[:, 2] / lam + ph[1]),
                      0.5 * amp * np.sin(2 * np.pi * y[:, 0] / lam + ph[2])], axis=1)
        if p["inplane"]:
            u[:, 2] = 0.0
        return u

    def phi(y: np.ndarray) -> np.ndarray:
        return (y - centre) @ r.T + centre + t + field(y)

    def inverse(x: np.ndarray) -> np.ndarray:
        y = x.copy()
        for _ in range(30):  # fixed point: phi is a small perturbation of a rigid motion
            y = (x - centre - t - field(y)) @ r + centre
        return y

    return phi, inverse


def _pull(src: nib.Nifti1Image, phi, order: int) -> np.ndarray:
    data = np.asarray(src.dataobj, dtype=np.float32)
    shape = data.shape[:3]
    ijk = np.indices(shape).reshape(3, -1).T.astype(float)
    world = ijk @ src.affine[:3, :3].T + src.affine[:3, 3]
    vox = (phi(world) - src.affine[:3, 3]) @ np.linalg.inv(src.affine[:3, :3]).T
    out = map_coordinates(data, vox.T, order=order, mode="constant", cval=0.0)
    return out.reshape(shape).astype(np.float32)


def _save(data: np.ndarray, ref: nib.Nifti1Image, path: Path, dtype) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data.astype(dtype), ref.affine)
    img.header.set_qform(ref.affine, 1)
    img.header.set_sform(ref.affine, 1)
    img.header.set_zooms(ref.header.get_zooms()[:3])
    nib.save(img, str(path))


def _push_labels(src: nib.Nifti1Image, inverse, ref: nib.Nifti1Image) -> np.ndarray:
    data = np.asarray(src.dataobj)
    out = np.zeros(data.shape[:3], np.uint8)
    for ijk in np.argwhere(data > 0):
        x = ijk @ src.affine[:3, :3].T + src.affine[:3, 3]
        y = inverse(x[None])[0]
        v = np.rint(np.linalg.solve(ref.affine[:3, :3], y - ref.affine[:3, 3])).astype(int)
        if np.all(v >= 0) and np.all(v < out.shape):
            out[tuple(v)] = int(data[tuple(ijk)])
    return out


def write_session(sct: Path, root: Path, sub: str, ses: str | None, rng: np.random.Generator,
                  contrasts=("T2w", "T2starw", "MTon", "MToff")) -> dict:
    """Write one subject-session; returns its transforms' parameters."""
    rel = Path(f"sub-{sub}") / (f"ses-{ses}" if ses else "")
    prefix = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    truth = {}
    mt_params = _params(rng, True)  # MT on and off share one acquisition
    for key in contrasts:
        src_rel, seg_rel, name, inplane = SOURCES[key]
        src = nib.load(str(sct / src_rel))
        p = mt_params if key in ("MTon", "MToff") else _params(rng, inplane)
        centre = src.affine[:3, :3] @ (np.array(src.shape[:3]) - 1) / 2 + src.affine[:3, 3]
        phi, inverse = _phi(p, centre)
        stem = f"{prefix}_{name}"
        _save(_pull(src, phi, 1), src, root / rel / "anat" / f"{stem}.nii.gz", np.float32)
        (root / rel / "anat" / f"{stem}.json").write_text(json.dumps(SIDECARS[key], indent=1) + "\n")
        der = root / "derivatives" / "labels" / rel / "anat"
        if seg_rel:
            seg = nib.load(str(sct / seg_rel))
            _save((_pull(seg, phi, 1) > 0.5).astype(np.uint8), src, der / f"{stem}_seg-manual.nii.gz", np.uint8)
        if key == "T2w":
            lab = nib.load(str(sct / "t2/labels.nii.gz"))
            _save(_push_labels(lab, inverse, src), src, der / f"{stem}_labels-manual.nii.gz", np.uint8)
        truth[key] = {**p, "centre_mm": [float(c) for c in centre]}
    return truth


def build_bids(root: str | Path, sct: str | Path, n_subjects: int = 12, two_sessions: int = 2, seed: int = 0,
               broken: bool = True) -> dict:
    """Write the dataset into ``root`` (see module doc); returns ``{"units": [...], "broken": [...],
    "truth": {...}}``. Subjects ``01``.. ``NN``; the first ``two_sessions`` have ``ses-01`` and
    ``ses-02``."""
    root, sct = Path(root), Path(sct)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "spinereg synthetic cohort", "BIDSVersion": "1.9.0", "DatasetType": "raw"}, indent=1) + "\n")
    (root / "derivatives" / "labels").mkdir(parents=True, exist_ok=True)
    (root / "derivatives" / "labels" / "dataset_description.json").write_text(json.dumps(
        {"Name": "manual labels", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "tests/bids_synth.py"}]}, indent=1) + "\n")
    units, truth, participants = [], {}, []
    for k in range(1, n_subjects + 1):
        sub = f"{k:02d}"
        participants.append(sub)
        for ses in (["01", "02"] if k <= two_sessions else [None]):
            uid = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
            truth[uid] = write_session(sct, root, sub, ses, rng)
            units.append(uid)
    broken_units = []
    if broken:
        write_session(sct, root, "corrupt", None, rng)
        t2 = root / "sub-corrupt" / "anat" / "sub-corrupt_T2w.nii.gz"
        t2.write_bytes(t2.read_bytes()[:300])  # truncated download
        write_session(sct, root, "notwo", None, rng, contrasts=("T2starw", "MTon", "MToff"))
        broken_units = ["sub-corrupt", "sub-notwo"]
        participants += ["corrupt", "notwo"]
    (root / "participants.tsv").write_text("participant_id\n" + "".join(f"sub-{p}\n" for p in participants))
    return {"units": units, "broken": broken_units, "truth": truth}
