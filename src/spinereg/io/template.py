"""Templates (PAM50, MNI-Poly-AMU, PAM50_small, or a folder): their files by role, and the atlas.

A template folder follows SCT's layout: ``<root>/template/info_label.txt`` lists the template's
objects (``ID, description, file``) and ``<root>/atlas/info_label.txt`` the tract atlas, with
combined labels and the MAP clusters in their own ``# Keyword=...`` sections. ``load_template``
reads both; each object gets a *role* (``t2``, ``cord``, ``disc``...) recognised from its
description by the keyword rules of ``spinereg/data/template_roles.json``, and a *kind* that
decides how it is resampled (nearest for masks and levels, point-wise for point labels, linear
for probabilistic maps and intensities).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from spinereg.errors import DataNotFoundError, InputError
from spinereg.io.registry import ensure_dataset, templates_table

log = logging.getLogger(__name__)

KINDS = ("intensity", "mask", "probabilistic", "levels", "point_labels")
_KEYWORD = re.compile(r"keyword\s*=\s*(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class TemplateObject:
    """One template file: an entry of ``template/info_label.txt`` (or an unlisted known file)."""

    id: int | None
    description: str
    file: str
    path: Path
    exists: bool
    kind: str
    role: str | None
    listed: bool = True

    @property
    def interp(self) -> str:
        """Interpolation for resampling: ``nn``, ``label`` (point-wise) or ``linear``."""
        return _roles_table()["interpolation"][self.kind]


@dataclass(frozen=True)
class AtlasLabel:
    """A tract of the atlas (``combined=False``, one file) or a combined label (several ids)."""

    id: int
    name: str
    file: str | None
    path: Path | None
    exists: bool
    ids: tuple[int, ...]
    combined: bool = False
    kind: str = "probabilistic"


@dataclass(frozen=True)
class MapCluster:
    """A cluster of tracts used by the first step of SCT's MAP estimation."""

    name: str
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Atlas:
    """Tract atlas: iterating or indexing gives the individual tracts (one file each)."""

    root: Path | None
    tracts: tuple[AtlasLabel, ...] = ()
    combined: tuple[AtlasLabel, ...] = ()
    clusters: tuple[MapCluster, ...] = ()

    def __len__(self) -> int:
        return len(self.tracts)

    def __iter__(self):
        return iter(self.tracts)

    def __getitem__(self, index: int) -> AtlasLabel:
        return self.tracts[index]

    def label(self, label_id: int) -> AtlasLabel:
        """The tract or combined label with this id."""
        for lab in self.tracts + self.combined:
            if lab.id == label_id:
                return lab
        known = [lab.id for lab in self.tracts + self.combined]
        raise InputError(f"atlas has no label {label_id}", self.root,
                         f"use one of {known[0]}..{known[-1]}" if known else "this template has no atlas")

    def members(self, label_id: int) -> list[AtlasLabel]:
        """Individual tracts making up label ``label_id`` (itself for a tract)."""
        ids = set(self.label(label_id).ids)
        return [t for t in self.tracts if t.id in ids]


# -- info_label.txt ----------------------------------------------------------------------------
def parse_info_label(path: str | Path) -> dict[str, list[tuple[int, list[str]]]]:
    """Rows of an SCT ``info_label.txt`` grouped by section keyword.

    Returns ``{keyword: [(line_number, fields), ...]}`` where fields are the comma-separated,
    stripped values of a data line. Lines before any ``# Keyword=`` line count as
    ``IndivLabels`` (older files have no keywords).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise DataNotFoundError(f"cannot read label list ({err.strerror})", path,
                                "give a template folder with its info_label.txt") from err
    sections: dict[str, list[tuple[int, list[str]]]] = {}
    current = "IndivLabels"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = _KEYWORD.search(line)
            if m:
                current = m.group(1)
            continue
        sections.setdefault(current, []).append((lineno, [f.strip() for f in line.split(",")]))
    return sections


def parse_ids(text: str) -> tuple[int, ...]:
    """Label ids from SCT's group syntax: ``"0:35"`` (inclusive range), ``"0,1,15,16"``, mixes."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if ":" in part:
                lo, hi = (int(v) for v in part.split(":"))
                if hi < lo:
                    raise ValueError(part)
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError as err:
            raise InputError(f"bad label id group '{text}'", None,
                             "write ids as 'a:b' ranges or comma-separated integers") from err
    return tuple(out)


def _int(value: str, path: Path, lineno: int) -> int:
    try:
        return int(value)
    except ValueError as err:
        raise InputError(f"line {lineno}: label id '{value}' is not an integer", path,
                         "fix the info_label.txt line (format: ID, name, file)") from err


