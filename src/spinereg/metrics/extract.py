"""Metric extraction within atlas tracts and template labels (SCT's ``sct_extract_metric``).

A *label folder* is a folder holding an SCT ``info_label.txt`` and the label files it names, as
written by SCT's ``sct_warp_template`` (``label/atlas`` with ``PAM50_atlas_NN.nii.gz`` tract
maps, or ``label/template``). Its ``IndivLabels`` rows are ``ID, name, file``; ``CombinedLabels``
rows ``ID, name, IDgroup`` (``51, white matter, 0:29``); ``MAPLabels`` rows ``name, IDgroup``
give the clusters (white matter, gray matter, CSF) used by the first step of the MAP estimate.

Methods (``w`` is the label's weight in a voxel: the sum of its tracts' probabilistic maps):

* ``wa``: weighted average ``sum(w x) / sum(w)``.
* ``bin``: plain average over voxels with ``w >= 0.5`` (SCT's binarisation).
* ``median`` / ``max``: median / maximum over voxels with ``w >= 0.5``.
* ``ml``: maximum likelihood under partial volume: in every voxel ``x = sum_l w_l beta_l +
  noise`` over *all* atlas tracts, the selected label being one column (the sum of its tracts)
  and every other tract its own column; least squares.
* ``map``: maximum a posteriori (Lévy et al. 2015, as SCT): first the mean ``beta0_c`` of each
  MAP cluster (WM, GM, CSF; clusters touched by the selected label are merged with it) is
  estimated by ML on the cluster maps; then each column gets a Gaussian prior centred on its
  cluster mean, ``beta = beta0 + (X'X + r I)^-1 X'(y - X beta0)`` with
  ``r = sigma_noise^2 / sigma_prior^2``. SCT takes ``sigma_noise = sigma_prior`` (``r = 1``);
  so does spinereg by default (``noise_to_prior=1.0``). Large labels are then dominated by the
  data (MAP ~ ML), small tracts are pulled towards their cluster mean.

The STD column is the weighted standard deviation of the voxels around the reported value's
weighted mean (weights ``w`` for ``wa``/``ml``/``map`` as SCT, the selected voxels for
``bin``/``median``/``max``). ``Size [vox]`` is ``sum(w)`` (partial-volume voxel count) for
``wa``/``ml``/``map`` and the number of selected voxels otherwise. Non-finite metric voxels
(and negative ones with ``discard_neg``) get weight 0, as in SCT.

A label file with a value outside -0.5..1.5 is not a weight map (an intensity template, a levels
file, a point-label file such as ``PAM50_label_body``): skipped with a warning when every label is
asked for, refused when named with ``-l``. Before session 49 a file with only two distinct values
passed (``PAM50_levels`` over a field of view holding one level, values 0 and 4: a "vertebral
labeling" row whose ``Size [vox]`` was 448 for 112 voxels; now skipped, ``-l 7`` refused).

Slices are counted along the image axis closest to the world S-I axis, from inferior
(``Slice (I->S)``, SCT's RPI numbering) whatever the voxel order on disk. The vertebral level of
a slice is the non-zero level covering most of its voxels in the levels file (ties: the lower
level); SCT's older code rounds the mean instead, which differs only on slices that straddle
two levels.

CSV (stable columns, SCT's names and order)::

    Timestamp, spinereg Version, Filename, Slice (I->S), VertLevel, Label, Size [vox], <M>(), STD()

``<M>`` is ``WA``, ``BIN``, ``ML``, ``MAP``, ``MEDIAN`` or ``MAX``. Slice and level lists are
written as SCT does: runs ``a:b`` joined by ``;`` (``0:4``, ``1;3``); ``VertLevel`` is empty
when no level applies (SCT writes ``None``); an undefined value (label absent from the slices)
is empty. Timestamps are local time ``YYYY-mm-dd HH:MM:SS``.

Library: :func:`extract_metric` returns :class:`MetricRow` objects; :func:`write_metric_csv`
writes them (atomically; ``append=True`` keeps an existing file's rows and header);
:func:`read_label_folder` and :func:`slice_levels` expose the label list and per-slice levels.
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

import spinereg
from spinereg.errors import InputError
from spinereg.io.image import Image, atomic_write, load_image
from spinereg.io.sanity import require_levels_image
from spinereg.io.template import parse_ids, parse_info_label

log = logging.getLogger(__name__)

METHODS = ("wa", "bin", "ml", "map", "median", "max")
BASE_COLUMNS = ("Timestamp", "spinereg Version", "Filename", "Slice (I->S)", "VertLevel", "Label",
                "Size [vox]")
STD_COLUMN = "STD()"
#: share (%) of the row's label weight on voxels whose metric is non-finite (NaN/inf), ignored
NAN_COLUMN = "NaN weight [%]"
BIN_THRESHOLD = 0.5
#: share of the labels' weight on non-finite metric voxels from which their omission is warned of
NONFINITE_WARN_SHARE = 0.01


def value_column(method: str) -> str:
    """CSV column of a method's value (SCT's spelling, e.g. ``MAP()``)."""
    return f"{method.upper()}()"


def csv_columns(method: str) -> tuple[str, ...]:
    """CSV header for ``method``."""
    return BASE_COLUMNS + (value_column(method), STD_COLUMN, NAN_COLUMN)


# -- label folders ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelEntry:
    """A label of ``info_label.txt``: an individual file or a combination of individual ids."""

    id: int
    name: str
    members: tuple[int, ...]
    path: Path | None = None
    combined: bool = False


@dataclass(frozen=True)
class LabelFolder:
    """The labels of a warped template/atlas folder (``info_label.txt`` and its files)."""

    root: Path
    labels: tuple[LabelEntry, ...]
    clusters: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def individual(self) -> tuple[LabelEntry, ...]:
        return tuple(lab for lab in self.labels if not lab.combined)

    def ids(self) -> tuple[int, ...]:
        return tuple(lab.id for lab in self.labels)

    def label(self, label_id: int) -> LabelEntry:
        for lab in self.labels:
            if lab.id == label_id:
                return lab
        raise InputError(f"label {label_id} is not in {self.root / 'info_label.txt'}", self.root,
                         f"use ids listed there: {_runs(self.ids())}")


def _read_int(text: str, info: Path, lineno: int) -> int:
    try:
        return int(text)
    except ValueError as err:
        raise InputError(f"line {lineno}: label id '{text}' is not an integer", info,
                         "fix the info_label.txt line (format: ID, name, file)") from err


def read_label_folder(folder: str | Path) -> LabelFolder:
    """Read a label folder (``info_label.txt`` with IndivLabels, CombinedLabels, MAPLabels)."""
    root = Path(folder)
    if not root.is_dir():
        fix = ("give the folder (e.g. label/atlas), not a file" if root.exists()
               else "give a warped template folder such as label/atlas (sct_warp_template output)")
        raise InputError("label folder not found" if not root.exists() else "not a folder", root, fix)
    info = root / "info_label.txt"
    if not info.is_file():
        raise InputError("label folder has no info_label.txt", root,
                         "give a folder written by sct_warp_template (label/atlas or label/template)")
    sections = parse_info_label(info)
    labels: list[LabelEntry] = []
    for lineno, f in sections.get("IndivLabels", []):
        if len(f) < 3:
            raise InputError(f"line {lineno}: expected 'ID, name, file'", info, "fix the line")
        lid = _read_int(f[0], info, lineno)
        labels.append(LabelEntry(lid, ", ".join(f[1:-1]), (lid,), root / f[-1]))
    indiv = {lab.id for lab in labels}
    for lineno, f in sections.get("CombinedLabels", []):
        if len(f) < 3:
            raise InputError(f"line {lineno}: expected 'ID, name, IDgroup'", info, "fix the line")
        members = parse_ids(",".join(f[2:]))
        missing = sorted(set(members) - indiv)
        if missing:
            raise InputError(f"line {lineno}: combined label {f[0]} uses unknown ids {missing}", info,
                             "fix the IDgroup to list individual label ids")
        labels.append(LabelEntry(_read_int(f[0], info, lineno), f[1], members, None, True))
    clusters = tuple((f[0], parse_ids(",".join(f[1:])))
                     for _, f in sections.get("MAPLabels", []) if len(f) >= 2)
    if not labels:
        raise InputError("info_label.txt lists no labels", info, "give an atlas or template folder")
    return LabelFolder(root, tuple(labels), clusters)


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricRow:
    """One aggregated value: a label over a group of slices (one CSV row)."""

    filename: str
    slices: tuple[int, ...]
    levels: tuple[int, ...] | None
    label_id: int
    label: str
    method: str
    size: float
    value: float | None
    std: float | None
    nan_share: float = 0.0  # of the label's weight in these slices: non-finite metric, ignored

    def csv_row(self, timestamp: str) -> dict[str, str]:
        return {
            "Timestamp": timestamp,
            "spinereg Version": spinereg.__version__,
            "Filename": self.filename,
            "Slice (I->S)": _runs(self.slices),
            "VertLevel": "" if self.levels is None else _runs(self.levels),
            "Label": self.label,
            "Size [vox]": _num(self.size),
            value_column(self.method): _num(self.value),
            STD_COLUMN: _num(self.std),
            NAN_COLUMN: _num(round(100 * self.nan_share, 2)),
        }


def _num(v: float | None) -> str:
    if v is None or not np.isfinite(v):
        return ""
    return repr(float(v))


def _runs(values: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0:2;5'`` (SCT's list format)."""
    vals = sorted(int(v) for v in values)
    if not vals:
        return ""
    out, start, prev = [], vals[0], vals[0]
    for v in vals[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}:{prev}")
        if v is not None:
            start = prev = v
    return ";".join(out)


