#!/usr/bin/env bash
# Install what the tests need and run the whole suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test,qc]"
bash scripts/install_browser.sh
python -m ruff check src tests bench
python -m pytest -q -n 2 --dist loadfile "$@"
