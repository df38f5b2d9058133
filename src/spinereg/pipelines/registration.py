"""Registration jobs as the commands run them: ``register-to-template``, ``register``, ``chain``
and the ``demo`` main job.

Each job checks its inputs and outputs first (well under a second: swapped or wrong inputs,
existing outputs, an unusable QC folder), then registers, then writes every output into a
temporary folder that is renamed into place only at the end; the QC report, when asked, is built
before that rename (a failure anywhere leaves the destination and the QC folder as they were).
A :class:`~spinereg.io.provenance.RunRecord` times each stage; its record is provenance.json.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinereg.cord.landmarks import Landmarks
from spinereg.io.provenance import RunRecord
from spinereg.io.staging import OutputFolder, folder_is_own_run
from spinereg.io.tempdirs import temporary_directory
from spinereg.pipelines.autoseg import AutoSegmentations, is_auto
from spinereg.vertebrae.names import margin_value

if TYPE_CHECKING:  # pragma: no cover
    from spinereg.io.image import Image
    from spinereg.transforms.base import Transform
    from spinereg.vertebrae.result import VertebralLabeling

Progress = Callable[[int, int], None] | None


@dataclass
class JobResult:
    """What a job wrote: ``files`` (final paths), ``metrics`` (with the ``qc`` verdict block),
    ``qc_index`` (the report page, if any), ``seconds`` (wall time)."""

    outdir: Path
    files: dict[str, Path]
    metrics: dict
    qc_index: Path | None = None
    seconds: float = 0.0
    result: Any = None
    extra: dict = field(default_factory=dict)


def _qc_hook(run: RunRecord, kind: str, qc_root: str | Path | None, outdir: Path,
             box: dict) -> Callable[[Path], None] | None:
    """``before_commit`` callback adding the run to the QC report. ``qc_root="inside"``: the
    report is ``OUTDIR/qc``, written into the temporary folder with the other outputs."""
    if qc_root is None:
        return None
    from spinereg.qc.report import prepare_entry

    final = Path(os.path.abspath(outdir))
    inside = qc_root == "inside"

    def hook(tmp: Path):
        with run.stage("qc report"):
            pending = prepare_entry(tmp, tmp / "qc" if inside else Path(qc_root), kind, record_run_dir=final,
                                    record_root=final / "qc" if inside else None)
        box["index"] = (final / "qc" if inside else Path(os.path.abspath(Path(qc_root).expanduser()))) / "index.html"
        return pending  # committed after the last write into tmp

    return hook


def _check_qc_root(qc_root: str | Path | None) -> None:
    if qc_root is not None:
        from spinereg.qc.report import check_qc_root

        check_qc_root(qc_root)


def template_job(image: str | Path, seg: str | Path | None, outdir: str | Path, *,
                 labels: str | Path | Image | Landmarks | None = None,
                 ldisc: str | Path | Image | Landmarks | None = None,
                 lrootlet: str | Path | Image | Landmarks | None = None, template: str = "PAM50",
                 contrast: str = "t2", param: str | None = None, ref: str = "template",
                 straight: bool = False, crop: bool = False, qc_root: str | Path | None = None,
                 overwrite: bool = False, run: RunRecord | None = None,
                 progress: Progress = None, invoked_as: str | None = None, replace: bool = False,
                 auto_discs: bool = True, extra_metrics: Callable[[Any], dict] | None = None,
                 labeling: VertebralLabeling | None = None, initz: str | None = None,
                 initlabel: str | Path | None = None) -> JobResult:
    """register-to-template with every output (see module doc). ``qc_root="inside"`` puts the
    QC report in ``OUTDIR/qc`` (the demo). ``seg`` None or ``"auto"``: the image is segmented
    automatically (``<image>_seg.nii.gz`` among the outputs, recorded in provenance.json). No
    landmarks (``labels``, ``ldisc``, ``lrootlet`` all None): every disc is labelled
    automatically (:func:`label_discs`) and the registration uses them all; given labels win.

    Body or disc labels given and ``auto_discs`` (default; CLI ``--no-auto-discs`` turns it off):
    the image is labelled automatically once, before the registration; when that labeling is not
    ambiguous and its levels agree with the given labels, the discs it measured join them as
    landmarks (:mod:`spinereg.register.auto_landmarks`; the given labels win), otherwise the given
    labels are used alone and a warning says why. The QC level check reuses that labeling.
    ``JobResult.extra["warnings"]``: what the automatic labeling warns of. ``extra_metrics(reg)``:
    a dict joining metrics.json (written with the other outputs, before the verdict).
    ``labeling``: with no landmarks given, an automatic labeling of this image and segmentation
    already made (spinereg batch's label step): used instead of labelling again, with everything
    a bare-image run does with its own (its discs the landmarks and outputs, the QC's
    ``landmark_levels_*`` scores). ``initz`` / ``initlabel`` (label-vertebrae's ``-initz Z,DISC``
    / ``-initlabel FILE``): with no landmarks given, one disc of the automatic labeling pinned (its
    identity when the image alone is ambiguous)."""
    from spinereg.errors import InputError
    from spinereg.metrics.level_check import shared_labeling
    from spinereg.pipelines.template_outputs import output_names, write_outputs
    from spinereg.register.preflight import check_template_inputs
    from spinereg.register.template import register_to_template
    from spinereg.vertebrae.init import init_from_label_file, resolve_init, sct_init_file

    run = run or RunRecord("register-to-template")
    out = Path(outdir)
    inside = qc_root == "inside"
    with AutoSegmentations() as auto, temporary_directory("spinereg-autolabel-") as ltmp:
        # seg None or "auto": spinereg segment (pipelines.autoseg); no landmarks: label-vertebrae
        with run.stage("check inputs"):
            OutputFolder(out, output_names(straight), overwrite=overwrite, replace=replace).check()
            if not inside:
                _check_qc_root(qc_root)
            if seg is not None and not is_auto(seg):
                inp = check_template_inputs(image, seg, param)
            if labels is None and ldisc is None and lrootlet is None:
                require_labelable(image)
            elif initz or initlabel:
                raise InputError("-initz / -initlabel pin the automatic labeling of a run given no landmarks; the "
                                 "given labels already fix the levels", None, "drop -initz / -initlabel, or the labels")
            # a bad -initlabel file is refused before any work (-initz needs the segmentation)
            # (SCT's '-initz Z,DISC' text file is read as -initz once the segmentation is there)
            pinned = init_from_label_file(str(initlabel)) \
                if initlabel and not initz and sct_init_file(str(initlabel)) is None else None
        if seg is None or is_auto(seg):
            with run.stage("segmentation") as rec:
                seg = auto.segment(image, contrast)
                inp = check_template_inputs(image, seg, param)
                rec["segmentation"] = auto.records
        warnings: list[str] = []
        lab = use_lab = None
        given = labels is not None or ldisc is not None  # body or disc labels (rootlets are not checked)
        if not given and lrootlet is None:  # no landmarks given: label the discs
            with run.stage("vertebral labeling") as rec:
                init = pinned if pinned is not None else resolve_init(initz, initlabel, inp.seg)
                ldisc, rec["labeling"], warnings, lab = label_discs(inp.image, inp.seg, image, contrast, auto,
                                                                    Path(ltmp), labeling, template, init)
        elif given and auto_discs:  # labels given: the discs the image shows may join them
            with run.stage("vertebral labeling") as rec:
                lab, rec["labeling"] = labeling_for_landmarks(inp.image, inp.seg, contrast)
            use_lab = lab
        warnings = auto.warnings() + warnings
        with run.stage("registration"):
            reg = register_to_template(inp.image, inp.seg, labels=labels, ldisc=ldisc, lrootlet=lrootlet,
                                       template=template, contrast=contrast, param=param, ref=ref,
                                       labeling=use_lab, progress=progress)
        run.add_parts("registration", reg.timings)
        automatic = reg.landmark_report.setdefault("automatic", {})
        if given and not auto_discs:
            automatic.update(used=False, reason="turned off (--no-auto-discs)")
        elif given and lab is None:
            automatic.update(used=False, warn=True, reason="automatic labeling failed: the given labels only")
        elif not given:
            automatic.update(used=False, reason="no body or disc labels given" if lrootlet is not None else
                             "no landmarks given: the automatic discs are the landmarks")
        if automatic.get("warn"):  # disagreement with the given labels (ambiguity is only recorded)
            warnings.append(f"automatic discs not added to the given labels: {automatic.get('reason')}")
        if reg.landmark_report.get("not_registered"):
            warnings.append(_not_registered_warning(reg.landmark_report["not_registered"]))
        shown_ldisc = (f"{Path(ldisc.source).name} (automatic: spinereg label-vertebrae)"
                       if isinstance(ldisc, Landmarks) and Path(str(ldisc.source)).name in auto.files else ldisc)
        inputs = {"image": image, "seg": auto.describe() or seg, "labels": labels, "ldisc": shown_ldisc,
                  "lrootlet": lrootlet, "param": param, "template": template, "contrast": contrast}
        if initz or initlabel:
            inputs.update(initz=initz, initlabel=initlabel)
        box: dict = {}
        hook = _qc_hook(run, "register-to-template", qc_root, out, box)  # auto.files: copied first
        with shared_labeling(lab, inp.image, inp.seg, landmarks=not given):  # the QC level check reuses it
            files = write_outputs(reg, out, overwrite=overwrite, inputs=inputs, straight=straight, crop=crop,
                                  run=run, replace=replace, invoked_as=invoked_as, before_commit=hook,
                                  extra_metrics=extra_metrics, with_files=auto.files)
        for name in auto.files:
            files["disc_labels" if name.endswith("_labels-disc.nii.gz") else
                  "discs_json" if name.endswith("_discs.json") else "seg"] = out / name
    return JobResult(out, files, reg.metrics, box.get("index"), run.elapsed(), reg, {"warnings": warnings})


def _not_registered_warning(rec: dict) -> str:
    """The stderr line for given labels the registration left out below the cord's lower end."""
    from spinereg.vertebrae.names import level_name
    from spinereg.vertebrae.result import disc_name

    name = disc_name if rec["kind"] == "disc" else level_name
    names = ", ".join(f"{name(int(v))} ({d:.0f} mm)" for v, d in zip(rec["values"], rec["distance_mm"], strict=True))
    return (f"{rec['kind']} label(s) below the lower end of the segmented cord, not used by the registration: "
            f"{names} (the cord ends above them at the conus, or the segmentation stops short of it)")


def labeling_for_landmarks(image: Image, seg: Image, contrast: str) -> tuple[object, dict]:
    """The automatic labeling of ``image`` (an Image, with its segmentation ``seg``) run before a
    registration given body or disc labels, and its provenance record; (None, record) when it
    fails (the registration then uses the given labels alone; the failure never blocks it)."""
    from spinereg.register.template import auto_labeling

    try:
        lab = auto_labeling(image, seg, contrast, check_identity=False)  # the given labels fix the levels
    except Exception as err:  # noqa: BLE001 - an optional addition must never block the registration
        return None, {"failed": f"{type(err).__name__}: {err}"}
    return lab, {"by": "spinereg label-vertebrae (automatic)", "discs": [d.name for d in lab.discs],
                 "measured": [d.name for d in lab.measured], "ambiguous": bool(lab.ambiguous),
                 "identity_margin": margin_value(lab.identity_margin)}


def require_labelable(image: str | Path) -> None:
    """A job given no landmarks labels the discs on ``image``: one that samples world S-I more
    coarsely than the labeling can see discs (a voxel longer than
    :data:`spinereg.vertebrae.label.MAX_SI_SPACING_MM` along S-I, e.g. thick axial slices) is
    refused from its header, before any work, instead of registering with levels that are a
    guess (:class:`~spinereg.errors.InputError`, exit 2)."""
    from spinereg.errors import InputError
    from spinereg.io.image import read_grid
    from spinereg.vertebrae.label import MAX_SI_SPACING_MM

    si_mm = read_grid(image).extent_along([0.0, 0.0, 1.0])  # one voxel's extent along world S-I
    if si_mm > MAX_SI_SPACING_MM:
        raise InputError(f"the image samples S-I every {si_mm:.1f} mm, too coarse to find the intervertebral "
                         f"discs (> {MAX_SI_SPACING_MM:g} mm), and no landmarks were given", image,
                         "give landmarks (-l vertebral body labels, --ldisc disc labels), or register it through a "
                         "sagittal image of the same session with `spinereg chain`")


def label_discs(image: Image, seg: Image, image_path: str | Path, contrast: str,
                auto: AutoSegmentations, tmp: Path, labeling: VertebralLabeling | None = None,
                template: str = "PAM50", init: tuple | None = None) -> tuple[Landmarks, dict, list, object]:
    """The discs of ``image`` (an Image, with its segmentation ``seg``) found by
    :func:`spinereg.vertebrae.label_vertebrae`, for a job given no landmarks: writes
    ``<image>_labels-disc.nii.gz`` and ``<image>_discs.json`` into the temporary folder ``tmp``,
    among ``auto``'s files (they join the job's output folder), and returns the registration's disc
    landmarks (:func:`~spinereg.vertebrae.outputs.registration_discs`), the provenance record, the warnings (an ambiguous identity, a gap: the registration still uses
    the discs, the best reading of the image, and says so on stderr and in provenance.json) and
    the labeling (for the QC level check). The landmarks are the measured disc points (world mm,
    ``source``: the label file), not the label file's voxels, moved to ``template``'s disc-label
    convention (:mod:`spinereg.vertebrae.convention`; the record says by how much). ``labeling``: one already made of this image and
    segmentation, used instead of labelling again. ``init``: one disc pinned (world point, value)."""
    import json

    from spinereg.errors import InputError
    from spinereg.io.image import save_image
    from spinereg.io.template import load_template
    from spinereg.qc.labeling import warnings_of
    from spinereg.register.template import auto_labeling
    from spinereg.vertebrae.outputs import (
        disc_label_image,
        image_stem,
        labeling_document,
        registration_discs,
    )

    lab = labeling if labeling is not None else auto_labeling(image, seg, contrast, init=init)
    stem = image_stem(image_path)
    if not any(d.value != 60 for d in lab.discs):
        raise InputError("the automatic vertebral labeling found no disc", image_path,
                         "give landmarks: -l (vertebral body labels) or --ldisc (disc labels)")
    _require_bands(lab, image_path, pinned=init is not None)
    path = save_image(disc_label_image(image, lab), tmp / f"{stem}_labels-disc.nii.gz", overwrite=True,
                      dtype="uint8")
    doc = labeling_document(lab, image.grid, by="spinereg label-vertebrae (automatic)")
    (tmp / f"{stem}_discs.json").write_text(json.dumps(doc, indent=1))
    auto.files[path.name] = path
    auto.files[f"{stem}_discs.json"] = tmp / f"{stem}_discs.json"
    warnings = [f"automatic vertebral labeling: {w}" for w in warnings_of(lab)]
    record = {"file": path.name, "discs": [d.name for d in lab.discs], "ambiguous": lab.ambiguous,
              "identity_margin": margin_value(lab.identity_margin), "warnings": warnings}
    # the registration takes the discs where they were measured (world mm, as in the JSON), not
    # their nearest voxels in the label file: on 5 mm axial slices the voxel moves a disc by up to
    # 2.5 mm along S-I
    name = load_template(template).name  # a folder given for -t: the template it holds
    discs, record["registered_as"] = registration_discs(lab, image.grid, str(path), name)
    discs, below = _check_discs_on_the_cord(discs, seg, image_path)
    if below:
        names = ", ".join(f"{k} ({d:.0f} mm)" for k, d in below.items())
        record["not_registered"] = {"discs": list(below), "distance_mm": [round(d, 1) for d in below.values()],
                                    "why": "below the lower end of the segmented cord"}
        warnings.append(f"disc(s) below the lower end of the segmented cord, not used by the registration: {names} "
                        "(the cord ends above them at the conus, or the segmentation stops short of it)")
    return discs, record, warnings, lab


def _require_bands(lab: VertebralLabeling, image_path: str | Path, pinned: bool) -> None:
    """A job given no landmarks needs :data:`~spinereg.vertebrae.label.MIN_BANDS` discs that show a
    band in the image (not estimated, evidence >= ``BAND_SHOWN``) to name the levels, unless one
    disc is pinned (``-initz``): with one band the names are the cord width's guess, and the
    registration would map the cord to levels nothing in the image chose. Every labeling phantom,
    thick axial stack and real image measured shows 2 or more (sct_testing_data t2 3, t1 4;
    session 19); noise smoothed by 5 voxels in t2's place (seed 0) showed one, named L1/L2, and
    the job ended warn."""
    from spinereg.errors import InputError
    from spinereg.vertebrae.label import BAND_SHOWN, MIN_BANDS, discs_on_bands

    shown = discs_on_bands(lab.discs)
    if pinned or len(shown) >= MIN_BANDS:
        return
    what = f"one ({shown[0].name})" if len(shown) == 1 else "none"
    raise InputError(f"of the discs the automatic vertebral labeling placed, {what} shows a band in the image "
                     f"(evidence >= {BAND_SHOWN}): too few to name the levels (it needs {MIN_BANDS})", image_path,
                     "pin one disc with -initz Z,DISC or -initlabel FILE, or give landmarks (-l, --ldisc); "
                     "check that the image shows the spine")


def _check_discs_on_the_cord(discs: Landmarks, seg: Image,
                             image_path: str | Path) -> tuple[Landmarks, dict[str, float]]:
    """The automatic discs lie on the cord's centerline, continued straight beyond the
    segmentation: one far beyond it (over ``MAX_LABEL_SEG_MM``) means the segmentation stops
    where the image still shows discs (a cord segmented over part of the field, or something that
    is not a cord). Said in the image's terms, before the registration's check of given labels
    would name a temporary label file and a fix about mismatched spaces.

    Except below the cord's lower end: the cord ends at the conus (T12-L2) while the discs go on,
    and the segmentation can stop short of a thin conus (the independent thoracolumbar phantoms
    from their automatic segmentations: 5-12 mm short on 6 of 9, session 21). Far discs below every
    disc on the cord are left out of the registration, which aligns the cord, and returned by name
    with their distance (the caller says so); far discs above or between are refused as before.
    Nearer discs below the cord's end stay landmarks: left out from 5 mm on, L1/L2 at 6-10 mm
    below made the cord error worse on 3 of 4 such phantoms (T6-L1 72 0.80 -> 1.00 mm mean).
    Returns the discs kept and those left out (the split is
    :func:`spinereg.cord.landmarks.split_below_cord`, which the registration applies to given
    labels as well)."""
    from spinereg.cord.landmarks import MAX_LABEL_SEG_MM, distance_to_seg, split_below_cord
    from spinereg.errors import InputError
    from spinereg.vertebrae.result import disc_name

    discs, below = split_below_cord(discs, seg)
    left_out = {disc_name(v): d for v, d in below.items()}
    dist = distance_to_seg(discs.points, seg)
    far = dist > MAX_LABEL_SEG_MM
    if not far.any():
        return discs, left_out
    where = ", ".join(f"{disc_name(int(v))} {d:.0f} mm" for v, d in zip(discs.values[far], dist[far], strict=True))
    raise InputError(f"the automatic vertebral labeling placed disc(s) beyond the segmented cord ({where} "
                     f"from it, > {MAX_LABEL_SEG_MM:g}): the segmentation does not cover the cord where "
                     "the image shows discs", image_path,
                     "check the segmentation (`spinereg segment`) and give a corrected one with -s, "
                     "or give landmarks (-l, --ldisc)")


def demo_job(outdir: str | Path, template: str = "PAM50", qc_root: str | Path | None = None,
             overwrite: bool = False, run: RunRecord | None = None, progress: Progress = None) -> JobResult:
    """The main job: SCT's sample ``t2`` registered to ``template`` from the bare image, as
    ``register-to-template -i t2.nii.gz -c t2 -o OUTDIR``: the cord is segmented, every disc
    labelled automatically and the registration uses them all; every output and the QC report
    (``OUTDIR/qc`` unless ``qc_root``).

    ``labels.nii.gz`` (mid-body of C3 and C5, placed by hand) is held out: metrics.json's
    ``held_out`` gives where those bodies land in the template against the template's own body
    labels (:func:`held_out_body_residuals`), a score of what the job did not use; its
    ``on_cord_*`` figures first move each label to the centerline of ``t2_seg-manual.nii.gz``
    (also unused) at its height.

    Re-running replaces the folder's previous demo output as a whole (a folder holding anything
    else needs ``overwrite``, and then keeps its other files)."""
    from spinereg.io.registry import ensure_dataset
    from spinereg.pipelines.template_outputs import output_names

    run = run or RunRecord("register-to-template")
    out = Path(outdir)
    own = folder_is_own_run(out, "demo", output_names(straight=True))
    with run.stage("data"):
        OutputFolder(out, output_names(), overwrite=overwrite, replace=own).check()  # before any download
        t2 = ensure_dataset("sct_testing_data") / "t2"
    labels = t2 / "labels.nii.gz"
    return template_job(t2 / "t2.nii.gz", None, out, template=template, contrast="t2",
                        qc_root="inside" if qc_root is None else qc_root, overwrite=overwrite, run=run,
                        progress=progress, invoked_as="demo", replace=own,
                        extra_metrics=lambda reg: {"held_out": held_out_body_residuals(
                            reg.template2anat, labels, template, cord=t2 / "t2_seg-manual.nii.gz")})


def held_out_body_residuals(template2anat: Transform, labels: str | Path, template: str = "PAM50",
                            cord: str | Path | None = None) -> dict:
    """Vertebral body labels the registration did not use (``labels``, on the subject) pushed into
    the template through ``template2anat`` (it maps subject points to template points): the
    3D distance (mm) of each from the template's own label of the same value, and its S-I part.

    ``cord`` (a cord segmentation of the subject the registration did not use, e.g. the manual
    one): also ``on_cord_mm`` / ``on_cord_si_mm``, each label first moved to the cord's
    centerline at its own height, and the template's label to the template's centerline. A body
    label says which height of the cord is mid-body (SCT's and PAM50's body labels lie on the
    cord); a hand-placed voxel sits up to a few voxels off the cord's centre, and a registration
    that maps the cord onto the template's cord carries that offset into the template: the
    3D distance then counts the label's placement as registration error."""
    import numpy as np

    from spinereg.cord.centerline import centerline_from_seg
    from spinereg.cord.landmarks import read_point_labels
    from spinereg.io.image import load_image
    from spinereg.io.template import load_template
    from spinereg.register.template import MAPPING_SMOOTH_MM, project_landmarks, template_centerline

    tpl = load_template(template)
    if not tpl.has("body"):
        return {"what": f"{Path(labels).name}: not scored ({tpl.name} has no vertebral body labels)",
                "body_labels": {}, "mean_mm": None, "max_mm": None}
    bodies = read_point_labels(load_image(labels), "body")
    tb = read_point_labels(load_image(tpl.path("body"), ndim=3, check_finite=False), "body")
    ref = {int(v): np.asarray(p, float) for v, p in zip(tb.values, tb.points, strict=True)}
    pts = np.asarray(bodies.points, float)
    moved = np.asarray(template2anat.map(pts), float)
    on_cord = None
    if cord is not None:  # both centerlines and the projection as register_to_template makes them
        cl = centerline_from_seg(load_image(cord), min_smooth_mm=MAPPING_SMOOTH_MM)
        tcl = template_centerline(load_image(tpl.path("cord"), ndim=3, check_finite=False))
        foot = project_landmarks(bodies, cl).points
        on_cord = np.asarray(template2anat.map(foot), float)
        tfoot = project_landmarks(tb, tcl)
        ref_cord = {int(v): p for v, p in zip(tfoot.values, tfoot.points, strict=True)}
    per = {}
    for i, v in enumerate(bodies.values):
        if int(v) in ref:
            d = moved[i] - ref[int(v)]
            row = {"mm": round(float(np.linalg.norm(d)), 3), "si_mm": round(float(d[2]), 3)}
            if on_cord is not None:
                dc = on_cord[i] - ref_cord[int(v)]
                row.update(on_cord_mm=round(float(np.linalg.norm(dc)), 3), on_cord_si_mm=round(float(dc[2]), 3),
                           label_off_cord_mm=round(float(np.linalg.norm(pts[i] - foot[i])), 3))
            per[str(int(v))] = row
    mm = [x["mm"] for x in per.values()]
    out = {"what": f"{Path(labels).name} (vertebral body labels, not used by the registration) pushed into "
                   f"{template}: distance from {template}'s body labels",
           "body_labels": per, "mean_mm": round(float(np.mean(mm)), 3) if mm else None,
           "max_mm": round(float(np.max(mm)), 3) if mm else None}
    if on_cord is not None and per:
        oc = [x["on_cord_mm"] for x in per.values()]
        out.update(on_cord_what=f"each label moved to the centerline of {Path(cord).name} (not used by the "
                                f"registration) at its height, {template}'s to its own centerline",
                   on_cord_mean_mm=round(float(np.mean(oc)), 3), on_cord_max_mm=round(float(np.max(oc)), 3))
    return out


def multimodal_job(src: str | Path, dest: str | Path, outdir: str | Path, *,
                   iseg: str | Path | None = None, dseg: str | Path | None = None,
                   mask: str | Path | None = None, init_warp: str | Path | None = None,
                   init_warp_inv: str | Path | None = None, param: str | None = None,
                   identity: bool = False, interp: str = "spline",
                   qc_root: str | Path | None = None, overwrite: bool = False,
                   run: RunRecord | None = None, progress: Progress = None) -> JobResult:
    """register (one image onto another) with every output (see module doc)."""
    from spinereg.io.image import pair_stems, path_stem
    from spinereg.pipelines.multimodal_outputs import write_multimodal_outputs
    from spinereg.register.multimodal import register_multimodal
    from spinereg.register.preflight import check_mask, check_mask_covers, check_multimodal_inputs
    from spinereg.transforms.itk import load_transform

    run = run or RunRecord("register")
    out = Path(outdir)
    given = {"iseg": iseg, "dseg": dseg}
    with AutoSegmentations() as auto:  # --iseg/--dseg auto: spinereg segment (pipelines.autoseg)
        with run.stage("check inputs"):
            s_name, d_name = pair_stems(path_stem(src), path_stem(dest))
            OutputFolder(out, [f"{s_name}_reg.nii.gz", f"{d_name}_reg.nii.gz", f"warp_{s_name}2{d_name}.nii.gz",
                               f"warp_{d_name}2{s_name}.nii.gz", "metrics.json", "provenance.json"],
                         overwrite=overwrite).check()
            _check_qc_root(qc_root)
            init = load_transform(init_warp) if init_warp is not None else None
            init_inv = load_transform(init_warp_inv) if init_warp_inv is not None else None
            m = check_mask(mask) if mask is not None else None
        if is_auto(iseg) or is_auto(dseg):
            with run.stage("segmentation") as rec:
                iseg = auto.segment(src) if is_auto(iseg) else iseg
                dseg = auto.segment(dest) if is_auto(dseg) else dseg
                rec["segmentation"] = auto.records
        with run.stage("check inputs"):
            inp = check_multimodal_inputs(src, dest, iseg, dseg, init, param,
                                          init_name=str(init_warp) if init_warp else "--init-warp")
            if m is not None:
                check_mask_covers(m, inp.dest)
        # a series is registered through its mean volume, and <stem>_reg.nii.gz is that mean moved:
        # said, so that it is not taken for the series moved
        pair = (("-i", inp.src, inp.dest, s_name, d_name), ("-d", inp.dest, inp.src, d_name, s_name))
        series_notes = [f"{opt} {Path(a.name).name} is 4D ({a.nvols} volumes): registered through its mean volume; "
                        f"{name}_reg.nii.gz is that mean moved (move the series with `spinereg apply -i "
                        f"{Path(a.name).name} -d {Path(b.name).name} -w warp_{name}2{other}.nii.gz`)"
                        for opt, a, b, name, other in pair if a.ndim == 4 and a.nvols > 1]
        with run.stage("registration"):
            reg = register_multimodal(inp.src, inp.dest, iseg=inp.iseg, dseg=inp.dseg, mask=m, init_warp=init,
                                      init_warp_inv=init_inv, param=param, identity=identity, progress=progress)
        run.add_parts("registration", reg.timings)
        auto_in = {k: f"{Path(v).name} (automatic: spinereg segment)" for k, v in (("iseg", iseg), ("dseg", dseg))
                   if is_auto(given[k])}
        inputs = {"input": src, "dest": dest, "iseg": iseg, "dseg": dseg, "mask": mask, "init_warp": init_warp,
                  "init_warp_inv": init_warp_inv, "param": param, **auto_in}
        box: dict = {}
        hook = auto.before_commit(_qc_hook(run, "register", qc_root, out, box))
        loaded = {"input": inp.src, "dest": inp.dest, "iseg": inp.iseg, "dseg": inp.dseg}  # as the verdict reads them
        files = write_multimodal_outputs(reg, out, overwrite=overwrite, inputs=inputs, interp=interp, run=run,
                                         before_commit=hook, loaded=loaded)
        files.update({f"seg:{name}": out / name for name in auto.files})
    return JobResult(out, files, reg.metrics, box.get("index"), run.elapsed(), reg,
                     {"warnings": [*series_notes, *auto.warnings()]})


#: the parts of provenance.json that :meth:`RunRecord.as_dict` brings up to date as the run goes on
_RUN_PROGRESS = ("finished_utc", "wall_seconds", "timings_s", "stages")


def _refresh_run_record(folder: Path, run: RunRecord) -> None:
    """Rewrite ``folder``/provenance.json with ``run``'s times and stages as they are now (the
    rest as written: inputs and their checksums, versions, the job's own records)."""
    import json

    from spinereg.io.provenance import write_json

    path = folder / "provenance.json"
    prov = json.loads(path.read_text())
    now = run.as_dict()
    prov.update({k: now[k] for k in _RUN_PROGRESS})
    write_json(path, prov, overwrite=True)


def chain_job(images: list, segs: list, outdir: str | Path, *,
              labels: str | Path | Image | Landmarks | None = None,
              ldisc: str | Path | Image | Landmarks | None = None,
              lrootlet: str | Path | Image | Landmarks | None = None, template: str = "PAM50",
              contrast: str = "t2", given: dict | None = None, link_param: str | None = None,
              direct: bool = True, overwrite: bool = False, auto_discs: bool = True,
              qc_root: str | Path | None = None,
              run: RunRecord | None = None, progress: Progress = None) -> JobResult:
    """chain (target -> intermediates -> anatomical -> template) with every output, written as
    one transaction. With body or disc labels and ``auto_discs`` (default; CLI
    ``--no-auto-discs`` turns it off), the anatomical image is labelled first and its measured
    discs join the given labels when their levels agree, as in :func:`template_job`.
    ``qc_root``: also add the run to the QC report there (the chain page: the template warped onto
    the target), in the same transaction as the outputs."""
    from spinereg.pipelines.chain_outputs import write_chain_outputs
    from spinereg.pipelines.template_outputs import finish_outputs
    from spinereg.register.chain import check_chain_inputs, register_chain

    run = run or RunRecord("chain")
    out = Path(outdir)
    folder = OutputFolder(out, ("metrics.json", "provenance.json"), overwrite=overwrite)
    with run.stage("check inputs"):
        check_chain_inputs(images, segs, given)
        folder.check()
        _check_qc_root(qc_root)
    with AutoSegmentations() as auto:  # 'auto' segmentations: spinereg segment (pipelines.autoseg)
        if any(is_auto(s) for s in segs):
            with run.stage("segmentation") as rec:
                segs = [auto.segment(im, contrast if im is images[-1] else "auto") if is_auto(s) else s
                        for im, s in zip(images, segs, strict=True)]
                rec["segmentation"] = auto.records
        lab = None
        given_labels = labels is not None or ldisc is not None
        reg_images, reg_segs = list(images), list(segs)
        if auto_discs and given_labels:
            with run.stage("vertebral labeling") as rec:
                from spinereg.io.image import Image, load_image

                # loaded once: the registration reuses the anatomical image and segmentation
                anat, aseg = images[-1], segs[-1]
                reg_images[-1] = anat if isinstance(anat, Image) else load_image(anat, ndim=3)
                reg_segs[-1] = aseg if isinstance(aseg, Image) else load_image(aseg, ndim=3, what="segmentation")
                lab, rec["labeling"] = labeling_for_landmarks(reg_images[-1], reg_segs[-1], contrast)
        with run.stage("registration"):
            res = register_chain(reg_images, reg_segs, labels=labels, ldisc=ldisc, lrootlet=lrootlet,
                                 template=template, contrast=contrast, given=given or {}, link_param=link_param,
                                 direct=direct, labeling=lab, progress=progress)
            automatic = res.anat.landmark_report.setdefault("automatic", {})
            if given_labels and not auto_discs:
                automatic.update(used=False, reason="turned off (--no-auto-discs)")
            elif given_labels and lab is None:
                automatic.update(used=False, warn=True, reason="automatic labeling failed: the given labels only")
        shown = [f"{Path(s).name} (automatic: spinereg segment)" if s is not None and Path(s).name in auto.files
                 else s for s in segs]
        box: dict = {}
        with folder as tmp:
            with run.stage("write outputs"):
                files = write_chain_outputs(res, tmp, overwrite=True, run=run, inputs={
                    "images": images, "segs": shown, "labels": labels or ldisc or lrootlet})
                auto.copy_into(tmp)
            # provenance.json written last, as register-to-template / register do: its run record then
            # holds the write and QC stages too (written inside "write outputs", it held neither)
            finish_outputs(tmp, _qc_hook(run, "chain", qc_root, out, box), lambda: _refresh_run_record(tmp, run))
        files.update({f"seg:{name}": name for name in auto.files})
    return JobResult(out, {k: out / Path(v).name for k, v in files.items()}, res.metrics, box.get("index"),
                     run.elapsed(), res, {"warnings": auto.warnings()})