def to_csv_text(rows: Sequence[MetricRow], header: bool = True,
                columns: Sequence[str] | None = None) -> str:
    """CSV text of ``rows`` (all of one method); ``columns`` a subset (a file written before
    the NaN column was added, appended to)."""
    methods = {r.method for r in rows}
    if len(methods) > 1:
        raise ValueError(f"rows of several methods {sorted(methods)} cannot share one CSV")
    method = methods.pop() if methods else "wa"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns or csv_columns(method)), lineterminator="\n",
                            extrasaction="ignore")
    if header:
        writer.writeheader()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    writer.writerows(r.csv_row(stamp) for r in rows)
    return buf.getvalue()


def write_metric_csv(rows: Sequence[MetricRow], path: str | Path, append: bool = False,
                     overwrite: bool = False) -> Path:
    """Write ``rows`` as CSV, atomically; ``append`` adds them to an existing file (header once).

    Appending checks that the existing header is the one this method writes.
    """
    p = Path(path)
    if p.suffix.lower() != ".csv":
        raise InputError(f"output must be a .csv file (got {p.suffix or 'no suffix'!r})", p,
                         "name the output e.g. extract_metric.csv")
    if append and p.is_file():
        try:
            old = p.read_text()
        except OSError as err:
            raise InputError(f"cannot read the CSV to append to ({err.strerror})", p,
                             "check its permissions or write to a new file") from err
        first = old.splitlines()[0] if old.strip() else ""
        method = rows[0].method if rows else "wa"
        want = ",".join(csv_columns(method))
        legacy = ",".join(csv_columns(method)[:-1])  # before the NaN column (session 41)
        if first and first not in (want, legacy):
            raise InputError(f"existing CSV has other columns ({first})", p,
                             f"append only results of the same method ({value_column(method)}) "
                             "or write to a new file")
        if old and not old.endswith("\n"):
            old += "\n"
        cols = csv_columns(method)[:-1] if first == legacy else None
        text = old + to_csv_text(rows, header=not first, columns=cols)
        return atomic_write(p, lambda tmp: Path(tmp).write_text(text), overwrite=True)
    text = to_csv_text(rows)
    return atomic_write(p, lambda tmp: Path(tmp).write_text(text), overwrite)


