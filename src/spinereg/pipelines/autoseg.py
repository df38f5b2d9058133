"""Automatic cord segmentation inside the registration jobs.

``register-to-template`` without ``-s`` (or with ``-s auto``), ``register --iseg auto`` /
``--dseg auto`` and ``chain --seg ... auto ...`` segment those images with
:func:`spinereg.segment.segment` before registering. Each segmentation is written into the job's
output folder as ``<image>_seg.nii.gz`` (SCT's name; it is part of the transaction: nothing is
left behind on failure) and described in provenance.json (what was segmented, the models and
their sha256, the figures of the segmentation).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from spinereg.io.tempdirs import make_temp_dir, remove_temp_dir

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.image import Image

_R = TypeVar("_R")

AUTO = "auto"


def is_auto(seg: object) -> bool:
    return isinstance(seg, str) and seg.strip().lower() == AUTO


class AutoSegmentations:
    """Segmentations made during one job: temporary files until :meth:`copy_into` puts them in
    the job's output folder. Use as a context manager (the temporary folder goes away)."""

    def __init__(self) -> None:
        self._tmp: Path | None = None
        self.files: dict[str, Path] = {}  # output file name -> temporary path
        self.records: dict[str, dict] = {}  # output file name -> provenance record

    def __enter__(self) -> AutoSegmentations:
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            remove_temp_dir(self._tmp)
            self._tmp = None

    def segment(self, image: str | Path, contrast: str = "auto") -> Path:
        """Segment ``image``; return the path of the (temporary) mask file."""
        from spinereg.io.image import path_stem, save_image
        from spinereg.segment import segment
        from spinereg.segment.cordseg import CONTRASTS

        if self._tmp is None:
            self._tmp = make_temp_dir("spinereg-autoseg-")
        res = segment(image, contrast if contrast in CONTRASTS else "auto")
        name = f"{path_stem(image)}_seg.nii.gz"
        path = save_image(res.seg, self._tmp / name, overwrite=True, dtype="uint8")
        models = {k: {"file": v["file"], "bytes": v["bytes"]} for k, v in res.info["models"].items()}
        self.records[name] = {"image": str(image), "file": name, "by": "spinereg segment (automatic)",
                              **{k: v for k, v in res.info.items() if k not in ("models", "input")},
                              "models": models}
        self.files[name] = path
        return path

    def warnings(self) -> list[str]:
        """The automatic segmentations' warnings (``spinereg segment``'s, e.g. a cord ending well
        below the top of the image), each naming its image."""
        return [f"automatic segmentation of {Path(r['image']).name}: {w}" for r in self.records.values()
                for w in r.get("warnings", [])]

    def seg_or_segment(self, image: str | Path, seg: str | Path | Image | None,
                       contrast: str = "auto") -> str | Path | Image:
        """``seg`` itself, or the path of an automatic segmentation when ``seg`` is None/'auto'."""
        return self.segment(image, contrast) if seg is None or is_auto(seg) else seg

    def copy_into(self, folder: Path) -> None:
        for name, path in self.files.items():
            shutil.copyfile(path, Path(folder) / name)

    def before_commit(self, hook: Callable[[Path], _R] | None
                      ) -> Callable[[Path], _R | None] | None:
        """A ``before_commit`` callback that first copies the segmentations into the output
        folder, then runs ``hook`` (e.g. the QC report's)."""
        if not self.files:
            return hook

        def wrapped(tmp: Path) -> _R | None:
            self.copy_into(tmp)
            return hook(tmp) if hook is not None else None

        return wrapped

    def describe(self) -> str:
        """One line for provenance inputs: which files were segmented automatically."""
        return "; ".join(f"{n} (automatic: spinereg segment of {r['segmented']})" for n, r in self.records.items())
