"""BIDS discovery: subjects, sessions, images of the contrasts spinereg processes, their JSON
sidecars, and the segmentations / labels given in the dataset's derivatives.

A *unit* of work is one subject-session (``sub-01/ses-02``), or one subject in a dataset without
sessions. Images are recognised by their suffix (``T1w``, ``T2w``, ``T2starw``, ``MTS``, ``dwi``,
``bold``) in ``sub-X[/ses-Y]/{anat,dwi,func}/``; the sidecar is the ``.json`` of the same stem,
merged over the inherited ones (``ses``/``sub``/dataset level, BIDS inheritance principle).

Given files (cord segmentation, vertebral labels) are looked for, for an image ``<stem>.nii.gz``,
as ``<stem><pattern>.nii[.gz]`` in every ``derivatives/*/sub-X[/ses-Y]/<datatype>/`` folder and
next to the image (patterns from the batch configuration, e.g. ``_seg-manual``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spinereg.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

SUFFIXES = ("T1w", "T2w", "T2starw", "MTS", "dwi", "bold")
DATATYPES = ("anat", "dwi", "func")
_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9]+)$")
_NII = (".nii.gz", ".nii")


@dataclass(frozen=True)
class BidsImage:
    """One image: path, datatype folder, entities in file order (``sub``, ``ses``, ``acq``...),
    suffix, and the merged JSON sidecar."""

    path: Path
    datatype: str
    entities: tuple[tuple[str, str], ...]
    suffix: str
    sidecar: dict = field(default_factory=dict, compare=False, hash=False)
    #: why the sidecar could not be read (one line), None when it was: the unit using this image
    #: fails with it, the other units go on (see :func:`discover`)
    sidecar_error: str | None = field(default=None, compare=False, hash=False)

    @property
    def stem(self) -> str:
        return strip_nii(self.path.name)

    def entity(self, key: str) -> str | None:
        return dict(self.entities).get(key)

    @property
    def prefix(self) -> str:
        """The entities as a file-name prefix (``sub-01_ses-01_acq-sag``)."""
        return "_".join(f"{k}-{v}" for k, v in self.entities)


@dataclass(frozen=True)
class Unit:
    """One subject-session: the images found, by suffix (sorted by name)."""

    subject: str
    session: str | None
    root: Path
    images: tuple[BidsImage, ...]

    @property
    def uid(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def rel(self) -> Path:
        return Path(f"sub-{self.subject}") / (f"ses-{self.session}" if self.session else "")

    @property
    def prefix(self) -> str:
        return self.uid

    def of(self, suffix: str) -> list[BidsImage]:
        return [im for im in self.images if im.suffix == suffix]


@dataclass
class Dataset:
    root: Path
    units: list[Unit]
    notes: list[str] = field(default_factory=list)


def strip_nii(name: str) -> str:
    for ext in _NII:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def parse_name(name: str) -> tuple[tuple[tuple[str, str], ...], str] | None:
    """``sub-01_ses-02_acq-x_T2w.nii.gz`` -> (entities, suffix); None when not a BIDS image name."""
    if not name.endswith(_NII):
        return None
    parts = strip_nii(name).split("_")
    if len(parts) < 2:
        return None
    ents = []
    for p in parts[:-1]:
        m = _ENTITY.match(p)
        if not m:
            return None
        ents.append((m.group(1), m.group(2)))
    if ents[0][0] != "sub":
        return None
    return tuple(ents), parts[-1]


def _sidecar(path: Path, root: Path, ents: tuple[tuple[str, str], ...], suffix: str) -> dict:
    """Merged sidecar: dataset-, subject-, session-level files matching the entities, then the
    image's own (inheritance principle, most specific last)."""
    own = path.parent / (strip_nii(path.name) + ".json")
    found: list[Path] = []
    d = dict(ents)
    for folder in (root, root / f"sub-{d['sub']}", *( [root / f"sub-{d['sub']}" / f"ses-{d['ses']}"] if "ses" in d else [])):
        for cand in sorted(folder.glob(f"*{suffix}.json")):
            cparts = cand.name[: -len(".json")].split("_")[:-1]
            if all(dict([tuple(p.split("-", 1))]).items() <= d.items() for p in cparts if "-" in p):
                found.append(cand)
    if own.is_file():
        found.append(own)
    out: dict = {}
    for f in found:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"sidecar is not valid JSON ({exc})", f, "fix or remove the sidecar file") from exc
        if isinstance(data, dict):
            out.update(data)
    return out


def _labels(values: Sequence[str] | None, prefix: str) -> set[str] | None:
    if not values:
        return None
    return {v[len(prefix):] if v.startswith(prefix) else v for v in values}