# -- geometry --------------------------------------------------------------------------------------
def _si_order(affine: np.ndarray) -> tuple[int, bool]:
    """Voxel axis closest to world S-I, and whether it points inferior (needs flipping)."""
    ornt = nib.orientations.io_orientation(affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return axis, bool(ornt[axis, 1] < 0)


def _to_slices_last(data: np.ndarray, axis: int, flip: bool) -> np.ndarray:
    out = np.moveaxis(data, axis, 2)
    return out[:, :, ::-1] if flip else out


def _check_grid(metric: Image, other: Image, what: str) -> None:
    """Same shape and voxel centres within 5% of a voxel (float32 headers differ slightly)."""
    ga, gb = metric.grid, other.grid
    if ga.shape == gb.shape:
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in ga.shape], indexing="ij")).reshape(3, -1).T
        dist = np.linalg.norm(ga.voxel_to_world(corners) - gb.voxel_to_world(corners), axis=1).max()
        if dist <= 0.05 * float(ga.zooms.min()):
            return
        diff = f"voxel positions differ by up to {dist:.3g} mm"
    else:
        diff = f"shape {gb.shape} vs {ga.shape}"
    raise InputError(
        f"{what} is not on the metric image's voxel grid ({diff})", other.name,
        f"bring the labels onto {metric.name}: warp the template to it (as sct_warp_template does) "
        f"or resample each file, e.g. `spinereg apply -i {other.name} -d {metric.name} "
        "-w WARP_template2subject -x linear -o OUT`")


