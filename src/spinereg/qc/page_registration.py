"""QC pages of registrations: ``register-to-template``, ``register`` and ``chain``.

register-to-template shows four stages: the cord segmentation on the image, the landmarks with
the template's levels, the template on the subject (subject space: subject vs the template warped
onto it, cord outlines, atlas tract groups as outlines) and the subject in template space
(``anat2template`` vs the template image). When the template image is synthesised from tissue
maps (no T2 template file), every "after" picture that shows it says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinereg.errors import InputError
from spinereg.io.grid import Grid
from spinereg.io.image import Image, load_image, on_grid_of
from spinereg.qc.figures import (
    LABEL_COLOR,
    SEG_COLOR,
    TEMPLATE_COLOR,
    Overlay,
    View,
    _norm,
    axial_mosaic,
    axial_slices,
    crop_grid,
    label_points,
    level_texts,
    levels_at,
    on_grid,
    sagittal_view,
    slice_numbers,
    tile_labels,
    to_ras,
)
from spinereg.qc.pages import Panel, page

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.template import Template
    from spinereg.transforms.base import Transform

log = logging.getLogger(__name__)

#: atlas tract groups drawn as outlines: (combined label id, name, colour)
TRACT_GROUPS = ((52, "gray matter", "#ffffff"), (53, "dorsal columns", "#4da3ff"),
                (54, "lateral funiculi", "#ffa640"), (55, "ventral funiculi", "#e056fd"))


def _input(prov: dict, key: str) -> Path | None:
    v = (prov.get("inputs") or {}).get(key)
    if v in (None, "", "None"):
        return None
    if not isinstance(v, str):
        raise InputError(f"provenance.json's inputs.{key} is {v!r}, not a file name", None,
                         "restore the run's provenance.json, or re-run the command")
    return Path(v)


def list_input(value: object) -> list[str | None]:
    """A provenance list (a JSON list, or a Python repr of one as ``str(list)`` writes)."""
    import ast

    if value is None:
        return []
    if isinstance(value, list):
        return value
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        return [str(value)]
    return list(parsed) if isinstance(parsed, (list, tuple)) else [str(parsed)]


def _load(path: Path | str, what: str, run_dir: Path | None = None, prov: dict | None = None) -> Image:
    """An input named in provenance.json; one that is not found where it was is looked for in
    the run folder by its file name (inputs a run wrote itself, e.g. an automatic segmentation,
    recorded as ``NAME (how it was made)``). With ``prov``: refused if changed since the run."""
    if not isinstance(path, str | Path) or not str(path).strip():
        # a hand-edited provenance.json (an input removed, a number for a path) was an internal
        # error (TypeError) before session 39
        raise InputError(f"provenance.json names no {what} (inputs hold {path!r})",
                         Path(run_dir) / "provenance.json" if run_dir is not None else None,
                         "restore the run's provenance.json, or re-run the command")
    p = Path(path)
    if not p.exists() and run_dir is not None:
        local = Path(run_dir) / Path(str(path).split(" (")[0]).name
        p = local if local.is_file() else p
    if not p.exists():
        raise InputError(f"{what} named in provenance.json not found", p,
                         "run QC where the run's inputs are still available")
    if prov is not None:
        require_unchanged(p, prov, what)
    return load_image(p, check_finite=False)


def _records(value: object) -> list[dict]:
    if isinstance(value, dict):
        return [value] if "path" in value else [r for v in value.values() for r in _records(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _records(v)]
    return []


def require_unchanged(path: Path, prov: dict, what: str) -> None:
    """Raise :class:`InputError` when the file at ``path`` is not the one the run read (size or
    SHA-256 differ from provenance.json's ``input_files``): the figures would draw another image
    under the run's warps and segmentations (a t2.nii.gz replaced by pure noise after the run was
    drawn, exit 0, before session 37)."""
    from spinereg.io.provenance import sha256_file

    p = Path(path).resolve()
    for rec in _records(prov.get("input_files") or {}):
        if Path(str(rec.get("path"))) != p:
            continue
        size, sha = rec.get("bytes"), rec.get("sha256")
        if (size is not None and p.stat().st_size != size) or (sha and sha256_file(p) != sha):
            raise InputError(f"{what} changed since the run (its size or checksum differs from provenance.json's)",
                             p, "run QC with the files the run read (or run the command again on this one)")
        return


def _origin(recorded: object, given: str, made: str) -> str:
    """Where a segmentation or a set of landmarks came from, for a caption: ``given``, or ``made``
    (with how, in brackets) for an input recorded as ``NAME (automatic: spinereg segment ...)``,
    which the run made itself. Before session 49 every caption said "cord segmentation given with
    -s" / "the subject's landmarks", also for a bare register-to-template run and a chain with
    ``--seg auto``, whose segmentation and discs were automatic."""
    text = str(recorded or "")
    if "(automatic" not in text:
        return given
    how = text.split("(automatic", 1)[1].lstrip(":").strip().rstrip(")").strip()
    return f"{made} ({how})" if how else made


def _template(prov: dict):
    from spinereg.io.template import load_template

    info = prov.get("template") or {}
    if isinstance(info, str):
        return load_template(info)
    root = info.get("root")
    if root and Path(root).is_dir():
        try:
            return load_template(root)
        except Exception:  # noqa: BLE001 - fall back to the name
            pass
    name = info.get("name") or (prov.get("inputs") or {}).get("template") or "PAM50"
    return load_template(name)


def template_note(template: Template, prov: dict) -> str:
    """"" for a real template image, else the sentence saying it is synthesised."""
    info = prov.get("template") if isinstance(prov.get("template"), dict) else {}
    text = (info or {}).get("image") or ""
    if text.startswith("synthesised") or (not text and not template.has("t2")):
        return ("after: the template image is SYNTHESISED from the template's tissue maps and vertebrae "
                f"(no T2 template image in {template.root}); judge the outlines, not the texture")
    return ""


def atlas_groups(template: Template, grid: Grid, inv: Transform | None,
                 threshold: float = 0.5) -> list[tuple[str, np.ndarray, str]]:
    """Tract groups of the template's atlas on ``grid`` (``inv``: grid points -> template points):
    ``[(name, mask, colour)]`` for gray matter, dorsal columns, lateral and ventral funiculi (the
    summed tract probabilities > ``threshold``). Each tract is read over the bounding box of
    the points only, files in parallel threads."""
    from concurrent.futures import ThreadPoolExecutor

    import nibabel as nib
    from scipy.ndimage import map_coordinates

    atlas = template.atlas
    tracts = {t.id: t for t in atlas if t.exists and t.path is not None}
    if not tracts:
        return []
    first = nib.load(str(next(iter(tracts.values())).path))
    tgrid = Grid(tuple(int(v) for v in first.shape[:3]), first.affine)
    pts = grid.world_coords() if inv is None else inv.map(grid.world_coords())
    vox = tgrid.world_to_voxel(pts)
    ok = np.all(np.isfinite(vox), axis=1)
    if not ok.any():
        return []
    lo = np.clip(np.floor(vox[ok].min(0)).astype(int) - 1, 0, np.array(tgrid.shape))
    hi = np.clip(np.ceil(vox[ok].max(0)).astype(int) + 2, 0, np.array(tgrid.shape))
    if np.any(hi - lo < 1):
        return []
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    coords = np.nan_to_num(vox - lo, nan=-1e6).T

    def sample(path: Path) -> np.ndarray:
        img = nib.load(str(path))
        if img.shape[:3] != tgrid.shape or not np.allclose(img.affine, tgrid.affine, atol=1e-4):
            return np.zeros(grid.shape, np.float32)
        sub = np.asarray(img.dataobj[box], dtype=np.float32)
        return map_coordinates(sub, coords, order=1, cval=0.0).reshape(grid.shape)

    out = []
    wanted = []
    for gid, name, color in TRACT_GROUPS:
        try:
            members = [tracts[t.id] for t in atlas.members(gid) if t.id in tracts]
        except InputError:
            continue
        if members:
            wanted.append((name, color, members))
    paths = sorted({m.path for _, _, ms in wanted for m in ms})
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as ex:
        maps = dict(zip(paths, ex.map(sample, paths), strict=True))
    for name, color, members in wanted:
        total = sum(maps[m.path] for m in members)
        out.append((name, total > threshold, color))
    return out


def _levels_view(template: Template, grid: Grid, inv: Transform | None) -> np.ndarray | None:
    if not template.has("levels"):
        return None
    lev = load_image(template.path("levels"), ndim=3, check_finite=False)
    return to_ras(on_grid(lev, grid, [inv] if inv is not None else None, "nn"), grid.affine).data


def _pair(outdir: Path, name: str, before: View, after: View, mask: np.ndarray,
          overlays: Sequence[Overlay], labels: Sequence[str] | None,
          texts: Sequence[tuple[float, float, str]] = (),
          points: Sequence[tuple[float, float, str]] = (),
          slices: Sequence[int] | None = None) -> tuple[dict, dict]:
    """Axial and sagittal before/after pictures with the same overlays; returns their file dicts."""
    ax = {"before": f"{name}_axial_before.png", "after": f"{name}_axial_after.png"}
    sg = {"before": f"{name}_sagittal_before.png", "after": f"{name}_sagittal_after.png"}
    axial_mosaic(before, outdir / ax["before"], mask, overlays, slices, tile_labels=labels)
    axial_mosaic(after, outdir / ax["after"], mask, overlays, slices, window=_norm(after.data), tile_labels=labels)
    sagittal_view(before, outdir / sg["before"], mask, overlays, texts, points)
    sagittal_view(after, outdir / sg["after"], mask, overlays, texts, points, window=_norm(after.data))
    return ax, sg


def subject_space_panels(outdir: Path, image: Image, seg: Image | None, template: Template,
                         inv: Transform, labels: Image | None = None, label_kind: str = "body",
                         template_on_image: Image | None = None, note: str = "",
                         names: tuple[str, str] = ("subject", "template warped onto the subject"),
                         atlas: bool = True, seg_from: str = "given with -s",
                         labels_from: str = "the subject's landmarks") -> list[Panel]:
    """Segmentation, landmarks and template-on-subject panels (``inv``: template -> subject).
    ``seg_from`` / ``labels_from``: where the segmentation and the landmarks came from, as the
    captions say it (see :func:`_origin`)."""
    tcord_img = load_image(template.path("cord"), ndim=3, check_finite=False)
    seg_full = np.asarray(seg.data) > 0.5 if seg is not None else on_grid(tcord_img, image.grid, [inv]) > 0.5
    grid = crop_grid(image.grid, seg_full)
    img = image if image.ndim == 3 else image.with_data(image.volume(0))
    base = to_ras(on_grid(img, grid), grid.affine)
    segv = to_ras(on_grid(seg, grid) if seg is not None else on_grid(tcord_img, grid, [inv]), grid.affine).data
    cordmask = segv > 0.5
    tcord = to_ras(on_grid(tcord_img, grid, [inv]), grid.affine).data
    lev = _levels_view(template, grid, inv)
    slices = axial_slices(cordmask)
    labs = tile_labels(slice_numbers(base, slices, image.grid), levels_at(lev, slices) if lev is not None else None)
    texts = level_texts(lev) if lev is not None else []
    seg_ov = Overlay(segv, "contour", SEG_COLOR, "segmentation")
    tpl_ov = Overlay(tcord, "contour", TEMPLATE_COLOR, "template cord", 1.2)
    panels: list[Panel] = []
    if seg is not None:
        axial_mosaic(base, outdir / "seg_axial_image.png", cordmask, [], slices, tile_labels=labs)
        axial_mosaic(base, outdir / "seg_axial.png", cordmask, [seg_ov], slices, tile_labels=labs)
        sagittal_view(base, outdir / "seg_sagittal.png", cordmask, [seg_ov], texts)
        panels += [
            Panel("segmentation", "Cord segmentation (axial)", "toggle",
                  {"before": "seg_axial_image.png", "after": "seg_axial.png"},
                  f"red: cord segmentation {seg_from}; tiles labelled with the image's slice number and level",
                  {"before": "image", "after": "image + segmentation"}),
            Panel("segmentation", "Cord segmentation (sagittal)", "single", {"image": "seg_sagittal.png"},
                  "red: cord segmentation through the cord's mid-sagittal plane; green: template levels"),
        ]
    if labels is not None:
        pts = label_points(to_ras(on_grid(labels, grid, None, "label"), grid.affine).data, label_kind)
        sagittal_view(base, outdir / "labels_sagittal.png", cordmask, [seg_ov], texts, pts)
        panels.append(Panel("labels", "Landmarks and vertebral levels", "single", {"image": "labels_sagittal.png"},
                            f"yellow: {labels_from}, each named; green: the template's vertebral levels "
                            "warped onto the subject -- each landmark should sit in the level of its name"))
    if template_on_image is not None:
        after = to_ras(on_grid(template_on_image, grid), grid.affine)
    else:
        timg = load_image(template.path("t2"), ndim=3, check_finite=False) if template.has("t2") else tcord_img
        after = to_ras(on_grid(timg, grid, [inv]), grid.affine)
    ax, sg = _pair(outdir, "subject", base, after, cordmask, [seg_ov, tpl_ov], labs, texts, (), slices)
    lab = {"before": names[0], "after": names[1]}
    cap = "red: subject cord segmentation; green: template cord warped onto the subject"
    panels += [Panel("registration: subject space", "Template on the subject (axial)", "toggle", ax, cap, lab,
                     note_after=note),
               Panel("registration: subject space", "Template on the subject (sagittal)", "toggle", sg,
                     cap + "; green names: template levels", lab, note_after=note)]
    if atlas:
        try:
            groups = atlas_groups(template, grid, inv)
        except Exception as exc:  # noqa: BLE001 - an atlas problem must not lose the report
            log.warning("atlas overlay skipped: %s", exc)
            groups = []
        if groups:
            ovs = [Overlay(to_ras(m.astype(np.float32), grid.affine).data, "contour", c, n, 1.3) for n, m, c in groups]
            axial_mosaic(base, outdir / "atlas_axial.png", cordmask, ovs, slices, tile_labels=labs)
            legend = ", ".join(f"{n} ({c})" for n, _, c in groups)
            panels.append(Panel("registration: subject space", "Atlas tract groups on the subject", "single",
                                {"image": "atlas_axial.png"},
                                f"outlines of the warped white matter atlas, grouped: {legend}"))
    return panels


def template_space_panels(outdir: Path, anat2template: Image, template: Template,
                          note: str = "") -> list[Panel]:
    """The subject in template space (``anat2template``) against the template image."""
    from spinereg.register.template import _template_intensity

    tcord_img = load_image(template.path("cord"), ndim=3, check_finite=False)
    a2t = np.asarray(anat2template.data)
    tcord_on = on_grid(tcord_img, anat2template.grid, None, "nn") > 0.5
    covered = tcord_on & (np.abs(a2t) > 0)
    if not covered.any():
        return []
    grid = crop_grid(anat2template.grid, covered, margin_mm=15.0)
    base = to_ras(on_grid(anat2template, grid), grid.affine)
    region = tcord_img.grid.bounding_subgrid(
        np.vstack([grid.voxel_to_world(np.array([[0, 0, 0]], float)),
                   grid.voxel_to_world((np.array(grid.shape, float) - 1)[None])]))
    timg = _template_intensity(template, "t2", tcord_img, region) if region is not None else None
    after = to_ras(on_grid(timg if timg is not None else tcord_img, grid), grid.affine)
    tcord = to_ras(on_grid(tcord_img, grid), grid.affine).data
    cordmask = (tcord > 0.5) & (np.abs(base.data) > 0)
    lev = _levels_view(template, grid, None)
    slices = axial_slices(cordmask)
    labs = tile_labels(slice_numbers(base, slices, tcord_img.grid), levels_at(lev, slices) if lev is not None else None)
    texts = level_texts(lev * cordmask) if lev is not None else []
    tpl_ov = Overlay(tcord, "contour", TEMPLATE_COLOR, "template cord")
    ax, sg = _pair(outdir, "template", base, after, cordmask, [tpl_ov], labs, texts, (), slices)
    lab = {"before": "subject in template space (anat2template)", "after": f"template ({template.name})"}
    cap = ("green: template cord; tiles labelled with the template's slice number and level -- the subject's "
           "cord should fill the outline on every slice")
    return [Panel("registration: template space", "Subject in template space (axial)", "toggle", ax, cap, lab,
                  note_after=note),
            Panel("registration: template space", "Subject in template space (sagittal)", "toggle", sg, cap, lab,
                  note_after=note)]


@page("register-to-template")
def render_register_to_template(run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    from spinereg.transforms.itk import read_displacement

    image = _load(_input(prov, "image"), "image", run_dir, prov)
    seg = _load(_input(prov, "seg"), "segmentation", run_dir, prov) if _input(prov, "seg") else None
    seg = None if seg is None else on_grid_of(seg, image)  # the image's voxels in another axis order
    labels, kind = None, "body"
    for key in ("labels", "ldisc", "lrootlet"):
        if _input(prov, key):
            labels, kind = _load(_input(prov, key), "labels", run_dir, prov), {"labels": "body", "ldisc": "disc"}.get(key, key)
            break
    tpl = _template(prov)
    note = template_note(tpl, prov)
    inv = read_displacement(run_dir / "warp_template2anat.nii.gz")
    t2a = run_dir / "template2anat.nii.gz"
    panels = subject_space_panels(outdir, image, seg, tpl, inv, labels if kind != "lrootlet" else None, kind,
                                  load_image(t2a, check_finite=False) if t2a.exists() else None, note,
                                  seg_from=_origin(_input(prov, "seg"), "given with -s", "made by the run"),
                                  labels_from=_origin(_input(prov, key) if labels is not None else None,
                                                      "the subject's landmarks", "the automatic discs"))
    a2t = run_dir / "anat2template.nii.gz"
    if a2t.exists():
        panels += template_space_panels(outdir, load_image(a2t, check_finite=False), tpl, note)
    return panels


@page("chain")
def render_chain(run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    from spinereg.io.image import file_stem as stem
    from spinereg.transforms.itk import read_displacement

    images = list_input(prov.get("images") or (prov.get("inputs") or {}).get("images"))
    # inputs.segs first: the top-level "segmentations" names an automatic segmentation by the
    # temporary file it was made in (/tmp/spinereg-autoseg-XXXX/<img>_seg.nii.gz, gone once the run
    # ends), so `spinereg qc RUN_DIR` on a chain run with --seg auto stopped with "segmentation named
    # in provenance.json not found" before session 49; inputs.segs names the copy in the run folder
    segs = list_input((prov.get("inputs") or {}).get("segs") or prov.get("segmentations"))
    if not images:
        raise InputError("provenance.json lists no images", run_dir / "provenance.json", "re-run spinereg chain")
    image = _load(images[0], "target image", prov=prov)
    seg_p = segs[0] if segs and segs[0] not in (None, "none", "None") else None
    # an automatic segmentation ("auto") is read from the run folder, where the chain wrote it
    seg = on_grid_of(_load(seg_p, "segmentation", run_dir, prov), image) if seg_p else None
    inv = read_displacement(run_dir / f"warp_template2{stem(image, 'image0')}.nii.gz")
    tpl = _template(prov)
    note = "; ".join(n for n in (template_note(tpl, prov), _coverage_note(run_dir, stem(image, "image0"))) if n)
    return subject_space_panels(outdir, image, seg, tpl, inv, note=note,
                                names=(image.path.name if image.path else "target", "template warped onto it"),
                                seg_from=_origin(seg_p, "given with --seg", "made by the run"))


def _coverage_note(run_dir: Path, name: str) -> str:
    """The chain target's cord fraction outside the fields of view its composed warp goes through
    (metrics.json ``cord_outside_anat_fov``), when over the bound at which the chain's verdict warns
    (``OUTSIDE_NOTE_ABOVE``, 10 %; 5 % before, two bounds for one note): the template there is
    extrapolated."""
    import json

    from spinereg.metrics.run_scores import OUTSIDE_NOTE_ABOVE

    try:
        m = json.loads((run_dir / "metrics.json").read_text()).get(name) or {}
    except (OSError, ValueError):
        return ""
    frac = m.get("cord_outside_anat_fov")
    if m.get("mode") != "composed" or frac is None or frac <= OUTSIDE_NOTE_ABOVE:
        return ""
    return (f"{frac:.0%} of this image's cord lies outside the fields of view of the images its template warp "
            "goes through: there the template is extrapolated, not registered (give its segmentation for a "
            "direct registration)")


@page("register")
def render_register(run_dir: Path, prov: dict, outdir: Path) -> list[Panel]:
    from spinereg.io.image import file_stem as stem
    from spinereg.io.image import pair_stems

    src = _load(_input(prov, "input") or _input(prov, "src") or _input(prov, "image"), "source image", prov=prov)
    dest = _load(_input(prov, "dest"), "destination image", prov=prov)
    src_reg = _load(run_dir / f"{pair_stems(stem(src, 'src'), stem(dest, 'dest'))[0]}_reg.nii.gz", "registered source")
    dseg = _load(_input(prov, "dseg"), "destination segmentation", run_dir, prov) if _input(prov, "dseg") else None
    dseg = None if dseg is None else on_grid_of(dseg, dest)  # the image's voxels in another axis order
    grid = crop_grid(dest.grid, None if dseg is None else np.asarray(dseg.data) > 0.5)
    dimg = dest if dest.ndim == 3 else dest.with_data(dest.volume(0))
    simg = src_reg if src_reg.ndim == 3 else src_reg.with_data(src_reg.volume(0))
    before = to_ras(on_grid(dimg, grid), grid.affine)
    after = to_ras(on_grid(simg, grid), grid.affine)
    if dseg is not None:
        mask = to_ras(on_grid(dseg, grid), grid.affine).data > 0.5
    else:
        mask = np.zeros(before.data.shape, bool)
        mask[tuple(s // 2 for s in mask.shape[:2])] = True
    ov = [Overlay(mask.astype(np.float32), "contour", SEG_COLOR, "destination segmentation")] if dseg is not None else []
    slices = axial_slices(mask)
    labs = tile_labels(slice_numbers(before, slices, dest.grid))
    ax, sg = _pair(outdir, "register", before, after, mask, ov, labs, (), (), slices)
    names = {"before": dest.path.name if dest.path else "dest", "after": src_reg.path.name}
    cap = ("red: destination cord segmentation -- the registered source's cord should fill it" if ov
           else "destination (before) and registered source (after) on the destination's grid")
    return [Panel("registration: subject space", "Source on the destination (axial)", "toggle", ax, cap, names),
            Panel("registration: subject space", "Source on the destination (sagittal)", "toggle", sg, cap, names)]


__all__ = ["LABEL_COLOR", "TRACT_GROUPS", "atlas_groups", "list_input", "subject_space_panels",
           "template_note", "template_space_panels"]