def _participants_notes(root: Path, folders: set[str], want_sub: set[str] | None) -> list[str]:
    """participants.tsv's subjects without a sub-* folder (of the selection): never processed, so
    never in the group tables; said as a note (a missing or column-less participants.tsv is fine)."""
    path = root / "participants.tsv"
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    header = lines[0].split("\t") if lines else []
    if "participant_id" not in header:
        return []
    col = header.index("participant_id")
    listed = {cells[col].strip() for cells in (ln.split("\t") for ln in lines[1:]) if len(cells) > col and cells[col].strip()}
    listed = {p if p.startswith("sub-") else f"sub-{p}" for p in listed}
    if want_sub is not None:
        listed = {p for p in listed if p[4:] in want_sub}
    missing = sorted(listed - folders)
    if not missing:
        return []
    return [f"{path}: {len(missing)} participant(s) without a sub-* folder, not processed: {', '.join(missing)}"]


def discover(root: str | Path, participant_label: Sequence[str] | None = None,
             session: Sequence[str] | None = None) -> Dataset:
    """Find every unit of the BIDS dataset ``root`` (see module doc).

    A sidecar that is not valid JSON is the failure of the unit whose image it describes
    (``BidsImage.sidecar_error``, a note here): before session 49 it raised here, so one subject's
    truncated ``sub-06_T2w.json`` stopped the whole batch (and ``--dry-run``) with exit 2 before
    any unit ran.

    ``participant_label`` / ``session``: keep only these (with or without ``sub-``/``ses-``).
    Raises :class:`InputError` when ``root`` is not a BIDS folder or nothing is selected."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("BIDS folder not found", root, "give the root of a BIDS dataset (it holds sub-* folders)")
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise InputError("no sub-* folder: not a BIDS dataset", root, "give the root of a BIDS dataset")
    want_sub, want_ses = _labels(participant_label, "sub-"), _labels(session, "ses-")
    notes: list[str] = []
    if not (root / "dataset_description.json").is_file():
        notes.append(f"{root}: no dataset_description.json (read as BIDS anyway)")
    notes += _participants_notes(root, {p.name for p in subjects}, want_sub)
    units = []
    for sdir in subjects:
        sub = sdir.name[4:]
        if want_sub is not None and sub not in want_sub:
            continue
        sessions = sorted(p for p in sdir.glob("ses-*") if p.is_dir())
        for folder, ses in ([(p, p.name[4:]) for p in sessions] or [(sdir, None)]):
            if want_ses is not None and ses not in want_ses:
                continue
            images = []
            for dt in DATATYPES:
                for f in sorted((folder / dt).glob("*.nii*")) if (folder / dt).is_dir() else []:
                    parsed = parse_name(f.name)
                    if parsed is None or parsed[1] not in SUFFIXES:
                        continue
                    ents, suffix = parsed
                    if dict(ents).get("sub") != sub or dict(ents).get("ses") != ses:
                        notes.append(f"{f}: entities do not match its folder (skipped)")
                        continue
                    try:
                        side, err = _sidecar(f, root, ents, suffix), None
                    except InputError as exc:  # one unit's broken sidecar: that unit fails, not the batch
                        side, err = {}, exc.one_line()
                        notes.append(f"{f.name}: its unit fails if it uses this image: {err}")
                    images.append(BidsImage(f, dt, ents, suffix, side, err))
            units.append(Unit(sub, ses, root, tuple(images)))
    if not units:
        what = "participant label(s) " + ", ".join(sorted(want_sub)) if want_sub else "session(s)"
        raise InputError(f"no subject selected ({what} not found)", root,
                         "check --participant-label / --session against the sub-*/ses-* folders")
    if want_sub:
        missing = sorted(want_sub - {u.subject for u in units})
        if missing:
            raise InputError(f"participant label(s) not found: {', '.join(missing)}", root,
                             "check --participant-label against the sub-* folders")
    return Dataset(root, units, notes)


def find_given(image: BidsImage, root: Path, patterns: Sequence[str]) -> Path | None:
    """The first ``<stem><pattern>.nii[.gz]`` found in the derivatives or next to the image."""
    d = dict(image.entities)
    rel = Path(f"sub-{d['sub']}") / (f"ses-{d['ses']}" if "ses" in d else "") / image.datatype
    folders = [p / rel for p in sorted((root / "derivatives").glob("*"))
               if (p / rel).is_dir() and not (p / ".spinereg-batch.json").exists()]  # never our own outputs
    folders.append(image.path.parent)
    for pattern in patterns:
        for folder in folders:
            for ext in _NII:
                cand = folder / f"{image.stem}{pattern}{ext}"
                if cand.is_file():
                    return cand
    return None