# -- selection -------------------------------------------------------------------------------------
def _parse_range(spec: str | Sequence[int] | None, what: str, example: str) -> tuple[int, ...] | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            return tuple(sorted(set(parse_ids(spec))))
        except InputError as err:
            raise InputError(f"bad {what} '{spec}'", None,
                             f"write {what} as an inclusive range or list, e.g. {example}") from err
    return tuple(sorted({int(v) for v in spec}))


def slice_levels(levels: np.ndarray) -> np.ndarray:
    """Per-slice vertebral level (last axis): the non-zero level covering most voxels, 0 if none."""
    lv = np.rint(np.nan_to_num(levels)).astype(np.int64)
    lv[lv < 0] = 0
    nz = lv.shape[2]
    top = int(lv.max()) if lv.size else 0
    if top == 0:
        return np.zeros(nz, np.int64)
    k = np.broadcast_to(np.arange(nz), lv.shape)
    counts = np.zeros((nz, top + 1), np.int64)
    np.add.at(counts, (k[lv > 0], lv[lv > 0]), 1)
    out = counts[:, 1:].argmax(axis=1) + 1
    out[counts[:, 1:].sum(axis=1) == 0] = 0
    return out


def default_vertfile(label_dir: str | Path) -> Path | None:
    """``LABEL_DIR/../template/PAM50_levels.nii.gz`` (or in LABEL_DIR itself) when present."""
    root = Path(label_dir)
    for cand in (root.parent / "template" / "PAM50_levels.nii.gz", root / "PAM50_levels.nii.gz"):
        if cand.is_file():
            return cand
    return None


# -- estimators --------------------------------------------------------------------------------------
def _weighted_stats(y: np.ndarray, w: np.ndarray) -> tuple[float | None, float | None, float]:
    tot = float(w.sum())
    if tot <= 0:
        return None, None, tot
    mean = float((w * y).sum() / tot)
    std = float(np.sqrt((w * (y - mean) ** 2).sum() / tot))
    return mean, std, tot


def _pinv_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.pinv(a) @ b


def _partial_volume(y: np.ndarray, cols: np.ndarray, col_cluster: np.ndarray | None,
                    noise_to_prior: float) -> float:
    """ML (``col_cluster`` None) or MAP estimate of column 0 of the model ``y = cols beta``."""
    xtx = cols.T @ cols
    xty = cols.T @ y
    if col_cluster is None:
        return float(_pinv_solve(xtx, xty)[0])
    ncl = int(col_cluster.max()) + 1
    onehot = np.zeros((cols.shape[1], ncl))
    onehot[np.arange(cols.shape[1]), col_cluster] = 1.0
    kmat = cols @ onehot                                   # cluster maps (voxels x clusters)
    beta_cluster = _pinv_solve(kmat.T @ kmat, kmat.T @ y)  # first step: ML of cluster means
    beta0 = beta_cluster[col_cluster]
    resid = xty - xtx @ beta0                              # X'(y - X beta0)
    beta = beta0 + _pinv_solve(xtx + noise_to_prior * np.eye(xtx.shape[0]), resid)
    return float(beta[0])


@dataclass
class _Problem:
    """Compressed voxels of the selected slices: label weights, values, slice of each voxel."""

    weights: np.ndarray       # (nvox, ntracts) float64
    values: np.ndarray        # (nvox,)
    slice_of: np.ndarray      # (nvox,) slice index (I->S)
    tract_ids: tuple[int, ...]
    not_weights: dict[int, tuple[float, float]] = field(default_factory=dict)  # id -> (min, max)
    dropped: np.ndarray | None = None          # voxels ignored (non-finite, or negative with discard_neg)
    dropped_weights: np.ndarray | None = None  # their weights (ndropped, ntracts), before zeroing
    dropped_nonfinite: np.ndarray | None = None  # which of them are non-finite


