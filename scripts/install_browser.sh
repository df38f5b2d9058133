#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the QC browser tests (no-op when present).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: apt-get not found; install chromium and chromium-driver by hand" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install_browser.sh: not root and no sudo; install chromium and chromium-driver by hand" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
if ! { $SUDO apt-get install -y -q chromium chromium-driver >"$log" 2>&1 \
       || { $SUDO apt-get update -q >>"$log" 2>&1 && $SUDO apt-get install -y -q chromium chromium-driver >>"$log" 2>&1; }; }; then
    echo "install_browser.sh: apt-get install chromium chromium-driver failed:" >&2
    tail -n 20 "$log" >&2
fi
rm -f "$log"
