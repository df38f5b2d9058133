"""``spinereg data list|fetch|path|verify`` and ``spinereg template-info``: reference data."""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

from spinereg.io import registry

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="log details; show tracebacks on errors")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list, download, locate and verify reference data",
                       description="Reference data (templates, sample subject). Found in "
                       f"${registry.ENV_DATA}/<folder>, else in the download cache "
                       f"(${registry.ENV_CACHE} or the user cache folder).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    a = actions.add_parser("list", help="datasets, their release and where they are found",
                           description="List the reference datasets, their release and where they are found.")
    _verbose(a)
    a.set_defaults(func=run_list)

    a = actions.add_parser("fetch", help="download, unzip and verify a dataset into the cache",
                           description="Download a dataset's release, unzip it into the cache and check every "
                                       "file against the manifest shipped with spinereg.")
    a.add_argument("name", help="dataset name (see `spinereg data list`)")
    a.add_argument("--force", action="store_true", help="download again even if cached")
    a.add_argument("--url", help="download from this address instead (a mirror, or "
                   "file:///path/to/release.zip downloaded by hand)")
    _verbose(a)
    a.set_defaults(func=run_fetch)

    a = actions.add_parser("path", help="print the folder of a dataset (exit 2 if absent)",
                           description="Print the folder of a dataset (exit 2 if it is not available).")
    a.add_argument("name", help="dataset name (see `spinereg data list`)")
    _verbose(a)
    a.set_defaults(func=run_path)

    a = actions.add_parser("verify", help="check a dataset's files against their checksums",
                           description="Check a dataset's files against the sha256 manifest shipped with "
                                       "spinereg (exit 2 on any difference).")
    a.add_argument("name", help="dataset name (see `spinereg data list`)")
    a.add_argument("--root", help="folder to check (default: where the dataset is found)")
    _verbose(a)
    a.set_defaults(func=run_verify)

    t = sub.add_parser("template-info", help="list a template's objects, roles and atlas",
                       description="List a template's objects (id, role, kind, interpolation, file), its "
                                   "atlas and spinal level maps.")
    t.add_argument("-t", "--template", default="PAM50",
                   help="template name (PAM50, MNI-Poly-AMU, PAM50_small) or folder")
    _verbose(t)
    t.set_defaults(func=run_template_info)


def run_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "VERSION", "LOCATION")]
    for name, ds in registry.datasets().items():
        found = registry.locate(ds)
        rows.append((name, ds.version, f"{found[0]} ({found[1]})" if found else "not downloaded"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
    print(f"cache: {registry.cache_dir()}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    progress = sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None
    path = registry.fetch(args.name, force=args.force, url=args.url, progress=progress)
    print(path)
    return 0


def run_path(args: argparse.Namespace) -> int:
    print(registry.dataset_path(args.name))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    report = registry.verify(args.name, args.root)
    for rel in report.mismatched:
        print(f"differs: {rel}")
    for rel in report.missing:
        print(f"missing: {rel}")
    for rel in report.extra:
        print(f"not in manifest: {rel}")
    for rel in report.absent_unhashed:
        print(f"not in this copy (optional, unhashed): {rel}")
    if not report.ok:
        raise registry.DataVerificationError(report.summary(), report.root,
                                             f"run `spinereg data fetch {report.name} --force`")
    print(report.summary())
    return 0


def run_template_info(args: argparse.Namespace) -> int:
    from spinereg.io.template import load_template

    tpl = load_template(args.template)
    print(f"template {tpl.name}: {tpl.root}")
    if tpl.note:
        print(f"note: {tpl.note}")
    for o in tpl.objects:
        state = "" if o.exists else "  (missing)"
        ident = "-" if o.id is None else str(o.id)
        print(f"  {ident:>3}  {o.role or '?':<18} {o.kind:<13} {o.interp:<6} {o.file}{state}")
    atlas = tpl.atlas
    if atlas.root is not None:
        print(f"atlas: {len(atlas)} tracts, {len(atlas.combined)} combined labels "
              f"({', '.join(f'{c.id} {c.name}' for c in atlas.combined)}): {atlas.root}")
    if tpl.spinal_level_maps:
        print(f"spinal level maps: {len(tpl.spinal_level_maps)} in "
              f"{tpl.spinal_level_maps[0].path.parent}")
    return 0