def _nan_share(problem: _Problem, rows: np.ndarray, members: np.ndarray, method: str) -> float:
    """Share of the label's weight over voxel ``rows`` (voxels >= 0.5 for bin/median/max) on
    non-finite metric voxels, which the estimate ignores."""
    if problem.dropped is None or problem.dropped_weights is None or not problem.dropped.size:
        return 0.0
    kept = problem.weights[rows][:, members].sum(axis=1)
    sel = rows[problem.dropped]
    lost = problem.dropped_weights[sel][:, members].sum(axis=1)
    nonfinite = problem.dropped_nonfinite[sel]
    if method in ("bin", "median", "max"):
        kept, lost = (kept >= BIN_THRESHOLD).astype(float), (lost >= BIN_THRESHOLD).astype(float)
    total = float(kept.sum() + lost.sum())
    return float(lost[nonfinite].sum()) / total if total > 0 else 0.0


def _estimate(problem: _Problem, rows: np.ndarray, members: np.ndarray, method: str,
              clusters: np.ndarray | None, noise_to_prior: float) -> tuple[float | None, float | None, float]:
    """(value, std, size) of the label made of tract columns ``members`` over voxel ``rows``."""
    x = problem.weights[rows]
    y = problem.values[rows]
    w = x[:, members].sum(axis=1)
    if method in ("bin", "median", "max"):
        sel = w >= BIN_THRESHOLD
        n = float(sel.sum())
        if n == 0:
            return None, None, 0.0
        ys = y[sel]
        value = {"bin": np.mean, "median": np.median, "max": np.max}[method](ys)
        return float(value), float(ys.std()), n
    mean, std, size = _weighted_stats(y, w)
    if method == "wa" or mean is None:
        return mean, std, size
    cols = np.concatenate([w[:, None], x[:, ~members]], axis=1)
    col_cluster = None
    if method == "map":
        assert clusters is not None
        mine = np.unique(clusters[members])
        rest = clusters[~members]
        # clusters touched by the label are merged with it (SCT); renumber 0..k-1
        rest = np.where(np.isin(rest, mine), mine[0], rest)
        raw = np.concatenate([[mine[0]], rest])
        _, col_cluster = np.unique(raw, return_inverse=True)
    return _partial_volume(y, cols, col_cluster, noise_to_prior), std, size


# -- main entry ----------------------------------------------------------------------------------------
def _load_metric(metric_img: Image | str | Path) -> Image:
    if isinstance(metric_img, Image):
        if metric_img.ndim != 3:
            raise InputError(f"metric image is {metric_img.ndim}D, 3D needed", metric_img.name,
                             "give one volume (e.g. the mean over time)")
        return metric_img
    return load_image(metric_img, ndim=3, check_finite=False, what="metric image")


def _select_ids(folder: LabelFolder, ids: int | str | Sequence[int] | None) -> list[LabelEntry]:
    if ids is None:
        return list(folder.labels)
    if isinstance(ids, str):
        wanted = parse_ids(ids)
    elif isinstance(ids, int | np.integer):
        wanted = (int(ids),)
    else:
        wanted = tuple(int(i) for i in ids)
    known = set(folder.ids())
    bad = [i for i in wanted if i not in known]
    if bad:
        raise InputError(f"label id(s) {_runs(bad)} not in {folder.root / 'info_label.txt'}", None,
                         f"use ids listed there ({_runs(sorted(known))}), e.g. 51 for white matter")
    return [folder.label(i) for i in dict.fromkeys(wanted)]


