"""The steps of a unit's pipeline, each a call to a library function writing into the unit's
temporary folder (see :mod:`spinereg.batch.unit`): given or automatic segmentation and labels,
register-to-template, chain, MT ratio, warp-template, extract-metric.

Each registration step writes an SCT-style run folder ``sct/<contrast>_<step>/`` whose images
and transforms are then moved to their BIDS-derivatives names (:mod:`spinereg.batch.naming`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinereg.batch.bids import BidsImage, Unit, find_given
from spinereg.batch.config import BatchConfig
from spinereg.batch.naming import (
    chain_names,
    image_prefix,
    move_with_alias,
    template_label,
    template_names,
)
from spinereg.errors import InputError
from spinereg.io.image import Image, load_image, save_image


class UnitError(Exception):
    """A unit cannot be completed: ``str(err)`` is its one-line reason."""


@dataclass
class StepRecord:
    contrast: str
    step: str
    run_dir: str | None = None  # relative to the unit folder
    kind: str | None = None  # QC page kind
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    scores: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], {})}


@dataclass
class Context:
    """What the steps of one unit share."""

    unit: Unit
    cfg: BatchConfig
    tmp: Path
    records: list[StepRecord] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    segs: dict[str, Path | None] = field(default_factory=dict)
    landmarks: dict = field(default_factory=dict)
    targets: dict[str, BidsImage] = field(default_factory=dict)
    warps: dict[str, Path] = field(default_factory=dict)  # contrast -> template->image warp
    metric_maps: dict[str, Path] = field(default_factory=dict)
    tables: list[Path] = field(default_factory=list)

    @property
    def tpl(self) -> str:
        return template_label(self.cfg.template)

    def datatype_dir(self, im: BidsImage) -> Path:
        d = self.tmp / im.datatype
        d.mkdir(exist_ok=True)
        return d

    def run_dir(self, contrast: str, step: str) -> Path:
        return self.tmp / "sct" / f"{contrast}_{step}"


# -- inputs ---------------------------------------------------------------------------------------
def _entity_is(value: str | None, wanted: object) -> bool:
    """A file's entity value against a configuration's; digit-only labels compare as numbers (BIDS
    index labels): YAML reads ``run: 02`` unquoted as the number 2, which matched no ``run-02``
    file (the contrast then had no image; before session 39)."""
    if value is None or isinstance(wanted, bool):
        return False if value is None else value == str(wanted)
    w = str(wanted)
    if value.isdigit() and w.isdigit():  # index labels: run-02 is run 2 ('02', '2' or 2)
        return int(value) == int(w)
    return value == w


def target_candidates(unit: Unit, cfg: BatchConfig, suffix: str) -> list[BidsImage]:
    """The unit's images of ``suffix`` that the configuration's ``target`` entities select (all
    of them without ``target``); the first is the one a pipeline runs on."""
    want = (cfg.contrast(suffix) or {}).get("target") or {}
    return [im for im in unit.of(suffix) if all(_entity_is(im.entity(k), v) for k, v in want.items())]


def target_image(ctx: Context, suffix: str) -> BidsImage | None:
    """The image of ``suffix`` a pipeline runs on (``target`` entities select among several,
    e.g. MT on); None when the unit has none."""
    ims = target_candidates(ctx.unit, ctx.cfg, suffix)
    if not ims:
        return None
    if len(ims) > 1:  # said on the unit's line and in group/subjects.tsv (notes), not only in provenance.json
        differ = [k for k, _ in ims[0].entities if len({im.entity(k) for im in ims}) > 1] or ["acq"]
        ex = ", ".join(f"{k}: '{ims[-1].entity(k)}'" for k in differ if ims[-1].entity(k) is not None) or "run: '02'"
        ctx.notes.append(f"{suffix}: {len(ims)} images ({', '.join(im.path.name for im in ims)}), using "
                         f"{ims[0].path.name}, the others not processed -- fix: choose one with "
                         f"contrasts.{suffix}.target (e.g. {{{ex}}})")
    return ims[0]


def check_readable(im: BidsImage) -> Image:
    try:
        return load_image(im.path, ndim=(3, 4), what=f"{im.suffix} image")
    except InputError as err:
        raise UnitError(err.one_line()) from err
    except Exception as err:  # noqa: BLE001 - a corrupt file is the unit's failure, never the batch's
        raise UnitError(f"{im.path}: unreadable {im.suffix} image ({type(err).__name__}: {err}) -- fix: "
                        "replace the file (truncated or corrupt download?)") from err


def segmentation(ctx: Context, suffix: str, im: BidsImage, required: bool) -> Path | None:
    """The cord segmentation of ``im``: given in the dataset, else made by the segment step."""
    given = find_given(im, ctx.unit.root, ctx.cfg.data["given"]["seg"])
    if given is not None:
        ctx.inputs[f"{suffix}_seg"] = str(given)
        return given
    if "segment" in ctx.cfg.steps(suffix):
        try:
            from spinereg.segment import segment
        except ImportError as err:
            raise UnitError(f"{im.path}: no segmentation given and automatic segmentation is not available "
                            f"({err}) -- fix: add {im.stem}_seg-manual.nii.gz to derivatives/labels") from err
        c = (ctx.cfg.contrast(suffix) or {}).get("contrast") or {"MTS": "mt", "dwi": "dwi", "bold": "epi"}.get(
            suffix, "auto")
        res = segment(im.path, c)
        out = ctx.datatype_dir(im) / f"{im.stem}_label-SC_seg.nii.gz"
        save_image(res.seg, out)
        rec = StepRecord(suffix, "segment", files=[str(out.relative_to(ctx.tmp))])
        if res.info.get("warnings"):  # e.g. a cord ending well below the top of the image
            rec.verdict, rec.reasons = "warn", list(res.info["warnings"])
        ctx.records.append(rec)
        return out
    if required:
        pats = ", ".join(ctx.cfg.data["given"]["seg"])
        raise UnitError(f"{im.path}: no cord segmentation (looked for {im.stem}{{{pats}}} in derivatives/*/ and "
                        f"next to the image) -- fix: add one, or add the segment step to contrasts.{suffix}")
    return None


def anatomical_landmarks(ctx: Context, suffix: str, im: BidsImage, seg: Path) -> dict:
    """``labels=``/``ldisc=`` for the registration: given files win; else the label step."""
    for kind in ("labels", "ldisc"):
        given = find_given(im, ctx.unit.root, ctx.cfg.data["given"][kind])
        if given is not None:
            ctx.inputs[f"{suffix}_{kind}"] = str(given)
            return {kind: given}
    if "label" not in ctx.cfg.steps(suffix):
        raise UnitError(f"{im.path}: no vertebral labels given (looked for {im.stem}_labels-manual / "
                        f"_labels-disc-manual) -- fix: add them, or add the label step to contrasts.{suffix}")
    from spinereg.io.template import load_template
    from spinereg.qc.labeling import warnings_of
    from spinereg.vertebrae import label_vertebrae
    from spinereg.vertebrae.outputs import registration_discs, write_labeling

    image, sg = load_image(im.path, ndim=3), load_image(seg, ndim=3, what="segmentation")
    contrast = (ctx.cfg.contrast(suffix) or {}).get("contrast", "auto")
    labeling = label_vertebrae(image, sg, contrast=contrast)
    run = ctx.run_dir(suffix, "label-vertebrae")
    run.mkdir(parents=True)
    files = write_labeling(image, sg, labeling, run, inputs={"image": str(im.path), "seg": str(seg)})
    rec = StepRecord(suffix, "label-vertebrae", run_dir=str(run.relative_to(ctx.tmp)))
    warn = warnings_of(labeling)
    if warn:
        rec.verdict, rec.reasons = "warn", warn
    ctx.records.append(rec)
    # "_labeling": the registration treats these discs as a bare-image run treats its own; "ldisc"
    # (for chain steps): the same landmarks a bare-image run registers (no conus, in view, in the
    # template labels' convention)
    discs, _ = registration_discs(labeling, image.grid, str(files["disc_labels"]), load_template(ctx.cfg.template).name)
    return {"ldisc": discs, "_file": files["disc_labels"], "_labeling": labeling}


# -- registration steps ---------------------------------------------------------------------------
def register_anatomical(ctx: Context, suffix: str, im: BidsImage) -> None:
    from spinereg.pipelines.registration import template_job

    c = ctx.cfg.contrast(suffix) or {}
    run = ctx.run_dir(suffix, "register-to-template")
    auto = ctx.landmarks.get("_labeling")  # discs of the label step: the job's own automatic labeling
    lm = {} if auto is not None else {k: v for k, v in ctx.landmarks.items() if not k.startswith("_")}
    res = template_job(im.path, ctx.segs[suffix], run, template=ctx.cfg.template, contrast=c.get("contrast", "t2"),
                       param=c.get("preset"), crop=bool(ctx.cfg.data.get("crop")), labeling=auto, **lm)
    names = template_names(im.prefix, suffix, ctx.tpl)
    moved = move_with_alias(run, names, ctx.datatype_dir(im))
    ctx.warps[suffix] = moved["warp_template2anat.nii.gz"]
    qc = res.metrics.get("qc") or {}
    ctx.records.append(StepRecord(suffix, "register-to-template", str(run.relative_to(ctx.tmp)),
                                  "register-to-template", qc.get("verdict"), list(qc.get("reasons") or []),
                                  [str(p.relative_to(ctx.tmp)) for p in moved.values()], dict(qc.get("scores") or {})))


def chain(ctx: Context, suffix: str, im: BidsImage) -> None:
    from spinereg.pipelines.chain_outputs import write_chain_outputs
    from spinereg.register.chain import register_chain

    c = ctx.cfg.contrast(suffix) or {}
    via = []
    for v in c["via"]:
        vim = ctx.targets.get(v)
        if vim is None:
            raise UnitError(f"{ctx.unit.root / ctx.unit.rel}: no {v} image, needed to chain {suffix} to the template "
                            f"-- fix: add the {v} image, or change contrasts.{suffix}.via")
        via.append(vim)
    anat = ctx.cfg.anatomical
    images = [im.path, *[v.path for v in via]]
    segs = [ctx.segs.get(suffix), *[ctx.segs.get(v) for v in c["via"]]]
    lm = {k: v for k, v in ctx.landmarks.items() if not k.startswith("_")}
    res = register_chain(images, segs, template=ctx.cfg.template,
                         contrast=(ctx.cfg.contrast(anat) or {}).get("contrast", "t2"),
                         link_param=c.get("link_preset"), direct=bool(c.get("direct", True)), **lm)
    run = ctx.run_dir(suffix, "chain")
    run.mkdir(parents=True)
    inputs = {"images": [str(p) for p in images], "segs": [str(s) if s else None for s in segs]}
    write_chain_outputs(res, run, inputs={**inputs, "labels": next(iter(lm.values()), None)}, which="target")
    names = chain_names(im.prefix, im.stem, suffix, ctx.tpl)
    moved = move_with_alias(run, names, ctx.datatype_dir(im))
    ctx.warps[suffix] = moved[f"warp_template2{im.stem}.nii.gz"]
    # the chain's own verdict (metrics.json's qc block) is the step's: before session 50 a chain that
    # warned or failed left its unit "pass" in provenance.json and group/subjects.tsv
    qc = (res.metrics or {}).get("qc") or {}
    ctx.records.append(StepRecord(suffix, "chain", str(run.relative_to(ctx.tmp)), "chain", qc.get("verdict"),
                                  list(qc.get("reasons") or []),
                                  [str(p.relative_to(ctx.tmp)) for p in moved.values()], dict(qc.get("scores") or {})))


def mtr(ctx: Context, suffix: str, im: BidsImage) -> None:
    """MT ratio ``100 (MToff - MTon) / MToff`` on the MT-on grid (0 where MToff <= 0)."""
    others = [o for o in ctx.unit.of(suffix) if o.entity("mt") == "off"
              and image_prefix(o.entities, ("mt",)) == image_prefix(im.entities, ("mt",))]
    if im.entity("mt") != "on" or not others:
        raise UnitError(f"{im.path}: no MT-off partner (…_mt-off_MTS) for the MT ratio -- fix: add it, or remove "
                        "the mtr step")
    on = load_image(im.path, ndim=3)
    off = load_image(others[0].path, ndim=3)
    if not on.grid.same_as(off.grid, atol=1e-3):
        raise UnitError(f"{others[0].path}: MT off is not on the MT-on image's grid -- fix: resample it onto "
                        f"{im.path.name} (spinereg apply -i OFF -d ON -o OUT)")
    a, b = np.asarray(on.data, np.float64), np.asarray(off.data, np.float64)
    ratio = np.where(b > 0, 100.0 * (b - a) / np.where(b > 0, b, 1.0), 0.0).astype(np.float32)
    ctx.inputs["MTS_off"] = str(others[0].path)
    out = ctx.datatype_dir(im) / f"{image_prefix(im.entities, ('mt', 'flip'))}_MTRmap.nii.gz"
    save_image(on.with_data(ratio), out)
    ctx.metric_maps[suffix] = out
    ctx.records.append(StepRecord(suffix, "mtr", files=[str(out.relative_to(ctx.tmp))]))


def warp_template_step(ctx: Context, suffix: str, im: BidsImage) -> None:
    from spinereg.register.warp_template import warp_template

    c = ctx.cfg.contrast(suffix) or {}
    run = ctx.run_dir(suffix, "warp-template")
    warp_template(im.path, [ctx.warps[suffix]], run, template=ctx.cfg.template, atlas=bool(c.get("atlas")),
                  workers=1)
    ctx.records.append(StepRecord(suffix, "warp-template", str(run.relative_to(ctx.tmp))))


def extract_step(ctx: Context, suffix: str, im: BidsImage) -> None:
    from spinereg.batch.tables import extract_rows

    c = ctx.cfg.contrast(suffix) or {}
    ex = c.get("extract") or {}
    metric = ex.get("metric", "image")
    path = ctx.metric_maps.get(suffix) if metric == "mtr" else im.path
    if path is None:
        raise UnitError(f"contrasts.{suffix}.extract.metric is mtr but the mtr step did not run -- fix: add mtr "
                        "before extract-metric")
    folder = ctx.run_dir(suffix, "warp-template")
    out = ctx.datatype_dir(im) / f"{image_prefix(im.entities, ('mt', 'flip'))}_desc-{metric}_perlevel.tsv"
    extract_rows(ctx, suffix, path, folder, ex, out)
    ctx.tables.append(out)
    ctx.records.append(StepRecord(suffix, "extract-metric", files=[str(out.relative_to(ctx.tmp))]))


def csa_step(ctx: Context, suffix: str, im: BidsImage) -> None:
    """Cord cross-sectional area per vertebral level (angle-corrected), levels from the warped
    template; one TSV per unit, in the metrics table's columns (metric ``csa``, mm2)."""
    from spinereg.batch.tables import METRIC_COLUMNS, num, write_tsv
    from spinereg.metrics.morphometry import cross_sectional_area

    levels = sorted((ctx.run_dir(suffix, "warp-template") / "template").glob("*_levels.nii.gz"))
    if not levels:
        raise UnitError(f"contrasts.{suffix}: the csa step needs the warped template levels -- fix: add "
                        "warp-template before csa")
    seg = load_image(ctx.segs[suffix], ndim=3, what="segmentation")
    res = cross_sectional_area(seg, load_image(levels[0], ndim=3, what="levels image"))
    sub, ses = f"sub-{ctx.unit.subject}", f"ses-{ctx.unit.session}" if ctx.unit.session else "n/a"
    rows = [{"participant_id": sub, "session_id": ses, "contrast": suffix, "metric": "csa",
             "label": "spinal cord", "method": "angle-corrected" if res.angle_correction else "slice plane",
             "level": str(lv.level), "slices": ",".join(map(str, lv.slices)), "size_vox": str(lv.n_slices),
             "value": num(lv.csa_mean_mm2), "std": num(lv.csa_std_mm2)} for lv in res.levels]
    out = ctx.datatype_dir(im) / f"{im.prefix}_desc-csa_perlevel.tsv"
    write_tsv(out, METRIC_COLUMNS, rows, overwrite=False)
    ctx.tables.append(out)
    ctx.records.append(StepRecord(suffix, "csa", files=[str(out.relative_to(ctx.tmp))]))

