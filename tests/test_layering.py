"""Data flow one way: io -> transforms -> cord / segment / vertebrae -> register / epi -> metrics / lesion ->
qc -> pipelines / batch -> cli. No module imports a package of a higher layer (imports inside
functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

RANK = {"errors": 0, "progress": 0, "io": 0, "transforms": 1, "cord": 2, "segment": 2, "vertebrae": 2,
        "register": 3, "epi": 3, "metrics": 4, "lesion": 4, "phantom": 4, "qc": 5, "pipelines": 6, "batch": 6, "cli": 7}
ROOT = Path(__file__).resolve().parents[1] / "src" / "spinereg"


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def test_every_package_is_ranked():
    pkgs = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert pkgs <= set(RANK), pkgs - set(RANK)


def test_no_lower_layer_imports_a_higher_one():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).parts
        if len(rel) == 1:
            continue
        me = RANK[rel[0]]
        for mod in _imports(path):
            parts = mod.split(".")
            if parts[0] == "spinereg" and len(parts) > 1 and RANK.get(parts[1], -1) > me:
                bad.append(f"{'/'.join(rel)} imports {mod}")
    assert not bad, "\n".join(bad)