def extract_metric(
    metric_img: Image | str | Path,
    label_dir: str | Path,
    ids: int | str | Sequence[int] | None = None,
    method: str = "wa",
    vert: str | Sequence[int] | None = None,
    vertfile: str | Path | None = None,
    perlevel: bool = False,
    perslice: bool = False,
    slices: str | Sequence[int] | None = None,
    discard_neg: bool = False,
    combine: bool = False,
    noise_to_prior: float = 1.0,
) -> list[MetricRow]:
    """Aggregate a 3D metric within labels of a warped atlas/template folder (sct_extract_metric).

    Parameters
    ----------
    metric_img: 3D metric (image or path), on the same grid as the label files.
    label_dir: folder with ``info_label.txt`` and the label files (e.g. ``label/atlas``).
    ids: label ids: an int, a sequence, or SCT's syntax (``"0:29"``, ``"0,1,2"``); combined ids
        (``51``) are sums of their tracts. One result per id (``combine`` merges them into one
        label). Default: every label of the folder.
    method: ``wa``, ``bin``, ``ml``, ``map``, ``median`` or ``max`` (module docstring).
    vert: vertebral levels (``"2:5"``): keep the slices whose level is among them.
    vertfile: levels image (default :func:`default_vertfile`).
    perlevel: one result per level (levels from ``vert``, else every level present).
    perslice: one result per slice (``perlevel`` has priority, as SCT).
    slices: slice range (``"2:12"``, inclusive, numbered I->S); intersected with ``vert``.
    discard_neg: ignore voxels with a negative metric value.
    noise_to_prior: MAP's ``sigma_noise^2 / sigma_prior^2`` (1, as SCT).
    """
    method = method.lower()
    if method not in METHODS:
        raise InputError(f"unknown method '{method}'", None, f"use one of {', '.join(METHODS)}")
    metric = _load_metric(metric_img)
    folder = read_label_folder(label_dir)
    chosen = _select_ids(folder, ids)
    if combine and len(chosen) > 1:
        members = tuple(sorted({m for lab in chosen for m in lab.members}))
        chosen = [LabelEntry(chosen[0].id, "+".join(lab.name for lab in chosen), members,
                             combined=True)]

    partial = method in ("ml", "map")
    if partial and not folder.clusters:
        raise InputError(f"method '{method}' needs an atlas whose labels cover the tissue, with MAP "
                         "clusters (no MAPLabels section in info_label.txt)", folder.root,
                         "give the atlas folder (label/atlas) or use -m wa")
    tract_ids = (tuple(lab.id for lab in folder.individual) if partial
                 else tuple(sorted({m for lab in chosen for m in lab.members})))

    first = folder.label(tract_ids[0]).path if tract_ids else None
    if first is not None and Path(first).is_file():
        # the metric stored in another voxel order than the labels (same voxel centres: mtr.nii.gz
        # as_closest_canonical) was refused as "not on the metric image's voxel grid" before session 37
        from spinereg.io.image import read_grid
        from spinereg.metrics.overlap import reordered_onto

        lgrid = read_grid(first, what="label file")
        if not lgrid.same_as(metric.grid):
            metric = reordered_onto(lgrid, metric) or metric
    axis, flip = _si_order(metric.affine)
    data = _to_slices_last(np.asarray(metric.data, dtype=np.float64), axis, flip)
    nz = data.shape[2]

    # -- slice selection and levels
    z_sel = _parse_range(slices, "slice range", "-z 2:12")
    if z_sel is not None:
        out = [z for z in z_sel if not 0 <= z < nz]
        if out:
            raise InputError(f"slices {_runs(out)} are outside the image (0:{nz - 1})", metric.name,
                             f"give slices between 0 and {nz - 1} (numbered I->S)")
    levels_wanted = _parse_range(vert, "vertebral levels", "--vert 2:5")
    need_levels = levels_wanted is not None or perlevel or vertfile is not None
    lev_of_slice = None
    if need_levels:
        vf = Path(vertfile) if vertfile is not None else default_vertfile(label_dir)
        if vf is None:
            raise InputError("no vertebral levels file for --vert/--perlevel", label_dir,
                             "give --vertfile (e.g. label/template/PAM50_levels.nii.gz)")
        lev_img = load_image(vf, ndim=3, check_finite=False, what="vertebral levels file")
        # an intensity image gave "levels" 27/28 with plausible rows, a binary cord mask "C1" on
        # every slice, exit 0, before session 37
        require_levels_image(lev_img, "vertebral levels file", "--vertfile")
        if not lev_img.grid.same_as(metric.grid):  # stored in another voxel order: reordered
            from spinereg.metrics.overlap import reordered_onto

            lev_img = reordered_onto(metric.grid, lev_img) or lev_img
        _check_grid(metric, lev_img, "vertebral levels file")
        lev_of_slice = slice_levels(_to_slices_last(np.asarray(lev_img.data), axis, flip))
    selected = np.arange(nz) if z_sel is None else np.asarray(z_sel, dtype=int)
    if levels_wanted is not None:
        assert lev_of_slice is not None
        selected = selected[np.isin(lev_of_slice[selected], levels_wanted)]
        if selected.size == 0:
            present = sorted(set(lev_of_slice[lev_of_slice > 0].tolist()))
            raise InputError(f"no slice has vertebral level {_runs(levels_wanted)}"
                             + (" within the slice range" if z_sel is not None else ""), vertfile or label_dir,
                             f"levels present: {_runs(present) or 'none'}; choose among them")

    # -- groups of slices
    groups: list[tuple[tuple[int, ...], tuple[int, ...] | None]] = []
    if perlevel:
        assert lev_of_slice is not None
        present = [int(v) for v in dict.fromkeys(lev_of_slice[selected].tolist()) if v > 0]
        order = [lv for lv in (levels_wanted or sorted(present)) if lv in present]
        for lv in (levels_wanted or ()):
            if lv not in present:
                log.warning("vertebral level %d: no slice, no row", lv)
        for lv in order:
            groups.append((tuple(int(z) for z in selected[lev_of_slice[selected] == lv]), (lv,)))
    elif perslice:
        for z in selected:
            lv = None if lev_of_slice is None or lev_of_slice[z] == 0 else (int(lev_of_slice[z]),)
            groups.append(((int(z),), lv))
    else:
        lv = None
        if lev_of_slice is not None and levels_wanted is not None:
            lv = tuple(sorted({int(v) for v in lev_of_slice[selected] if v > 0}))
        groups.append((tuple(int(z) for z in selected), lv))

    problem = _load_problem(metric, data, folder, tract_ids, selected, axis, flip, discard_neg)
    if problem.not_weights:
        # -f label/template without -l gave a "WA" within the T1/T2/T2* templates (intensities as
        # weights) and within PAM50_levels (weights 4 and 5), rows like any other (session 40)
        def said(lab: LabelEntry) -> str:
            return ", ".join(f"{m} ({folder.label(m).path.name}: values {problem.not_weights[m][0]:g}.."
                             f"{problem.not_weights[m][1]:g})" for m in lab.members if m in problem.not_weights)
        unfit = [lab for lab in chosen if any(m in problem.not_weights for m in lab.members)]
        if ids is not None:
            lab = unfit[0]
            raise InputError(f"label {lab.id} ({lab.name}) is not a weight map: {said(lab)}, an intensity "
                             "template, a levels or a point-label file", folder.root,
                             "choose labels whose files are masks or probabilistic maps (0..1); vertebral levels "
                             "go with --vertfile and --vert/--perlevel")
        log.warning("labels %s skipped: not weight maps (intensity templates, levels or point-label files)",
                    "; ".join(said(lab) for lab in unfit))
        chosen = [lab for lab in chosen if lab not in unfit]
        if not chosen:
            raise InputError("no label of the folder is a weight map (mask or probabilistic map)", folder.root,
                             "give a label folder such as label/atlas or label/template")
    clusters = _cluster_of(folder, problem.tract_ids) if method == "map" else None
    tract_index = {t: n for n, t in enumerate(problem.tract_ids)}
    fname = str(metric.path) if metric.path else "<image>"
    out_rows: list[MetricRow] = []
    for lab in chosen:
        members = np.zeros(len(problem.tract_ids), bool)
        members[[tract_index[m] for m in lab.members]] = True
        for group, lv in groups:
            rows = np.isin(problem.slice_of, group)
            value, std, size = _estimate(problem, rows, members, method, clusters, noise_to_prior)
            out_rows.append(MetricRow(fname, group, lv, lab.id, lab.name, method, size, value, std,
                                      _nan_share(problem, rows, members, method)))
    _warn_nan(out_rows)
    return out_rows


