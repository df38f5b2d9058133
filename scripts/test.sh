#!/usr/bin/env bash
# Install what the tests need and run the whole suite (the README's test command), in two stages:
# 1. everything except the long real-data cases; 2. the long cases (marked `slow`): run, never skipped.
# Extra arguments go to both pytest runs (e.g. a test file); a stage that selects nothing is fine.
# Files go to the two workers longest first (tests/conftest.py, LONGEST_FIRST), not by their number of tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test,qc]"
bash scripts/install_browser.sh
python -m ruff check src tests bench
status=0
python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow" "$@" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
echo "== second stage: long real-data cases (marked slow) =="
status=0
python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m slow "$@" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
exit 0
