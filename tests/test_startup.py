"""Start-up stays light: building the command line (``spinereg --help``, every subcommand's
parser) imports no numerical library, and an ANTs step loads only antspyx's compiled library,
never its Python package (learning, plotting and statistics modules). Timings are measured by
bench/speed.py, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "scipy", "nibabel", "ants", "matplotlib", "onnxruntime", "dask", "yaml", "pandas",
         "sklearn", "statsmodels")


def _imported_after(code: str) -> set[str]:
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


def test_help_imports_no_library():
    """``python -m spinereg.cli.main --help`` (and every subcommand's ``--help``) in a fresh
    process imports none of the heavy libraries."""
    code = ("import contextlib, io, runpy, sys\n"
            "from spinereg.cli.main import build_parser, main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['--help']) == 0\n"
            "    p = build_parser()\n"
            "    for name in p._subparsers._group_actions[0].choices:\n"
            "        assert main([name, '--help']) == 0, name\n"
            "    assert main(['metrics', 'dice', '--help']) == 0\n"
            "    assert main(['sdc', 'anat', '--help']) == 0\n")
    loaded = _imported_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "spinereg.cli.main", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "register-to-template" in res.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
    assert "spinereg" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_version_is_computed_when_asked():
    res = subprocess.run([sys.executable, "-m", "spinereg.cli.main", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("spinereg ")


def test_io_package_names_still_importable():
    loaded = _imported_after("import spinereg.io.registry, spinereg.io.provenance")
    assert not loaded & {"numpy", "scipy", "nibabel"}
    from spinereg.io import Grid, Image, load_image, sample_world  # noqa: F401 - loaded on first use


def test_ants_step_loads_only_the_compiled_library():
    code = ("import numpy as np\n"
            "from spinereg.io import Grid\n"
            "from spinereg.register.ants_steps import ants_step\n"
            "g = Grid((16, 16, 4), np.diag([1.0, 1.0, 2.0, 1.0]))\n"
            "x, y, z = np.meshgrid(np.arange(16), np.arange(16), np.arange(4), indexing='ij')\n"
            "f = (((x - 8) ** 2 + (y - 8) ** 2) < 16).astype(np.float32)\n"
            "m = (((x - 9) ** 2 + (y - 8) ** 2) < 16).astype(np.float32)\n"
            "t = ants_step(f, m, g, {'algo': 'translation', 'iter': 20})\n"
            "assert 0.3 < abs(t.matrix[0, 3]) < 1.7, t.matrix\n")
    loaded = _imported_after(code)
    assert not loaded & {"pandas", "sklearn", "statsmodels", "matplotlib"}, loaded
    assert "ants" in loaded  # only the ants.lib extension (no antspyx __init__)