def _warn_nan(rows: Sequence[MetricRow]) -> None:
    """Name each reported label with a non-finite metric on >= NONFINITE_WARN_SHARE of its weight in
    a row. The share was of all loaded tracts together before session 41: a tract half NaN asked
    with -l beside the white matter was under 1 % of them, no word."""
    worst: dict[int, tuple[str, float, int]] = {}
    for r in rows:
        if r.nan_share >= NONFINITE_WARN_SHARE:
            name, share, n = worst.get(r.label_id, (r.label, 0.0, 0))
            worst[r.label_id] = (name, max(share, r.nan_share), n + 1)
    if not worst:
        return
    # NaN over the cord's centre took 42 % of the gray matter's weight, said only at -v (session 40)
    said = "; ".join(f"{i} ({name}): {100 * share:.0f} %" + (f" (worst of {n} rows)" if n > 1 else "")
                     for i, (name, share, n) in worst.items())
    log.warning("non-finite metric value (NaN/inf) on part of the labels' weight, ignored: each value is that "
                "of the rest of its label (share per row in the CSV column '%s'): %s", NAN_COLUMN, said)


def _cluster_of(folder: LabelFolder, tract_ids: tuple[int, ...]) -> np.ndarray:
    """MAP cluster index of each tract (tracts in no cluster get their own)."""
    out = np.full(len(tract_ids), -1, np.int64)
    for c, (_, ids) in enumerate(folder.clusters):
        out[np.isin(tract_ids, ids) & (out < 0)] = c
    lonely = np.flatnonzero(out < 0)
    out[lonely] = len(folder.clusters) + np.arange(lonely.size)
    return out