# -- roles -------------------------------------------------------------------------------------
_ROLES_CACHE: dict[str, Any] = {}


def _roles_table() -> dict[str, Any]:
    if not _ROLES_CACHE:
        path = Path(str(resources.files("spinereg").joinpath("data", "template_roles.json")))
        try:
            _ROLES_CACHE.update(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise InputError(f"unreadable role table ({err})", path, "reinstall spinereg") from err
    return _ROLES_CACHE


def role_names() -> tuple[str, ...]:
    """Every role spinereg knows, in canonical order."""
    return tuple(_roles_table()["roles"])


def classify(description: str) -> tuple[str | None, str]:
    """``(role, kind)`` of a template object from its info_label description."""
    table = _roles_table()
    desc = description.lower()
    for rule in table["rules"]:
        if all(_has_word(desc, w) for w in rule["all"]) and not any(
                _has_word(desc, w) for w in rule.get("none", [])):
            return rule["role"], table["roles"][rule["role"]]
    for rule in table["kind_fallback"]:
        if any(_has_word(desc, w) for w in rule["any"]):
            return None, rule["kind"]
    return None, table["default_kind"]


def _has_word(text: str, words: str) -> bool:
    """Whether ``words`` occurs in ``text`` as whole words (a final plural 's' allowed)."""
    return re.search(rf"(?<!\w){re.escape(words)}s?(?!\w)", text) is not None


# -- templates ---------------------------------------------------------------------------------
class Template:
    """A template folder: ``root`` contains ``template/`` (and usually ``atlas/``).

    ``objects`` lists every entry of ``template/info_label.txt`` (plus known files it omits);
    ``roles`` the roles whose file is present; ``path(role)`` the file of a role.
    """

    def __init__(self, root: str | Path, template_dir: str | Path | None = None,
                 name: str | None = None, note: str = ""):
        self.root = Path(root)
        self.template_dir = Path(template_dir) if template_dir is not None else self.root / "template"
        self.note = note
        self.objects: tuple[TemplateObject, ...] = self._read_objects()
        self.name = name or _name_from_files([o.file for o in self.objects if o.listed]) or self.root.name

    def __repr__(self) -> str:
        return f"Template({self.name!r}, root={str(self.root)!r}, roles={list(self.roles)})"

    # -- objects ---------------------------------------------------------------------------
    def _read_objects(self) -> tuple[TemplateObject, ...]:
        info = self.template_dir / "info_label.txt"
        if not info.is_file():
            raise DataNotFoundError("template folder has no info_label.txt", self.template_dir,
                                    "give a folder containing template/info_label.txt (SCT's -t) "
                                    "or the template folder itself")
        objects = []
        for lineno, fields in parse_info_label(info).get("IndivLabels", []):
            if len(fields) < 3:
                raise InputError(f"line {lineno}: expected 'ID, description, file'", info,
                                 "fix the info_label.txt line")
            desc, file = ", ".join(fields[1:-1]), fields[-1]
            role, kind = classify(desc)
            path = self.template_dir / file
            objects.append(TemplateObject(_int(fields[0], info, lineno), desc, file, path,
                                          path.is_file(), kind, role))
        listed = {o.file for o in objects}
        have = {o.role for o in objects if o.exists and o.role}
        table = _roles_table()
        for rule in table.get("unlisted", []):
            if rule["role"] in have:
                continue
            for path in sorted(self.template_dir.glob(f"*{rule['suffix']}")):
                if path.name not in listed:
                    objects.append(TemplateObject(None, rule["description"], path.name, path, True,
                                                  table["roles"][rule["role"]], rule["role"], False))
                    have.add(rule["role"])
                    break
        return tuple(objects)

    @property
    def roles(self) -> tuple[str, ...]:
        """Roles whose file is present, in canonical order."""
        present = {o.role for o in self.objects if o.role and o.exists}
        return tuple(r for r in role_names() if r in present)

    def has(self, role: str) -> bool:
        """Whether the template has a present file for ``role``."""
        return role in self.roles

    def object(self, role: str) -> TemplateObject:
        """The object of ``role`` (an existing one preferred); raises if the template lacks it."""
        if role not in role_names():
            raise InputError(f"unknown template role '{role}'", None,
                             f"choose one of: {', '.join(role_names())}")
        matches = [o for o in self.objects if o.role == role]
        if not matches:
            fix = f"this template provides: {', '.join(self.roles) or 'nothing'}"
            if role == "spinal_levels" and self.spinal_level_maps:
                fix = ("it has per-level probabilistic maps instead: Template.spinal_level_maps "
                       f"({self.spinal_level_maps[0].path.parent})")
            raise DataNotFoundError(f"template {self.name} has no '{role}' object", self.template_dir, fix)
        return next((o for o in matches if o.exists), matches[0])

    def path(self, role: str) -> Path:
        """File of ``role``; :class:`DataNotFoundError` naming the role and file if absent."""
        obj = self.object(role)
        if not obj.exists:
            raise DataNotFoundError(
                f"template {self.name}: the '{role}' file ({obj.file}, {obj.description}) is missing",
                obj.path,
                "this copy lacks it (mirrors omit the large intensity templates): get the full "
                "release with `spinereg data fetch` or use another role/template")
        return obj.path

    # -- atlas and spinal level maps ---------------------------------------------------------
    @cached_property
    def atlas(self) -> Atlas:
        """The tract atlas of ``<root>/atlas`` (empty, ``root=None``, when there is none)."""
        folder = self.root / "atlas"
        info = folder / "info_label.txt"
        if not info.is_file():
            return Atlas(None)
        sections = parse_info_label(info)
        tracts = []
        for lineno, f in sections.get("IndivLabels", []):
            if len(f) < 3:
                raise InputError(f"line {lineno}: expected 'ID, name, file'", info, "fix the line")
            lid, path = _int(f[0], info, lineno), folder / f[-1]
            tracts.append(AtlasLabel(lid, ", ".join(f[1:-1]), f[-1], path, path.is_file(), (lid,)))
        combined = []
        for lineno, f in sections.get("CombinedLabels", []):
            if len(f) < 3:
                raise InputError(f"line {lineno}: expected 'ID, name, IDgroup'", info, "fix the line")
            lid = _int(f[0], info, lineno)
            combined.append(AtlasLabel(lid, f[1], None, None, True, parse_ids(",".join(f[2:])), True))
        clusters = [MapCluster(f[0], parse_ids(",".join(f[1:])))
                    for _, f in sections.get("MAPLabels", []) if len(f) >= 2]
        return Atlas(folder, tuple(tracts), tuple(combined), tuple(clusters))

    @cached_property
    def spinal_level_maps(self) -> tuple[TemplateObject, ...]:
        """Per-level probabilistic maps of ``<root>/spinal_levels`` (MNI-Poly-AMU), else empty."""
        folder = self.root / "spinal_levels"
        info = folder / "info_label.txt"
        if not info.is_file():
            return ()
        out = []
        for lineno, f in parse_info_label(info).get("IndivLabels", []):
            if len(f) >= 3:
                path = folder / f[-1]
                out.append(TemplateObject(_int(f[0], info, lineno), ", ".join(f[1:-1]), f[-1], path,
                                          path.is_file(), "probabilistic", None))
        return tuple(out)


def _name_from_files(files: list[str]) -> str:
    prefix = os.path.commonprefix(files)
    if "_" not in prefix:
        return ""
    return prefix[: prefix.rindex("_")]


def template_names() -> tuple[str, ...]:
    """Names :func:`load_template` accepts besides folders."""
    return tuple(templates_table())


def load_template(name_or_dir: str | Path = "PAM50") -> Template:
    """Open a template by name (``PAM50``, ``MNI-Poly-AMU``, ``PAM50_small``) or folder.

    A folder may contain ``template/`` (SCT's ``-t`` convention) or be the template folder
    itself (holding ``info_label.txt``; its parent is then the root, where ``atlas/`` is looked
    for). Named templates are found (or downloaded) with :func:`spinereg.io.registry.ensure_dataset`.
    """
    table = templates_table()
    if isinstance(name_or_dir, str):
        key = next((k for k in table if k.lower() == name_or_dir.lower()), None)
        if key is not None and not Path(name_or_dir).is_dir():
            row = table[key]
            root = ensure_dataset(row["dataset"])
            if row.get("subdir"):
                root = root / row["subdir"]
            return Template(root, name=key, note=row.get("note", ""))
    p = Path(name_or_dir).expanduser()
    if p.is_dir():
        if (p / "template" / "info_label.txt").is_file():
            return Template(p)
        if (p / "info_label.txt").is_file():
            return Template(p.parent, template_dir=p)
        raise InputError("not a template folder (no template/info_label.txt nor info_label.txt)", p,
                         "give the folder containing template/ (as SCT's -t) or the template folder")
    if p.exists():
        raise InputError("a template is a folder, not a file", p,
                         "give the folder containing template/ (as SCT's -t)")
    raise InputError(f"no template named or at '{name_or_dir}'", None,
                     f"use one of {', '.join(table)} or an existing template folder")
