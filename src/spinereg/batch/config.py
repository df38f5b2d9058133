"""The batch configuration: which pipeline runs on which contrast, with which presets.

The package's default is ``spinereg/data/batch_default.yaml`` (documented there); a user file
(YAML or JSON) replaces its top-level keys, and within ``contrasts``, ``given`` and ``engine`` its
entries one by one. Everything is checked before any work: an unknown key, step, preset,
contrast or template, or an engine value the cluster cannot take, is one error naming the file and
the fix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spinereg.batch.bids import SUFFIXES
from spinereg.errors import InputError, SpineregError

STEPS = ("segment", "label", "register-to-template", "chain", "mtr", "warp-template", "extract-metric", "csa")
TOP_KEYS = {"template", "anatomical", "crop", "qc", "given", "contrasts", "engine"}
CONTRAST_KEYS = {"steps", "contrast", "preset", "via", "target", "extract", "atlas", "link_preset", "direct"}
EXTRACT_KEYS = {"metric", "labels", "method", "perlevel", "vert"}
ENGINE_KEYS = {"workers", "threads_per_worker", "memory_per_worker_gb"}
GIVEN_KEYS = {"seg", "labels", "ldisc"}
DEFAULT_NAME = "batch_default.yaml"


@dataclass(frozen=True)
class BatchConfig:
    """A checked configuration (``data``: the merged dictionary; ``source``: where it came from)."""

    data: dict
    source: str

    @property
    def template(self) -> str:
        return str(self.data["template"])

    @property
    def anatomical(self) -> str:
        return str(self.data["anatomical"])

    def contrast(self, suffix: str) -> dict | None:
        return self.data["contrasts"].get(suffix)

    def steps(self, suffix: str) -> list[str]:
        c = self.contrast(suffix)
        return list(c.get("steps", [])) if c else []

    def qc_for(self, step: str) -> bool:
        qc = self.data.get("qc")
        return bool(qc) if isinstance(qc, bool) else step in (qc or [])

    def digest(self) -> str:
        """sha256 of the canonical JSON of the configuration (what decides the outputs)."""
        d = {k: v for k, v in self.data.items() if k != "engine"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the configuration ({exc.strerror})", path, "give a readable YAML/JSON file") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json errors alike
        msg = " ".join(str(exc).split())
        raise InputError(f"configuration is not valid YAML/JSON ({msg})", path, "fix the syntax") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("configuration must be a mapping of keys", path,
                         "start from spinereg/data/batch_default.yaml")
    return data


def default_config_data() -> dict:
    import yaml

    text = resources.files("spinereg.data").joinpath(DEFAULT_NAME).read_text()
    return yaml.safe_load(text)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> BatchConfig:
    """The default configuration updated with the file ``path`` (and ``overrides``), checked."""
    data = default_config_data()
    source = f"spinereg/data/{DEFAULT_NAME}"
    layers = []
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError("configuration file not found", p, "give an existing YAML or JSON file to --config")
        layers.append((_read(p), str(p)))
        source = str(p)
    if overrides:
        layers.append((overrides, source))
    for user, where in layers:
        unknown = sorted(set(user) - TOP_KEYS)
        if unknown:
            raise InputError(f"unknown key(s) {', '.join(unknown)}", where, f"use only {', '.join(sorted(TOP_KEYS))}")
        for key, value in user.items():
            if key in ("contrasts", "given", "engine") and isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **copy.deepcopy(value)}
            else:
                data[key] = copy.deepcopy(value)
    check(data, source)
    return BatchConfig(data, source)


def _fail(msg: str, where: str, fix: str):
    raise InputError(msg, where, fix)


def check(data: dict, where: str) -> None:
    """Raise :class:`InputError` (naming ``where``) for anything the batch could not run."""
    from spinereg.register.presets import list_presets

    if not isinstance(data.get("contrasts"), dict) or not data["contrasts"]:
        _fail("'contrasts' must map contrast suffixes to pipelines", where, "see spinereg/data/batch_default.yaml")
    if data.get("anatomical") not in SUFFIXES:
        _fail(f"anatomical: {data.get('anatomical')!r} is not a contrast suffix", where, f"use one of {', '.join(SUFFIXES)}")
    for key in ("given", "engine"):
        allowed = GIVEN_KEYS if key == "given" else ENGINE_KEYS
        block = data.get(key) or {}
        if not isinstance(block, dict) or set(block) - allowed:
            _fail(f"{key}: unknown entries {sorted(set(block) - allowed) if isinstance(block, dict) else block}",
                  where, f"use {', '.join(sorted(allowed))}")
    _check_template(data.get("template"), where)
    _check_engine(data.get("engine") or {}, where)
    for name, pats in (data.get("given") or {}).items():
        if not isinstance(pats, list) or not all(isinstance(p, str) for p in pats):
            _fail(f"given.{name} must be a list of file-name patterns", where, 'e.g. ["_seg-manual", "_seg"]')
    qc = data.get("qc")
    if not isinstance(qc, bool) and not (isinstance(qc, list) and set(qc) <= set(STEPS)):
        _fail(f"qc: {qc!r} is neither true/false nor a list of steps", where, f"use steps among {', '.join(STEPS)}")
    presets = set(list_presets())
    for suffix, c in data["contrasts"].items():
        w = f"contrasts.{suffix}"
        if suffix not in SUFFIXES:
            _fail(f"{w}: unknown contrast", where, f"use BIDS suffixes among {', '.join(SUFFIXES)}")
        if not isinstance(c, dict):
            _fail(f"{w} must be a mapping", where, "give steps: [...] and the step options")
        if set(c) - CONTRAST_KEYS:
            _fail(f"{w}: unknown key(s) {', '.join(sorted(set(c) - CONTRAST_KEYS))}", where,
                  f"use {', '.join(sorted(CONTRAST_KEYS))}")
        steps = c.get("steps") or []
        bad = [s for s in steps if s not in STEPS]
        if bad:
            _fail(f"{w}: unknown step(s) {', '.join(bad)}", where, f"use steps among {', '.join(STEPS)}")
        if "register-to-template" in steps and suffix != data["anatomical"]:
            _fail(f"{w}: register-to-template runs on the anatomical contrast only ({data['anatomical']})", where,
                  "use the chain step for the other contrasts")
        if "chain" in steps:
            via = c.get("via") or []
            if not via or via[-1] != data["anatomical"]:
                _fail(f"{w}: via must end with the anatomical contrast ({data['anatomical']})", where,
                      f"e.g. via: [{data['anatomical']}]")
        if ("warp-template" in steps or "extract-metric" in steps) and "chain" not in steps \
                and "register-to-template" not in steps:
            _fail(f"{w}: warp-template / extract-metric need a registration step first", where,
                  "add chain (or register-to-template) before them")
        if "csa" in steps and ("warp-template" not in steps or steps.index("csa") < steps.index("warp-template")):
            _fail(f"{w}: the csa step needs warp-template before it (levels)", where, "add warp-template before csa")
        if "mtr" in steps and suffix != "MTS":
            _fail(f"{w}: the mtr step needs an MTS pair", where, "use it under contrasts.MTS")
        for pk in ("preset", "link_preset"):
            p = c.get(pk)
            if p is not None and "=" not in str(p) and str(p) not in presets:
                _fail(f"{w}.{pk}: unknown preset {p!r}", where, f"use one of {', '.join(sorted(presets))} or --param text")
        ex = c.get("extract")
        if "extract-metric" in steps:
            if not isinstance(ex, dict) or set(ex) - EXTRACT_KEYS:
                _fail(f"{w}.extract must be a mapping with {', '.join(sorted(EXTRACT_KEYS))}", where,
                      "e.g. extract: {metric: mtr, labels: spinal cord, method: wa, perlevel: true}")
            if ex.get("metric", "image") not in ("mtr", "image"):
                _fail(f"{w}.extract.metric must be mtr or image", where, "use metric: mtr (MTS) or image")
    if data["anatomical"] not in data["contrasts"]:
        _fail(f"no pipeline for the anatomical contrast {data['anatomical']}", where,
              f"add contrasts.{data['anatomical']} with steps: [register-to-template]")


def _whole_number(value: object) -> int | None:
    """``value`` as the CLI's ``--workers`` / ``--threads-per-worker`` read it (``int(text)``); None
    when it is no whole number (a bool, a float, other text)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _check_engine(engine: dict, where: str) -> None:
    """engine.workers (or ``auto``) and engine.threads_per_worker: whole numbers of at least 1, the
    rule of the CLI flags; memory_per_worker_gb: a positive number (or ``auto``). Unchecked before
    session 48, ``workers: -3`` started a cluster of no worker that waited forever and ``abc`` was
    an internal error, both after the output folder was made."""
    for key, auto in (("workers", "auto"), ("threads_per_worker", None)):
        value = engine.get(key)
        if value is None or (auto is not None and value == auto):
            continue
        n = _whole_number(value)
        if n is None or n < 1:
            _fail(f"engine.{key}: {value!r} is not a whole number of at least 1", where,
                  f"give engine.{key} 1 or more" + (f" (or {auto})" if auto else "") + " or leave it out")
    mem = engine.get("memory_per_worker_gb")
    if mem is None or mem == "auto":
        return
    try:
        gb = None if isinstance(mem, bool) else float(mem)
    except (TypeError, ValueError):
        gb = None
    if gb is None or not math.isfinite(gb) or gb <= 0:
        _fail(f"engine.memory_per_worker_gb: {mem!r} is not a positive number", where,
              "give the GB per worker (e.g. 4) or auto")


def _check_template(value: object, where: str) -> None:
    """The template resolves as the pipelines resolve it (:func:`spinereg.io.template.load_template`):
    a template name, or a folder holding ``template/info_label.txt`` or ``info_label.txt``. A wrong
    one failed every subject only once its work had started (exit 3, a partial output folder).
    A named template's data is not looked for here: it is found (or downloaded) at its first use."""
    from spinereg.io.template import load_template, template_names

    names = template_names()
    if not isinstance(value, str) or not value.strip():
        _fail(f"template: {value!r} is not a template name or folder", where,
              f"use one of {', '.join(names)} or a template folder")
    if any(n.lower() == value.lower() for n in names) and not Path(value).is_dir():
        return
    try:
        load_template(value)
    except SpineregError as exc:
        at = f" ({exc.path})" if exc.path else ""
        _fail(f"template: {exc.message}{at}", where, exc.fix or f"use one of {', '.join(names)} or a template folder")


def config_to_text(cfg: BatchConfig) -> str:
    """The merged configuration as YAML (written into the output folder's logs)."""
    import yaml

    return yaml.safe_dump(cfg.data, sort_keys=False)
