"""A warped atlas (``sct_warp_template``'s ``label/atlas``) on the lesion grid: each lesion's share
per tract and the share of each tract lesioned, as ``sct_analyze_lesion -f``.

- lesion share of tract ``t``: ``sum(L * A_t) / sum_u sum(L * A_u)`` (%), ``A`` the atlas' partial
  volumes, ``L`` the lesion mask, over the atlas' tracts with id < 36 (SCT leaves the CSF out); a
  combined label (e.g. ``white matter``) sums its members.
- tract lesioned: ``sum(L_all * A_t) / sum(A_t)`` (%), all lesions together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.image import Image

#: SCT's atlas ids from 36 on are CSF, left out
MAX_TRACT_ID = 35


def atlas_dir(folder: str | Path) -> Path:
    """The folder holding ``info_label.txt`` and the tract files: ``folder/atlas`` or ``folder``."""
    f = Path(folder)
    if not f.is_dir():
        raise InputError("atlas folder not found" if not f.exists() else "not a folder", f,
                         "give the warped template folder (label, or label/atlas)")
    return f / "atlas" if (f / "atlas" / "info_label.txt").is_file() else f


def levels_of_folder(folder: str | Path) -> Path | None:
    """``template/PAM50_levels.nii.gz`` next to the atlas, if there is one."""
    a = atlas_dir(folder)
    for root in (Path(folder), a.parent):
        p = root / "template" / "PAM50_levels.nii.gz"
        if p.is_file():
            return p
    return None


@dataclass
class LesionAtlas:
    names: list[str]  # one per tract
    data: list[np.ndarray]  # float32 partial volumes on the lesion grid
    combined: list[tuple[str, list[int]]]  # name, indices into names

    def _vols(self, idx: np.ndarray) -> np.ndarray:
        t = tuple(np.asarray(idx).T)
        return np.array([float(d[t].sum()) for d in self.data])

    def lesion_share(self, idx: np.ndarray) -> dict[str, float]:
        v = self._vols(idx)
        tot = v.sum()
        if tot <= 0:
            return {n: 0.0 for n in self.names} | {n: 0.0 for n, _ in self.combined}
        out = {n: 100.0 * x / tot for n, x in zip(self.names, v, strict=True)}
        out.update({n: 100.0 * float(v[m].sum()) / tot for n, m in self.combined})
        return out

    def cover(self, cord: np.ndarray) -> float:
        """Mean summed partial volume of the tracts over the cord voxels."""
        n = int(cord.sum())
        return float(sum(float(d[cord].sum()) for d in self.data)) / n if n else 0.0

    def tract_lesioned(self, mask: np.ndarray) -> dict[str, float]:
        les = self._vols(np.argwhere(mask))
        tot = np.array([float(d.sum()) for d in self.data])
        out = {n: (100.0 * a / b if b > 0 else float("nan")) for n, a, b in zip(self.names, les, tot, strict=True)}
        out.update({n: 100.0 * float(les[m].sum()) / max(float(tot[m].sum()), 1e-12) for n, m in self.combined})
        return out


def load_atlas(folder: str | Path, lesion: Image) -> LesionAtlas:
    """The atlas of ``folder`` on ``lesion``'s grid (sampled linearly through world coordinates)."""
    from spinereg.io.image import load_image
    from spinereg.lesion.analyze import on_lesion_grid
    from spinereg.metrics.extract import read_label_folder

    lf = read_label_folder(atlas_dir(folder))
    tracts = [lab for lab in lf.individual if lab.id <= MAX_TRACT_ID and lab.path is not None]
    if not tracts:
        raise InputError("the atlas folder lists no tract (ids 0-35)", lf.root, "give label/atlas")
    names, data = [], []
    for lab in tracts:
        if not lab.path.is_file():
            raise InputError(f"atlas file of label {lab.id} is missing", lab.path, "give a complete atlas folder")
        img = load_image(lab.path, ndim=3, what="atlas file")
        data.append(on_lesion_grid(img, lesion, "linear", "atlas").astype(np.float32))
        names.append(f"{lab.id:02d} {lab.name}")
    ids = [lab.id for lab in tracts]
    combined = []
    for lab in lf.labels:
        if lab.combined and set(lab.members) <= set(ids) and set(lab.members) != set(ids):
            combined.append((lab.name, [ids.index(m) for m in lab.members]))
    return LesionAtlas(names, data, combined)