def _load_problem(metric: Image, data: np.ndarray, folder: LabelFolder, tract_ids: tuple[int, ...],
                  selected: np.ndarray, axis: int, flip: bool, discard_neg: bool) -> _Problem:
    """Read the tract maps one by one, keep only their non-zero voxels in the selected slices."""
    nx, ny, nz = data.shape
    keep = np.zeros(nz, bool)
    keep[selected] = True
    sparse: list[tuple[np.ndarray, np.ndarray]] = []
    not_weights: dict[int, tuple[float, float]] = {}
    for tid in tract_ids:
        lab = folder.label(tid)
        assert lab.path is not None
        if not lab.path.is_file():
            raise InputError(f"label file of '{lab.name}' ({tid}) is missing", lab.path,
                             "give a complete label folder (re-run the template warping)")
        img = load_image(lab.path, ndim=3, check_finite=False, what=f"label file ({lab.name})")
        _check_grid(metric, img, f"label file '{lab.name}'")
        w = _to_slices_last(np.asarray(img.data), axis, flip)
        lo, hi = float(np.nanmin(w)), float(np.nanmax(w))
        if hi > 1.5 or lo < -0.5:
            # an intensity template, a levels file or a point-label file: not a weight map. Two
            # distinct values were let through before session 49: PAM50_levels over a field of view
            # holding one level (values 0 and 4) gave a 'vertebral labeling' row, exit 0, its
            # "Size [vox]" 448 for 112 voxels (weight 4 each), and -l 7 was accepted; a warped
            # PAM50_label_body (one voxel valued 4) gave 'WA' = that voxel, 'Size [vox]' 4.
            not_weights[tid] = (lo, hi)
        w = np.where(np.isfinite(w) & keep[None, None, :], w, 0)
        flat = np.flatnonzero(w.reshape(-1))
        sparse.append((flat, w.reshape(-1)[flat].astype(np.float64)))
    support = np.unique(np.concatenate([s[0] for s in sparse])) if sparse else np.zeros(0, np.int64)
    weights = np.zeros((support.size, len(tract_ids)), np.float64)
    for n, (flat, vals) in enumerate(sparse):
        weights[np.searchsorted(support, flat), n] = vals
    values = data.reshape(-1)[support]
    bad = ~np.isfinite(values)
    if discard_neg:
        bad |= values < 0
    if bad.any():
        log.info("%d voxels with non-finite%s values inside the labels ignored", int(bad.sum()),
                 " or negative" if discard_neg else "")
    dropped = np.flatnonzero(bad)
    dropped_weights = weights[dropped].copy()
    dropped_nonfinite = ~np.isfinite(values[dropped])
    if bad.any():
        weights[bad] = 0.0
        values = np.where(bad, 0.0, values)
    slice_of = support % nz  # C order (x, y, z): z varies fastest
    return _Problem(weights, values, slice_of, tract_ids, not_weights, dropped, dropped_weights,
                    dropped_nonfinite)
